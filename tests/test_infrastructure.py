"""Tests of the test infrastructure itself: the database fixtures in conftest.py.

If these fail, every contract test built on them means nothing, so they come first.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import PG_URL_VARIABLE, pg_url_from_environment


def _scalar(url: str, sql: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_fresh_pg_database_is_empty_postgresql_15_or_newer(fresh_pg_url: str, pg_url: str) -> None:
    """fresh_pg_url is an empty PostgreSQL 15+ database distinct from the server's base one."""
    assert int(str(_scalar(fresh_pg_url, "SHOW server_version_num"))) >= 150000
    tables = _scalar(
        fresh_pg_url,
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    assert tables == 0
    database = _scalar(fresh_pg_url, "SELECT current_database()")
    assert database == sa.make_url(fresh_pg_url).database
    assert database != sa.make_url(pg_url).database


@pytest.mark.postgres
def test_fresh_pg_databases_are_distinct(new_pg_database: Callable[[], str]) -> None:
    """Two fresh PostgreSQL databases are separate: a table made in one is absent in the other."""
    first, second = new_pg_database(), new_pg_database()
    assert sa.make_url(first).database != sa.make_url(second).database
    engine = sa.create_engine(first)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE only_in_first (id integer)"))
    finally:
        engine.dispose()
    assert _scalar(first, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_first'") == 1
    assert _scalar(second, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_first'") == 0


def test_sqlite_url_is_a_file_database(sqlite_url: str, tmp_path: Path) -> None:
    """sqlite_url names a file in the test's tmp_path that SQLAlchemy opens and writes."""
    url = sa.make_url(sqlite_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database is not None
    assert Path(url.database).parent == tmp_path
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE probe (id integer)"))
    finally:
        engine.dispose()
    assert Path(url.database).is_file()


def test_db_url_gives_an_empty_database_on_each_backend(db_url: str) -> None:
    """db_url runs a test once per backend, each time on a database with no tables."""
    engine = sa.create_engine(db_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_pg_url_is_taken_from_the_environment() -> None:
    """The PostgreSQL URL comes from NIM_WORKFLOW_TEST_PG_URL when it is set."""
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/nimwf"
    assert pg_url_from_environment({PG_URL_VARIABLE: url, "CI": "true"}) == url


def test_pg_url_skips_without_a_server_outside_ci() -> None:
    """Without a PostgreSQL URL, a developer run skips the PostgreSQL suite and says why."""
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL suite skipped"):
        pg_url_from_environment({})


def test_pg_url_fails_without_a_server_under_ci() -> None:
    """Without a PostgreSQL URL, CI=true fails instead of quietly skipping the PostgreSQL suite."""
    with pytest.raises(pytest.fail.Exception, match="refusing to skip the PostgreSQL suite"):
        pg_url_from_environment({"CI": "true"})


_PG_ONLY_TEST = """
def test_needs_postgres(fresh_pg_url):
    pass
"""


@pytest.fixture
def suite_without_server(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scratch suite using this conftest, run with no PostgreSQL URL in the environment."""
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_pg_only=_PG_ONLY_TEST,
        ci_guard=Path(__file__).with_name("ci_guard.py").read_text(encoding="utf-8"),
    )
    monkeypatch.delenv(PG_URL_VARIABLE, raising=False)


@pytest.mark.usefixtures("suite_without_server")
def test_summary_reports_skipped_postgres_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside CI, a run without a server skips the PostgreSQL tests and says so at the end."""
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["PostgreSQL suite: SKIPPED (no server)"])


@pytest.mark.usefixtures("suite_without_server")
@pytest.mark.parametrize("spelling", ["true", "1"])
def test_pg_url_fixture_errors_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """Under CI (true or 1), a run without a server errors in the pg_url fixture, not skips."""
    monkeypatch.setenv("CI", spelling)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*refusing to skip the PostgreSQL suite under CI*"])


# -- every CI spelling is CI ----------------------------------------------------------------------

CI_SPELLINGS = ["true", "TRUE", "True", "1", "yes", "on", " true "]
NOT_CI_SPELLINGS = ["", "0", "false", "False", "FALSE"]
REPO = Path(__file__).resolve().parent.parent


def _missing_tool_guards(tmp_path: Path) -> dict[str, Callable[[dict[str, str]], object]]:
    """Each suite's guard, run as if its tool (server, browser, node) were missing."""
    from test_diagram import node_and_npm
    from test_report_browser import _chromium

    def nothing(_name: str) -> None:
        return None

    return {
        "postgresql": pg_url_from_environment,
        "browser": lambda env: _chromium(env, which=nothing, fallback=tmp_path / "no-chromium"),
        "diagram": lambda env: node_and_npm(env, which=nothing),
    }


@pytest.mark.parametrize("suite", ["postgresql", "browser", "diagram"])
@pytest.mark.parametrize("spelling", CI_SPELLINGS)
def test_every_ci_spelling_refuses_to_skip(tmp_path: Path, suite: str, spelling: str) -> None:
    """With CI set to any spelling of yes, a missing tool fails its suite instead of skipping."""
    guard = _missing_tool_guards(tmp_path)[suite]
    with pytest.raises(pytest.fail.Exception, match="refusing to skip"):
        guard({"CI": spelling})


@pytest.mark.parametrize("suite", ["postgresql", "browser", "diagram"])
@pytest.mark.parametrize("spelling", NOT_CI_SPELLINGS)
def test_outside_ci_a_missing_tool_skips(tmp_path: Path, suite: str, spelling: str) -> None:
    """With CI unset, empty, 0 or false, a missing tool skips its suite and says so."""
    guard = _missing_tool_guards(tmp_path)[suite]
    with pytest.raises(pytest.skip.Exception):
        guard({"CI": spelling} if spelling else {})


@pytest.mark.parametrize(("spelling", "code"), [("1", 1), ("yes", 1), ("0", 0), ("false", 0)])
def test_with_postgres_refuses_to_run_without_a_server_under_ci(
    tmp_path: Path, spelling: str, code: int
) -> None:
    """tools/with-postgres.sh with no server exits 1 under any CI spelling, else runs and warns."""
    env = {key: value for key, value in os.environ.items() if key != "NIM_WORKFLOW_TEST_PG_URL"}
    env |= {"CI": spelling, "NIM_WORKFLOW_PG_BINDIR": str(tmp_path)}
    result = subprocess.run(
        [str(REPO / "tools" / "with-postgres.sh"), "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == code, result.stderr
    expected = "refusing to run the suite without it" if code else "will be SKIPPED"
    assert expected in result.stderr


def test_ci_run_sets_ci_itself() -> None:
    """.ci/run exports CI=true before anything else runs, whatever the caller's environment."""
    commands = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    first_real = next(c for c in commands if not c.startswith(("set ", "cd ")))
    assert first_real == "export CI=true"
