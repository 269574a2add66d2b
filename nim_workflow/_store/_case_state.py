"""A case's rows held in memory while a command decides, then written in a handful of statements.

A command on a case reads the case once (its row, its stage intervals, pauses, deadlines and
alarms, and the head of its audit chain), **decides** everything against that copy in memory
(the machine's verdict, deadlines settled and opened with their alarms, the case row's new
values), and hands the changes to :func:`flush`, which writes them with statements built once at
import and executed with parameters: one ``executemany`` per table for the rows changed, one
multi-row ``INSERT ... RETURNING`` per table for the rows added, one ``DELETE`` for the alarms
dropped, and the case row's versioned ``UPDATE``.

The copy is also what the audit entry's state digests are computed from, before and after the
change, so no table is read twice. The digests must equal what reading the rows back would give:
values are kept in the form the database hands back (JSON round-tripped, instants as aware
datetimes, which the digest writes in UTC), and :func:`check_against_database` (switched on by
``NIM_WORKFLOW_CHECK_STATE=1``, as the test suite does) compares them with a fresh read before
every commit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from nim_workflow._errors import ConcurrentUpdate
from nim_workflow._store._schema import (
    alarms,
    audit_chains,
    cases,
    deadlines,
    pauses,
    stage_intervals,
)

#: The child tables of a case, in the order they are read and written.
CHILD_TABLES: Mapping[str, sa.Table] = {
    "intervals": stage_intervals,
    "pauses": pauses,
    "deadlines": deadlines,
    "alarms": alarms,
}
#: Columns that hold JSON: kept in memory exactly as a read would return them.
_JSON_COLUMNS = frozenset({"facts", "adjustments", "basis"})
#: Environment switch: compare the in-memory digests with the database before each commit.
CHECK_ENV = "NIM_WORKFLOW_CHECK_STATE"


class Row(dict[str, Any]):
    """One row as a mapping with attribute access (like SQLAlchemy's ``Row``), changeable."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _plain_json(value: Any) -> Any:
    """``value`` as a JSON column hands it back."""
    return None if value is None else json.loads(json.dumps(value, default=str))


def _stored(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain_json(v) if k in _JSON_COLUMNS else v for k, v in values.items()}


@dataclass(eq=False, slots=True)
class CaseState:
    """One case as this transaction sees it, with the changes not yet written.

    ``rows`` holds each child table's rows in id order; rows added here have ``id`` ``None``
    until :func:`flush` writes them (an alarm added for a deadline added here points at it with
    the ``_deadline`` key until then). ``chain`` is ``(length, head_hash)`` of the case's audit
    chain as stored (``None``: no entry yet; ``chain_loaded`` false: not read with the case).
    ``stored_version`` is the case row's version in the database, which its update checks.
    ``digests`` are the state digests as of the last audited point, which the next entry
    records as its prior state.
    """

    reference: str
    case: Row
    rows: dict[str, list[Row]]
    chain: tuple[int, str] | None
    chain_loaded: bool = True
    stored_version: int = 0
    digests: dict[str, str] | None = None
    case_changes: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, dict[int, Row]] = field(default_factory=dict)
    added: dict[str, list[Row]] = field(default_factory=dict)
    deleted: dict[str, list[int]] = field(default_factory=dict)
    #: Tables changed since the digests were last taken (``"case"`` for the case row).
    touched: set[str] = field(default_factory=set)

    # -- reading the copy ---------------------------------------------------------------------

    def deadline_rows(self, rule: str | None = None, *, status: str | None = None) -> list[Row]:
        """Deadlines in id order (added ones last), of one rule and one status if given."""
        return [
            row
            for row in self.rows["deadlines"]
            if (rule is None or row["rule"] == rule) and (status is None or row["status"] == status)
        ]

    def latest(self, rule: str) -> Row | None:
        """The newest deadline of ``rule``, whatever its status."""
        found = self.deadline_rows(rule)
        return found[-1] if found else None

    def alarms_of(self, deadline: Row, status: str | None = None) -> list[Row]:
        """The alarms of one deadline (added ones included)."""
        return [
            row
            for row in self.rows["alarms"]
            if (
                row.get("_deadline") is deadline
                or (deadline["id"] is not None and row["deadline_id"] == deadline["id"])
            )
            and (status is None or row["status"] == status)
        ]

    @property
    def pending(self) -> bool:
        """Whether anything is waiting to be written."""
        return bool(self.case_changes or self.changed or self.added or self.deleted)

    @property
    def unwritten_rows(self) -> bool:
        """Whether rows were added that have no id yet (their digests need the ids)."""
        return any(self.added.values())

    # -- changing the copy --------------------------------------------------------------------

    def change_case(self, **values: Any) -> None:
        """Set columns of the case row (written with its version check at flush)."""
        values = _stored(values)
        self.case.update(values)
        self.case_changes.update(values)
        self.touched.add("case")

    def add(self, table: str, **values: Any) -> Row:
        """Add a row to a child table; its id comes at flush."""
        row = Row(id=None, reference=self.reference, **_stored(values))
        self.touched.add(table)
        self.rows[table].append(row)
        self.added.setdefault(table, []).append(row)
        return row

    def change(self, table: str, row: Row, **values: Any) -> None:
        """Set columns of one child row."""
        row.update(_stored(values))
        self.touched.add(table)
        if row["id"] is not None:
            self.changed.setdefault(table, {})[row["id"]] = row

    def delete(self, table: str, row: Row) -> None:
        """Drop one child row."""
        self.rows[table].remove(row)
        self.touched.add(table)
        if row["id"] is None:
            self.added[table].remove(row)
        else:
            self.changed.get(table, {}).pop(row["id"], None)
            self.deleted.setdefault(table, []).append(row["id"])


