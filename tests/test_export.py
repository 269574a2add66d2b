"""The evaluator's export, on SQLite and PostgreSQL: tables, dictionary, manifest, pseudonyms.

A small London cohort worked by hand (a stage change, a pause, a met, a missed, a cancelled and
an overdue deadline, a withdrawn case) is exported and read back row for row; the manifest's
counts and checksums match the files; the same key gives the same pseudonyms and no raw
reference is left anywhere; only declared facts leave; and every refusal writes nothing.
"""

from __future__ import annotations

import builtins
import csv
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from engine_helpers import COORD, SW, TM, Clock

import nim_workflow as nw
from nim_workflow._cli import main
from nim_workflow._export import TABLES
from nim_workflow._store._schema import cases

KEY = b"site-kept pseudonym key, 32 b.."
OTHER_KEY = b"another site's key, 32 bytes..."
REFERENCES = ("LDN-1", "LDN-2", "LDN-3", "LDN-4")
T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)  # a Monday; London is on GMT until 29 March
AS_OF = T0 + dt.timedelta(days=18)  # Friday 20 March
ALL_FILES = (
    "children",
    "facts",
    "stage_intervals",
    "deadlines",
    "pauses",
    "families",
    "allocations",
    "visits",
    "outcomes",
)


def _at(days: int, hours: int = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, hours=hours)


def _cohort(engine: nw.Engine) -> None:
    """Four London cases, worked as the expected rows below say."""
    london = {"pathway": "nim-uk-england", "site": "london", "actor": SW}
    engine.open_case("LDN-1", **london, facts={"consent_recorded": True}, at=_at(0))
    engine.open_case("LDN-2", **london, at=_at(0, 1))
    engine.open_case("LDN-3", **london, at=_at(0, 2))
    engine.open_case("LDN-4", **london, at=_at(0, 3))
    # LDN-1: accepted on day 1 (referral decision met), paused Wednesday to Friday.
    engine.fire("LDN-1", "accept_referral", actor=TM, at=_at(1))
    engine.record("LDN-1", {"recommendation": "return_home"}, actor=SW, at=_at(1, 1))
    engine.pause("LDN-1", actor=COORD, reason="hospital", at=_at(2))
    # LDN-3: withdrawn before its referral decision was due (cancelled).
    engine.fire("LDN-3", "withdraw", actor=TM, reason="moved away", at=_at(3))
    engine.resume("LDN-1", actor=COORD, at=_at(4))
    # LDN-2: accepted on 18 March, two days after its decision was due (missed).
    engine.fire("LDN-2", "accept_referral", actor=TM, facts={"consent_recorded": True}, at=_at(16))
    # LDN-4: never moved; its decision is four days overdue on 20 March.


@pytest.fixture
def engine(db_url: str) -> Iterator[nw.Engine]:
    """A migrated engine holding the cohort, its clock at the export's instant."""
    clock = Clock()
    eng = nw.Engine(db_url, clock=clock)
    eng.migrate()
    _cohort(eng)
    clock.now = AS_OF
    yield eng
    eng.close()


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """A folder for the exports, apart from the database's files (which hold the references)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


def _name(reference: str, key: bytes = KEY) -> str:
    """The pseudonym as the export's contract defines it, worked out independently."""
    return "c_" + hmac.new(key, reference.encode(), hashlib.sha256).hexdigest()[:32]


