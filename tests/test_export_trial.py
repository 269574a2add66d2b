"""The evaluator's export of the trial (TRIAL.md): families, allocations, visits and outcomes.

A small trial worked by hand through the public API: a London family allocated to NIM (one
child's baseline visit in its window, a sibling's late; one child placed three times and reaching
permanence, the other withdrawn from the service), a Glasgow family allocated to the comparator
then withdrawn from the trial (its visits stopped, its baseline missed), a London family not yet
allocated, and a case in no family. Every trial table is read back row for row, the pseudonyms
agree across tables, no raw reference or allocation id is left in any file, the manifest counts
the rows, and Parquet holds the rows CSV does.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from engine_helpers import SW, TM, Clock

import nim_workflow as nw
from nim_workflow._export import TABLES

KEY = b"site-kept pseudonym key, 32 b.."
CO = nw.Actor("co", roles={"coordinator"})
RS = nw.Actor("rs", roles={"researcher"})
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)  # a Monday; London and Glasgow are on GMT
# Wednesday 1 April, 10:00 in London (BST since 29 March).
AS_OF = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)
FAMILIES = ("FAM-L1", "FAM-G1", "FAM-L2")
CHILDREN = ("LDN-A", "LDN-B", "GLA-A", "LDN-C")
ALLOCATION_IDS = ("PORTAL-0001", "PORTAL-0002")
TRIAL_TABLES = ("families", "allocations", "visits", "outcomes")


def _on(day: dt.date, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)


def _trial(engine: nw.Engine, clock: Clock) -> None:
    """The families, worked as the expected rows below say (the clock only moves forward)."""

    def at(instant: dt.datetime) -> None:
        assert instant >= clock.now
        clock.now = instant

    at(T0)
    engine.open_family(
        "FAM-L1",
        site="london",
        actor=CO,
        children=["LDN-A", "LDN-B"],
        facts={
            "LDN-A": {"entered_care_on": dt.date(2025, 12, 1), "placed_on": dt.date(2025, 12, 1)},
            "LDN-B": {"entered_care_on": dt.date(2025, 12, 15)},
        },
    )
    at(T0 + dt.timedelta(minutes=30))
    engine.open_family(
        "FAM-G1",
        site="glasgow",
        actor=CO,
        children=["GLA-A"],
        facts={"entered_care_on": dt.date(2025, 11, 3), "placed_on": dt.date(2025, 11, 3)},
    )
    at(T0 + dt.timedelta(hours=1))
    engine.allocate("FAM-L1", "nim", "PORTAL-0001", CO)
    at(T0 + dt.timedelta(hours=2))
    engine.allocate("FAM-G1", "comparator", "PORTAL-0002", CO)
    # A case in no family.
    at(T0 + dt.timedelta(hours=3))
    engine.open_case("LDN-X", pathway="nim-uk-england", site="london", actor=SW)
    # Opened late on Friday 16 January in London: the family's opened_on is that day.
    at(_on(dt.date(2026, 1, 16), 23, 45))
    engine.open_family(
        "FAM-L2",
        site="london",
        actor=CO,
        children=["LDN-C"],
        facts={"entered_care_on": dt.date(2026, 1, 2)},
    )
    # LDN-A moves twice: three placements.
    at(_on(dt.date(2026, 1, 20)))
    engine.record("LDN-A", {"placed_on": dt.date(2026, 1, 20)}, actor=SW)
    at(_on(dt.date(2026, 2, 2)))
    engine.record_visit("FAM-L1", "baseline", held_on=dt.date(2026, 2, 2), actor=RS, child="LDN-A")
    at(_on(dt.date(2026, 2, 10)))
    engine.record("LDN-A", {"placed_on": dt.date(2026, 2, 10)}, actor=SW)
    at(_on(dt.date(2026, 2, 11)))
    engine.record("GLA-A", {"intervention_received": "not_received"}, actor=SW)
    at(_on(dt.date(2026, 2, 16)))
    engine.set_trial_status("FAM-G1", "withdrawn_consent", CO, reason="family withdrew")
    at(_on(dt.date(2026, 3, 16)))
    engine.record(
        "LDN-A",
        {
            "decision": "special_guardianship",
            "permanence_achieved_on": dt.date(2026, 3, 16),
            "intervention_received": "received",
        },
        actor=SW,
    )
    # LDN-B's baseline is held a week after its window closed (23 March).
    at(_on(dt.date(2026, 3, 30)))
    engine.record_visit("FAM-L1", "baseline", held_on=dt.date(2026, 3, 30), actor=RS, child="LDN-B")
    # Withdrawn from the service at 00:30 BST on 31 March: its own trial status is untouched.
    at(_on(dt.date(2026, 3, 30), 23, 30))
    engine.fire("LDN-B", "withdraw", actor=TM, reason="moved away")
    at(AS_OF)


@pytest.fixture
def engine(db_url: str) -> Iterator[nw.Engine]:
    """A migrated engine holding the trial, its clock at the export's instant."""
    clock = Clock(T0)
    eng = nw.Engine(db_url, clock=clock)
    eng.migrate()
    _trial(eng, clock)
    yield eng
    eng.close()


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """A folder for the exports, apart from the database's files (which hold the references)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


def _hash(prefix: str, key: bytes = KEY) -> Callable[[str], str]:
    """Pseudonyms as the export's contract defines them, worked out independently."""

    def name(reference: str) -> str:
        return prefix + hmac.new(key, reference.encode(), hashlib.sha256).hexdigest()[:32]

    return name


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as source:
        return list(csv.reader(source))


