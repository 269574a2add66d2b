"""The evaluator's export: every case as flat tables, a data dictionary and a checksummed manifest.

The tables are data (:data:`TABLES`): each names its columns, with a type and a description, and
a function that produces its rows from one read of the database. The files, the data dictionary
and the manifest are all written from those definitions, so a table added later (families,
allocations, visits) is one more :class:`Table` and nothing else.

Case references are pseudonymised with a keyed hash (HMAC-SHA256) whose key the site keeps: the
same key gives the same pseudonyms in every export, and without it they cannot be reversed. The
manifest names the key only by a fingerprint. Only the facts a case's pathway version declares
are exported. Everything is written into a temporary directory beside the target and renamed
into place at the end, so a failure or a refusal leaves nothing behind.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from nim_workflow import _validate
from nim_workflow._calendar import WorkingCalendar
from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._model import Pathway
from nim_workflow._store import _reads
from nim_workflow._values import ExportManifest, ExportTable, StageInterval, is_overdue

if TYPE_CHECKING:
    from nim_workflow._engine import Engine

__all__ = [
    "FORMATS",
    "TABLES",
    "Column",
    "ExportFormat",
    "Table",
    "check_format",
    "export",
    "pseudonym_key_bytes",
]

ExportFormat = Literal["csv", "parquet"]
FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
ColumnType = Literal["text", "integer", "boolean", "date", "timestamp"]

#: The manifest's own layout; raised when a reader of an older export would misread it.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DICTIONARY = "dictionary.csv"
#: Shorter keys are refused: a pseudonym is only as hard to reverse as its key is to guess.
MIN_KEY_BYTES = 16
PSEUDONYM_PREFIX = "c_"
_PSEUDONYM_HEX = 32
_FINGERPRINT_LABEL = b"nim-workflow export key fingerprint v1"
_FINGERPRINT_HEX = 16

# -- the table definitions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column of an exported table: its name, type and what it means."""

    name: str
    type: ColumnType
    description: str