def _expected(child: Any, version: int) -> dict[str, list[list[str]]]:
    c1, c2, c3, c4 = (child(ref) for ref in REFERENCES)
    v = str(version)
    return {
        "children": [
            [c1, "", "london", "nim-uk-england", v, "2026-03-02T09:30:00Z", "", "", "assessment",
             "false"],
            [c2, "", "london", "nim-uk-england", v, "2026-03-02T10:30:00Z", "", "", "assessment",
             "false"],
            [c3, "", "london", "nim-uk-england", v, "2026-03-02T11:30:00Z", "2026-03-05T09:30:00Z",
             "withdrawn", "closed", "false"],
            [c4, "", "london", "nim-uk-england", v, "2026-03-02T12:30:00Z", "", "", "referral",
             "false"],
        ],
        "facts": [
            [c1, "consent_recorded", "true", "bool"],
            [c1, "recommendation", "return_home", "enum"],
            [c2, "consent_recorded", "true", "bool"],
        ],
        # Working days skip weekends: 2-20 March 2026 has no bank holiday in England.
        "stage_intervals": [
            [c1, "referral", "2026-03-02T09:30:00Z", "2026-03-03T09:30:00Z", "", "1", "1"],
            [c1, "assessment", "2026-03-03T09:30:00Z", "", "accept_referral", "17", "13"],
            [c2, "referral", "2026-03-02T10:30:00Z", "2026-03-18T09:30:00Z", "", "16", "12"],
            [c2, "assessment", "2026-03-18T09:30:00Z", "", "accept_referral", "2", "2"],
            [c3, "referral", "2026-03-02T11:30:00Z", "2026-03-05T09:30:00Z", "", "3", "3"],
            [c3, "closed", "2026-03-05T09:30:00Z", "", "withdraw", "0", "0"],
            [c4, "referral", "2026-03-02T12:30:00Z", "", "", "18", "14"],
        ],
        # Referral decision: 10 working days from 2 March, 16 March (ends at midnight GMT).
        # Assessment: 12 weeks from entering it, plus LDN-1's two-day pause; due at the end of
        # the day in BST (23:00 UTC).
        "deadlines": [
            [c1, "referral_decision", "stage", "referral", "1", "2026-03-16",
             "2026-03-17T00:00:00Z", "met", "2026-03-03T09:30:00Z", "", "0"],
            [c1, "assessment", "stage", "assessment", "1", "2026-05-28", "2026-05-28T23:00:00Z",
             "open", "", "", "0"],
            [c2, "referral_decision", "stage", "referral", "1", "2026-03-16",
             "2026-03-17T00:00:00Z", "missed", "2026-03-18T09:30:00Z", "2", "0"],
            [c2, "assessment", "stage", "assessment", "1", "2026-06-10", "2026-06-10T23:00:00Z",
             "open", "", "", "0"],
            [c3, "referral_decision", "stage", "referral", "1", "2026-03-16",
             "2026-03-17T00:00:00Z", "cancelled", "2026-03-05T09:30:00Z", "", "0"],
            [c4, "referral_decision", "stage", "referral", "1", "2026-03-16",
             "2026-03-17T00:00:00Z", "open", "", "4", "0"],
        ],
        "pauses": [[c1, "2026-03-04T09:30:00Z", "2026-03-06T09:30:00Z"]],
        # No family: the trial's tables are empty (tests/test_export_trial.py fills them).
        "families": [],
        "allocations": [],
        "visits": [],
        "outcomes": [],
    }  # fmt: skip


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as source:
        return list(csv.reader(source))


def _manifest(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    return loaded


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_csv_export_holds_the_cohort_row_for_row(engine: nw.Engine, exports: Path) -> None:
    """Each CSV table reads back with exactly the rows worked out by hand, header first."""
    manifest = engine.export(exports / "out", pseudonym_key=KEY)
    version = engine.pathway("nim-uk-england").version
    expected = _expected(_name, version)
    for table in TABLES:
        rows = _read_csv(exports / "out" / f"{table.name}.csv")
        assert rows[0] == [column.name for column in table.columns], table.name
        assert rows[1:] == expected[table.name], table.name
        assert manifest.tables[table.name].rows == len(expected[table.name])
    raw = (exports / "out" / "children.csv").read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n") == 5  # the header and four cases
    assert (manifest.format, manifest.as_of, manifest.pseudonymised) == ("csv", AS_OF, True)
    assert manifest.directory == (exports / "out").absolute()


def test_unpseudonymised_export_keeps_references(engine: nw.Engine, exports: Path) -> None:
    """pseudonymise=False exports references as stored and says so, with no fingerprint."""
    manifest = engine.export(exports / "out", pseudonymise=False)
    expected = _expected(str, engine.pathway("nim-uk-england").version)
    assert _read_csv(exports / "out" / "deadlines.csv")[1:] == expected["deadlines"]
    assert (manifest.pseudonymised, manifest.key_fingerprint) == (False, None)
    written = _manifest(exports / "out")
    assert (written["pseudonymised"], written["key_fingerprint"]) == (False, None)


def test_manifest_counts_and_checksums_match_the_files(engine: nw.Engine, exports: Path) -> None:
    """manifest.json lists every file with its rows and the SHA-256 of its bytes."""
    manifest = engine.export(exports / "out", pseudonym_key=KEY)
    out = exports / "out"
    written = _manifest(out)
    assert written["format_version"] == 1
    assert written["nim_workflow_version"] == nw.__version__
    assert written["created_at"] == written["as_of"] == "2026-03-20T09:30:00Z"
    assert (written["format"], written["pseudonymised"]) == ("csv", True)
    assert list(written["tables"]) == list(ALL_FILES)
    for name, entry in written["tables"].items():
        assert entry["sha256"] == _sha256(out / entry["file"]) == manifest.tables[name].sha256
        assert entry["rows"] == len(_read_csv(out / entry["file"])) - 1
    assert written["dictionary"]["sha256"] == _sha256(out / "dictionary.csv")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}.csv" for name in ALL_FILES] + ["dictionary.csv", "manifest.json"]
    )