def _expected(
    child: Callable[[str], str], family: Callable[[str], str], allocation: Callable[[str], str]
) -> dict[str, list[list[str]]]:
    a, b, g, c = (child(ref) for ref in CHILDREN)
    l1, g1, l2 = (family(ref) for ref in FAMILIES)
    return {
        # In the order opened; LDN-C's family opened at 23:45 UTC on 16 January, a Friday on GMT.
        "families": [
            [l1, "best", "london", "nim", "randomised", "2", "2026-01-05", "2026-01-05"],
            [g1, "best", "glasgow", "comparator", "withdrawn_consent", "1", "2026-01-05",
             "2026-01-05"],
            [l2, "best", "london", "", "enrolled", "1", "2026-01-16", ""],
        ],
        "allocations": [
            [l1, "best", "london", "nim", allocation("PORTAL-0001"), "2026-01-05T10:00:00Z",
             "2026-01-05"],
            [g1, "best", "glasgow", "comparator", allocation("PORTAL-0002"),
             "2026-01-05T11:00:00Z", "2026-01-05"],
        ],
        # Baseline: 4 to 14 weeks after entered_care_on; month 15: 14 to 16 months, target 15;
        # month 30: 28 to 32 months after randomisation, target 30. Status on 1 April 2026.
        "visits": [
            [l1, a, "child", "baseline", "2025-12-01", "2025-12-29", "2026-03-09", "",
             "2026-02-02", "in_window", "true", "", "false"],
            [l1, b, "child", "baseline", "2025-12-15", "2026-01-12", "2026-03-23", "",
             "2026-03-30", "late", "false", "7", "false"],
            [l1, a, "child", "month_15", "2025-12-01", "2027-02-01", "2027-04-01", "2027-03-01",
             "", "pending", "false", "", "false"],
            [l1, b, "child", "month_15", "2025-12-15", "2027-02-15", "2027-04-15", "2027-03-15",
             "", "pending", "false", "", "false"],
            [l1, l1, "family", "month_30", "2026-01-05", "2028-05-05", "2028-09-05", "2028-07-05",
             "", "pending", "false", "", "false"],
            # Withdrawn consent on 16 February stops what was still to come; the baseline had
            # closed unheld on 9 February before it: missed, not stopped.
            [g1, g, "child", "baseline", "2025-11-03", "2025-12-01", "2026-02-09", "", "",
             "missed", "false", "", "false"],
            [g1, g, "child", "month_15", "2025-11-03", "2027-01-03", "2027-03-03", "2027-02-03",
             "", "pending", "false", "", "true"],
            [g1, g1, "family", "month_30", "2026-01-05", "2028-05-05", "2028-09-05", "2028-07-05",
             "", "pending", "false", "", "true"],
        ],
        # LDN-A: 1 December to 16 March is 31 + 31 + 28 + 15 = 105 days; placed three times.
        # LDN-B: closed at 00:30 BST on 31 March. LDN-C: no case until its family is allocated.
        "outcomes": [
            [a, l1, "nim", "london", "nim-uk-england", "2025-12-01", "special_guardianship",
             "2026-03-16", "105", "received", "3", "2", "", ""],
            [b, l1, "nim", "london", "nim-uk-england", "2025-12-15", "", "", "", "", "0", "0",
             "2026-03-31", "withdrawn"],
            [g, g1, "comparator", "glasgow", "best-facs-glasgow", "2025-11-03", "", "", "",
             "not_received", "1", "0", "", ""],
            [c, l2, "", "london", "", "", "", "", "", "", "", "", "", ""],
        ],
    }  # fmt: skip


