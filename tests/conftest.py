"""Fixtures shared by the whole suite: database URLs for SQLite and PostgreSQL.

Contract tests take ``db_url`` and so run once per backend. PostgreSQL comes from
``NIM_WORKFLOW_TEST_PG_URL`` (``make test`` starts a throwaway server and sets it); without it
the PostgreSQL tests are skipped on a developer's machine, but fail under CI (``CI`` set to
anything but "", "0" or "false"), so CI can never go green without having run them. Every
PostgreSQL test gets a database of its own, created empty and dropped afterwards, so tests never
see each other's rows.

Nothing here touches logging configuration or any other process-wide state.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import sqlalchemy as sa
from ci_guard import skip_or_fail
from sqlalchemy.pool import NullPool

# Every write in the suite checks that the state it decided in memory (and hashed into its audit
# entry) is exactly what the database holds afterwards; subprocesses inherit the switch.
os.environ.setdefault("NIM_WORKFLOW_CHECK_STATE", "1")

# pytester lets the suite check these fixtures' behaviour without a server (test_infrastructure).
pytest_plugins = ["pytester"]

PG_URL_VARIABLE = "NIM_WORKFLOW_TEST_PG_URL"
POSTGRES_MARK = "postgres"

# Fixtures whose use means a test needs the PostgreSQL server.
_PG_FIXTURES = frozenset({"pg_url", "fresh_pg_url", "new_pg_database"})


def pg_url_from_environment(environ: Mapping[str, str]) -> str:
    """Return the PostgreSQL test URL, or skip (developer) or fail (CI) when there is none."""
    url = environ.get(PG_URL_VARIABLE, "")
    if not url:
        skip_or_fail(
            environ,
            f"PostgreSQL not available (set {PG_URL_VARIABLE} or install PostgreSQL): "
            "PostgreSQL suite skipped",
            under_ci_message=(
                f"{PG_URL_VARIABLE} is not set: refusing to skip the PostgreSQL suite under CI"
            ),
        )
    return url


#: Set (to anything but "" or "0") by ``make soak`` to run the long adversarial runs.
SOAK_VARIABLE = "NIM_WORKFLOW_SOAK"


def soak_enabled(environ: Mapping[str, str]) -> bool:
    """Whether the long runs marked ``soak`` are wanted (``make soak``)."""
    return environ.get(SOAK_VARIABLE, "") not in ("", "0")


#: Under ``make mutate``, the test files that judge each module's mutants, in the order they
#: run: the module's own tests, the ones that drive it without a database first, so a mutant
#: they kill costs a second rather than the engine suite (docs/testing.md).
MUTATION_JUDGES: dict[str, tuple[str, ...]] = {
    "nim_workflow._calendar": (
        "test_calendar.py",
        "test_closures.py",
        "test_calendar_properties_engine.py",
    ),
    "nim_workflow._merkle": ("test_merkle.py",),
    "nim_workflow._trial._visits": ("test_visits_units.py", "test_families.py"),
    "nim_workflow._machine": ("test_machine.py",),
    "nim_workflow._deadlines": (
        "test_decide.py",
        "test_decide_clocks.py",
        "test_deadlines.py",
        "test_legal_clocks.py",
        "test_upgrade.py",
        "test_pathway_versions.py",
    ),
    "nim_workflow._decide": (
        "test_decide_commands.py",
        "test_assign.py",
        "test_engine.py",
        "test_hardening.py",
        "test_upgrade.py",
        "test_pathway_versions.py",
        "test_closures.py",
    ),
    "nim_workflow._audit": (
        "test_audit_units.py",
        "test_assign.py",
        "test_audit.py",
        "test_checkpoint.py",
    ),
    "nim_workflow._verify": (
        "test_audit_units.py",
        "test_audit.py",
        "test_checkpoint.py",
        "test_families.py",
    ),
}


def mutation_judges(mutant: str) -> tuple[str, ...] | None:
    """The test files that judge ``mutant`` (mutmut's name for it), or ``None`` for all."""
    module = mutant.split(".x_")[0].split(".x\N{LATIN LETTER LATERAL CLICK}")[0]
    return MUTATION_JUDGES.get(module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a PostgreSQL fixture, so ``-m 'not postgres'`` leaves it out.

    Tests marked ``soak`` (minutes each) are deselected unless ``make soak`` asked for them;
    their short versions run in every suite. While mutmut runs a mutant (it names it in
    ``MUTANT_UNDER_TEST``), only the tests of that module's judges run, fastest file first.
    """
    for item in items:
        if _PG_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(POSTGRES_MARK)
    judges = mutation_judges(os.environ.get("MUTANT_UNDER_TEST", ""))
    if judges is not None:
        rank = {name: position for position, name in enumerate(judges)}
        others = [item for item in items if item.path.name not in rank]
        if others:
            config.hook.pytest_deselected(items=others)
        items[:] = sorted(
            (item for item in items if item.path.name in rank),
            key=lambda item: rank[item.path.name],
        )
    if soak_enabled(os.environ):
        return
    long_runs = [item for item in items if item.get_closest_marker("soak") is not None]
    if long_runs:
        config.hook.pytest_deselected(items=long_runs)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The URL of the PostgreSQL server the suite may create databases on."""
    return pg_url_from_environment(os.environ)


@pytest.fixture(scope="session")
def _pg_admin_engine(pg_url: str) -> Iterator[sa.Engine]:
    """An autocommit engine for CREATE/DROP DATABASE, which cannot run in a transaction."""
    # NullPool: no idle connection is left behind to hold a database open or leak at exit.
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
def new_pg_database(pg_url: str, _pg_admin_engine: sa.Engine) -> Iterator[Callable[[], str]]:
    """A factory of brand-new empty PostgreSQL databases, all dropped after the test."""
    created: list[str] = []

    def create() -> str:
        # A random name lets runs share one server (even concurrently) without collisions.
        name = f"nimwf_t_{secrets.token_hex(8)}"
        with _pg_admin_engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)

    yield create
    with _pg_admin_engine.connect() as connection:
        for name in created:
            # FORCE ends connections a test forgot to close, so cleanup never hangs on them.
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_pg_url(new_pg_database: Callable[[], str]) -> str:
    """The URL of a brand-new empty PostgreSQL database, dropped after the test."""
    return new_pg_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file database in the test's own temporary directory.

    Under ``make mutate`` (mutmut sets ``MUTANT_UNDER_TEST`` for its clean run, its coverage
    run and every mutant) the file starts as a copy of a database already at the newest schema,
    so each of thousands of runs does not replay every migration; ``Engine.migrate()`` then
    finds nothing to upgrade and registers its pathways as usual. The migrations themselves
    are judged by their own tests, in every normal run.
    """
    path = tmp_path / "nimwf.db"
    if "MUTANT_UNDER_TEST" in os.environ:
        shutil.copyfile(_schema_template(), path)
    return f"sqlite:///{path}"


@functools.cache
def _schema_template() -> Path:
    """A SQLite file at the newest schema, made once per machine and schema revision."""
    from nim_workflow._store import _migrate

    head = _migrate.head_revision()
    template = Path(tempfile.gettempdir()) / f"nimwf-schema-{head}.sqlite"
    if not template.exists():
        building = template.with_name(f"{template.name}.{os.getpid()}")
        engine = sa.create_engine(f"sqlite:///{building}", poolclass=NullPool)
        with engine.begin() as connection:
            _migrate.upgrade(connection)
        engine.dispose()
        os.replace(building, template)  # whole or not at all, whoever else is building it
    return template


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database URL, once per backend, for contract tests that must hold on both."""
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_pg_url"))
    return str(request.getfixturevalue("sqlite_url"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly, at the end of every run, whether the PostgreSQL suite ran."""
    ran: set[str] = set()
    not_started: set[str] = set()
    skipped: set[str] = set()
    for reports in terminalreporter.stats.values():
        for report in reports:
            # stats also holds warnings and deselected items; only test reports count here.
            if not isinstance(report, pytest.TestReport) or POSTGRES_MARK not in report.keywords:
                continue
            if report.when == "call":
                ran.add(report.nodeid)
            elif report.when == "setup" and report.failed:
                not_started.add(report.nodeid)
            elif report.when == "setup" and report.skipped:
                skipped.add(report.nodeid)
    if ran or not_started:
        line = f"PostgreSQL suite: ran {len(ran)} tests"
        if not_started:
            line += f", {len(not_started)} could not set up (see the errors above)"
        terminalreporter.write_line(line)
    elif skipped:
        terminalreporter.write_line("PostgreSQL suite: SKIPPED (no server)")
    else:
        terminalreporter.write_line("PostgreSQL suite: no PostgreSQL tests selected")