def test_dictionary_describes_every_column_of_every_table(engine: nw.Engine, exports: Path) -> None:
    """dictionary.csv has one described, typed row per column of each file, in file order."""
    engine.export(exports / "out", pseudonym_key=KEY)
    out = exports / "out"
    rows = _read_csv(out / "dictionary.csv")
    assert rows[0] == ["table", "column", "type", "description"]
    listed = [(table, column) for table, column, _, _ in rows[1:]]
    in_files = [
        (name, column) for name in ALL_FILES for column in _read_csv(out / f"{name}.csv")[0]
    ]
    assert listed == in_files
    for _, _, type_, description in rows[1:]:
        assert type_ in {"text", "integer", "boolean", "date", "timestamp"}
        assert description.strip()


def test_parquet_export_reads_back_with_the_manifest_counts(
    engine: nw.Engine, exports: Path
) -> None:
    """Parquet files open with pyarrow, typed (UTC microsecond instants, dates), as counted."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    manifest = engine.export(exports / "out", "parquet", KEY)
    written = _manifest(exports / "out")
    assert written["format"] == "parquet"
    expected = _expected(_name, engine.pathway("nim-uk-england").version)
    for name in ALL_FILES:
        path = exports / "out" / f"{name}.parquet"
        table = pq.read_table(path)
        assert table.num_rows == manifest.tables[name].rows == written["tables"][name]["rows"]
        assert table.num_rows == len(expected[name])
        assert _sha256(path) == written["tables"][name]["sha256"]
    deadlines = pq.read_table(exports / "out" / "deadlines.parquet")
    assert deadlines.schema.field("due_at").type == pa.timestamp("us", tz="UTC")
    assert deadlines.schema.field("due_on").type == pa.date32()
    assert deadlines.column("days_late").to_pylist() == [None, None, 2, None, None, 4]
    assert deadlines.column("due_on").to_pylist()[0] == dt.date(2026, 3, 16)
    children = pq.read_table(exports / "out" / "children.parquet")
    assert children.column("paused").to_pylist() == [False] * 4
    assert children.column("opened_at").to_pylist()[0] == T0


def test_the_same_key_gives_the_same_pseudonyms(engine: nw.Engine, exports: Path) -> None:
    """Two exports with one key share pseudonyms and fingerprint; another key shares neither."""
    key_file = exports / "key"
    key_file.write_text(KEY.decode() + "\n", encoding="utf-8")  # a trailing newline is no part
    first = engine.export(exports / "a", pseudonym_key=KEY)
    again = engine.export(exports / "b", pseudonym_key=key_file)
    other = engine.export(exports / "c", pseudonym_key=OTHER_KEY)

    def children(name: str) -> list[str]:
        return [row[0] for row in _read_csv(exports / name / "children.csv")[1:]]

    assert children("a") == children("b") == [_name(ref) for ref in REFERENCES]
    assert children("c") == [_name(ref, OTHER_KEY) for ref in REFERENCES]
    assert not set(children("a")) & set(children("c"))
    assert first.key_fingerprint == again.key_fingerprint != other.key_fingerprint
    assert first.key_fingerprint is not None
    assert len(first.key_fingerprint) == 16
    assert _manifest(exports / "a")["key_fingerprint"] == first.key_fingerprint


def test_no_raw_reference_or_key_is_left_in_any_file(engine: nw.Engine, exports: Path) -> None:
    """Pseudonymised, no file of either format holds a case reference or the key."""
    engine.export(exports / "csv", pseudonym_key=KEY)
    if _has_pyarrow():
        engine.export(exports / "parquet", "parquet", KEY)
    files = [path for path in exports.rglob("*") if path.is_file()]
    assert len(files) >= 7
    for path in files:
        data = path.read_bytes()
        for secret in (*(ref.encode() for ref in REFERENCES), b"LDN-", KEY, KEY.hex().encode()):
            assert secret not in data, (path.name, secret)


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def test_only_declared_facts_are_exported(engine: nw.Engine, exports: Path) -> None:
    """The facts table is exactly the declared facts recorded; a stray stored fact stays in."""
    # Written around the engine (which refuses undeclared facts) to prove the export filters.
    with engine.sqlalchemy_engine.begin() as conn:
        conn.execute(
            sa.update(cases)
            .where(cases.c.reference == "LDN-1")
            .values(facts={"consent_recorded": True, "recommendation": "return_home",
                           "child_name": "Ada"})
        )  # fmt: skip
    engine.export(exports / "out", pseudonymise=False)
    rows = _read_csv(exports / "out" / "facts.csv")[1:]
    declared = engine.pathway("nim-uk-england").facts
    recorded = {
        (ref, name, str(value).lower() if isinstance(value, bool) else str(value))
        for ref in REFERENCES
        for name, value in engine.case(ref).facts.items()
        if name in declared
    }
    assert {(ref, name, value) for ref, name, value, _ in rows} == recorded
    assert len(rows) == len(recorded) == 3
    assert b"child_name" not in b"".join(p.read_bytes() for p in (exports / "out").iterdir())
    assert b"Ada" not in (exports / "out" / "facts.csv").read_bytes()


def _nothing_left(parent: Path, before: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == before, "a refusal left something behind"


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({}, "pseudonym_key", "pseudonym_key is required"),
        ({"pseudonym_key": b"too short"}, "pseudonym_key", "at least 16"),
        ({"pseudonym_key": "missing-key-file"}, "pseudonym_key", "cannot read"),
        ({"pseudonym_key": "short-key-file"}, "pseudonym_key", "at least 16"),
        ({"pseudonym_key": 12345}, "pseudonym_key", "bytes or a path"),
        ({"pseudonymise": False, "pseudonym_key": KEY}, "pseudonym_key", "one or the other"),
        ({"format": "xlsx", "pseudonym_key": KEY}, "format", "csv, parquet"),
        ({"at": dt.datetime(2026, 3, 20, 9, 30), "pseudonym_key": KEY}, "at", "timezone"),
        ({"at": _at(10), "pseudonym_key": KEY}, "at", "before the latest change"),
    ],
)
def test_bad_arguments_are_refused_and_write_nothing(
    engine: nw.Engine, exports: Path, kwargs: dict[str, Any], field: str, words: str
) -> None:
    """A missing or short key, an unknown format or a bad ``at``: InvalidInput, nothing written."""
    (exports / "short-key-file").write_bytes(b"0123456789\n")
    for name in ("pseudonym_key",):
        if isinstance(kwargs.get(name), str):
            kwargs = {**kwargs, name: str(exports / kwargs[name])}
    before = {p.name for p in exports.iterdir()}
    with pytest.raises(nw.InvalidInput) as refused:
        engine.export(exports / "out", **kwargs)
    assert refused.value.field == field
    assert words in str(refused.value)
    _nothing_left(exports, before)


def test_a_directory_holding_another_export_is_refused(engine: nw.Engine, exports: Path) -> None:
    """Exporting over an earlier export says so and leaves it exactly as it was."""
    engine.export(exports / "out", pseudonym_key=KEY)
    files = {p.name: p.read_bytes() for p in (exports / "out").iterdir()}
    before = {p.name for p in exports.iterdir()}
    with pytest.raises(nw.InvalidInput, match="holds another export"):
        engine.export(exports / "out", pseudonym_key=OTHER_KEY)
    assert {p.name: p.read_bytes() for p in (exports / "out").iterdir()} == files
    _nothing_left(exports, before)


def test_a_non_empty_directory_is_refused(engine: nw.Engine, exports: Path) -> None:
    """A directory holding anything else is refused and untouched; an empty one is used."""
    (exports / "busy").mkdir()
    (exports / "busy" / "notes.txt").write_text("mine", encoding="utf-8")
    before = {p.name for p in exports.iterdir()}
    with pytest.raises(nw.InvalidInput, match="not empty"):
        engine.export(exports / "busy", pseudonym_key=KEY)
    assert [p.name for p in (exports / "busy").iterdir()] == ["notes.txt"]
    _nothing_left(exports, before)
    (exports / "empty").mkdir()
    engine.export(exports / "empty", pseudonym_key=KEY)
    assert (exports / "empty" / "manifest.json").is_file()


def test_parquet_without_pyarrow_is_refused(
    engine: nw.Engine, exports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pyarrow, parquet is refused naming the extra to install; nothing is written."""
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    before = {p.name for p in exports.iterdir()}
    with pytest.raises(nw.InvalidInput, match=r"nim-workflow\[parquet\]") as refused:
        engine.export(exports / "out", "parquet", KEY)
    assert refused.value.field == "format"
    _nothing_left(exports, before)