def _columns(name: str) -> list[str]:
    return [column.name for column in next(t for t in TABLES if t.name == name).columns]


def test_trial_tables_hold_the_trial_row_for_row(engine: nw.Engine, exports: Path) -> None:
    """Each trial table reads back with exactly the rows worked out by hand, header first."""
    manifest = engine.export(exports / "out", pseudonym_key=KEY)
    expected = _expected(_hash("c_"), _hash("f_"), _hash("a_"))
    for name in TRIAL_TABLES:
        rows = _read_csv(exports / "out" / f"{name}.csv")
        assert rows[0] == _columns(name), name
        assert rows[1:] == expected[name], name
        assert manifest.tables[name].rows == len(expected[name])


def test_trial_columns_are_the_dictionarys(engine: nw.Engine, exports: Path) -> None:
    """The new tables have the columns TRIAL.md's export asks for, each in the dictionary."""
    engine.export(exports / "out", pseudonym_key=KEY)
    assert _columns("families") == [
        "family", "trial", "site", "arm", "status", "children", "opened_on", "randomised_on"
    ]  # fmt: skip
    assert _columns("allocations") == [
        "family", "trial", "site", "arm", "allocation", "allocated_at", "randomised_on"
    ]  # fmt: skip
    assert _columns("visits") == [
        "family", "subject", "per", "visit", "anchor_on", "opens_on", "closes_on", "target_on",
        "held_on", "status", "in_window", "days_late", "stopped",
    ]  # fmt: skip
    assert _columns("outcomes") == [
        "child", "family", "arm", "site", "pathway", "entered_care_on", "permanence_decision",
        "permanence_achieved_on", "days_to_permanence", "intervention_received", "placements",
        "placement_moves", "closed_on", "outcome",
    ]  # fmt: skip
    assert _columns("children")[:2] == ["child", "family"]
    listed = {(t, c) for t, c, _, _ in _read_csv(exports / "out" / "dictionary.csv")[1:]}
    for name in (*TRIAL_TABLES, "children"):
        assert {(name, column) for column in _columns(name)} <= listed


def test_visits_agree_with_the_engines_own_reading(engine: nw.Engine, exports: Path) -> None:
    """The visits table's windows, status and stopped flag are Engine.visits' at as_of."""
    engine.export(exports / "out", pseudonymise=False)
    rows = _read_csv(exports / "out" / "visits.csv")[1:]
    exported = {
        (r[0], r[1], r[3]): (r[5], r[6], r[8], r[9], r[12] == "true") for r in rows
    }  # fmt: skip
    seen = {
        (family, v.subject, v.name): (
            v.opens_on.isoformat(),
            v.closes_on.isoformat(),
            "" if v.held_on is None else v.held_on.isoformat(),
            v.status,
            v.stopped,
        )
        for family in FAMILIES
        for v in engine.visits(family, at=AS_OF)
    }
    assert exported == seen


