"""Alembic environment for nim-workflow: always run from code, on a connection we are handed.

The library keeps its own version table (``nimwf_alembic_version``) and only ever compares its own
``nimwf_`` tables, so it never touches or reports on a host's tables in a shared database.
"""

from __future__ import annotations

from alembic import context

from nim_workflow._store._schema import metadata

VERSION_TABLE = "nimwf_alembic_version"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Compare only the library's own tables."""
    if type_ == "table":
        return bool(name) and str(name).startswith("nimwf_") and name != VERSION_TABLE
    return True


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    include_name=include_name,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