def test_a_failure_while_writing_leaves_nothing_behind(
    engine: nw.Engine, exports: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table that fails half-way through the export leaves no directory and no staging files."""
    from nim_workflow import _export

    def broken(path: Path, *args: Any) -> int:
        if path.name.startswith("deadlines"):
            raise OSError("disk full")
        return real(path, *args)

    real = _export._write_table
    monkeypatch.setattr(_export, "_write_table", broken)
    before = {p.name for p in exports.iterdir()}
    with pytest.raises(OSError, match="disk full"):
        engine.export(exports / "out", pseudonym_key=KEY)
    _nothing_left(exports, before)


def test_the_command_line_exports_with_a_key_file(sqlite_url: str, exports: Path) -> None:
    """`nim-workflow export` writes the tables, prints their rows, and refuses a missing key."""
    clock = Clock()
    with nw.Engine(sqlite_url, clock=clock) as eng:
        eng.migrate()
        _cohort(eng)
    key_file = exports / "export.key"
    key_file.write_text(KEY.hex() + "\n", encoding="utf-8")
    runner = CliRunner()
    base = ["--db", sqlite_url, "export"]
    result = runner.invoke(main, [*base, "--out", str(exports / "a"),
                                  "--pseudonym-key-file", str(key_file)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "deadlines" in result.stdout
    assert "pseudonymised" in result.stdout
    assert "LDN-" not in (exports / "a" / "children.csv").read_text(encoding="utf-8")
    shown = runner.invoke(main, [*base, "--out", str(exports / "b"), "--no-pseudonymise",
                                 "--json"])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["tables"]["children"]["rows"] == 4
    missing = runner.invoke(main, [*base, "--out", str(exports / "c")])
    assert missing.exit_code == 2
    assert "--pseudonym-key-file" in missing.stderr
    again = runner.invoke(main, [*base, "--out", str(exports / "a"), "--no-pseudonymise"])
    assert again.exit_code == 2
    assert "another export" in again.stderr
    assert not (exports / "c").exists()


def test_the_export_reads_in_statements_not_per_case(engine: nw.Engine, exports: Path) -> None:
    """The read is one statement per table whatever the number of cases (so 10,000 are fine)."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sql = engine.sqlalchemy_engine
    sa.event.listen(sql, "before_cursor_execute", count)
    try:
        engine.export(exports / "four", pseudonym_key=KEY)
        four = len(statements)
        for number in range(5, 25):
            engine.open_case(f"LDN-{number}", pathway="nim-uk-england", site="london", actor=SW)
        statements.clear()
        engine.export(exports / "more", pseudonym_key=KEY)
    finally:
        sa.event.remove(sql, "before_cursor_execute", count)
    assert len(statements) == four
    assert _manifest(exports / "more")["tables"]["children"]["rows"] == 24