def test_children_carry_their_family(engine: nw.Engine, exports: Path) -> None:
    """The children table names each child's family, empty for a case in no family."""
    engine.export(exports / "out", pseudonymise=False)
    rows = _read_csv(exports / "out" / "children.csv")
    assert rows[0][:2] == ["child", "family"]
    assert {row[0]: row[1] for row in rows[1:]} == {
        "LDN-A": "FAM-L1", "LDN-B": "FAM-L1", "GLA-A": "FAM-G1", "LDN-X": ""
    }  # fmt: skip


def test_unpseudonymised_trial_tables_keep_references(engine: nw.Engine, exports: Path) -> None:
    """pseudonymise=False exports family references and allocation ids as stored."""
    engine.export(exports / "out", pseudonymise=False)
    expected = _expected(str, str, str)
    for name in TRIAL_TABLES:
        assert _read_csv(exports / "out" / f"{name}.csv")[1:] == expected[name], name


def test_pseudonyms_agree_across_tables(engine: nw.Engine, exports: Path) -> None:
    """One family pseudonym in families, allocations, visits, outcomes and children alike."""
    engine.export(exports / "out", pseudonym_key=KEY)
    out = exports / "out"
    family = _hash("f_")
    child = _hash("c_")
    families = [row[0] for row in _read_csv(out / "families.csv")[1:]]
    assert families == [family(ref) for ref in FAMILIES]
    allocated = {row[0] for row in _read_csv(out / "allocations.csv")[1:]}
    visited = {row[0] for row in _read_csv(out / "visits.csv")[1:]}
    outcomes = {row[1] for row in _read_csv(out / "outcomes.csv")[1:]}
    in_children = {row[1] for row in _read_csv(out / "children.csv")[1:]} - {""}
    assert allocated == visited == {family("FAM-L1"), family("FAM-G1")}
    assert outcomes == set(families)
    assert in_children == {family("FAM-L1"), family("FAM-G1")}
    # A child's pseudonym is the one the case tables use, and links outcomes to children.
    by_child = {row[0]: row[1] for row in _read_csv(out / "children.csv")[1:]}
    for row in _read_csv(out / "outcomes.csv")[1:]:
        if row[0] in by_child:
            assert by_child[row[0]] == row[1]
    assert {row[0] for row in _read_csv(out / "outcomes.csv")[1:]} == {
        child(ref) for ref in CHILDREN
    }
    subjects = {(row[1], row[2]) for row in _read_csv(out / "visits.csv")[1:]}
    assert all(s.startswith("c_") if per == "child" else s.startswith("f_") for s, per in subjects)


def test_no_raw_reference_or_allocation_id_is_left(engine: nw.Engine, exports: Path) -> None:
    """Pseudonymised, no file of either format holds a reference, an allocation id or the key."""
    engine.export(exports / "csv", pseudonym_key=KEY)
    pytest.importorskip("pyarrow")
    engine.export(exports / "parquet", "parquet", KEY)
    files = [path for path in exports.rglob("*") if path.is_file()]
    assert len(files) == 2 * (len(TABLES) + 2)
    secrets = [
        *(ref.encode() for ref in (*FAMILIES, *CHILDREN, *ALLOCATION_IDS, "LDN-X")),
        b"FAM-", b"LDN-", b"GLA-", b"PORTAL", KEY, KEY.hex().encode(),
    ]  # fmt: skip
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, (path.name, secret)