@dataclass(frozen=True, slots=True)
class Table:
    """One exported table: its columns and the function that produces its rows from a read."""

    name: str
    columns: tuple[Column, ...]
    rows: Callable[[_Read], Iterable[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class _Read:
    """Everything the tables are made from: one read of every case, and how to name them."""

    cases: Sequence[Any]
    histories: Mapping[str, list[StageInterval]]
    deadlines: Mapping[str, list[Any]]
    pauses: Mapping[str, list[Any]]
    resolver: _reads.Resolver
    at: dt.datetime
    name: Callable[[str], str]

    def calendar_of(self, case: Any) -> tuple[Pathway, WorkingCalendar]:
        """The case's pathway and its site's working calendar on it."""
        return self.resolver.pathway_and_calendar(case.pathway_id, case.pathway_version, case.site)


def _children(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        yield (
            read.name(case.reference),
            case.site,
            case.pathway_id,
            case.pathway_version,
            case.opened_at,
            case.closed_at,
            case.outcome,
            case.stage,
            case.paused_at is not None,
        )


def _fact_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _facts(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        declared = read.resolver.pathway(case.pathway_id, case.pathway_version).facts
        stored = case.facts or {}
        child = read.name(case.reference)
        # In the pathway's declared order; a stored fact the version does not declare (which the
        # engine never writes) is left out rather than exported.
        for name, spec in declared.items():
            if name in stored and stored[name] is not None:
                yield (child, name, _fact_text(stored[name]), spec.type)


def _stage_intervals(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        pathway, calendar = read.calendar_of(case)
        tz = calendar.tz
        child = read.name(case.reference)
        for stay in read.histories.get(case.reference, ()):
            # Counted as the working days are: local dates after the day entered, up to the day
            # left (or the export's instant; nothing for a closed case's final stage).
            end = stay.left_at or (None if pathway.stage(stay.stage).final else read.at)
            days = 0
            if end is not None:
                entered_on = stay.entered_at.astimezone(tz).date()
                days = max(0, (end.astimezone(tz).date() - entered_on).days)
            yield (
                child,
                stay.stage,
                stay.entered_at,
                stay.left_at,
                stay.trigger,
                days,
                stay.working_days,
            )


def _days_late(row: Any, local_date: Callable[[dt.datetime], dt.date], at: dt.datetime) -> Any:
    if row.status == "missed" and row.settled_at is not None:
        late = (local_date(row.settled_at) - row.due_on).days
    elif is_overdue(row.status, row.due_at, at):
        late = (local_date(at) - row.due_on).days
    else:
        return None
    return late if late > 0 else None


def _deadlines(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        _, calendar = read.calendar_of(case)
        child = read.name(case.reference)
        for row in read.deadlines.get(case.reference, ()):
            yield (
                child,
                row.rule,
                row.kind,
                row.stage,
                row.occurrence,
                row.due_on,
                row.due_at,
                row.status,
                row.settled_at,
                _days_late(row, calendar.local_date, read.at),
                row.extensions,
            )


def _pauses(read: _Read) -> Iterator[Sequence[Any]]:
    for case in read.cases:
        child = read.name(case.reference)
        for row in read.pauses.get(case.reference, ()):
            yield (child, row.paused_at, row.resumed_at)


_CHILD = Column(
    "child",
    "text",
    "The child's case: its reference pseudonymised with the site's key (c_ and 32 hex digits), "
    "or the reference itself in an export made without pseudonymisation.",
)

#: The exported tables, in the order they are written. Families, allocations and visits join
#: here as one more Table each once the engine has them.
TABLES: tuple[Table, ...] = (
    Table(
        "children",
        (
            _CHILD,
            Column("site", "text", "The declared site that runs the case."),
            Column("pathway_id", "text", "The pathway the case runs on."),
            Column("pathway_version", "integer", "The version of that pathway the case is on."),
            Column("opened_at", "timestamp", "When the case was opened (UTC)."),
            Column(
                "closed_at",
                "timestamp",
                "When the case reached a final stage (UTC); empty while open.",
            ),
            Column(
                "outcome",
                "text",
                "How the case closed (the closing trigger's outcome); empty while open.",
            ),
            Column("stage", "text", "The stage the case is in as exported."),
            Column("paused", "boolean", "Whether the team's work on the case is paused."),
        ),
        _children,
    ),
    Table(
        "facts",
        (
            _CHILD,
            Column("fact", "text", "A fact the case's pathway version declares."),
            Column(
                "value",
                "text",
                "Its recorded value as text: true/false, an ISO date "
                "(YYYY-MM-DD) or an enum value.",
            ),
            Column("type", "text", "The fact's declared type: bool, date or enum."),
        ),
        _facts,
    ),
    Table(
        "stage_intervals",
        (
            _CHILD,
            Column("stage", "text", "The stage the case was in."),
            Column("entered_at", "timestamp", "When it entered the stage (UTC)."),
            Column("left_at", "timestamp", "When it left the stage (UTC); empty if still there."),
            Column(
                "trigger",
                "text",
                "The trigger that brought the case into the stage; empty "
                "for the stage it opened in.",
            ),
            Column(
                "calendar_days",
                "integer",
                "Days from the local date entered to the local "
                "date left (or of the export's as_of), in the site's time zone; 0 for a "
                "closed case's final stage.",
            ),
            Column(
                "working_days",
                "integer",
                "Working days in the site's calendar over the same "
                "span (holidays and site closures skipped).",
            ),
        ),
        _stage_intervals,
    ),
    Table(
        "deadlines",
        (
            _CHILD,
            Column("rule", "text", "The pathway's deadline rule."),
            Column(
                "kind",
                "text",
                "stage (a stage deadline), clock (a statutory clock) or window (a visit window).",
            ),
            Column("stage", "text", "The stage a stage deadline belongs to; empty otherwise."),
            Column("occurrence", "integer", "Which occurrence of a recurring rule, from 1."),
            Column("due_on", "date", "The local date it is due on, in the site's time zone."),
            Column(
                "due_at",
                "timestamp",
                "The instant that date ends in the site's time zone "
                "(UTC): after it, the deadline is overdue.",
            ),
            Column("status", "text", "As stored: open, met, missed or cancelled."),
            Column(
                "settled_at",
                "timestamp",
                "When it was met, missed or cancelled (UTC); empty while open.",
            ),
            Column(
                "days_late",
                "integer",
                "Local days past due_on: of the day it was settled "
                "for a missed deadline, of the export's as_of for an open overdue one; empty "
                "when on time (or cancelled).",
            ),
            Column("extensions", "integer", "How many times it was extended."),
        ),
        _deadlines,
    ),
    Table(
        "pauses",
        (
            _CHILD,
            Column("paused_at", "timestamp", "When the team's work on the case was paused (UTC)."),
            Column("resumed_at", "timestamp", "When it resumed (UTC); empty while paused."),
        ),
        _pauses,
    ),
)

# -- checks at the door --------------------------------------------------------------------------


def check_format(format: object) -> ExportFormat:
    """``format`` if it is one the export writes; ``InvalidInput`` listing them otherwise.

    Parquet also needs pyarrow, which is an optional extra: without it the format is refused.
    """
    if format not in FORMATS:
        raise InvalidInput(
            f"unknown export format {_validate.shown(format)}; expected one of "
            f"{', '.join(FORMATS)}",
            field="format",
        )
    if format == "parquet":
        _pyarrow()
    return format


def _pyarrow() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet, imported only when Parquet is asked for."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInput(
            "the parquet format needs pyarrow: install nim-workflow[parquet] "
            "(pip install 'nim-workflow[parquet]'), or export as csv",
            field="format",
        ) from None
    return pa, pq


def pseudonym_key_bytes(key: object, pseudonymise: object) -> bytes | None:
    """The pseudonym key as bytes (read from its file if a path was given); ``None`` without one.

    ``InvalidInput`` naming ``pseudonym_key`` when pseudonymising without a key, with a key
    shorter than :data:`MIN_KEY_BYTES`, or with a file that cannot be read; a key given while
    not pseudonymising is refused too (one of the two was not meant).
    """
    if not isinstance(pseudonymise, bool):
        raise InvalidInput("pseudonymise must be True or False", field="pseudonymise")
    if not pseudonymise:
        if key is not None:
            raise InvalidInput(
                "pseudonym_key given with pseudonymise=False: give one or the other",
                field="pseudonym_key",
            )
        return None
    if key is None:
        raise InvalidInput(
            "pseudonym_key is required to pseudonymise the export: the site's key (bytes, or a "
            "path to the file holding it); pass pseudonymise=False to export references as "
            "stored",
            field="pseudonym_key",
        )
    if isinstance(key, bytes | bytearray):
        found = bytes(key)
    elif isinstance(key, str | os.PathLike):
        try:
            # A key file made with `secrets.token_hex(32) > key` ends in a newline: not the key.
            found = Path(key).read_bytes().strip()
        except OSError as exc:
            raise InvalidInput(
                f"cannot read the pseudonym_key file {os.fspath(key)!r}: {exc.strerror or exc}",
                field="pseudonym_key",
            ) from None
    else:
        raise InvalidInput(
            f"pseudonym_key must be bytes or a path to a key file, not {type(key).__name__}",
            field="pseudonym_key",
        )
    if len(found) < MIN_KEY_BYTES:
        raise InvalidInput(
            f"pseudonym_key is {len(found)} bytes; at least {MIN_KEY_BYTES} are needed (make one "
            "with: python -c 'import secrets; print(secrets.token_hex(32))' > key)",
            field="pseudonym_key",
        )
    return found


def pseudonym(key: bytes, reference: str) -> str:
    """A case reference's pseudonym under ``key``: HMAC-SHA256, 32 hex digits, prefixed."""
    digest = hmac.new(key, reference.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:_PSEUDONYM_HEX]


def key_fingerprint(key: bytes) -> str:
    """What the manifest records of the key: the same for the same key, and never the key."""
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:_FINGERPRINT_HEX]


def _check_directory(directory: object) -> Path:
    """The target directory, if absent or empty; ``InvalidInput`` naming ``directory`` if not."""
    if not isinstance(directory, str | os.PathLike):
        raise InvalidInput(
            f"directory must be a path, not {type(directory).__name__}", field="directory"
        )
    target = Path(directory).expanduser().absolute()
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise InvalidInput(f"{target} exists and is not a directory", field="directory")
        if (target / MANIFEST).exists():
            raise InvalidInput(
                f"{target} holds another export (it has a {MANIFEST}); choose a new directory",
                field="directory",
            )
        if any(target.iterdir()):
            raise InvalidInput(
                f"{target} is not empty; export into a new or empty directory",
                field="directory",
            )
    elif not target.parent.is_dir():
        raise InvalidInput(f"{target.parent} does not exist", field="directory")
    return target


# -- the read ------------------------------------------------------------------------------------


def _read(engine: Engine, at: dt.datetime, name: Callable[[str], str]) -> _Read:
    """Every case with its stays, deadlines and pauses: one statement per table."""
    with engine._snapshot() as conn:
        resolver = engine._resolver(conn)
        query, params = _reads.cases_query(None, None, False)
        every_case = conn.execute(query, params).all()
        histories = _reads.read_histories(
            conn, resolver, at, site=None, stage=None, open_only=False, latest=False
        )
        found_deadlines = _reads.by_reference(conn.execute(_reads.ALL_DEADLINES))
        found_pauses = _reads.read_pauses(conn)
    return _Read(
        cases=every_case,
        histories=histories,
        deadlines=found_deadlines,
        pauses=found_pauses,
        resolver=resolver,
        at=at,
        name=name,
    )


# -- the writers ---------------------------------------------------------------------------------


def _csv_value(value: Any, type_: ColumnType) -> str:
    if value is None:
        return ""
    if type_ == "timestamp":
        return str(value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"))
    if type_ == "date":
        return str(value.isoformat())
    if type_ == "boolean":
        return "true" if value else "false"
    return str(value)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def _arrow_type(pa: Any, type_: ColumnType) -> Any:
    return {
        "text": pa.string(),
        "integer": pa.int64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[type_]


def _write_table(path: Path, format: ExportFormat, table: Table, rows: list[Sequence[Any]]) -> int:
    types = [column.type for column in table.columns]
    if format == "csv":
        return _write_csv(
            path,
            [column.name for column in table.columns],
            ([_csv_value(v, t) for v, t in zip(row, types, strict=True)] for row in rows),
        )
    pa, pq = _pyarrow()
    schema = pa.schema([(c.name, _arrow_type(pa, c.type)) for c in table.columns])
    arrays = [
        pa.array([row[i] for row in rows], type=schema.field(i).type)
        for i in range(len(table.columns))
    ]
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
    return len(rows)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _iso(instant: dt.datetime) -> str:
    return _csv_value(instant, "timestamp")


def export(
    engine: Engine,
    directory: object,
    format: ExportFormat,
    key: bytes | None,
    *,
    at: dt.datetime,
    created_at: dt.datetime,
) -> ExportManifest:
    """Write every table, the dictionary and the manifest into ``directory``; the manifest.

    ``format`` and ``key`` are checked already (:func:`check_format`,
    :func:`pseudonym_key_bytes`); ``key`` is ``None`` for an export of references as stored.
    ``at`` is the instant working days and days late are counted to.
    """
    from nim_workflow import __version__  # the package imports this module: read at call time

    target = _check_directory(directory)
    name: Callable[[str], str]
    if key is None:
        name = str
    else:
        memo: dict[str, str] = {}

        def name(reference: str) -> str:
            found = memo.get(reference)
            if found is None:
                found = memo[reference] = pseudonym(key, reference)
            return found

    read = _read(engine, at, name)
    suffix = "csv" if format == "csv" else "parquet"
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    try:
        written: dict[str, ExportTable] = {}
        for table in TABLES:
            file = f"{table.name}.{suffix}"
            rows = _write_table(staging / file, format, table, list(table.rows(read)))
            written[table.name] = ExportTable(
                name=table.name, file=file, rows=rows, sha256=_sha256(staging / file)
            )
        entries = [(t.name, c.name, c.type, c.description) for t in TABLES for c in t.columns]
        _write_csv(staging / DICTIONARY, ("table", "column", "type", "description"), entries)
        dictionary = ExportTable(
            name="dictionary",
            file=DICTIONARY,
            rows=len(entries),
            sha256=_sha256(staging / DICTIONARY),
        )
        fingerprint = None if key is None else key_fingerprint(key)
        manifest = {
            "format_version": FORMAT_VERSION,
            "nim_workflow_version": __version__,
            "created_at": _iso(created_at),
            "as_of": _iso(at),
            "format": format,
            "pseudonymised": key is not None,
            "key_fingerprint": fingerprint,
            "tables": {
                table.name: {
                    "file": written[table.name].file,
                    "rows": written[table.name].rows,
                    "sha256": written[table.name].sha256,
                    "columns": [column.name for column in table.columns],
                }
                for table in TABLES
            },
            "dictionary": {
                "file": DICTIONARY,
                "rows": dictionary.rows,
                "sha256": dictionary.sha256,
                "columns": ["table", "column", "type", "description"],
            },
        }
        (staging / MANIFEST).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        # The target was absent or empty when checked; an empty one gives way to the export.
        if target.is_dir():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportManifest(
        directory=target,
        format=format,
        as_of=at,
        created_at=created_at,
        pseudonymised=key is not None,
        key_fingerprint=fingerprint,
        tables=MappingProxyType(written),
        dictionary=dictionary,
    )