# -- reading ---------------------------------------------------------------------------------------

_CASE_COLUMNS = tuple(cases.c)
# The case row with its audit chain's head (no chain yet: nulls).
_CASE_AND_CHAIN = sa.select(
    *_CASE_COLUMNS, audit_chains.c.length, audit_chains.c.head_hash
).select_from(
    cases.outerjoin(
        audit_chains,
        sa.and_(audit_chains.c.stream == "case", audit_chains.c.reference == cases.c.reference),
    )
)
_CASE_QUERY = _CASE_AND_CHAIN.where(cases.c.reference == sa.bindparam("reference"))
_CASES_QUERY = _CASE_AND_CHAIN.where(
    cases.c.reference.in_(sa.bindparam("references", expanding=True))
)
# PostgreSQL: lock the case row alone, then read its chain's head in a statement of its own. A
# joined read would take the chain row from the snapshot the statement started with, before the
# lock was granted, and so miss the head a writer that held the lock had just committed.
_CASE_QUERY_LOCKED = (
    sa.select(*_CASE_COLUMNS)
    .where(cases.c.reference == sa.bindparam("reference"))
    .with_for_update()
)
_CHAIN_QUERY = sa.select(audit_chains.c.length, audit_chains.c.head_hash).where(
    audit_chains.c.stream == "case", audit_chains.c.reference == sa.bindparam("reference")
)


def _child_query(table: sa.Table, *, many: bool) -> sa.Select[Any]:
    match = (
        table.c.reference.in_(sa.bindparam("references", expanding=True))
        if many
        else table.c.reference == sa.bindparam("reference")
    )
    return sa.select(table).where(match).order_by(table.c.reference, table.c.id)


_CHILD_QUERIES = {name: _child_query(table, many=False) for name, table in CHILD_TABLES.items()}
_CHILDREN_QUERIES = {name: _child_query(table, many=True) for name, table in CHILD_TABLES.items()}


def _case_row(row: Any) -> tuple[Row, tuple[int, str] | None]:
    values = row._mapping
    case = Row((column.name, values[column]) for column in _CASE_COLUMNS)
    length = values[audit_chains.c.length]
    return case, (None if length is None else (length, values[audit_chains.c.head_hash]))


def load(conn: Connection, reference: str, *, lock: bool) -> CaseState | None:
    """One case as stored (its row locked on PostgreSQL when ``lock``), or ``None``."""
    params = {"reference": reference}
    chain: tuple[int, str] | None
    if lock and conn.dialect.name == "postgresql":
        locked = conn.execute(_CASE_QUERY_LOCKED, params).first()
        if locked is None:
            return None
        case = Row(locked._mapping)
        head = conn.execute(_CHAIN_QUERY, params).first()
        chain = None if head is None else (head.length, head.head_hash)
    else:
        found = conn.execute(_CASE_QUERY, params).first()
        if found is None:
            return None
        case, chain = _case_row(found)
    rows = {
        name: [Row(r._mapping) for r in conn.execute(query, params)]
        for name, query in _CHILD_QUERIES.items()
    }
    return CaseState(reference, case, rows, chain, stored_version=case["version"])


def load_many(conn: Connection, references: Iterable[str]) -> dict[str, CaseState]:
    """Several cases at once, one statement per table (the caller holds their locks)."""
    wanted = sorted(set(references))
    if not wanted:
        return {}
    params = {"references": wanted}
    states: dict[str, CaseState] = {}
    for found in conn.execute(_CASES_QUERY, params):
        case, chain = _case_row(found)
        states[case["reference"]] = CaseState(
            case["reference"],
            case,
            {name: [] for name in CHILD_TABLES},
            chain,
            stored_version=case["version"],
        )
    for name, query in _CHILDREN_QUERIES.items():
        for r in conn.execute(query, params):
            state = states.get(r.reference)
            if state is not None:
                state.rows[name].append(Row(r._mapping))
    return states


def opened(reference: str, values: Mapping[str, Any]) -> CaseState:
    """The state of a case whose row was just inserted with ``values`` and has nothing else."""
    # Earlier refusals may have started the reference's chain: read its head when it is needed.
    return CaseState(
        reference,
        Row(_stored(values)),
        {name: [] for name in CHILD_TABLES},
        chain=None,
        chain_loaded=False,
        stored_version=values["version"],
    )


