"""The ``nim-workflow`` command: a coordinator's and an operator's window onto one database.

Every command reads and writes through :class:`~nim_workflow.Engine`, never around it: the command
line parses arguments into the engine's terms (actors, aware datetimes, typed facts), calls one
engine method and prints the result as an aligned table, as text or as JSON. Failures become one
``error: ...`` line on stderr and the exit codes of the API contract: 0 success, 1 a refused
action, 2 bad usage or bad input, 3 a broken audit chain.

Whoever changes something acts as a person on the staff roster: the operating-system user, or
the one ``--actor`` names, with the roles and sites the roster gives them. The command line never
takes a role on the caller's word.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import logging
import re
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa

import nim_workflow as nw
from nim_workflow import _checkpoint, _validate
from nim_workflow._engine import DEFAULT_URL, ROSTER_ROLE
from nim_workflow._pathway._diagram import render_mermaid, render_text
from nim_workflow._pathway._model import FactSpec
from nim_workflow._trial._visits import STOPPED
from nim_workflow._values import EventKind

__all__ = ["main"]

ENV_DB = "NIM_WORKFLOW_DB"
ENV_ACTOR = "NIM_WORKFLOW_ACTOR"
ENV_SIGNING_KEY = "NIM_WORKFLOW_SIGNING_KEY"
DEMO_URL = "sqlite:///nim-workflow-demo.db"
DEMO_HTML = "nim-workflow-report.html"

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2
EXIT_INTEGRITY = 3

_F = TypeVar("_F", bound=Callable[..., Any])
_SPAN = re.compile(r"^\s*(\d+)\s*([dw])\s*$", re.IGNORECASE)
#: The longest span --within takes: ten years ahead is more than any pathway runs.
_MAX_SPAN_DAYS = 3650
#: Unicode categories never printed raw: control, format (bidi), separators, surrogates.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_TRUE = frozenset({"true", "yes"})
_FALSE = frozenset({"false", "no"})
_ALARMS: tuple[EventKind, ...] = ("reminder", "breach", "escalation")


class _NoDatabase(Exception):
    """The database to read or write has not been created, or has no nim-workflow schema."""


class _Unavailable(Exception):
    """A part of the package a command needs (the demo, the report) cannot be imported."""


# -- parameter types ------------------------------------------------------------------------------


if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _DateTimeType = click.ParamType[dt.datetime]
    _SpanType = click.ParamType[dt.timedelta]
else:  # older click releases have a plain ParamType that cannot be subscripted
    _DateTimeType = _SpanType = click.ParamType


class _When(_DateTimeType):
    """An instant: an ISO date (noon UTC of that date) or an ISO datetime with a time zone."""

    name = "ISO date or datetime"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        text = str(value).strip()
        if "T" not in text.upper() and " " not in text:
            try:
                day = _validate.date_value(text, param.name if param and param.name else "at")
            except nw.InvalidInput as exc:
                self.fail(str(exc), param, ctx)
            # Noon UTC is the same local date in every site's time zone the pathways use.
            return dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not an ISO date (YYYY-MM-DD) or datetime", param, ctx)
        if moment.tzinfo is None or moment.utcoffset() is None:
            self.fail(
                f"{text!r} has no time zone; add one (such as {text}Z or {text}+01:00) "
                "or give a plain date, which means noon UTC",
                param,
                ctx,
            )
        return moment.astimezone(dt.UTC)


class _Span(_SpanType):
    """A number of days or weeks: ``14d`` or ``2w``."""

    name = "Nd|Nw"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        match = _SPAN.match(str(value))
        if match is None:
            self.fail(f"{value!r} is not a span; write days as 14d or weeks as 2w", param, ctx)
        days = int(match.group(1)) * (7 if match.group(2).lower() == "w" else 1)
        if days > _MAX_SPAN_DAYS:
            self.fail(f"{value!r} is more than {_MAX_SPAN_DAYS} days ahead", param, ctx)
        return dt.timedelta(days=days)


WHEN = _When()
SPAN = _Span()


# -- the shared state of one invocation -----------------------------------------------------------


@dataclass
class _Runtime:
    """The database URL and output choice of one invocation, and the engine, opened on demand."""

    url: str
    json: bool = False
    #: The checkpoint signing key, for the commands that sign (set before ``engine()``).
    signing_key: Ed25519PrivateKey | None = field(default=None, repr=False)
    _engine: nw.Engine | None = field(default=None, repr=False)

    def engine(self) -> nw.Engine:
        """The engine over an existing, migrated database; :class:`_NoDatabase` otherwise."""
        if self._engine is None:
            missing = _missing_sqlite_file(self.url)
            if missing is not None:
                raise _NoDatabase(_no_database(missing))
            engine = nw.Engine(self.url, signing_key=self.signing_key)
            try:
                revision, head = engine.schema_revision()
            except BaseException:
                engine.close()
                raise
            if revision is None:
                engine.close()
                raise _NoDatabase(_no_database(_describe(self.url)))
            if revision != head:
                engine.close()
                raise _NoDatabase(
                    f"the database at {_describe(self.url)} has schema revision {revision}, "
                    f"not {head} as this version of nim-workflow needs; run "
                    "`nim-workflow db upgrade` first"
                )
            self._engine = engine
        return self._engine

    def close(self) -> None:
        """Stop the engine's scheduler (if any) and release its connections."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def _runtime(ctx: click.Context) -> _Runtime:
    runtime = ctx.find_object(_Runtime)
    if runtime is None:  # pragma: no cover - main always creates one
        raise click.UsageError("internal: no runtime")
    return runtime


def _missing_sqlite_file(url: str) -> str | None:
    """The file path of a SQLite URL whose file does not exist; ``None`` for anything else."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None  # the engine reports a malformed URL in its own words
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return None if Path(database).exists() else database


def _describe(url: str) -> str:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return url
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def _no_database(where: str) -> str:
    return f"no database at {where}; run `nim-workflow db upgrade` first"


# -- errors and exit codes ------------------------------------------------------------------------


def _printable(text: str) -> str:
    """``text`` with control and bidirectional-format characters shown as escapes.

    The engine refuses them in what it stores, but a database written by other means could
    hold them; printed raw they could recolour or rewrite a coordinator's terminal, or reorder
    what a line seems to say.
    """
    if text.isprintable():
        return text
    return "".join(
        char
        if char in "\n\t" or unicodedata.category(char) not in _HIDDEN
        else f"\\u{ord(char):04x}"
        for char in text
    )


def _echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` for everything the command prints, made safe for a terminal."""
    click.echo(_printable(str(message)), err=err, nl=nl)


def _fail(message: str, code: int) -> NoReturn:
    _echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


