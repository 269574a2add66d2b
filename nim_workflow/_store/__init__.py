"""Persistence: the tables, the Alembic migrations and the database connection rules."""
