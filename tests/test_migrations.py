"""The Alembic migrations, on SQLite and on PostgreSQL.

They build exactly the models' schema, under the library's own version table, and never touch a
host's tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from engine_helpers import SW, Clock, new_engine

import nim_workflow as nw
from nim_workflow._store import _migrate
from nim_workflow._store._schema import metadata

VERSION_TABLE = "nimwf_alembic_version"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Compare only the library's own tables, as the migration environment does."""
    if type_ == "table":
        return bool(name) and str(name).startswith("nimwf_") and name != VERSION_TABLE
    return True


def schema_diff(bind: sa.Engine) -> list[Any]:
    """What autogenerate would change to make the database match the models."""
    with bind.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLE,
                "include_name": include_name,
                "compare_type": True,
                "target_metadata": metadata,
            },
        )
        return list(compare_metadata(context, metadata))


@pytest.fixture
def db(db_url: str) -> Iterator[sa.Engine]:
    """A plain SQLAlchemy engine on the empty test database."""
    bind = sa.create_engine(db_url)
    yield bind
    bind.dispose()


def add_host_tables(bind: sa.Engine) -> sa.Table:
    """A host's own table and its own Alembic version table, with rows in both."""
    host_meta = sa.MetaData()
    children = sa.Table(
        "host_records",
        host_meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.String(50), nullable=False),
    )
    version = sa.Table(
        "alembic_version",
        host_meta,
        sa.Column("version_num", sa.String(32), primary_key=True),
    )
    host_meta.create_all(bind)
    with bind.begin() as conn:
        conn.execute(children.insert(), [{"id": 1, "label": "a"}, {"id": 2, "label": "b"}])
        conn.execute(version.insert().values(version_num="host_0042"))
    return children


def host_state(bind: sa.Engine) -> tuple[Any, ...]:
    """The host's tables: their columns and rows."""
    inspector = sa.inspect(bind)
    with bind.connect() as conn:
        return (
            [
                (c["name"], str(c["type"]), c["nullable"])
                for c in inspector.get_columns("host_records")
            ],
            conn.execute(sa.text("SELECT id, label FROM host_records ORDER BY id")).all(),
            conn.execute(sa.text("SELECT version_num FROM alembic_version")).all(),
        )


def test_upgrade_to_head_leaves_no_difference_from_the_models(db: sa.Engine, db_url: str) -> None:
    """An empty database upgraded to head has exactly the schema the models describe."""
    engine = new_engine(db_url)
    engine.close()
    assert schema_diff(db) == []


def test_the_version_table_is_the_librarys_own(db: sa.Engine, db_url: str) -> None:
    """Migrations record their revision in nimwf_alembic_version, never in alembic_version."""
    new_engine(db_url).close()
    tables = set(sa.inspect(db).get_table_names())
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables
    assert all(name.startswith("nimwf_") for name in tables)
    with db.connect() as conn:
        revisions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        assert revisions == [(_migrate.head_revision(),)]
        assert _migrate.current_revision(conn) == _migrate.head_revision()


def test_migrate_leaves_host_tables_untouched(db: sa.Engine, db_url: str) -> None:
    """A host's own tables, its own alembic_version included, survive migrate() unchanged."""
    add_host_tables(db)
    before = host_state(db)
    engine = new_engine(db_url)
    engine.open_case("MIGR-1", pathway="nim-uk-england", site="london", actor=SW)
    engine.migrate()
    engine.close()
    assert host_state(db) == before
    assert schema_diff(db) == []


def test_downgrade_to_base_then_upgrade_again(db: sa.Engine, db_url: str) -> None:
    """Downgrading to base removes the library's tables only; upgrading again restores them."""
    add_host_tables(db)
    before = host_state(db)
    engine = new_engine(db_url, Clock())
    engine.open_case("MIGR-2", pathway="nim-uk-england", site="london", actor=SW)
    engine.close()
    with db.begin() as conn:
        command.downgrade(_migrate.alembic_config(conn), "base")
    left = {t for t in sa.inspect(db).get_table_names() if t.startswith("nimwf_")}
    assert left <= {VERSION_TABLE}
    with db.connect() as conn:
        assert _migrate.current_revision(conn) is None
    assert host_state(db) == before

    again = new_engine(db_url, Clock())
    try:
        assert schema_diff(db) == []
        with pytest.raises(nw.CaseNotFound):
            again.case("MIGR-2")
        case = again.open_case("MIGR-2", pathway="nim-uk-england", site="london", actor=SW)
        assert case.version == 1
        assert again.verify_audit().ok
    finally:
        again.close()
    assert host_state(db) == before


def test_schema_revision_reports_none_then_head(db_url: str) -> None:
    """schema_revision() says None before migrate() and the head revision after it."""
    engine = nw.Engine(db_url, clock=Clock())
    try:
        current, head = engine.schema_revision()
        assert current is None
        assert head == _migrate.head_revision()
        engine.migrate()
        assert engine.schema_revision() == (head, head)
    finally:
        engine.close()