# -- writing ---------------------------------------------------------------------------------------


def _columns(table: sa.Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.c if c.name not in ("id", "reference"))


_WRITABLE = {name: _columns(table) for name, table in CHILD_TABLES.items()}


def _update(table: sa.Table, columns: Sequence[str]) -> sa.Update:
    return (
        table.update()
        .where(table.c.id == sa.bindparam("row_id"))
        .values({c: sa.bindparam(c) for c in columns})
    )


_UPDATES = {name: _update(CHILD_TABLES[name], _WRITABLE[name]) for name in CHILD_TABLES}
_INSERTS_PG = {
    name: table.insert().returning(table.c.id, sort_by_parameter_order=True)
    for name, table in CHILD_TABLES.items()
}
_INSERTS_SQLITE = {
    name: table.insert().returning(table.c.id) for name, table in CHILD_TABLES.items()
}
_DELETES = {
    name: table.delete().where(table.c.id.in_(sa.bindparam("ids", expanding=True)))
    for name, table in CHILD_TABLES.items()
}
_CASE_WRITABLE = tuple(c.name for c in cases.c if c.name != "reference")
_CASE_UPDATES: dict[frozenset[str], sa.Update] = {}


def _case_update(columns: frozenset[str]) -> sa.Update:
    statement = _CASE_UPDATES.get(columns)
    if statement is None:
        statement = (
            cases.update()
            .where(
                cases.c.reference == sa.bindparam("b_reference"),
                cases.c.version == sa.bindparam("b_version"),
            )
            .values({c: sa.bindparam(c) for c in sorted(columns)})
        )
        # A handful of column sets exist (one per kind of command): the cache stays small.
        _CASE_UPDATES[columns] = statement
    return statement


def flush(conn: Connection, states: Sequence[CaseState]) -> None:
    """Write every pending change of ``states``: one statement per table and kind of change.

    Rows added get their ids (in the order added) and the copies are put back in id order. The
    case row is written last with its version check; a row that moved under this transaction
    (only a host writing it through its own connection can) raises ``ConcurrentUpdate``.
    """
    todo = [s for s in states if s.pending]
    if not todo:
        return
    postgres = conn.dialect.name == "postgresql"
    for name in CHILD_TABLES:
        gone = [i for s in todo for i in s.deleted.get(name, ())]
        if gone:
            conn.execute(_DELETES[name], {"ids": gone})
        changed = [row for s in todo for row in s.changed.get(name, {}).values()]
        if changed:
            columns = _WRITABLE[name]
            conn.execute(
                _UPDATES[name], [{"row_id": r["id"], **{c: r[c] for c in columns}} for r in changed]
            )
        added = [row for s in todo for row in s.added.get(name, ())]
        if added:
            if name == "alarms":
                for row in added:
                    target = row.pop("_deadline", None)
                    if target is not None:
                        row["deadline_id"] = target["id"]
            columns = _WRITABLE[name]
            params = [{"reference": r["reference"], **{c: r[c] for c in columns}} for r in added]
            if postgres:
                ids = [r[0] for r in conn.execute(_INSERTS_PG[name], params)]
            else:
                # One multi-row INSERT under SQLite's write lock: the rowids it assigns rise in
                # the order of its VALUES, whatever order RETURNING lists them in.
                ids = sorted(r[0] for r in conn.execute(_INSERTS_SQLITE[name], params))
            if len(ids) != len(added):  # pragma: no cover - the database returns one id per row
                raise RuntimeError(f"{name}: {len(added)} rows inserted, {len(ids)} ids returned")
            for row, new_id in zip(added, ids, strict=True):
                row["id"] = new_id
    for s in todo:
        if s.case_changes:
            result = conn.execute(
                _case_update(frozenset(s.case_changes)),
                {"b_reference": s.reference, "b_version": s.stored_version, **s.case_changes},
            )
            if result.rowcount != 1:
                raise ConcurrentUpdate(s.reference, s.stored_version, None)
            s.stored_version = s.case["version"]
        for name in CHILD_TABLES:
            if s.added.get(name):
                s.rows[name].sort(key=lambda row: row["id"])
        s.case_changes = {}
        s.changed = {}
        s.added = {}
        s.deleted = {}


# -- the safety net ------------------------------------------------------------------------------


def checking() -> bool:
    """Whether in-memory digests are compared with the database before each commit."""
    return os.environ.get(CHECK_ENV, "") not in ("", "0", "false")


def check_against_database(conn: Connection, states: Iterable[CaseState]) -> None:
    """Compare each state's in-memory digests with its rows read back; raise on a difference."""
    from nim_workflow import _audit  # the digests live with the audit log

    for state in states:
        if state.digests is None or state.pending:
            continue
        stored = _audit.case_state(conn, state.reference)
        if stored != state.digests:
            differing = sorted(k for k in stored if stored[k] != state.digests.get(k))
            raise AssertionError(
                f"case {state.reference}: state in memory differs from the database in "
                f"{', '.join(differing)}"
            )