class _Group(click.Group):
    """The top-level group: turns the library's exceptions into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (nw.ActionRefused, nw.ConcurrentUpdate) as exc:
            _fail(str(exc), EXIT_REFUSED)
        except nw.PathwayError as exc:
            for problem in exc.problems:
                _echo(f"error: {problem}", err=True)
            raise click.exceptions.Exit(EXIT_BAD_INPUT) from None
        except nw.NimWorkflowError as exc:
            # CaseNotFound, CaseExists, InvalidInput and anything else the engine refuses.
            _fail(str(exc), EXIT_BAD_INPUT)
        except (_NoDatabase, _Unavailable) as exc:
            _fail(str(exc), EXIT_BAD_INPUT)
        except sa.exc.OperationalError as exc:
            text = (str(exc.orig).strip().splitlines() or ["unknown error"])[0]
            if "no such table" in text:
                _fail(_no_database(_describe(_runtime(ctx).url)), EXIT_BAD_INPUT)
            _fail(
                f"cannot use the database at {_describe(_runtime(ctx).url)}: {text}",
                EXIT_BAD_INPUT,
            )
        except sa.exc.SQLAlchemyError as exc:
            _fail(f"database error at {_describe(_runtime(ctx).url)}: {exc}", EXIT_BAD_INPUT)


# -- output helpers -------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Plain columns aligned on the widest cell, two spaces apart, no trailing spaces."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = []
    for row in [list(headers), *cells]:
        lines.append("  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [_jsonable(v) for v in items]
    return value


def _echo_json(data: Any) -> None:
    _echo(json.dumps(_jsonable(data), indent=2, ensure_ascii=False))


def _wants_json(ctx: click.Context, flag: bool) -> bool:
    """Whether to print JSON: the command's ``--json`` or the group's, which mean the same."""
    return flag or _runtime(ctx).json


def _json_option(func: _F) -> _F:
    """``--json``, declared on every command that prints (the group's own is the same flag).

    A command honours it with one JSON document on stdout, or refuses it (exit 2, saying why)
    where one document cannot be printed: it is never silently ignored.
    """
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document instead of text."
    )(func)


def _refuse_json(ctx: click.Context, as_json: bool, why: str) -> None:
    """Exit 2 with ``why`` if JSON was asked for where this use of a command cannot print it."""
    if _wants_json(ctx, as_json):
        raise click.UsageError(f"--json is not available {why}", ctx)


def _local(moment: dt.datetime | None, tz: ZoneInfo) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def _fact_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _facts_text(facts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fact_text(v)}" for k, v in sorted(facts.items())) or "none"


# -- engine-facing helpers ------------------------------------------------------------------------


def _pathway_of(engine: nw.Engine, case: nw.Case) -> nw.Pathway:
    """The definition a case runs on (its own version if this process has it, else the newest)."""
    try:
        return engine.pathway(case.pathway_id, case.pathway_version)
    except nw.InvalidInput:
        return engine.pathway(case.pathway_id)


def _parse_facts(pathway: nw.Pathway, items: Iterable[str]) -> dict[str, Any]:
    """``name=value`` pairs into typed values: ``true``/``false``, ISO dates, enum values."""
    return _typed_facts(pathway.facts, items)


def _typed_facts(specs: Mapping[str, FactSpec], items: Iterable[str]) -> dict[str, Any]:
    """``name=value`` pairs typed by ``specs``; a name they lack stays text, for the engine."""
    facts: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not name=value", param_hint="fact")
        spec = specs.get(name)
        facts[name] = text if spec is None else _fact_value(spec, text.strip())
    return facts


def _fact_value(spec: FactSpec, text: str) -> Any:
    if spec.type == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise nw.InvalidInput(f"fact {spec.name!r} is true or false, not {text!r}", field=spec.name)
    if spec.type == "date":
        return _validate.date_value(text, spec.name)
    return text


def _refuse_role(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> None:
    """The retired ``--role``: a person's roles come from the roster, never from the caller."""
    if value:
        _fail(
            "--role is no longer taken: your roles come from the staff roster (see "
            "`nim-workflow staff list`); you act as your operating-system user, or as the "
            "roster member --actor ID names",
            EXIT_BAD_INPUT,
        )


def _actor_option(func: _F) -> _F:
    """``--actor ID`` (or its environment variable); default: the operating-system user."""
    return click.option(
        "--actor",
        "actor_id",
        envvar=ENV_ACTOR,
        show_envvar=True,
        default=None,
        metavar="ID",
        help="Act as this staff roster member instead of your operating-system user.",
    )(func)


def _acting_options(func: _F) -> _F:
    """``--actor``, and the hidden ``--role`` that is refused with a pointer to the roster."""
    func = click.option(
        "--role",
        "retired_role",
        multiple=True,
        hidden=True,
        is_eager=True,
        expose_value=False,
        callback=_refuse_role,
    )(func)
    return _actor_option(func)


def _who(actor_id: str | None) -> str:
    """Who acts: ``--actor`` (or its environment variable), else the operating-system user."""
    if actor_id is None:
        try:
            actor_id = getpass.getuser()
        except (OSError, KeyError, ImportError):
            # getpass raises OSError (KeyError before Python 3.13) when no user can be found.
            raise nw.InvalidInput(
                f"cannot tell which operating-system user you are: pass --actor ID or set "
                f"{ENV_ACTOR}",
                field="actor",
            ) from None
    return _validate.identifier(actor_id, "actor", "an actor id")


def _member(engine: nw.Engine, actor_id: str | None) -> nw.StaffMember:
    """The active roster member acting; exit 1 naming them if they are not on the roster."""
    who = _who(actor_id)
    how = (
        f"(you act as your operating-system user, {who}; --actor ID or {ENV_ACTOR} names "
        "another roster member)"
        if actor_id is None
        else f"(acting as {who}, from --actor or {ENV_ACTOR})"
    )
    hint = f"an administrator adds them with `nim-workflow staff add {who} --role ROLE --site SITE`"
    try:
        member = engine.staff(who)
    except nw.StaffNotFound:
        _fail(f"{who} is not on the staff roster {how}; {hint}", EXIT_REFUSED)
    if not member.active:
        removed = _local(member.removed_at, ZoneInfo("UTC"))
        _fail(f"{who} was removed from the staff roster on {removed} {how}; {hint}", EXIT_REFUSED)
    return member


def _works_at(member: nw.StaffMember, site: str, what: str) -> None:
    """Exit 1 unless ``member`` works at ``site``, naming the site and the member's sites."""
    if member.works_at(site):
        return
    again = " ".join(
        [
            *(f"--role {role}" for role in sorted(member.roles)),
            *(f"--site {s}" for s in sorted(member.sites | {site})),
        ]
    )
    _fail(
        f"{member.id} may not act on {what} at site {site}: the staff roster has them at "
        f"{_joined(member.sites)}; an administrator adds the site with "
        f"`nim-workflow staff add {member.id} {again}`",
        EXIT_REFUSED,
    )


def _declared_site(engine: nw.Engine, site: str) -> nw.Site:
    """The declared site ``site``; exit 2 naming the nearest declared one otherwise."""
    declared = engine.sites()
    found = declared.get(site)
    if found is None:
        raise nw.UnknownSite(site, declared)
    return found


def _joined(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "-"


def _case_actor(engine: nw.Engine, actor_id: str | None, reference: str) -> nw.Actor:
    """The roster member acting on a case, checked to work at the case's site."""
    member = _member(engine, actor_id)
    current = engine.case(reference)
    _works_at(member, current.site, f"case {current.reference}")
    return member.actor()


def _fact_option(help_text: str) -> Callable[[_F], _F]:
    """``--fact NAME=VALUE``, repeatable: the one way every command takes facts."""
    return click.option("--fact", "facts", multiple=True, metavar="NAME=VALUE", help=help_text)


class _DeprecatedArgument(click.Argument):
    """A positional kept for one release: still accepted, no longer shown in the usage line."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        return []


def _stage_label(definition: nw.Pathway, stage: str) -> str:
    """A stage as text output names it: the pathway's title for it (JSON keeps the id)."""
    try:
        return definition.stage(stage).title or stage
    except KeyError:  # a stage a newer version dropped, read through the newest definition
        return stage


def _at_option(help_text: str) -> Callable[[_F], _F]:
    return click.option("--at", "at", type=WHEN, default=None, metavar="WHEN", help=help_text)


_AT_ACTION = (
    "When it happened: an ISO date (meaning noon UTC) or a datetime with a zone "
    "(2026-03-02T09:30+00:00). Default: now."
)
_AT_ASOF = "Look as of this date (noon UTC) or zoned datetime instead of now."
_AT_DEADLINES = (
    _AT_ASOF + " A past date is refused if any case listed changed after it (the deadlines "
    "are read as they are stored now)."
)


def _examples(*lines: str) -> str:
    """An epilog of example command lines, which click's backspace marker keeps unwrapped."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


# -- the group ------------------------------------------------------------------------------------


@click.group(
    cls=_Group,
    epilog=_examples(
        "nim-workflow demo",
        "nim-workflow --db sqlite:///nim-workflow.db db upgrade",
        "nim-workflow staff add \"$(id -un)\" --role administrator --role coordinator --site '*'",
        "nim-workflow cases --site london",
        "nim-workflow case show LDN-2026-0001",
    ),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--db",
    "url",
    envvar=ENV_DB,
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    metavar="URL",
    help="The database: a SQLAlchemy URL (sqlite:///file.db or postgresql+psycopg://...).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document instead of text (the same as each command's --json).",
)
@click.version_option(nw.__version__, "--version", prog_name="nim-workflow")
@click.pass_context
def main(ctx: click.Context, url: str, as_json: bool) -> None:
    """Run NIM care pathway cases: open them, move them, see what is due, check the audit trail.

    Create the database once with `db upgrade`, or try everything on a simulated three-site
    cohort with `demo`. Changes are made as your operating-system user (or --actor ID), with
    the roles and sites the staff roster gives that person (see `staff`). Exit codes: 0 ok,
    1 action refused, 2 bad usage or input, 3 audit chain broken.
    """
    runtime = _Runtime(url=url, json=as_json)
    ctx.obj = runtime
    ctx.call_on_close(runtime.close)


@contextmanager
def _optional_part(what: str) -> Iterator[None]:
    """Turn a failed import of a part some commands need (the demo, the report) into one line."""
    # Those parts are imported inside their commands so that every other command starts fast
    # and works even where they cannot be imported.
    try:
        yield
    except ImportError as exc:
        raise _Unavailable(f"{what} is not available in this installation: {exc}") from exc


# -- demo -----------------------------------------------------------------------------------------


@main.command(epilog=_examples("nim-workflow demo --html report.html"))
@click.option(
    "--db",
    "url",
    default=DEMO_URL,
    show_default=True,
    metavar="URL",
    help=(
        "The demo's own database, never the main one. Nothing at a sqlite:/// path: the demo "
        "creates a file there and marks it as its own; a file it marked before is replaced "
        "afresh. Anything else there (a case database, any other file, a directory) is refused "
        "and left untouched. A PostgreSQL database is used only if it holds no tables (the "
        "demo then marks it) or was marked by the demo and holds no cases."
    ),
)
@click.option(
    "--html",
    type=click.Path(dir_okay=False),
    default=DEMO_HTML,
    show_default=True,
    help="Where to write the coordinator's HTML report.",
)
@_json_option
@click.pass_context
def demo(ctx: click.Context, url: str, html: str, as_json: bool) -> None:
    """Run a simulated three-site cohort through 18 months of pathway and show the results.

    The clock is simulated, and its 18 months end today, so the other commands (on the real
    clock) see what the summary shows. The demo's database is rebuilt from scratch each time,
    and only a database the demo created is ever replaced (see --db). Prints the coordinator's
    summary and the commands that read the demo's database, and writes the HTML report.
    With --json: the summary's counts, what the demo did, and where its files are.
    """
    with _optional_part("the demo"):
        from nim_workflow._demo import FALLBACK_OPERATOR, OPERATOR_ROLES, format_trial, run_demo
        from nim_workflow._report import format_summary
    with ExitStack() as stack:
        bars: list[Any] = []

        def progress(done: int, total: int) -> None:
            # The total is known only once the demo starts, so the bar is made on the first call.
            if not bars:
                bar = click.progressbar(length=max(total, 1), label="simulating", file=sys.stderr)
                bars.append(stack.enter_context(bar))
            bars[0].update(max(done - bars[0].pos, 0))

        try:
            result = run_demo(url, html=html, progress=progress)
        except OSError as exc:
            _fail(f"the demo could not write its files: {exc}", EXIT_BAD_INPUT)
        except sa.exc.SQLAlchemyError as exc:
            # Named here: the group's handler would name the main --db, not the demo's.
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["unknown error"]
            _fail(
                f"the demo cannot use the database at {_describe(url)}: {text[0]}", EXIT_BAD_INPUT
            )
    fallback = result.operator == FALLBACK_OPERATOR
    if _wants_json(ctx, as_json):
        _echo_json(
            {
                "database": result.url,
                "html": str(result.html) if result.html else None,
                "as_of": result.as_of,
                "operator": result.operator,
                # Shallow: asdict would deep-copy the read-only mapping of events by kind.
                "counts": {
                    f.name: getattr(result.counts, f.name)
                    for f in dataclasses.fields(result.counts)
                },
                "summary": _summary_json(result.summary),
                "commands": _demo_commands(result.url, actor=result.operator if fallback else None),
            }
        )
        return
    _echo(format_summary(result.summary))
    trial = format_trial(result.counts)
    if trial:
        _echo(trial, nl=False)
    who = f"--actor {result.operator}" if fallback else "you"
    _echo(
        f"staff roster: {result.operator} ({who}) is {' and '.join(sorted(OPERATOR_ROLES))} "
        "at every site"
    )
    _echo("to read the demo's database with the other commands, in this shell:")
    for line in _demo_commands(result.url, actor=result.operator if fallback else None):
        _echo(f"  {line}")
    if result.html:
        _echo(f"report: {result.html}")


def _summary_json(summary: Any) -> dict[str, Any]:
    """The coordinator's summary as counts per site, by identifier (``--json`` of demo, report)."""
    return {
        "at": summary.at,
        "sites": [
            {
                "site": s.site,
                "pathways": list(s.pathway_ids),
                "opened": s.opened,
                "closed": s.closed,
                "open": s.open,
                "outcomes": dict(s.outcomes),
                "open_by_stage": {g.stage: len(g.cases) for g in s.open_by_stage},
                "on_time": {
                    r.rule: {"met": r.met, "missed": r.missed, "open": r.open, "rate": r.rate}
                    for r in s.on_time
                },
                "overdue": len(s.overdue),
                "due_soon": len(s.due_soon),
            }
            for s in summary.sites
        ],
    }


def _demo_commands(url: str, *, actor: str | None) -> list[str]:
    """The shell lines that point the other commands at the demo's database, and one to try."""
    import shlex
    import shutil

    lines = []
    if shutil.which("nim-workflow") is None:
        # Not on PATH (a virtualenv not activated): activate the one this command runs from.
        activate = Path(sys.executable).parent / "activate"
        if activate.is_file():
            lines.append(f". {shlex.quote(str(activate))}")
    lines.append(f"export {ENV_DB}={shlex.quote(url)}")
    if actor is not None:
        lines.append(f"export {ENV_ACTOR}={shlex.quote(actor)}")
    lines.append("nim-workflow overdue")
    return lines


# -- db -------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade", epilog=_examples("nim-workflow --db sqlite:///nim-workflow.db db upgrade"))
@_json_option
@click.pass_context
def db_upgrade(ctx: click.Context, as_json: bool) -> None:
    """Create the database's schema, or upgrade it to this version; safe to run again."""
    runtime = _runtime(ctx)
    engine = nw.Engine(runtime.url)
    # A migration says what it found on the way (an audit log already broken before it) as a
    # warning on the library's logger: repeat it here, where the person upgrading reads.
    found = _Collect()
    library_log = logging.getLogger("nim_workflow")
    library_log.addHandler(found)
    try:
        engine.migrate()
    finally:
        library_log.removeHandler(found)
        engine.close()
    for message in found.messages:
        _echo(f"warning: {message}", err=True)
    if _wants_json(ctx, as_json):
        _echo_json({"database": _describe(runtime.url), "warnings": found.messages})
        return
    _echo(f"database ready: {_describe(runtime.url)}")


class _Collect(logging.Handler):
    """Keeps the warnings a migration logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# -- pathway --------------------------------------------------------------------------------------


@main.group()
def pathway() -> None:
    """Check pathway files and show pathways."""


@pathway.command("validate", epilog=_examples("nim-workflow pathway validate pathways/*.yaml"))
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@_json_option
@click.pass_context
def pathway_validate(ctx: click.Context, files: tuple[str, ...], as_json: bool) -> None:
    """Check pathway files; print every problem as file:line: field: message.

    Exits 2 if any file is invalid.
    """
    results: list[dict[str, Any]] = []
    for name in files:
        try:
            loaded = nw.load_pathway(name)
        except nw.PathwayError as exc:
            problems = [str(problem) for problem in exc.problems]
            results.append({"file": name, "ok": False, "problems": problems})
            continue
        results.append({"file": name, "ok": True, "id": loaded.id, "version": loaded.version})
    if _wants_json(ctx, as_json):
        _echo_json(results)
    else:
        for result in results:
            if result["ok"]:
                _echo(f"ok {result['file']}: {result['id']} v{result['version']}")
            for problem in result.get("problems", ()):
                _echo(problem)
    if not all(result["ok"] for result in results):
        raise click.exceptions.Exit(EXIT_BAD_INPUT)


@pathway.command(
    "show",
    epilog=_examples(
        "nim-workflow pathway show nim-uk-england",
        "nim-workflow pathway show nim-uk-scotland --format mermaid > scotland.mmd",
    ),
)
@click.argument("pathway_id", metavar="ID")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid"]),
    default="text",
    show_default=True,
    help="text: stages, transitions, roles and deadlines; mermaid: a stateDiagram-v2.",
)
@_json_option
@click.pass_context
def pathway_show(ctx: click.Context, pathway_id: str, fmt: str, as_json: bool) -> None:
    """Show a bundled pathway (or a pathway file): stages, transitions, roles, deadlines.

    With --json: the same as plain data, by identifier and title (not with --format mermaid).
    """
    if fmt == "mermaid":
        _refuse_json(ctx, as_json, "with --format mermaid: the diagram is text to render")
    bundled = nw.bundled_pathways()
    if pathway_id in bundled:
        definition = bundled[pathway_id]
    elif Path(pathway_id).is_file():
        definition = nw.load_pathway(pathway_id)
    else:
        known = ", ".join(sorted(bundled)) or "none"
        raise nw.InvalidInput(
            f"no pathway {pathway_id!r}: give a bundled id ({known}) or a pathway file"
        )
    if _wants_json(ctx, as_json):
        _echo_json(_pathway_json(definition))
        return
    render = render_mermaid if fmt == "mermaid" else render_text
    _echo(render(definition), nl=False)


def _pathway_json(definition: nw.Pathway) -> dict[str, Any]:
    return {
        "id": definition.id,
        "version": definition.version,
        "title": definition.title,
        "calendar": definition.calendar,
        "timezone": definition.timezone,
        "roles": dict(definition.roles),
        "facts": {
            name: {"type": spec.type, "values": list(spec.values)}
            for name, spec in definition.facts.items()
        },
        "stages": [
            {"id": s.id, "title": s.title, "initial": s.initial, "final": s.final}
            for s in definition.stages
        ],
        "transitions": [
            {
                "trigger": t.trigger,
                "sources": list(t.sources),
                "dest": t.dest,
                "roles": sorted(t.roles),
                "requires": list(t.requires),
                "reason_required": t.reason_required,
                "outcome": t.outcome,
            }
            for t in definition.transitions
        ],
        "deadlines": [
            {
                "name": rule.name,
                "stage": rule.stage,
                "anchor_fact": rule.anchor_fact,
                "duration": str(rule.duration),
                "escalate_to": rule.escalate_to,
            }
            for rule in definition.deadlines
        ],
    }


# -- case -----------------------------------------------------------------------------------------


@main.group()
def case() -> None:
    """Act on one case: open, fire, record, pause, resume, extend, show."""


@case.command(
    "open",
    epilog=_examples(
        "nim-workflow case open LDN-2026-0001 --pathway nim-uk-england --site london \\",
        "    --fact consent_recorded=true",
    ),
)
@click.argument("reference")
@click.option("--pathway", "pathway_id", required=True, help="The pathway id, e.g. nim-uk-england.")
@click.option("--site", required=True, help="The site running the case, e.g. london.")
@_fact_option("A fact to record; repeat for more.")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def case_open(
    ctx: click.Context,
    reference: str,
    pathway_id: str,
    site: str,
    facts: tuple[str, ...],
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Open a case in its pathway's first stage and start that stage's deadlines.

    You act as yourself (see `staff`): you must work at --site. Exits 1 otherwise.
    """
    engine = _runtime(ctx).engine()
    member = _member(engine, actor_id)
    definition = engine.pathway(pathway_id)
    # A typo is bad input (exit 2, the nearest site suggested), not a site the member lacks.
    _declared_site(engine, site)
    _works_at(member, site, "cases")
    opened = engine.open_case(
        reference,
        pathway=pathway_id,
        site=site,
        actor=member.actor(),
        at=at,
        facts=_parse_facts(definition, facts),
    )
    if _wants_json(ctx, as_json):
        _echo_json(_case_json(opened))
        return
    _echo(
        f"opened {opened.reference} on {opened.pathway_id} v{opened.pathway_version} at "
        f"{opened.site}: stage {_stage_label(definition, opened.stage)} "
        f"(version {opened.version})"
    )


@case.command(
    "fire",
    epilog=_examples(
        "nim-workflow case fire LDN-2026-0001 accept_referral",
        "nim-workflow case fire LDN-2026-0001 accept_referral --actor tm-004",
    ),
)
@click.argument("reference")
@click.argument("trigger")
@click.option("--reason", default=None, help="Why (some triggers, such as withdraw, need one).")
@_fact_option("A fact to record first; repeat for more.")
@click.option(
    "--expected-version",
    type=int,
    default=None,
    metavar="N",
    help="Refuse (exit 1) unless the case is still at this version.",
)
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def case_fire(
    ctx: click.Context,
    reference: str,
    trigger: str,
    reason: str | None,
    facts: tuple[str, ...],
    expected_version: int | None,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Fire a trigger: move the case to its next stage if the pathway allows it.

    Exits 1 if the trigger is refused (wrong stage, missing facts, missing role, paused).
    """
    engine = _runtime(ctx).engine()
    actor = _case_actor(engine, actor_id, reference)
    before = engine.case(reference)
    definition = _pathway_of(engine, before)
    moved = engine.fire(
        reference,
        trigger,
        actor=actor,
        reason=reason,
        at=at,
        facts=_parse_facts(definition, facts),
        expected_version=expected_version,
    )
    if _wants_json(ctx, as_json):
        _echo_json({**_case_json(moved), "trigger": trigger, "from_stage": before.stage})
        return
    text = (
        f"{moved.reference}: {trigger}: {_stage_label(definition, before.stage)} -> "
        f"{_stage_label(definition, moved.stage)}"
    )
    if moved.outcome is not None:
        text += f", closed with outcome {moved.outcome}"
    _echo(f"{text} (version {moved.version})")


@case.command(
    "record",
    epilog=_examples(
        "nim-workflow case record LDN-2026-0001 --fact proceedings_issued_on=2026-02-02",
    ),
)
@click.argument("reference")
@click.argument("positional_facts", nargs=-1, metavar="[NAME=VALUE]...", cls=_DeprecatedArgument)
@_fact_option("A fact to record; repeat for more (at least one).")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def case_record(
    ctx: click.Context,
    reference: str,
    positional_facts: tuple[str, ...],
    facts: tuple[str, ...],
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Record facts on a case: true/false, ISO dates, or one of a fact's values.

    A date fact such as proceedings_issued_on starts or moves its statutory clock. The old
    form, NAME=VALUE without --fact, still works in this release but is deprecated.
    """
    if positional_facts:
        # Kept for one release so that scripts written against it keep recording (a fact
        # silently not recorded would be worse than a warning); removed in the next.
        _echo(
            "warning: `case record REFERENCE NAME=VALUE` is deprecated and will be removed in "
            "the next release; write `--fact NAME=VALUE`, as `case open` and `case fire` take",
            err=True,
        )
    if not facts and not positional_facts:
        raise click.UsageError("give at least one fact to record: --fact NAME=VALUE", ctx)
    engine = _runtime(ctx).engine()
    actor = _case_actor(engine, actor_id, reference)
    before = engine.case(reference)
    parsed = _parse_facts(_pathway_of(engine, before), (*positional_facts, *facts))
    after = engine.record(reference, parsed, actor=actor, at=at)
    if _wants_json(ctx, as_json):
        _echo_json({**_case_json(after), "changed": after.version != before.version})
        return
    if after.version == before.version:
        _echo(f"{reference}: nothing changed; those facts were already recorded")
        return
    changed = {k: v for k, v in after.facts.items() if before.facts.get(k) != v}
    _echo(f"{reference}: recorded {_facts_text(changed)} (version {after.version})")


@case.command(
    "pause",
    epilog=_examples(
        "nim-workflow case pause LDN-2026-0001 --reason 'child in hospital'",
    ),
)
@click.argument("reference")
@click.option("--reason", required=True, help="Why the clock stops.")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def case_pause(
    ctx: click.Context,
    reference: str,
    reason: str,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Stop a case's clock: its stage deadlines stand still until it is resumed.

    The law's clocks (care proceedings, looked-after reviews, a CSO's lapse) run on.
    """
    engine = _runtime(ctx).engine()
    actor = _case_actor(engine, actor_id, reference)
    paused = engine.pause(reference, actor=actor, reason=reason, at=at)
    if _wants_json(ctx, as_json):
        _echo_json(_case_json(paused))
        return
    _echo(
        f"{reference}: paused in stage {_stage_label(_pathway_of(engine, paused), paused.stage)}; "
        "its stage deadlines stand still "
        "(statutory clocks run on)"
    )


@case.command(
    "resume",
    epilog=_examples("nim-workflow case resume LDN-2026-0001"),
)
@click.argument("reference")
@click.option("--reason", default=None, help="Why the clock restarts (optional).")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def case_resume(
    ctx: click.Context,
    reference: str,
    reason: str | None,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Restart a paused case's clock; its stage deadlines move later by the paused time.

    Prints the open deadlines' new due dates.
    """
    engine = _runtime(ctx).engine()
    resumed = engine.resume(
        reference, actor=_case_actor(engine, actor_id, reference), at=at, reason=reason
    )
    if _wants_json(ctx, as_json):
        still_open = [d for d in engine.deadlines(reference) if d.status == "open"]
        _echo_json({**_case_json(resumed), "deadlines": [_deadline_json(d) for d in still_open]})
        return
    _echo(f"{reference}: resumed")
    for deadline in engine.deadlines(reference):
        if deadline.status == "open":
            _echo(f"  {deadline.name} now due on {deadline.due_on.isoformat()}")


@case.command(
    "assign",
    epilog=_examples(
        "nim-workflow case assign LDN-2026-0001 --worker sw-017",
        "nim-workflow case assign LDN-2026-0001 --unassign --reason 'sw-017 on leave'",
    ),
)
@click.argument("reference")
@click.option("--worker", default=None, help="The staff id of the worker who holds the case.")
@click.option("--unassign", is_flag=True, help="Leave the case with nobody (instead of --worker).")
@click.option("--reason", default=None, help="Why (optional).")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def case_assign(
    ctx: click.Context,
    reference: str,
    worker: str | None,
    unassign: bool,
    reason: str | None,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Give a case to the worker who holds it (their caseload), or leave it unassigned.

    The worker must be on the staff roster at the case's site; who may assign is the pathway's
    `assign` permission (the bundled pathways: a team manager).
    """
    if (worker is None) == (not unassign):
        raise click.UsageError("give either --worker ID or --unassign")
    engine = _runtime(ctx).engine()
    actor = _case_actor(engine, actor_id, reference)
    assigned = engine.assign(reference, worker=worker, actor=actor, at=at, reason=reason)
    if _wants_json(ctx, as_json):
        _echo_json(_case_json(assigned))
        return
    _echo(f"{reference}: {'held by ' + assigned.worker if assigned.worker else 'unassigned'}")


@case.command(
    "extend",
    epilog=_examples(
        "nim-workflow case extend LDN-2026-0001 care_proceedings --by '6 weeks' \\",
        "    --reason 'court order 2026-07-01' --actor co-009",
    ),
)
@click.argument("reference")
@click.argument("deadline")
@click.option("--reason", required=True, help="Why, e.g. the court's decision to extend.")
@click.option(
    "--by",
    default=None,
    metavar="DURATION",
    help="What was granted, e.g. '6 weeks' or '10 working_days'; at most the rule's step. "
    "Default: the full step.",
)
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def case_extend(
    ctx: click.Context,
    reference: str,
    deadline: str,
    reason: str,
    by: str | None,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Extend one open deadline by what was granted, up to its rule's step.

    Exits 1 if the rule allows no (further) extension or the actor lacks the role, 2 if
    ``--by`` is longer than the step or not a duration.
    """
    engine = _runtime(ctx).engine()
    actor = _case_actor(engine, actor_id, reference)
    extended = engine.extend_deadline(reference, deadline, actor=actor, reason=reason, at=at, by=by)
    if _wants_json(ctx, as_json):
        _echo_json(_deadline_json(extended))
        return
    still = ", still overdue" if extended.overdue else ""
    _echo(
        f"{reference}: {extended.name} extended (extension {extended.extensions}); "
        f"now due on {extended.due_on.isoformat()}{still}"
    )


def _stage_pairs(items: Iterable[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise click.BadParameter(f"{item!r} is not OLD=NEW", param_hint="--map")
        pairs[old.strip()] = new.strip()
    return pairs


@case.command(
    "upgrade",
    epilog=_examples(
        "nim-workflow case upgrade --pathway nim-uk-england --dry-run \\",
        "    --reason 'statutory clocks corrected'",
    ),
)
@click.option("--pathway", "pathway_id", required=True, metavar="ID", help="The pathway's id.")
@click.option(
    "--to-version", type=int, default=None, metavar="N", help="Default: the newest registered."
)
@click.option(
    "--map",
    "stage_map",
    multiple=True,
    metavar="OLD=NEW",
    help="Where cases in a stage the new version lacks go (repeat for several).",
)
@click.option("--dry-run", is_flag=True, help="List every date that would change; write nothing.")
@click.option("--reason", required=True, help="Why the cases move, for the audit log.")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def case_upgrade(
    ctx: click.Context,
    pathway_id: str,
    to_version: int | None,
    stage_map: tuple[str, ...],
    dry_run: bool,
    reason: str,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Move running cases onto a newer version of their pathway, one audited step per case.

    Open deadlines are worked out again from their anchors under the new rules; settled ones
    stay. Prints every deadline whose date changes, old and new. Exits 2 (nothing written)
    when a case is in a stage the new version lacks and no --map says where it goes, and 1
    unless the staff roster has you at every site with running cases on the pathway.
    """
    engine = _runtime(ctx).engine()
    member = _member(engine, actor_id)
    definition = engine.pathway(pathway_id)
    for site in sorted({c.site for c in engine.cases() if c.pathway_id == definition.id}):
        _works_at(member, site, f"{definition.id} cases")
    done = engine.upgrade_cases(
        pathway_id,
        actor=member.actor(),
        reason=reason,
        to_version=to_version,
        stage_map=_stage_pairs(stage_map),
        dry_run=dry_run,
        at=at,
    )
    if _wants_json(ctx, as_json):
        _echo_json([_jsonable(dataclasses.asdict(upgrade)) for upgrade in done])
        return
    verb = "would move" if dry_run else "moved"
    changed = sum(upgrade.dates_changed for upgrade in done)
    _echo(f"{pathway_id}: {verb} {len(done)} case(s); {changed} due date(s) change")
    for upgrade in done:
        stage = (
            upgrade.to_stage
            if upgrade.to_stage == upgrade.from_stage
            else f"{upgrade.from_stage} -> {upgrade.to_stage}"
        )
        _echo(f"{upgrade.reference}: v{upgrade.from_version} -> v{upgrade.to_version}, {stage}")
        for change in upgrade.changes:
            if change.change == "unchanged":
                continue
            before = change.due_on_before.isoformat() if change.due_on_before else "-"
            after = change.due_on_after.isoformat() if change.due_on_after else "-"
            _echo(f"  {change.name} #{change.occurrence}: {before} -> {after} ({change.change})")


@case.command("show", epilog=_examples("nim-workflow case show LDN-2026-0001"))
@click.argument("reference")
@_at_option(
    _AT_ASOF + " Counts working days in the current stage up to it. A past date is refused "
    "if the case changed after it (see `cases --at` for the stage it was in then)."
)
@_json_option
@click.pass_context
def case_show(ctx: click.Context, reference: str, at: dt.datetime | None, as_json: bool) -> None:
    """Show one case's timeline, deadlines (and why they fall when they do) and audit trail.

    The timeline gives each stage's entry and exit in the site's local time and its working
    days; then come the deadlines with their status (open, overdue, met, missed or cancelled,
    as of --at), the pauses and the audit trail.
    """
    engine = _runtime(ctx).engine()
    current = engine.case(reference)
    definition = _pathway_of(engine, current)
    tz = ZoneInfo(definition.timezone)
    trail = engine.audit(reference)
    if at is not None:
        _shown_as_of(ctx, current, trail, at, tz)
    history = engine.history(reference, at=at)
    deadlines = engine.deadlines(reference, at=at)
    pauses = engine.pauses(reference)
    if _wants_json(ctx, as_json):
        _echo_json(
            {
                "case": _case_json(current),
                "timezone": definition.timezone,
                "history": [
                    {
                        "stage": i.stage,
                        "entered_at": i.entered_at,
                        "left_at": i.left_at,
                        "trigger": i.trigger,
                        "working_days": i.working_days,
                    }
                    for i in history
                ],
                "deadlines": [
                    {**_deadline_json(d), "explanation": d.explain().lines()} for d in deadlines
                ],
                "pauses": [{"paused_at": p, "resumed_at": r} for p, r in pauses],
                "audit": [_audit_json(event) for event in trail],
            }
        )
        return
    lines = [
        f"{current.reference}  {current.pathway_id} v{current.pathway_version}  "
        f"site {current.site} ({definition.timezone})",
        f"stage: {_stage_label(definition, current.stage)} since "
        f"{_local(current.stage_entered_at, tz)} "
        f"(version {current.version})",
    ]
    lines.append(f"worker: {current.worker or 'unassigned'}")
    if current.paused:
        lines.append(f"paused since {_local(current.paused_at, tz)}")
    if current.closed_at is not None:
        lines.append(f"closed {_local(current.closed_at, tz)}, outcome {current.outcome}")
    lines.append(f"facts: {_facts_text(current.facts)}")
    lines += ["", "Timeline"]
    rows = [
        (
            _stage_label(definition, i.stage),
            _local(i.entered_at, tz),
            _local(i.left_at, tz),
            i.working_days,
            i.trigger,
        )
        for i in history
    ]
    lines += _indent(_table(("stage", "entered", "left", "working days", "by"), rows))
    lines += ["", "Deadlines"]
    if not deadlines:
        lines.append("  none")
    for d in deadlines:
        where = (
            f"stage {_stage_label(definition, d.stage)}"
            if d.stage is not None
            else "statutory clock"
        )
        settled = f" {_local(d.settled_at, tz)}" if d.settled_at is not None else ""
        occurrence = f" #{d.occurrence}" if d.occurrence > 1 else ""
        extensions = f", extended {d.extensions}x" if d.extensions else ""
        lines.append(
            f"  {d.name}{occurrence} ({where}): due on {d.due_on.isoformat()}, "
            f"{d.state}{settled}{extensions}"
        )
        lines += [f"      {line}" for line in d.explain().lines()]
    lines += ["", "Pauses"]
    if not pauses:
        lines.append("  none")
    for paused_at, resumed_at in pauses:
        resumed = _local(resumed_at, tz) if resumed_at is not None else "still paused"
        lines.append(f"  {_local(paused_at, tz)} -> {resumed}")
    lines += ["", "Audit trail"]
    audit_rows = [
        (
            event.seq,
            _local(event.at, tz),
            event.actor_id,
            event.action,
            _change(definition, event),
            _audit_note(event),
        )
        for event in trail
    ]
    lines += _indent(_table(("seq", "at", "actor", "action", "stage", "detail"), audit_rows))
    _echo("\n".join(lines))


def _shown_as_of(
    ctx: click.Context,
    current: nw.Case,
    trail: Sequence[nw.AuditEvent],
    at: dt.datetime,
    tz: ZoneInfo,
) -> None:
    """Refuse (exit 2) an ``--at`` before the case existed or before its last change.

    The engine keeps a case's stages, facts and deadlines as they are now; they are the case as
    it was at ``at`` only if nothing changed them since. Refused actions and alarms change
    nothing, so they do not count.
    """
    when = _local(at, tz)
    if current.opened_at > at:
        raise click.UsageError(
            f"{current.reference} was opened {_local(current.opened_at, tz)}, after --at {when}",
            ctx,
        )
    changes = [e for e in trail if e.at > at and e.action not in ("denied", *_ALARMS)]
    if changes:
        last = changes[-1]
        raise click.UsageError(
            f"--at {when} is before {current.reference}'s last change ({last.action} "
            f"{_local(last.at, tz)}): `case show` reads the case as it is stored now, which is "
            "not how it was then; for the stage it was in then use `cases --at`, and its "
            "timeline and audit trail are in `case show` without --at",
            ctx,
        )


def _indent(text: str) -> list[str]:
    return [f"  {line}" for line in text.splitlines()]


def _change(definition: nw.Pathway, event: nw.AuditEvent) -> str:
    """The audit entry's stage, or its move, by the stages' titles."""
    before, after = event.from_stage, event.to_stage
    if before is not None and after is not None and before != after:
        return f"{_stage_label(definition, before)} -> {_stage_label(definition, after)}"
    stage = after or before
    return "-" if stage is None else _stage_label(definition, stage)


def _audit_note(event: nw.AuditEvent) -> str:
    detail = event.detail
    parts: list[str] = []
    if event.trigger:
        parts.append(event.trigger)
    if event.action in ("opened", "fact_recorded", "transition") and detail.get("facts"):
        parts.append(_facts_text(detail["facts"]))
    if event.action == "extended":
        parts.append(
            f"{detail.get('deadline')}: {detail.get('previous_due_on')} -> {detail.get('due_on')}"
        )
    if event.action in _ALARMS:
        parts.append(f"{detail.get('deadline')} {detail.get('label')} (due {detail.get('due_on')})")
    if event.action == "assigned":
        before, after = detail.get("previous"), detail.get("worker")
        parts.append(f"worker: {before or 'unassigned'} -> {after or 'unassigned'}")
    if event.action == "denied" and detail.get("message"):
        parts.append(str(detail["message"]))
    if event.reason:
        parts.append(f"reason: {event.reason}")
    return "; ".join(parts)


def _case_json(item: nw.Case) -> dict[str, Any]:
    return {
        "reference": item.reference,
        "pathway": item.pathway_id,
        "pathway_version": item.pathway_version,
        "site": item.site,
        "stage": item.stage,
        "version": item.version,
        "opened_at": item.opened_at,
        "stage_entered_at": item.stage_entered_at,
        "paused": item.paused,
        "closed_at": item.closed_at,
        "outcome": item.outcome,
        "worker": item.worker,
        "facts": dict(sorted(item.facts.items())),
    }


def _deadline_json(d: nw.Deadline) -> dict[str, Any]:
    # "status" is the word every view shows (Deadline.state). The stored lifecycle needs no key
    # of its own: "overdue" is always an open deadline, and every other word is the lifecycle.
    return {
        "reference": d.reference,
        "site": d.site,
        "deadline": d.name,
        "kind": d.kind,
        "occurrence": d.occurrence,
        "stage": d.stage,
        "due_on": d.due_on,
        "due_at": d.due_at,
        "status": d.state,
        "settled_at": d.settled_at,
        "extensions": d.extensions,
    }


def _audit_json(event: nw.AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "reference": event.reference,
        "at": event.at,
        "actor_id": event.actor_id,
        "roles": list(event.roles),
        "action": event.action,
        "trigger": event.trigger,
        "from_stage": event.from_stage,
        "to_stage": event.to_stage,
        "reason": event.reason,
        "detail": dict(event.detail),
        "hash": event.hash,
    }


# -- family ---------------------------------------------------------------------------------------


@main.group()
def family() -> None:
    """The trial's families: the sibling groups it randomises, their allocation and visits.

    A family is opened with its children's case references; the trial's portal randomises it,
    and `family allocate` records that result once: each child's case is opened (or moved) onto
    the arm's pathway at the family's site and the research visits are planned. What you may do
    to a family is the trial's permissions; to the children's cases, their pathway's. Your roles
    come from the staff roster, which must have you at the family's site.
    """


#: How ``family show`` names a child whose case the allocation has still to open.
_NOT_OPENED = "(not opened until allocation)"


def _family_actor(
    engine: nw.Engine, actor_id: str | None, reference: str
) -> tuple[nw.Actor, nw.Family]:
    """The roster member acting on a family, checked to work at its site, and the family."""
    member = _member(engine, actor_id)
    found = engine.family(reference)
    _works_at(member, found.site, f"family {found.reference}")
    return member.actor(), found


def _trial_fact_specs(
    engine: nw.Engine, trial_id: str, site: str, arm: str | None
) -> dict[str, FactSpec]:
    """The facts the trial's pathways at ``site`` declare: the arm's, or every arm's before it.

    Empty for a trial or site the engine does not know, which the engine then refuses.
    """
    trial = engine.trials.get(trial_id)
    if trial is None:
        return {}
    specs: dict[str, FactSpec] = {}
    for name in [arm] if arm is not None else sorted(trial.arms):
        try:
            pathway_id = trial.pathway_for(name, site)
        except KeyError:
            continue
        for fact, spec in engine.pathway(pathway_id).facts.items():
            specs.setdefault(fact, spec)
    return specs


def _family_children(engine: nw.Engine, found: nw.Family) -> list[tuple[str, nw.Case | None]]:
    """Each child's reference with its case, or ``None`` until the allocation opens it."""
    out: list[tuple[str, nw.Case | None]] = []
    for reference in found.cases:
        try:
            out.append((reference, engine.case(reference)))
        except nw.CaseNotFound:
            out.append((reference, None))
    return out


def _site_zone(engine: nw.Engine, site: str) -> ZoneInfo:
    declared = engine.sites().get(site)
    return ZoneInfo(declared.timezone if declared is not None else "UTC")


def _family_json(found: nw.Family) -> dict[str, Any]:
    return {
        "reference": found.reference,
        "site": found.site,
        "trial": found.trial,
        "arm": found.arm,
        "allocation_id": found.allocation_id,
        "status": found.status,
        "children": list(found.cases),
        "opened_at": found.opened_at,
        "allocated_at": found.allocated_at,
        "randomised_on": found.randomised_on,
        "version": found.version,
    }


def _visit_json(visit: nw.Visit) -> dict[str, Any]:
    return {
        "name": visit.name,
        "subject": visit.subject,
        "opens_on": visit.opens_on,
        "closes_on": visit.closes_on,
        "target_on": visit.target_on,
        "held_on": visit.held_on,
        "status": visit.status,
        "stopped": visit.stopped,
    }


def _family_view_json(engine: nw.Engine, found: nw.Family) -> dict[str, Any]:
    """The family, its children (each with its case, or null) and its visits, for --json."""
    return {
        "family": _family_json(found),
        "children": [
            {"reference": reference, "case": None if item is None else _case_json(item)}
            for reference, item in _family_children(engine, found)
        ],
        "visits": [_visit_json(visit) for visit in engine.visits(found.reference)],
    }


def _case_state(item: nw.Case) -> str:
    if item.closed_at is not None:
        return f"closed ({item.outcome})"
    return "paused" if item.paused else "open"


def _children_lines(engine: nw.Engine, found: nw.Family) -> list[str]:
    rows: list[tuple[object, ...]] = []
    for reference, item in _family_children(engine, found):
        if item is None:
            rows.append((reference, _NOT_OPENED, "", ""))
            continue
        definition = _pathway_of(engine, item)
        rows.append(
            (
                reference,
                f"{item.pathway_id} v{item.pathway_version}",
                _stage_label(definition, item.stage),
                _case_state(item),
            )
        )
    return _indent(_table(("reference", "pathway", "stage", "state"), rows))


def _visit_status(visit: nw.Visit) -> str:
    return f"{visit.status}, stopped" if visit.stopped else visit.status


def _visits_lines(visits: Sequence[nw.Visit], found: nw.Family) -> list[str]:
    if not visits:
        if found.arm is None:
            return ["  none yet: the research visits are planned at allocation"]
        return ["  none planned yet (a child's visits appear once their anchor date is recorded)"]
    rows = [
        (
            visit.name,
            visit.subject,
            f"{visit.opens_on.isoformat()} to {visit.closes_on.isoformat()}",
            visit.target_on,
            visit.held_on,
            _visit_status(visit),
        )
        for visit in visits
    ]
    return _indent(_table(("visit", "subject", "window", "target", "held on", "status"), rows))


def _held_on(_ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    """``--held-on``: a date written YYYY-MM-DD."""
    if value is None:
        return None
    try:
        return _validate.date_value(value.strip(), "held_on")
    except nw.InvalidInput as exc:
        raise click.BadParameter(str(exc), param=param) from None


@family.command(
    "open",
    epilog=_examples(
        "nim-workflow family open FAM-LDN-001 --site london --child LDN-2026-0001 \\",
        "    --child LDN-2026-0002 --fact consent_recorded=true --fact entered_care_on=2026-01-02",
    ),
)
@click.argument("reference")
@click.option("--site", required=True, help="The site the family is at, e.g. london.")
@click.option(
    "--child",
    "children",
    multiple=True,
    required=True,
    metavar="REF",
    help="A child's case reference: a case open at the site, or one the allocation will open "
    "(repeat for each sibling).",
)
@click.option("--trial", "trial_id", default="best", show_default=True, help="The trial's id.")
@_fact_option(
    "A fact for every child's case, recorded when the allocation opens it; repeat for more."
)
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def family_open(
    ctx: click.Context,
    reference: str,
    site: str,
    children: tuple[str, ...],
    trial_id: str,
    facts: tuple[str, ...],
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Open a family in the trial, with its children's case references, before allocation.

    You act as yourself (see `staff`): you must work at --site and hold a role the trial lets
    open a family. Exits 1 otherwise, 2 if a child is in another family already.
    """
    engine = _runtime(ctx).engine()
    member = _member(engine, actor_id)
    _declared_site(engine, site)
    _works_at(member, site, "families")
    opened = engine.open_family(
        reference,
        site=site,
        actor=member.actor(),
        children=list(children),
        trial=trial_id,
        at=at,
        facts=_typed_facts(_trial_fact_specs(engine, trial_id, site, None), facts),
    )
    if _wants_json(ctx, as_json):
        _echo_json(_family_view_json(engine, opened))
        return
    _echo(
        f"opened family {opened.reference} in trial {opened.trial} at {opened.site}: status "
        f"{opened.status}, children {', '.join(opened.cases)} (version {opened.version})"
    )


@family.command(
    "add-child",
    epilog=_examples("nim-workflow family add-child FAM-LDN-001 LDN-2026-0007"),
)
@click.argument("reference", metavar="FAMILY")
@click.argument("child")
@_fact_option("A fact for the child's case; repeat for more.")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def family_add_child(
    ctx: click.Context,
    reference: str,
    child: str,
    facts: tuple[str, ...],
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """A sibling joins the family; once it is allocated, the child joins its arm too.

    After allocation the child's case is opened (or moved) onto the arm's pathway and its
    research visits planned.
    """
    engine = _runtime(ctx).engine()
    actor, before = _family_actor(engine, actor_id, reference)
    specs = _trial_fact_specs(engine, before.trial, before.site, before.arm)
    joined = engine.add_child(
        reference, child, actor=actor, at=at, facts=_typed_facts(specs, facts)
    )
    if _wants_json(ctx, as_json):
        _echo_json(_family_view_json(engine, joined))
        return
    text = f"{joined.reference}: {child} joined ({_plural(len(joined.cases), 'child', 'children')})"
    if joined.arm is not None:
        placed = engine.case(child)
        text += (
            f"; on arm {joined.arm}: {placed.pathway_id} v{placed.pathway_version}, stage "
            f"{_stage_label(_pathway_of(engine, placed), placed.stage)}"
        )
    _echo(f"{text} (version {joined.version})")


@family.command("show", epilog=_examples("nim-workflow family show FAM-LDN-001"))
@click.argument("reference")
@_json_option
@click.pass_context
def family_show(ctx: click.Context, reference: str, as_json: bool) -> None:
    """Show a family: its trial, arm and status, its children's cases and its research visits.

    Each visit shows its window, when it was held and its status today (pending, in_window,
    late or missed), and "stopped" when the family's trial status stopped it.
    """
    engine = _runtime(ctx).engine()
    found = engine.family(reference)
    if _wants_json(ctx, as_json):
        _echo_json(_family_view_json(engine, found))
        return
    tz = _site_zone(engine, found.site)
    if found.arm is None:
        allocation = "arm: not allocated yet"
    else:
        trial = engine.trials.get(found.trial)
        try:
            pathway_id = "" if trial is None else f" ({trial.pathway_for(found.arm, found.site)})"
        except KeyError:
            pathway_id = ""
        allocation = (
            f"arm: {found.arm}{pathway_id}, allocation {found.allocation_id}, randomised on "
            f"{_cell(found.randomised_on)} (recorded {_local(found.allocated_at, tz)})"
        )
    lines = [
        f"{found.reference}  trial {found.trial}  site {found.site} ({tz.key})",
        allocation,
        f"status: {found.status} (version {found.version})",
        f"opened: {_local(found.opened_at, tz)}",
        "",
        "Children",
        *_children_lines(engine, found),
        "",
        "Visits",
        *_visits_lines(engine.visits(reference), found),
    ]
    _echo("\n".join(lines))


@family.command(
    "list",
    epilog=_examples("nim-workflow family list --site london", "nim-workflow family list --json"),
)
@click.option("--site", default=None, help="Only this site's families.")
@click.option("--trial", "trial_id", default=None, help="Only this trial's families.")
@_json_option
@click.pass_context
def family_list(ctx: click.Context, site: str | None, trial_id: str | None, as_json: bool) -> None:
    """List the families: reference, site, arm, trial status and how many children."""
    engine = _runtime(ctx).engine()
    found = engine.families(site=site, trial=trial_id)
    if _wants_json(ctx, as_json):
        _echo_json([_family_json(item) for item in found])
        return
    if not found:
        _echo("no families")
        return
    rows = [(f.reference, f.site, f.trial, f.arm, f.status, len(f.cases)) for f in found]
    _echo(_table(("reference", "site", "trial", "arm", "status", "children"), rows))


@family.command(
    "allocate",
    epilog=_examples(
        "nim-workflow family allocate FAM-LDN-001 --arm nim --allocation-id BEST-0417",
    ),
)
@click.argument("reference")
@click.option("--arm", required=True, help="The arm the trial's portal allocated, e.g. nim.")
@click.option(
    "--allocation-id",
    "allocation_id",
    required=True,
    metavar="ID",
    help="The portal's allocation id, recorded with the arm.",
)
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def family_allocate(
    ctx: click.Context,
    reference: str,
    arm: str,
    allocation_id: str,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Record the trial portal's allocation of a family to an arm, once.

    Each child's case is opened (or moved, if still at its first stage) onto the arm's pathway
    at the family's site, and the research visits are planned. The engine never randomises.
    Exits 1 if the family was allocated already or you may not allocate, 2 for an unknown arm.
    """
    engine = _runtime(ctx).engine()
    actor, _ = _family_actor(engine, actor_id, reference)
    allocated = engine.allocate(reference, arm, allocation_id, actor=actor, at=at)
    if _wants_json(ctx, as_json):
        _echo_json(_family_view_json(engine, allocated))
        return
    _echo(
        f"{allocated.reference}: allocated to arm {allocated.arm} (allocation "
        f"{allocated.allocation_id}), randomised on {_cell(allocated.randomised_on)}; status "
        f"{allocated.status} (version {allocated.version})"
    )
    for reference_, item in _family_children(engine, allocated):
        if item is None:  # pragma: no cover - the allocation opens every child's case
            continue
        _echo(
            f"  {reference_}: {item.pathway_id} v{item.pathway_version}, stage "
            f"{_stage_label(_pathway_of(engine, item), item.stage)}"
        )
    for visit in engine.visits(allocated.reference):
        _echo(
            f"  visit {visit.name} for {visit.subject}: {visit.opens_on.isoformat()} to "
            f"{visit.closes_on.isoformat()}"
        )


def _family_cases_json(reference: str, moved: Sequence[nw.Case]) -> dict[str, Any]:
    return {"family": reference, "cases": [_case_json(item) for item in moved]}


@family.command(
    "fire",
    epilog=_examples(
        "nim-workflow family fire FAM-LDN-001 accept_referral --actor tm-004",
    ),
)
@click.argument("reference")
@click.argument("trigger")
@click.option("--reason", default=None, help="Why (some triggers, such as withdraw, need one).")
@_fact_option("A fact to record first on every child's case; repeat for more.")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def family_fire(
    ctx: click.Context,
    reference: str,
    trigger: str,
    reason: str | None,
    facts: tuple[str, ...],
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Fire a trigger on every open child case of the family, all or none.

    Who may fire it is each child's pathway's. If any child refuses, no child moves, and the
    refusal is audited on that child's case (exit 1).
    """
    engine = _runtime(ctx).engine()
    actor, found = _family_actor(engine, actor_id, reference)
    before = {ref: item for ref, item in _family_children(engine, found) if item is not None}
    specs: dict[str, FactSpec] = {}
    for item in before.values():
        for name, spec in _pathway_of(engine, item).facts.items():
            specs.setdefault(name, spec)
    for name, spec in _trial_fact_specs(engine, found.trial, found.site, found.arm).items():
        specs.setdefault(name, spec)
    moved = engine.fire_family(
        reference, trigger, actor=actor, facts=_typed_facts(specs, facts), reason=reason, at=at
    )
    if _wants_json(ctx, as_json):
        _echo_json(
            {
                **_family_cases_json(reference, moved),
                "trigger": trigger,
                "from_stages": {item.reference: before[item.reference].stage for item in moved},
            }
        )
        return
    for item in moved:
        definition = _pathway_of(engine, item)
        text = (
            f"{item.reference}: {trigger}: "
            f"{_stage_label(definition, before[item.reference].stage)} -> "
            f"{_stage_label(definition, item.stage)}"
        )
        if item.outcome is not None:
            text += f", closed with outcome {item.outcome}"
        _echo(f"{text} (version {item.version})")


@family.command(
    "pause",
    epilog=_examples("nim-workflow family pause FAM-LDN-001 --reason 'family in hospital'"),
)
@click.argument("reference")
@click.option("--reason", required=True, help="Why the clocks stop.")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def family_pause(
    ctx: click.Context,
    reference: str,
    reason: str,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Pause every open child case not paused already, all or none.

    Their stage deadlines stand still until resumed; the law's clocks run on.
    """
    engine = _runtime(ctx).engine()
    actor, _ = _family_actor(engine, actor_id, reference)
    paused = engine.pause_family(reference, actor=actor, reason=reason, at=at)
    if _wants_json(ctx, as_json):
        _echo_json(_family_cases_json(reference, paused))
        return
    _echo(
        f"{reference}: paused {', '.join(item.reference for item in paused)}; their stage "
        "deadlines stand still (statutory clocks run on)"
    )


@family.command("resume", epilog=_examples("nim-workflow family resume FAM-LDN-001"))
@click.argument("reference")
@click.option("--reason", default=None, help="Why the clocks restart (optional).")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def family_resume(
    ctx: click.Context,
    reference: str,
    reason: str | None,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Resume every paused child case, all or none; prints the open deadlines' new due dates."""
    engine = _runtime(ctx).engine()
    actor, _ = _family_actor(engine, actor_id, reference)
    resumed = engine.resume_family(reference, actor=actor, at=at, reason=reason)
    if _wants_json(ctx, as_json):
        _echo_json(_family_cases_json(reference, resumed))
        return
    for item in resumed:
        _echo(f"{item.reference}: resumed")
        for deadline in engine.deadlines(item.reference):
            if deadline.status == "open":
                _echo(f"  {deadline.name} now due on {deadline.due_on.isoformat()}")


@family.command(
    "status",
    epilog=_examples(
        "nim-workflow family status FAM-LDN-001 consented",
        "nim-workflow family status FAM-LDN-001 withdrawn_consent --reason 'parents withdrew'",
    ),
)
@click.argument("reference")
@click.argument("status")
@click.option("--reason", default=None, help="Why, for the audit log.")
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def family_status(
    ctx: click.Context,
    reference: str,
    status: str,
    reason: str | None,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Change the family's trial status (never its children's service status).

    withdrawn_consent and lost_to_follow_up stop the research visits (their reminders are
    cancelled); the children's cases run on either way. randomised is set by the allocation.
    """
    engine = _runtime(ctx).engine()
    actor, before = _family_actor(engine, actor_id, reference)
    after = engine.set_trial_status(reference, status, actor=actor, at=at, reason=reason)
    changed = after.version != before.version
    if _wants_json(ctx, as_json):
        _echo_json({**_family_json(after), "previous_status": before.status, "changed": changed})
        return
    if not changed:
        _echo(f"{reference}: already {after.status}; nothing changed")
        return
    text = f"{reference}: trial status {before.status} -> {after.status} (version {after.version})"
    if after.status in STOPPED:
        text += "; research visits stopped, the children's cases run on"
    _echo(text)


@family.command(
    "visit",
    epilog=_examples(
        "nim-workflow family visit FAM-LDN-001 baseline --held-on 2026-02-10 --child LDN-2026-0001",
        "nim-workflow family visit FAM-LDN-001 month_30 --held-on 2028-07-01",
    ),
)
@click.argument("reference")
@click.argument("name")
@click.option(
    "--held-on",
    "held_on",
    required=True,
    metavar="DATE",
    callback=_held_on,
    help="The date the visit was held, YYYY-MM-DD.",
)
@click.option(
    "--child",
    default=None,
    metavar="REF",
    help="For a visit per child: only this child (default: every child with its window planned).",
)
@_at_option(_AT_ACTION)
@_acting_options
@_json_option
@click.pass_context
def family_visit(
    ctx: click.Context,
    reference: str,
    name: str,
    held_on: dt.date,
    child: str | None,
    at: dt.datetime | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Record that a research visit was held; one after its window closes is marked late.

    Exits 1 if the date is before the window opens or you may not record visits, 2 if the
    family is not allocated, the visit was recorded already, or the trial status stopped visits.
    """
    engine = _runtime(ctx).engine()
    actor, _ = _family_actor(engine, actor_id, reference)
    recorded = engine.record_visit(reference, name, held_on, actor=actor, at=at, child=child)
    if _wants_json(ctx, as_json):
        _echo_json([_visit_json(visit) for visit in recorded])
        return
    subjects = ", ".join(f"{visit.subject} {visit.status}" for visit in recorded)
    _echo(f"{reference}: {name} held on {held_on.isoformat()}: {subjects}")


# -- staff ----------------------------------------------------------------------------------------


@main.group()
def staff() -> None:
    """The staff roster: who may act through this command line, in which roles, at which sites.

    Every command that changes something acts as your operating-system user (or --actor ID)
    with the roles and sites the roster gives that person; only an administrator changes the
    roster.
    """


def _member_json(m: nw.StaffMember) -> dict[str, Any]:
    return {
        "id": m.id,
        "roles": sorted(m.roles),
        "sites": sorted(m.sites),
        "active": m.active,
        "added_at": m.added_at,
        "updated_at": m.updated_at,
        "removed_at": m.removed_at,
    }


def _staff_text(member: nw.StaffMember) -> str:
    return f"roles {_joined(member.roles)}; sites {_joined(member.sites)}"


@staff.command(
    "add",
    epilog=_examples(
        "nim-workflow staff add \"$(id -un)\" --role administrator --role coordinator --site '*'",
        "nim-workflow staff add sw-017 --role social_worker --site london",
        "nim-workflow staff add tm-004 --role team_manager --site london --site glasgow",
    ),
)
@click.argument("staff_id", metavar="ID")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    metavar="ROLE",
    help="A role they hold, e.g. social_worker or administrator (repeat for several).",
)
@click.option(
    "--site",
    "sites",
    multiple=True,
    required=True,
    metavar="SITE",
    help="A site they work at (repeat for several); '*' means every site.",
)
@click.option("--reason", default=None, help="Why, for the audit log.")
@_actor_option
@_json_option
@click.pass_context
def staff_add(
    ctx: click.Context,
    staff_id: str,
    roles: tuple[str, ...],
    sites: tuple[str, ...],
    reason: str | None,
    actor_id: str | None,
    as_json: bool,
) -> None:
    """Put a person on the staff roster, or replace their roles and sites; audited.

    Only an administrator on the roster may do this. A new roster has none: then whoever runs
    the command may add the first member, who must be given the administrator role (usually
    themselves). Exits 1 if you may not change the roster.
    """
    engine = _runtime(ctx).engine()
    bootstrap = not any(ROSTER_ROLE in member.roles for member in engine.roster())
    # No administrator yet: the engine lets anyone add the first one, and refuses (and audits)
    # anything else, so the caller is passed on without any role of their own.
    actor = nw.Actor(_who(actor_id)) if bootstrap else _member(engine, actor_id).actor()
    try:
        previous: nw.StaffMember | None = engine.staff(staff_id)
    except nw.StaffNotFound:
        previous = None
    try:
        member = engine.add_staff(staff_id, roles=roles, sites=sites, actor=actor, reason=reason)
    except nw.PermissionDenied as exc:
        if not bootstrap:
            raise
        _fail(
            f"{exc}; the staff roster has no administrator yet, so the first member added "
            f"must be given the {ROSTER_ROLE} role (`nim-workflow staff add ID --role "
            f"{ROSTER_ROLE} --site '*'`)",
            EXIT_REFUSED,
        )
    if previous is None:
        verb = "added"
    elif previous.active:
        verb = "updated"
    else:
        verb = "added again"
    if _wants_json(ctx, as_json):
        _echo_json({**_member_json(member), "change": verb, "first_administrator": bootstrap})
        return
    _echo(f"{verb} {member.id} on the staff roster: {_staff_text(member)}")
    if bootstrap:
        _echo(f"{member.id} is the roster's first {ROSTER_ROLE}")


@staff.command("remove", epilog=_examples("nim-workflow staff remove sw-017 --reason 'left'"))
@click.argument("staff_id", metavar="ID")
@click.option("--reason", default=None, help="Why, for the audit log.")
@_actor_option
@_json_option
@click.pass_context
def staff_remove(
    ctx: click.Context, staff_id: str, reason: str | None, actor_id: str | None, as_json: bool
) -> None:
    """Take a person off the staff roster; audited. They can no longer act here.

    Only an administrator may do this (exit 1 otherwise); the last administrator cannot be
    removed (exit 2: add another first). The audit trail keeps naming them.
    """
    engine = _runtime(ctx).engine()
    actor = _member(engine, actor_id).actor()
    member = engine.remove_staff(staff_id, actor=actor, reason=reason)
    if _wants_json(ctx, as_json):
        _echo_json(_member_json(member))
        return
    _echo(f"removed {member.id} from the staff roster (they held {_staff_text(member)})")


@staff.command(
    "list", epilog=_examples("nim-workflow staff list", "nim-workflow staff list --all --json")
)
@click.option("--all", "include_removed", is_flag=True, help="Include people removed from it.")
@_json_option
@click.pass_context
def staff_list(ctx: click.Context, include_removed: bool, as_json: bool) -> None:
    """List the staff roster: each person's roles, sites, and since when they are on it."""
    engine = _runtime(ctx).engine()
    members = engine.roster(include_removed=include_removed)
    if _wants_json(ctx, as_json):
        _echo_json([_member_json(m) for m in members])
        return
    if not members:
        _echo(
            "nobody on the staff roster; start it with `nim-workflow staff add YOUR-ID "
            f"--role {ROSTER_ROLE} --site '*'`"
        )
        return
    utc = ZoneInfo("UTC")
    rows = [
        (
            m.id,
            ",".join(sorted(m.roles)),
            ",".join(sorted(m.sites)),
            _local(m.added_at, utc),
            _local(m.removed_at, utc),
        )
        for m in members
    ]
    _echo(_table(("id", "roles", "sites", "since", "removed"), rows))


# -- sites ----------------------------------------------------------------------------------------


@main.group()
def site() -> None:
    """The declared sites: where cases are opened, the pathways each runs, its calendar.

    Sites are declared data (`pathways/sites/`); a --site that names no declared site is refused
    (exit 2) with the nearest declared name suggested.
    """


@site.command("list", epilog=_examples("nim-workflow site list", "nim-workflow site list --json"))
@_json_option
@click.pass_context
def site_list(ctx: click.Context, as_json: bool) -> None:
    """List the declared sites: id, pathways run, calendar, time zone, closure days, title."""
    engine = _runtime(ctx).engine()
    declared = engine.sites()
    if _wants_json(ctx, as_json):
        _echo_json(
            [
                {
                    "id": s.id,
                    "title": s.title,
                    "pathways": sorted(s.pathways),
                    "calendar": s.calendar,
                    "timezone": s.timezone,
                    "closure_days": len(s.closures),
                    "source": s.source,
                    "closure_source": s.closure_source,
                }
                for s in declared.values()
            ]
        )
        return
    if not declared:
        _echo("no sites declared")
        return
    rows = [
        (
            s.id,
            ",".join(sorted(s.pathways)),
            s.calendar,
            s.timezone,
            len(s.closures),
            s.title,
        )
        for s in declared.values()
    ]
    _echo(_table(("id", "pathways", "calendar", "time zone", "closure days", "title"), rows))


# -- listings -------------------------------------------------------------------------------------


@main.command(
    "cases",
    epilog=_examples(
        "nim-workflow cases --site london", "nim-workflow cases --stage treatment --json"
    ),
)
@click.option("--site", default=None, help="Only this site's cases.")
@click.option("--stage", default=None, help="Only cases in this stage.")
@click.option("--worker", default=None, help="Only the cases this staff id holds.")
@click.option("--all", "include_closed", is_flag=True, help="Include closed cases.")
@_at_option(
    "Show the cases as they were at this date (noon UTC) or zoned datetime: the stage each was "
    "in, days in it up to then, only cases opened by then. Default: now."
)
@_json_option
@click.pass_context
def cases_command(
    ctx: click.Context,
    site: str | None,
    stage: str | None,
    worker: str | None,
    include_closed: bool,
    at: dt.datetime | None,
    as_json: bool,
) -> None:
    """List open cases with their stage, how long they have been in it and who holds them.

    Days in stage are counted in calendar days and in the site's working days. With --at in
    the past the listing is rebuilt from the stage history as it was then; the JSON's facts,
    version and worker are then null (the case as stored now holds only their current values),
    and --worker is refused.
    """
    engine = _runtime(ctx).engine()
    now = engine.now()
    if at is not None and at < now:
        if worker is not None:
            _fail(
                "cases --at in the past cannot filter by --worker: the listing of the past is "
                "rebuilt from the stage history, which does not say who held each case",
                2,
            )
        then = _cases_then(engine, at, site=site, stage=stage, include_closed=include_closed)
        if _wants_json(ctx, as_json):
            _echo_json([record for _, record in then])
        else:
            _print_cases(engine, then, include_closed=include_closed)
        return
    now = at or now
    found = engine.cases(site=site, stage=stage, open_only=not include_closed, worker=worker)
    # The current stay of every open case listed, in one read rather than one per case.
    current = engine._bulk_history(now, site=site, stage=stage, open_only=True, latest=True)
    records = []
    for item in found:
        tz = ZoneInfo(_pathway_of(engine, item).timezone)
        entered = item.stage_entered_at.astimezone(tz).date()
        days: int | None = None
        working: int | None = None
        if item.is_open:
            days = max((now.astimezone(tz).date() - entered).days, 0)
            # A case that moved on since the listing was read is asked about on its own.
            stays = current.get(item.reference) or engine.history(item.reference, at=now)
            working = stays[-1].working_days
        records.append(
            {**_case_json(item), "days_in_stage": days, "working_days_in_stage": working}
        )
    if _wants_json(ctx, as_json):
        _echo_json(records)
        return
    _print_cases(engine, list(zip(found, records, strict=True)), include_closed=include_closed)


def _print_cases(
    engine: nw.Engine,
    records: Sequence[tuple[nw.Case, dict[str, Any]]],
    *,
    include_closed: bool,
) -> None:
    """The ``cases`` table: stages by their titles, entry dates in the site's time zone."""
    if not records:
        _echo("no cases" if include_closed else "no open cases")
        return
    headers = (
        "reference",
        "site",
        "pathway",
        "stage",
        "since",
        "days",
        "working days",
        "worker",
        "state",
    )
    rows = []
    for item, record in records:
        definition = _pathway_of(engine, item)
        entered = record["stage_entered_at"].astimezone(ZoneInfo(definition.timezone)).date()
        rows.append(
            (
                item.reference,
                item.site,
                item.pathway_id,
                _stage_label(definition, record["stage"]),
                entered,
                record["days_in_stage"],
                record["working_days_in_stage"],
                record["worker"],
                _state(record),
            )
        )
    _echo(_table(headers, rows))


def _state(record: Mapping[str, Any]) -> str:
    if record["closed_at"] is not None:
        return f"closed ({record['outcome']})"
    return "paused" if record["paused"] else "open"


def _cases_then(
    engine: nw.Engine,
    at: dt.datetime,
    *,
    site: str | None,
    stage: str | None,
    include_closed: bool,
) -> list[tuple[nw.Case, dict[str, Any]]]:
    """The ``cases`` listing as it was at the past instant ``at``, from the stage history.

    A case is listed if it was opened by ``at``; its stage is the stay ``at`` falls in, its days
    in stage run up to ``at``, and it counts as closed or paused only if it was by then.
    """
    _validate.optional_lookup(stage, "stage")
    stays = engine._bulk_history(at, site=site, open_only=False)
    listed = engine.cases(site=site, open_only=False)
    every_pause = engine._bulk_pauses(site)
    out = []
    for item in listed:
        if item.opened_at > at:
            continue
        history = stays.get(item.reference) or engine.history(item.reference, at=at)
        stay = next((s for s in reversed(history) if s.entered_at <= at), None)
        if stay is None:  # pragma: no cover - a case's first stay starts when it is opened
            continue
        closed = item.closed_at is not None and item.closed_at <= at
        if (stage is not None and stay.stage != stage) or (closed and not include_closed):
            continue
        definition = _pathway_of(engine, item)
        tz = ZoneInfo(definition.timezone)
        entered, then = stay.entered_at.astimezone(tz).date(), at.astimezone(tz).date()
        days: int | None = None
        working: int | None = None
        if not closed:
            days = max((then - entered).days, 0)
            # A stay left after ``at`` was counted to its end: count it again up to ``at``.
            working = (
                stay.working_days
                if stay.left_at is None
                else engine.calendar(item.site, item.pathway_id).count_working_days(entered, then)
            )
        pauses = [] if closed else every_pause.get(item.reference, [])
        paused = any(start <= at and (end is None or end > at) for start, end in pauses)
        record = {
            **_case_json(item),
            "stage": stay.stage,
            "version": None,
            "stage_entered_at": stay.entered_at,
            "paused": paused,
            "closed_at": item.closed_at if closed else None,
            "outcome": item.outcome if closed else None,
            "facts": None,
            "worker": None,
            "days_in_stage": days,
            "working_days_in_stage": working,
        }
        out.append((item, record))
    return out


@main.command(
    "caseload",
    epilog=_examples("nim-workflow caseload --site london", "nim-workflow caseload --json"),
)
@click.option("--site", default=None, help="Only this site's workers.")
@_json_option
@click.pass_context
def caseload_command(ctx: click.Context, site: str | None, as_json: bool) -> None:
    """Each worker's open cases per site: by stage, paused, and their overdue deadlines.

    A site's unassigned cases come last; a worker who has left the staff roster is marked, as
    their cases need another worker.
    """
    engine = _runtime(ctx).engine()
    loads = engine.caseloads(site=site)
    if _wants_json(ctx, as_json):
        _echo_json(
            [
                {
                    "site": load.site,
                    "worker": load.worker,
                    "active": load.active,
                    "cases": load.cases,
                    "by_stage": dict(load.by_stage),
                    "paused": load.paused,
                    "overdue": load.overdue,
                }
                for load in loads
            ]
        )
        return
    if not loads:
        _echo("no open cases")
        return
    titles = _stage_titles(engine)
    order = {stage: position for position, stage in enumerate(titles)}
    rows = []
    for load in loads:
        who = load.worker or "(unassigned)"
        if not load.active:
            who += " (left the roster)"
        stages = ", ".join(
            f"{titles.get(stage, stage)} {load.by_stage[stage]}"
            for stage in sorted(load.by_stage, key=lambda s: (order.get(s, len(order)), s))
        )
        rows.append((load.site, who, load.cases, load.paused, load.overdue, stages))
    _echo(_table(("site", "worker", "open cases", "paused", "overdue", "by stage"), rows))


def _stage_titles(engine: nw.Engine) -> dict[str, str]:
    """Stage ids to their titles across the registered pathways, in the pathways' order."""
    titles: dict[str, str] = {}
    for definition in engine.pathways.values():
        titles.update({stage.id: stage.title for stage in definition.stages})
    return titles


def _deadline_rows(
    engine: nw.Engine, found: Sequence[nw.Deadline], now: dt.datetime
) -> list[dict[str, Any]]:
    """Deadlines with their case's current stage and their days, in the site's local dates.

    An open deadline has ``days_left``; an overdue one ``days_overdue`` (at least 1) instead, so
    a row never says ``open`` beside negative days. The text table shows the stage's title.
    """
    cache: dict[str, nw.Case] = {}
    out = []
    for d in found:
        owner = cache.get(d.reference)
        if owner is None:
            owner = cache[d.reference] = engine.case(d.reference)
        definition = _pathway_of(engine, owner)
        today = now.astimezone(ZoneInfo(definition.timezone)).date()
        row = _deadline_json(d)
        row["stage"] = owner.stage
        row["stage_title"] = _stage_label(definition, owner.stage)
        row["deadline_stage"] = d.stage
        if d.overdue:
            row["days_overdue"] = (today - d.due_on).days
        else:
            row["days_left"] = (d.due_on - today).days
        out.append(row)
    return out


def _unchanged_since(
    ctx: click.Context, engine: nw.Engine, at: dt.datetime | None, site: str | None
) -> dt.datetime:
    """``at`` (default: now); exit 2 if it is past and a case the listing reads changed since.

    The engine keeps deadlines as they are now: one met, extended or set after ``at`` would be
    missing from, or wrong in, a listing of what was due then. With nothing changed since, what
    is stored now is what was stored then, so the listing is true. Refused actions and alarms
    change nothing.
    """
    now = engine.now()
    if at is None or at >= now:
        return at or now
    latest = engine._latest_change(site)
    if latest is not None and latest[1] > at:
        reference = latest[0]
        # The case's newest entry that changed it names what the change was.
        last = next(
            e for e in reversed(engine.audit(reference)) if e.action not in ("denied", *_ALARMS)
        )
        raise click.UsageError(
            f"--at {at.isoformat()} is before the latest change to these cases ({last.action} "
            f"on {last.reference} at {last.at.isoformat()}): deadlines are read as they are "
            "stored now, so one met, extended or set since then would be missing or wrong; "
            "give a later --at, or none",
            ctx,
        )
    return at


def _without_titles(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as JSON prints them: by identifier, without the table's stage titles."""
    return [{k: v for k, v in row.items() if k != "stage_title"} for row in rows]


def _days_cell(row: dict[str, Any]) -> str:
    """The one days column of a listing that mixes overdue deadlines with open ones."""
    if "days_overdue" in row:
        return f"{row['days_overdue']} overdue"
    return f"{row['days_left']} left"


def _print_deadlines(rows: list[dict[str, Any]], *, days: str, empty: str) -> None:
    """The listing's table; ``days`` heads its last column.

    That is ``days left`` or ``days overdue``, or plain ``days`` where both kinds of row can
    appear: each cell then says ``N left`` or ``N overdue``.
    """
    if not rows:
        _echo(empty)
        return
    key = {"days left": "days_left", "days overdue": "days_overdue"}.get(days)
    table_rows = [
        (
            r["reference"],
            r["site"],
            r["deadline"],
            r["stage_title"],
            r["due_on"],
            r[key] if key is not None else _days_cell(r),
        )
        for r in rows
    ]
    _echo(_table(("reference", "site", "deadline", "stage", "due on", days), table_rows))


@main.command(
    "due",
    epilog=_examples(
        "nim-workflow due --within 2w --site london",
        "nim-workflow due --include-overdue --json",
    ),
)
@click.option(
    "--within",
    type=SPAN,
    default="14d",
    metavar="Nd|Nw",
    show_default=True,
    help="How far ahead to look: days (14d) or weeks (2w).",
)
@click.option("--site", default=None, help="Only this site's deadlines.")
@click.option(
    "--include-overdue",
    is_flag=True,
    help="Also list the deadlines already overdue, first, with their days overdue "
    "(by default they are left to the overdue command).",
)
@_at_option(_AT_DEADLINES)
@_json_option
@click.pass_context
def due_command(
    ctx: click.Context,
    within: dt.timedelta,
    site: str | None,
    include_overdue: bool,
    at: dt.datetime | None,
    as_json: bool,
) -> None:
    """List open deadlines falling due soon, soonest first, with the days left.

    Deadlines already overdue are not listed (see the overdue command) unless
    --include-overdue is given: they then come first, with status "overdue" and the days
    overdue ("days_overdue" in JSON, in place of "days_left").
    """
    engine = _runtime(ctx).engine()
    now = _unchanged_since(ctx, engine, at, site)
    found = engine.due(before=now + within, site=site, include_overdue=include_overdue, at=now)
    rows = _deadline_rows(engine, found, now)
    if _wants_json(ctx, as_json):
        _echo_json(_without_titles(rows))
        return
    _print_deadlines(rows, days="days" if include_overdue else "days left", empty="nothing due")


@main.command("overdue", epilog=_examples("nim-workflow overdue --site glasgow"))
@click.option("--site", default=None, help="Only this site's deadlines.")
@_at_option(_AT_DEADLINES)
@_json_option
@click.pass_context
def overdue_command(
    ctx: click.Context, site: str | None, at: dt.datetime | None, as_json: bool
) -> None:
    """List open deadlines whose due date has passed, oldest first, with the days overdue."""
    engine = _runtime(ctx).engine()
    now = _unchanged_since(ctx, engine, at, site)
    rows = _deadline_rows(engine, engine.overdue(at=now, site=site), now)
    if _wants_json(ctx, as_json):
        _echo_json(_without_titles(rows))
        return
    _print_deadlines(rows, days="days overdue", empty="nothing overdue")


# -- report, audit, worker ------------------------------------------------------------------------


@main.command("report", epilog=_examples("nim-workflow report --html report.html --site london"))
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False),
    required=True,
    help="The file to write the report to.",
)
@click.option("--site", default=None, help="Only this site.")
@_at_option(
    "The report's date: now (the default) or later, a date (noon UTC) or zoned datetime. "
    "Not earlier: the report reads the cases as they are now."
)
@_json_option
@click.pass_context
def report_command(
    ctx: click.Context, html: str, site: str | None, at: dt.datetime | None, as_json: bool
) -> None:
    """Write the coordinator's HTML report: timelines, stage durations, on-time rates.

    With --json: where it was written and the summary's counts per site.
    """
    engine = _runtime(ctx).engine()
    now = engine.now()
    when = now if at is None else at
    if when < now:
        # The summary reads each case's current stage, facts and open/closed state: a date in
        # the past would mix those with past days-in-stage and on-time counts.
        raise click.UsageError(
            "--at cannot be in the past: the report reads cases as they are stored now, not "
            "as they were (for a past view use `cases --at`, `due --at` or `overdue --at`)",
            ctx,
        )
    with _optional_part("the report"):
        from nim_workflow._report import render_report, summarize
    summary = summarize(engine, site=site, at=when)
    text = render_report(summary, [engine.pathway(pid) for pid in summary.pathway_ids])
    try:
        Path(html).write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write the report to {html}: {exc.strerror or exc}", EXIT_BAD_INPUT)
    if _wants_json(ctx, as_json):
        _echo_json({"html": html, "site": site, "summary": _summary_json(summary)})
        return
    _echo(f"report written to {html}")


@main.command(
    "export",
    epilog=_examples(
        "python -c 'import secrets; print(secrets.token_hex(32))' > /secure/nimwf-export.key",
        "nim-workflow export --out export-2026-06 --pseudonym-key-file /secure/nimwf-export.key",
        "nim-workflow export --format parquet --out export-2026-06 "
        "--pseudonym-key-file /secure/nimwf-export.key",
    ),
)
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
    help="The tables' file format (parquet needs nim-workflow[parquet]).",
)
@click.option(
    "--out",
    required=True,
    metavar="DIR",
    help="The directory to write; created if absent, refused unless empty.",
)
@click.option(
    "--pseudonym-key-file",
    "key_file",
    default=None,
    metavar="FILE",
    help="The site's pseudonym key (at least 16 bytes): the same key gives the same pseudonyms.",
)
@click.option(
    "--no-pseudonymise",
    "plain",
    is_flag=True,
    help="Export case references as stored instead of pseudonymised.",
)
@_json_option
@click.pass_context
def export_command(
    ctx: click.Context,
    export_format: str,
    out: str,
    key_file: str | None,
    plain: bool,
    as_json: bool,
) -> None:
    """Write the evaluator's export: one file per table, a data dictionary and a manifest.

    Tables: children, facts, stage_intervals, deadlines and pauses. Case references are
    pseudonymised with the site's key (--pseudonym-key-file) unless --no-pseudonymise is given;
    only the facts each pathway declares are exported. Prints the tables and their rows; with
    --json, the manifest. Exits 2 if DIR is not empty or the key is missing or too short.
    """
    if key_file is None and not plain:
        _fail(
            "no pseudonym key: pass --pseudonym-key-file FILE (make one with "
            "python -c 'import secrets; print(secrets.token_hex(32))' > FILE), or "
            "--no-pseudonymise to export case references as stored",
            EXIT_BAD_INPUT,
        )
    if key_file is not None and plain:
        _fail("--pseudonym-key-file and --no-pseudonymise: give one or the other", EXIT_BAD_INPUT)
    manifest = _runtime(ctx).engine().export(out, export_format, key_file, pseudonymise=not plain)
    if _wants_json(ctx, as_json):
        _echo_json(json.loads((manifest.directory / "manifest.json").read_text(encoding="utf-8")))
        return
    how = (
        f"pseudonymised, key fingerprint {manifest.key_fingerprint}"
        if manifest.pseudonymised
        else "references as stored, not pseudonymised"
    )
    _echo(f"export written to {manifest.directory} ({manifest.format}; {how})")
    _echo(
        _table(
            ("table", "file", "rows"),
            [(t.name, t.file, t.rows) for t in (*manifest.tables.values(), manifest.dictionary)],
        )
    )


@main.group()
def audit() -> None:
    """Verify the tamper-evident audit log, and sign checkpoints of it kept outside the database.

    A checkpoint is a signed head of the log, appended to a file kept where the database's
    administrators cannot rewrite it; `audit verify --checkpoints` then proves the log still
    extends every checkpoint.
    """


def _signing_key_option(help_text: str) -> Callable[[_F], _F]:
    return click.option(
        "--signing-key",
        "signing_key",
        envvar=ENV_SIGNING_KEY,
        show_envvar=True,
        default=None,
        metavar="PEM",
        help=help_text,
    )


def _plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


@audit.command(
    "keygen",
    epilog=_examples(
        "nim-workflow audit keygen --private /secure/nimwf-signing.pem "
        "--public nimwf-signing.pub.pem"
    ),
)
@click.option(
    "--private",
    "private_path",
    required=True,
    metavar="FILE",
    help="Where to write the private (signing) key; created readable by you only.",
)
@click.option(
    "--public",
    "public_path",
    required=True,
    metavar="FILE",
    help="Where to write the public key that verifies the checkpoints.",
)
@_json_option
@click.pass_context
def audit_keygen(ctx: click.Context, private_path: str, public_path: str, as_json: bool) -> None:
    """Make a new Ed25519 key pair for signing checkpoints, and print its key id.

    Never overwrites a file (exit 2 if either exists). Keep the private key off the database
    server's backups; give the public key to whoever verifies.
    """
    key_id = _checkpoint.generate_key_pair(private_path, public_path)
    if _wants_json(ctx, as_json):
        _echo_json({"key_id": key_id, "private": private_path, "public": public_path})
        return
    _echo(f"key {key_id}: private key {private_path} (mode 0600), public key {public_path}")


@audit.command(
    "checkpoint",
    epilog=_examples(
        "nim-workflow audit checkpoint --out /mnt/ledger/nimwf.checkpoints "
        "--signing-key /secure/nimwf-signing.pem",
    ),
)
@click.option(
    "--out",
    default=None,
    metavar="FILE",
    help="The checkpoints file to append to (created if missing). Without it the checkpoint "
    "is only printed.",
)
@_signing_key_option("The Ed25519 private key (PEM) to sign with.")
@_json_option
@click.pass_context
def audit_checkpoint(
    ctx: click.Context, out: str | None, signing_key: str | None, as_json: bool
) -> None:
    """Sign the audit log's current head (size and Merkle root) and append it to --out.

    Exits 2 when no signing key is given (--signing-key or its variable) or it cannot be
    read.
    """
    if not signing_key:
        _fail(
            f"no signing key: pass --signing-key PEM or set {ENV_SIGNING_KEY} (make a key pair "
            "with `nim-workflow audit keygen`)",
            EXIT_BAD_INPUT,
        )
    runtime = _runtime(ctx)
    runtime.signing_key = _checkpoint.load_private_key(signing_key)
    signed = runtime.engine().checkpoint(out=out)
    if _wants_json(ctx, as_json):
        _echo_json({**dataclasses.asdict(signed), "file": out})
        return
    _echo(
        f"checkpoint: size {signed.size}, root {signed.root_hash}, key {signed.key_id}, "
        f"signed {signed.signed_at.isoformat()}"
    )
    _echo(f"appended to {out}" if out else "not kept anywhere: pass --out FILE to keep it")


@audit.command(
    "verify",
    epilog=_examples(
        "nim-workflow audit verify",
        "nim-workflow audit verify --deep --checkpoints /mnt/ledger/nimwf.checkpoints \\",
        "    --public-key nimwf-signing.pub.pem",
    ),
)
@click.option(
    "--deep",
    is_flag=True,
    help="Also replay the log against every case, stage, deadline and alarm row.",
)
@click.option(
    "--checkpoints",
    "checkpoints",
    default=None,
    metavar="FILE",
    help="A checkpoints file: the log must still extend each signed checkpoint in it.",
)
@click.option(
    "--public-key",
    "public_key",
    default=None,
    metavar="PEM",
    help="The public key the checkpoints were signed with.",
)
@_signing_key_option("Without --public-key: check the checkpoints with this key's public half.")
@_json_option
@click.pass_context
def audit_verify(
    ctx: click.Context,
    deep: bool,
    checkpoints: str | None,
    public_key: str | None,
    signing_key: str | None,
    as_json: bool,
) -> None:
    """Check every audit entry, chain and the log's Merkle head; list every problem found.

    Exits 3 on any problem (an edited or missing entry, a checkpoint the log no longer
    extends, a checkpoint of another database or signed with another key, a damaged
    checkpoints file); 2 when a file or key cannot be read.
    """
    key: Any = public_key
    if checkpoints is not None and public_key is None:
        if not signing_key:
            _fail(
                "checking checkpoints needs the public key they were signed with: pass "
                f"--public-key PEM (or configure the signing key: {ENV_SIGNING_KEY})",
                EXIT_BAD_INPUT,
            )
        key = _checkpoint.load_private_key(signing_key).public_key()
    result = _runtime(ctx).engine().verify_audit(deep=deep, checkpoints=checkpoints, public_key=key)
    counts = (
        f"{_plural(result.checked, 'entry', 'entries')} checked, {result.sequenced} sequenced, "
        f"{_plural(result.checkpoints, 'checkpoint')} checked, "
        f"{'deep' if result.deep else 'not deep'}"
    )
    if _wants_json(ctx, as_json):
        _echo_json(
            {
                "ok": result.ok,
                "checked": result.checked,
                "sequenced": result.sequenced,
                "checkpoints": result.checkpoints,
                "deep": result.deep,
                "problems": list(result.problems),
                "notes": list(result.notes),
            }
        )
    else:
        if result.ok:
            _echo(f"audit log ok: {counts}")
        for note in result.notes:
            _echo(f"note: {note}")
        for problem in result.problems:
            _echo(f"problem: {problem}")
    if not result.ok:
        _fail(
            f"audit log broken: {_plural(len(result.problems), 'problem')} ({counts})",
            EXIT_INTEGRITY,
        )


@main.command("worker", epilog=_examples("nim-workflow worker", "nim-workflow worker --once"))
@click.option(
    "--sweep",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How often to look for changes made by other processes.",
)
@click.option("--once", is_flag=True, help="Process what is due now, print it, and exit.")
@_at_option("With --once: process as of this date (noon UTC) or zoned datetime.")
@click.option(
    "--allow-future",
    is_flag=True,
    help="With --once --at: allow a date after now (simulating time; fires future breaches).",
)
@_json_option
@click.pass_context
def worker_command(
    ctx: click.Context,
    sweep: float,
    once: bool,
    at: dt.datetime | None,
    allow_future: bool,
    as_json: bool,
) -> None:
    """Fire reminders, escalations and breaches as deadlines fall due, until interrupted.

    Stops cleanly on Ctrl-C or SIGTERM. With --once it processes what is due and exits
    (for cron).
    """
    engine = _runtime(ctx).engine()
    if once:
        fired = engine.process_due(at=at, allow_future=allow_future)
        if _wants_json(ctx, as_json):
            _echo_json([_event_json(event) for event in fired])
        elif not fired:
            _echo("nothing due")
        else:
            for event in fired:
                _echo(_event_text(event))
        return
    if at is not None:
        raise click.UsageError("--at only applies with --once")
    _refuse_json(
        ctx,
        as_json,
        "without --once: the worker prints each alarm as it fires until it is stopped, not "
        "one document (use `worker --once --json`)",
    )

    def report(event: nw.Event) -> None:
        _echo(_event_text(event))

    engine.subscribe(report, kinds=_ALARMS)
    with _until_stopped() as stopped:
        engine.start_scheduler(sweep_seconds=sweep)
        _echo(f"worker started on {_describe(_runtime(ctx).url)}; Ctrl-C to stop")
        try:
            while not stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            engine.stop_scheduler()
    _echo("worker stopped")


@contextmanager
def _until_stopped() -> Iterator[threading.Event]:
    """An event set by SIGTERM, with the previous SIGTERM handler put back afterwards."""
    stopped = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield stopped
    finally:
        signal.signal(signal.SIGTERM, previous)


def _event_json(event: nw.Event) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "reference": event.reference,
        "at": event.at,
        "seq": event.seq,
        "detail": dict(event.detail),
    }


def _event_text(event: nw.Event) -> str:
    detail = event.detail
    text = f"{event.at.isoformat()}  {event.reference}  {event.kind}  {detail.get('deadline')}"
    if event.kind == "escalation":
        text += f" to {detail.get('escalate_to')}"
    elif event.kind == "reminder" and detail.get("label") != "reminder":
        text += f" ({detail.get('label')})"
    return f"{text}, due on {detail.get('due_on')}"