def test_manifest_counts_the_trial_tables(engine: nw.Engine, exports: Path) -> None:
    """manifest.json lists the trial's files with their rows and checksums, like the rest."""
    manifest = engine.export(exports / "out", pseudonym_key=KEY)
    out = exports / "out"
    written = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert list(written["tables"]) == [table.name for table in TABLES]
    for name in TRIAL_TABLES:
        entry = written["tables"][name]
        assert entry["file"] == f"{name}.csv"
        assert entry["columns"] == _columns(name)
        assert (
            entry["rows"] == len(_read_csv(out / entry["file"])) - 1 == manifest.tables[name].rows
        )
        assert entry["sha256"] == hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
    assert [written["tables"][name]["rows"] for name in TRIAL_TABLES] == [3, 2, 8, 4]
    assert written["tables"]["children"]["rows"] == 4  # LDN-A, LDN-B, GLA-A, LDN-X


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def test_parquet_holds_the_rows_csv_does(engine: nw.Engine, exports: Path) -> None:
    """Read back with pyarrow, each Parquet table has the CSV export's rows, typed."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    engine.export(exports / "csv", pseudonym_key=KEY)
    manifest = engine.export(exports / "pq", "parquet", KEY)
    written = json.loads((exports / "pq" / "manifest.json").read_text(encoding="utf-8"))
    for table in TABLES:
        parquet = pq.read_table(exports / "pq" / f"{table.name}.parquet")
        assert parquet.column_names == [column.name for column in table.columns]
        rows = [[_csv_cell(value) for value in row.values()] for row in parquet.to_pylist()]
        assert rows == _read_csv(exports / "csv" / f"{table.name}.csv")[1:], table.name
        assert parquet.num_rows == manifest.tables[table.name].rows
        assert parquet.num_rows == written["tables"][table.name]["rows"]
    visits = pq.read_table(exports / "pq" / "visits.parquet")
    assert visits.schema.field("held_on").type == pa.date32()
    assert visits.schema.field("in_window").type == pa.bool_()
    assert visits.column("days_late").to_pylist() == [None, 7, None, None, None, None, None, None]
    outcomes = pq.read_table(exports / "pq" / "outcomes.parquet")
    assert outcomes.schema.field("days_to_permanence").type == pa.int64()
    assert outcomes.column("placement_moves").to_pylist() == [2, 0, 0, None]
    allocations = pq.read_table(exports / "pq" / "allocations.parquet")
    assert allocations.schema.field("allocated_at").type == pa.timestamp("us", tz="UTC")
    assert allocations.column("allocated_at").to_pylist()[0] == T0 + dt.timedelta(hours=1)


def test_only_declared_facts_reach_the_outcomes(engine: nw.Engine, exports: Path) -> None:
    """The outcome facts exported are declared by each child's pathway; nothing else leaves."""
    engine.export(exports / "out", pseudonymise=False)
    rows = _read_csv(exports / "out" / "outcomes.csv")[1:]
    for row in rows:
        if not row[4]:
            continue
        declared = engine.pathway(row[4]).facts
        for fact in ("entered_care_on", "decision", "permanence_achieved_on",
                     "intervention_received", "placed_on"):  # fmt: skip
            assert fact in declared, (row[4], fact)
    # The facts table holds the same values the outcomes do.
    facts = {(r[0], r[1]): r[2] for r in _read_csv(exports / "out" / "facts.csv")[1:]}
    assert facts[("LDN-A", "permanence_achieved_on")] == "2026-03-16"
    assert facts[("LDN-A", "placed_on")] == "2026-02-10"  # the newest; outcomes count all three
    assert facts[("GLA-A", "intervention_received")] == "not_received"


def test_the_trial_is_read_in_statements_not_per_family(engine: nw.Engine, exports: Path) -> None:
    """More families, children and visits add no statement to the export's read."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sql = engine.sqlalchemy_engine
    sa.event.listen(sql, "before_cursor_execute", count)
    try:
        engine.export(exports / "few", pseudonym_key=KEY)
        few = len(statements)
        for number in range(10):
            engine.open_family(
                f"FAM-M{number}",
                site="london",
                actor=CO,
                children=[f"LDN-M{number}a", f"LDN-M{number}b"],
                facts={"entered_care_on": dt.date(2026, 3, 2), "placed_on": dt.date(2026, 3, 2)},
            )
            engine.allocate(f"FAM-M{number}", "comparator", f"PORTAL-1{number:03}", CO)
        statements.clear()
        engine.export(exports / "more", pseudonym_key=KEY)
    finally:
        sa.event.remove(sql, "before_cursor_execute", count)
    assert len(statements) == few
    written = json.loads((exports / "more" / "manifest.json").read_text(encoding="utf-8"))
    assert written["tables"]["families"]["rows"] == 13
    assert written["tables"]["outcomes"]["rows"] == 24
