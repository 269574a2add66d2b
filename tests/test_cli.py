"""The ``nim-workflow`` command line: its output, JSON shapes, messages and exit codes.

State-changing commands act as a staff roster member: the ``db`` fixture puts the people these
tests act as on the roster through the engine, and each command names one with ``--actor``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

import nim_workflow as nw
from nim_workflow._cli import main
from nim_workflow._store._schema import cases, stage_intervals

ROOT = Path(__file__).resolve().parents[1]
INVALID = ROOT / "tests" / "pathways" / "invalid"
BUNDLED = sorted((ROOT / "pathways").glob("*.yaml"))

TM = ("--actor", "tm-004")
SW = ("--actor", "sw-017")
COURT = ("--actor", "co-009")
COORDINATOR = ("--actor", "pc-001")
#: Who the tests act as: (roles, sites), all put on the roster by ``admin-1``.
ROSTER: dict[str, tuple[set[str], set[str]]] = {
    "admin-1": ({"administrator"}, {"*"}),
    "tm-004": ({"team_manager"}, {"london", "glasgow"}),
    "sw-017": ({"social_worker"}, {"london", "glasgow"}),
    "co-009": ({"court_officer"}, {"london"}),
    "pc-001": ({"coordinator"}, {"*"}),
    "sw-gla": ({"social_worker"}, {"glasgow"}),
}
#: Variables that would otherwise leak from the environment running the tests.
CLEAN_ENV: dict[str, str | None] = {
    "NIM_WORKFLOW_DB": None,
    "NIM_WORKFLOW_ACTOR": None,
    "NIM_WORKFLOW_SIGNING_KEY": None,
}

Run = Callable[..., Result]


@pytest.fixture
def db(db_url: str) -> str:
    """A migrated database (SQLite, then PostgreSQL) with the tests' staff roster."""
    url = db_url
    result = CliRunner().invoke(main, ["--db", url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    admin = nw.Actor("admin-1", roles={"administrator"})
    with nw.Engine(url) as engine:
        for staff_id, (roles, sites) in ROSTER.items():
            engine.add_staff(staff_id, roles=roles, sites=sites, actor=admin)
    return url


@pytest.fixture
def run(db: str) -> Run:
    """Invoke the command line on the test's database; fail on an unexpected traceback."""

    def invoke(*args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(main, ["--db", db, *args], env=CLEAN_ENV)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return invoke


#: The pathway each bundled site runs, which ``_open`` opens its cases on.
SITE_PATHWAY = {"london": "nim-uk-england", "glasgow": "nim-uk-scotland"}


def _open(
    run: Run, reference: str = "LDN-1", *, site: str = "london", at: str = "2026-01-05"
) -> Result:
    return run(
        "case", "open", reference, "--pathway", SITE_PATHWAY[site], "--site", site,
        "--fact", "consent_recorded=true", "--at", at, *SW,
    )  # fmt: skip


def _to_assessment(run: Run, reference: str = "LDN-1") -> None:
    _open(run, reference)
    run("case", "fire", reference, "accept_referral", "--at", "2026-01-08", *TM)


def _case(db: str, reference: str = "LDN-1") -> nw.Case:
    with nw.Engine(db) as engine:
        return engine.case(reference)


def _deadlines(db: str, reference: str = "LDN-1") -> list[nw.Deadline]:
    with nw.Engine(db) as engine:
        return engine.deadlines(reference)


# -- global options -------------------------------------------------------------------------------


def test_version_prints_the_package_version() -> None:
    """`--version` prints the program name and the package version."""
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nim-workflow, version {nw.__version__}"


def test_help_lists_every_command() -> None:
    """The top-level help names every command of the API contract."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "db", "pathway", "case", "cases", "caseload", "due", "overdue",
                    "report", "export", "audit", "staff", "site", "worker"):  # fmt: skip
        assert f"  {command} " in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("case", "open"), ("case", "fire"), ("case", "record"), ("case", "pause"),
        ("case", "resume"), ("case", "extend"), ("case", "upgrade"), ("case", "show"), ("cases",),
        ("case", "assign"), ("caseload",), ("due",),
        ("overdue",), ("report",), ("export",), ("audit", "verify"), ("audit", "checkpoint"),
        ("audit", "keygen"), ("staff", "add"), ("staff", "remove"), ("staff", "list"),
        ("site", "list"), ("worker",), ("pathway", "show"), ("pathway", "validate"),
        ("db", "upgrade"), ("demo",),
    ],
)  # fmt: skip
def test_every_command_help_has_an_example(args: tuple[str, ...]) -> None:
    """Each command's help says what it does and shows an example command line."""
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    assert "  nim-workflow " in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    """An unknown command exits 2 (bad usage)."""
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2


# -- the database ---------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    """`db upgrade` creates the file and schema, and running it again changes nothing."""
    path = tmp_path / "new.db"
    for _ in range(2):
        result = CliRunner().invoke(main, ["--db", f"sqlite:///{path}", "db", "upgrade"])
        assert result.exit_code == 0
        assert result.stdout.strip() == f"database ready: {path}"
    assert path.is_file()
    with nw.Engine(f"sqlite:///{path}") as engine:
        assert engine.cases() == []


@pytest.mark.parametrize(
    "args",
    [("cases",), ("due",), ("overdue",), ("audit", "verify"), ("case", "show", "X"),
     ("worker", "--once"), ("case", "open", "X", "--pathway", "nim-uk-england", "--site", "a",
      "--actor", "a"), ("staff", "list"), ("staff", "add", "a", "--role", "r", "--site", "*"),
     ("site", "list")],
)  # fmt: skip
def test_missing_database_is_not_created(tmp_path: Path, args: tuple[str, ...]) -> None:
    """A command on a SQLite file that does not exist says to run `db upgrade`, exit 2."""
    path = tmp_path / "absent.db"
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{path}", *args])
    assert result.exit_code == 2
    assert result.stderr == f"error: no database at {path}; run `nim-workflow db upgrade` first\n"
    assert not path.exists()


def test_database_without_schema_is_refused(tmp_path: Path) -> None:
    """An existing SQLite file without the schema gets the same message as a missing one."""
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    assert path.exists()
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{path}", "cases"])
    assert result.exit_code == 2
    assert "no database at" in result.stderr
    assert "run `nim-workflow db upgrade` first" in result.stderr


def test_database_on_an_older_schema_is_refused(db: str) -> None:
    """A database whose schema revision is not this version's says to run `db upgrade`."""
    bind = sa.create_engine(db)
    with bind.begin() as conn:
        conn.execute(sa.text("UPDATE nimwf_alembic_version SET version_num = 'older'"))
    bind.dispose()
    result = CliRunner().invoke(main, ["--db", db, "cases"])
    assert result.exit_code == 2
    assert "has schema revision older" in result.stderr
    assert result.stderr.endswith("run `nim-workflow db upgrade` first\n")


def test_db_upgrade_into_a_missing_folder_is_one_error_line(tmp_path: Path) -> None:
    """A SQLite file that cannot be created gives one error line and exit 2."""
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder.db'}"
    result = CliRunner().invoke(main, ["--db", url, "db", "upgrade"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot use the database at ")
    assert result.stderr.count("\n") == 1


def test_environment_variable_names_the_database(tmp_path: Path) -> None:
    """NIM_WORKFLOW_DB is used when --db is not given."""
    path = tmp_path / "from-env.db"
    env = {"NIM_WORKFLOW_DB": f"sqlite:///{path}"}
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0
    assert path.is_file()
    result = CliRunner().invoke(main, ["cases"], env=env)
    assert result.exit_code == 0
    assert result.stdout == "no open cases\n"


def test_bad_database_url_is_bad_input() -> None:
    """A URL that is not a database URL exits 2 with one error line."""
    result = CliRunner().invoke(main, ["--db", "not a url", "cases"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1


# -- pathways -------------------------------------------------------------------------------------


def test_pathway_validate_accepts_the_bundled_files() -> None:
    """Every bundled file validates with one ok line naming its id and version."""
    result = CliRunner().invoke(main, ["pathway", "validate", *map(str, BUNDLED)])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(BUNDLED)
    assert f"ok {ROOT / 'pathways' / 'nim-uk-england.yaml'}: nim-uk-england v4" in lines
    # The BeST? trial's comparator pathways (TRIAL.md) are bundled beside the NIM ones.
    assert f"ok {ROOT / 'pathways' / 'best-facs-glasgow.yaml'}: best-facs-glasgow v2" in lines
    assert f"ok {ROOT / 'pathways' / 'best-sau-london.yaml'}: best-sau-london v2" in lines


def test_pathway_validate_names_file_line_and_field() -> None:
    """Every problem of an invalid file is printed as file:line: field: message; exit 2."""
    bad = INVALID / "misnamed-role.yaml"
    good = BUNDLED[0]
    result = CliRunner().invoke(main, ["pathway", "validate", str(bad), str(good)])
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{bad}:12: roles.Worker: 'Worker' is not a valid role name")
    assert lines[1].startswith(f"{bad}:16: permissions.open_case[0]: unknown role 'worker'")
    assert len([line for line in lines if line.startswith(f"{bad}:")]) == 4
    assert lines[-1].startswith(f"ok {good}: ")


def test_pathway_validate_reports_an_unreadable_file(tmp_path: Path) -> None:
    """A file that cannot be read is reported, not a traceback; exit 2."""
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(main, ["pathway", "validate", str(missing)])
    assert result.exit_code == 2
    assert result.stdout.startswith(f"{missing}: <file>: cannot read it")


def test_pathway_show_text_lists_stages_transitions_and_deadlines() -> None:
    """`pathway show ID` prints the text summary of a bundled pathway."""
    result = CliRunner().invoke(main, ["pathway", "show", "nim-uk-england"])
    assert result.exit_code == 0
    assert result.stdout.startswith("NIM, London Infant and Family Team\n")
    for part in ("Stages", "Transitions", "accept_referral", "care_proceedings", "court_officer"):
        assert part in result.stdout


def test_pathway_show_mermaid_is_a_state_diagram() -> None:
    """`--format mermaid` prints a stateDiagram-v2 with the trigger edges."""
    result = CliRunner().invoke(main, ["pathway", "show", "nim-uk-scotland", "--format", "mermaid"])
    assert result.exit_code == 0
    assert result.stdout.startswith("stateDiagram-v2\n")
    assert "  referral --> assessment : accept_referral" in result.stdout


def test_pathway_show_reads_a_file_path() -> None:
    """A path to a pathway file is shown like a bundled id."""
    path = ROOT / "tests" / "pathways" / "valid"
    files = sorted(path.glob("*.yaml")) or BUNDLED
    result = CliRunner().invoke(main, ["pathway", "show", str(files[0]), "--format", "mermaid"])
    assert result.exit_code == 0
    assert result.stdout.startswith("stateDiagram-v2")


def test_pathway_show_unknown_id_names_the_bundled_ones() -> None:
    """An unknown pathway id exits 2 and lists the bundled ids."""
    result = CliRunner().invoke(main, ["pathway", "show", "nim-mars"])
    assert result.exit_code == 2
    assert "nim-uk-england" in result.stderr


def test_pathway_show_invalid_file_prints_its_problems() -> None:
    """Showing an invalid file prints each problem as an error line; exit 2."""
    bad = INVALID / "misnamed-role.yaml"
    result = CliRunner().invoke(main, ["pathway", "show", str(bad)])
    assert result.exit_code == 2
    assert f"error: {bad}:12: roles.Worker:" in result.stderr


# -- acting on a case -----------------------------------------------------------------------------


def test_case_open_reports_the_stage_and_stores_typed_facts(run: Run, db: str) -> None:
    """`case open` opens the case in the first stage with its facts converted to their types."""
    result = _open(run)
    assert result.stdout == (
        "opened LDN-1 on nim-uk-england v4 at london: stage Referral (version 1)\n"
    )
    opened = _case(db)
    assert opened.facts == {"consent_recorded": True}
    assert opened.site == "london"


def test_a_date_for_at_means_noon_utc(run: Run, db: str) -> None:
    """`--at 2026-01-05` records the action at noon UTC of that date."""
    _open(run)
    assert _case(db).opened_at == dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)


def test_a_zoned_datetime_for_at_is_kept(run: Run, db: str) -> None:
    """A datetime with a zone is used as given (in UTC)."""
    _open(run, at="2026-01-05T09:30:00+01:00")
    assert _case(db).opened_at == dt.datetime(2026, 1, 5, 8, 30, tzinfo=dt.UTC)


def test_a_naive_datetime_for_at_is_refused(run: Run) -> None:
    """A datetime without a zone exits 2 with a message saying to add one."""
    result = run(
        "case", "open", "LDN-1", "--pathway", "nim-uk-england", "--site", "london",
        "--at", "2026-01-05T10:00", *SW, code=2,
    )  # fmt: skip
    assert "has no time zone" in result.stderr


def test_a_bad_date_is_refused(run: Run) -> None:
    """A date that does not exist exits 2 naming the bad value."""
    _open(run)
    result = run("case", "fire", "LDN-1", "accept_referral", "--at", "2026-02-30", *TM, code=2)
    assert "'2026-02-30' is not a real date" in result.stderr


def test_a_bad_date_fact_is_refused(run: Run) -> None:
    """A date fact that is not YYYY-MM-DD exits 2 with the fact's name."""
    _open(run)
    result = run("case", "record", "LDN-1", "--fact", "entered_care_on=yesterday", *SW, code=2)
    assert result.stderr == (
        "error: entered_care_on must be a date written YYYY-MM-DD, not 'yesterday'\n"
    )


@pytest.mark.parametrize("text", ["20260105", "2026-W02-1", "9999-12-31", "0001-01-01"])
def test_dates_in_other_iso_forms_or_out_of_range_are_refused(run: Run, db: str, text: str) -> None:
    """A date fact must be YYYY-MM-DD between 1990 and 2099; other forms exit 2."""
    _open(run)
    result = run("case", "record", "LDN-1", "--fact", f"entered_care_on={text}", *SW, code=2)
    assert result.stderr.startswith("error: entered_care_on")
    assert _case(db).facts.get("entered_care_on") is None


def test_a_bad_bool_fact_is_refused(run: Run) -> None:
    """A bool fact that is not true/false exits 2."""
    result = run(
        "case", "open", "LDN-1", "--pathway", "nim-uk-england", "--site", "london",
        "--fact", "consent_recorded=maybe", *SW, code=2,
    )  # fmt: skip
    assert "is true or false, not 'maybe'" in result.stderr


def test_an_undeclared_fact_is_refused(run: Run) -> None:
    """A fact the pathway does not declare exits 2 and lists the declared facts."""
    _open(run)
    result = run("case", "record", "LDN-1", "--fact", "favourite_colour=blue", *SW, code=2)
    assert result.stderr.startswith("error: ")
    assert "'favourite_colour'" in result.stderr
    assert "consent_recorded" in result.stderr  # the declared facts are listed


def test_a_fact_without_equals_is_a_usage_error(run: Run) -> None:
    """A fact argument that is not name=value exits 2."""
    _open(run)
    result = run("case", "record", "LDN-1", "--fact", "consent_recorded", *SW, code=2)
    assert "is not name=value" in result.stderr


# -- who acts: the staff roster ------------------------------------------------------------------


def _as_os_user(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: name)


def test_without_actor_the_operating_system_user_acts(
    run: Run, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no --actor, the command acts as the OS user with the roles the roster gives them."""
    _open(run)
    _as_os_user(monkeypatch, "pc-001")
    run("case", "pause", "LDN-1", "--reason", "hospital", "--at", "2026-01-06")
    with nw.Engine(db) as engine:
        paused = engine.audit("LDN-1")[-1]
    assert (paused.action, paused.actor_id, paused.roles) == ("paused", "pc-001", ("coordinator",))


def test_the_actor_variable_names_who_acts(run: Run, db: str) -> None:
    """NIM_WORKFLOW_ACTOR names the roster member when --actor is not given."""
    _open(run)
    result = CliRunner().invoke(
        main,
        ["--db", db, "case", "pause", "LDN-1", "--reason", "r", "--at", "2026-01-06"],
        env={**CLEAN_ENV, "NIM_WORKFLOW_ACTOR": "pc-001"},
    )
    assert result.exit_code == 0, result.output
    assert _case(db).paused


def test_an_os_user_not_on_the_roster_is_refused(
    run: Run, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OS user missing from the roster gets exit 1 naming them and how to be added."""
    _open(run)
    _as_os_user(monkeypatch, "stranger")
    result = run("case", "pause", "LDN-1", "--reason", "r", "--at", "2026-01-06", code=1)
    assert result.stderr.startswith("error: stranger is not on the staff roster")
    assert "operating-system user" in result.stderr
    assert "`nim-workflow staff add stranger --role ROLE --site SITE`" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not _case(db).paused


def test_an_actor_not_on_the_roster_is_refused(run: Run, db: str) -> None:
    """--actor naming nobody on the roster exits 1 before anything is written."""
    result = run(
        "case", "open", "LDN-9", "--pathway", "nim-uk-england", "--site", "london",
        "--actor", "sw-999", code=1,
    )  # fmt: skip
    assert result.stderr.startswith("error: sw-999 is not on the staff roster")
    assert "staff add sw-999" in result.stderr
    assert run("cases", "--json").stdout.strip() == "[]"


def test_a_removed_member_is_refused(run: Run, db: str) -> None:
    """Someone taken off the roster can no longer act: exit 1 saying they were removed."""
    _open(run)
    run("staff", "remove", "tm-004", "--reason", "left", "--actor", "admin-1")
    result = run("case", "fire", "LDN-1", "accept_referral", "--at", "2026-01-08", *TM, code=1)
    assert result.stderr.startswith("error: tm-004 was removed from the staff roster on ")
    assert _case(db).stage == "referral"


def test_acting_at_a_site_the_member_does_not_work_at_is_refused(run: Run, db: str) -> None:
    """A member acting on a case at another site exits 1 naming that site and theirs."""
    _open(run)
    result = run("case", "record", "LDN-1", "--fact", "entered_care_on=2026-01-02",
                 "--actor", "sw-gla", code=1)  # fmt: skip
    assert result.stderr.startswith(
        "error: sw-gla may not act on case LDN-1 at site london: the staff roster has them at "
        "glasgow;"
    )
    assert "--role social_worker --site glasgow --site london" in result.stderr
    assert "entered_care_on" not in _case(db).facts


def test_opening_a_case_at_another_site_is_refused(run: Run, db: str) -> None:
    """`case open` checks --site against the member's sites: exit 1, nothing opened."""
    result = run(
        "case", "open", "LDN-9", "--pathway", "nim-uk-england", "--site", "london",
        "--actor", "sw-gla", code=1,
    )  # fmt: skip
    assert "may not act on cases at site london" in result.stderr
    assert run("cases", "--json").stdout.strip() == "[]"


def test_case_upgrade_needs_every_site_with_running_cases(run: Run, db: str) -> None:
    """Upgrading a pathway's cases needs the roster to have you at each of their sites."""
    _v1_england_case(db, "LDN-OLD")
    with nw.Engine(db) as engine:
        engine.add_staff("pc-gla", roles={"coordinator"}, sites={"glasgow"},
                         actor=nw.Actor("admin-1", roles={"administrator"}))  # fmt: skip
    result = run("case", "upgrade", "--pathway", "nim-uk-england", "--reason", "r",
                 "--actor", "pc-gla", code=1)  # fmt: skip
    assert "pc-gla may not act on nim-uk-england cases at site london" in result.stderr
    assert _case(db, "LDN-OLD").pathway_version == 1


@pytest.mark.parametrize(
    "args",
    [
        ("case", "pause", "LDN-1", "--reason", "r"),
        ("case", "fire", "LDN-1", "accept_referral"),
        ("case", "open", "LDN-2", "--pathway", "nim-uk-england", "--site", "london"),
        ("case", "upgrade", "--pathway", "nim-uk-england", "--reason", "r"),
    ],
)
def test_role_is_refused_with_a_pointer_to_the_roster(
    run: Run, db: str, args: tuple[str, ...]
) -> None:
    """A leftover --role exits 2 saying roles come from the staff roster; nothing changes."""
    _open(run)
    result = run(*args, "--actor", "pc-001", "--role", "team_manager", code=2)
    assert result.stderr.startswith("error: --role is no longer taken: ")
    assert "`nim-workflow staff list`" in result.stderr
    assert _case(db).version == 1


def test_role_is_not_in_the_help() -> None:
    """--role is hidden from the help of acting commands; --actor is documented."""
    result = CliRunner().invoke(main, ["case", "pause", "--help"])
    assert result.exit_code == 0
    assert "--role" not in result.stdout
    assert "--actor ID" in result.stdout
    assert "NIM_WORKFLOW_ACTOR" in result.stdout


# -- the staff roster -----------------------------------------------------------------------------


def test_staff_add_then_the_new_member_can_act(run: Run, db: str) -> None:
    """An administrator adds a member; the member then acts with exactly those roles."""
    added = run("staff", "add", "cl-005", "--role", "clinician", "--site", "london",
                "--reason", "joined", "--actor", "admin-1")  # fmt: skip
    assert added.stdout == "added cl-005 on the staff roster: roles clinician; sites london\n"
    _to_assessment(run)
    run("case", "record", "LDN-1", "--fact", "assessment_report_filed=true", "--at", "2026-01-09",
        "--actor", "cl-005")  # fmt: skip
    with nw.Engine(db) as engine:
        member = engine.staff("cl-005")
        recorded = engine.audit("LDN-1")[-1]
    assert (member.roles, member.sites) == ({"clinician"}, {"london"})
    assert (recorded.actor_id, recorded.roles) == ("cl-005", ("clinician",))


def test_staff_add_again_replaces_roles_and_sites(run: Run, db: str) -> None:
    """Adding an existing member again replaces their roles and sites and says updated."""
    result = run("staff", "add", "sw-gla", "--role", "social_worker", "--role", "team_manager",
                 "--site", "glasgow", "--site", "london", "--actor", "admin-1")  # fmt: skip
    assert result.stdout == (
        "updated sw-gla on the staff roster: roles social_worker, team_manager; "
        "sites glasgow, london\n"
    )
    with nw.Engine(db) as engine:
        assert engine.staff("sw-gla").sites == {"glasgow", "london"}


def test_staff_changes_by_a_non_administrator_are_refused_and_audited(run: Run, db: str) -> None:
    """A roster member without the administrator role may not add anyone: exit 1, audited."""
    result = run("staff", "add", "sw-018", "--role", "social_worker", "--site", "london",
                 *TM, code=1)  # fmt: skip
    assert result.stderr.startswith("error: ")
    assert "administrator" in result.stderr
    removal = run("staff", "remove", "sw-017", *TM, code=1)
    assert "administrator" in removal.stderr
    with nw.Engine(db) as engine:
        with pytest.raises(nw.StaffNotFound):
            engine.staff("sw-018")
        assert engine.staff("sw-017").active
        denied = [e for e in engine.audit() if e.stream == "staff" and e.action == "denied"]
    assert [(e.reference, e.actor_id, e.roles) for e in denied] == [
        ("sw-018", "tm-004", ("team_manager",)),
        ("sw-017", "tm-004", ("team_manager",)),
    ]


def test_staff_add_by_someone_off_the_roster_is_refused(run: Run) -> None:
    """Once the roster has an administrator, a stranger may not add anyone: exit 1."""
    result = run("staff", "add", "me", "--role", "administrator", "--site", "*",
                 "--actor", "stranger", code=1)  # fmt: skip
    assert result.stderr.startswith("error: stranger is not on the staff roster")


def test_staff_remove_takes_a_member_off_and_keeps_the_last_administrator(
    run: Run, db: str
) -> None:
    """`staff remove` removes and says so; the last administrator cannot be removed (exit 2)."""
    result = run("staff", "remove", "sw-017", "--reason", "left", "--actor", "admin-1")
    assert result.stdout == (
        "removed sw-017 from the staff roster (they held roles social_worker; "
        "sites glasgow, london)\n"
    )
    last = run("staff", "remove", "admin-1", "--actor", "admin-1", code=2)
    assert "last administrator" in last.stderr
    unknown = run("staff", "remove", "nobody", "--actor", "admin-1", code=2)
    assert "nobody is not on the staff roster" in unknown.stderr


def test_staff_list_table_and_json(run: Run) -> None:
    """`staff list` shows id, roles, sites, since, removed; --all adds the removed; JSON too."""
    run("staff", "remove", "sw-gla", "--actor", "admin-1")
    lines = run("staff", "list").stdout.splitlines()
    assert lines[0].split() == ["id", "roles", "sites", "since", "removed"]
    assert [line.split()[0] for line in lines[1:]] == sorted(set(ROSTER) - {"sw-gla"})
    tm = next(line for line in lines if line.startswith("tm-004"))
    assert tm.split()[1:3] == ["team_manager", "glasgow,london"]
    assert tm.endswith(" UTC  -")
    every = json.loads(run("staff", "list", "--all", "--json").stdout)
    assert [m["id"] for m in every] == sorted(ROSTER)
    gone = next(m for m in every if m["id"] == "sw-gla")
    assert set(gone) == {"id", "roles", "sites", "active", "added_at", "updated_at", "removed_at"}
    assert gone["active"] is False
    assert gone["removed_at"] is not None
    assert dt.datetime.fromisoformat(gone["added_at"]).tzinfo is not None
    assert "sw-gla" in run("staff", "list", "--all").stdout


def test_staff_bootstrap_adds_the_first_administrator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an empty roster anyone may add the first member, if it is given administrator."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    _as_os_user(monkeypatch, "ops-1")

    def cli(*args: str) -> Result:
        return CliRunner().invoke(main, ["--db", url, *args], env=CLEAN_ENV)

    assert cli("db", "upgrade").exit_code == 0
    assert cli("staff", "list").stdout.startswith("nobody on the staff roster; start it with")
    refused = cli("staff", "add", "sw-1", "--role", "social_worker", "--site", "london")
    assert refused.exit_code == 1
    assert "no administrator yet" in refused.stderr
    assert "--role administrator" in refused.stderr
    first = cli("staff", "add", "ops-1", "--role", "administrator", "--role", "coordinator",
                "--site", "*")  # fmt: skip
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        "added ops-1 on the staff roster: roles administrator, coordinator; sites *",
        "ops-1 is the roster's first administrator",
    ]
    # From now on the administrator acts with the roles the roster gives them.
    second = cli("staff", "add", "sw-1", "--role", "social_worker", "--site", "london")
    assert second.exit_code == 0, second.output
    with nw.Engine(url) as engine:
        trail = [(e.action, e.reference, e.actor_id) for e in engine.audit()]
        added = engine.audit()[-1]
    assert trail == [
        ("denied", "sw-1", "ops-1"),
        ("staff_added", "ops-1", "ops-1"),
        ("staff_added", "sw-1", "ops-1"),
    ]
    assert added.roles == ("administrator", "coordinator")


def test_unknown_case_is_bad_input(run: Run) -> None:
    """A reference with no case exits 2 with one clear line."""
    result = run("case", "show", "NOPE-1", code=2)
    assert result.stderr == f"error: {nw.CaseNotFound('NOPE-1')}\n"
    result = run("case", "fire", "NOPE-1", "accept_referral", *TM, code=2)
    assert result.stderr == f"error: {nw.CaseNotFound('NOPE-1')}\n"


def test_opening_an_existing_reference_is_bad_input(run: Run) -> None:
    """Opening a reference twice exits 2."""
    _open(run)
    result = run(
        "case", "open", "LDN-1", "--pathway", "nim-uk-england", "--site", "london", *SW, code=2
    )
    assert result.stderr == f"error: {nw.CaseExists('LDN-1')}\n"


def test_unknown_pathway_is_bad_input(run: Run) -> None:
    """Opening on a pathway that is not registered exits 2 naming the registered ones."""
    result = run(
        "case", "open", "X-1", "--pathway", "nim-mars", "--site", "a", *SW, code=2
    )  # fmt: skip
    assert "'nim-mars'" in result.stderr
    assert "nim-uk-england" in result.stderr


def test_case_fire_moves_the_case(run: Run, db: str) -> None:
    """`case fire` prints the move and the new version."""
    _open(run)
    result = run("case", "fire", "LDN-1", "accept_referral", "--at", "2026-01-08", *TM)
    assert result.stdout == "LDN-1: accept_referral: Referral -> Assessment (version 2)\n"
    assert _case(db).stage == "assessment"


def test_case_fire_records_facts_first(run: Run, db: str) -> None:
    """`--fact` on fire records the fact the transition requires."""
    _to_assessment(run)
    run(
        "case", "fire", "LDN-1", "offer_treatment", "--fact", "assessment_report_filed=true",
        "--at", "2026-02-02", *TM,
    )  # fmt: skip
    assert _case(db).stage == "treatment"


def test_case_fire_with_an_outcome_says_it_closed(run: Run) -> None:
    """A closing trigger prints the outcome."""
    _open(run)
    result = run(
        "case", "fire", "LDN-1", "withdraw", "--reason", "family moved", "--at", "2026-01-09", *TM
    )
    assert result.stdout == (
        "LDN-1: withdraw: Referral -> Closed, closed with outcome withdrawn (version 2)\n"
    )


def test_refused_transitions_exit_1(run: Run) -> None:
    """Unmet requirements, a missing role and an invalid trigger each exit 1 with the reason."""
    _to_assessment(run)
    unmet = run("case", "fire", "LDN-1", "offer_treatment", "--at", "2026-01-09", *TM, code=1)
    assert "assessment_report_filed" in unmet.stderr
    denied = run("case", "fire", "LDN-1", "offer_treatment", "--at", "2026-01-09", *SW, code=1)
    assert "sw-017" in denied.stderr
    assert "team_manager" in denied.stderr
    invalid = run("case", "fire", "LDN-1", "record_decision", "--at", "2026-01-09", *TM, code=1)
    assert "offer_treatment, recommend_without_treatment, withdraw" in invalid.stderr
    for result in (unmet, denied, invalid):
        assert result.stderr.startswith("error: case LDN-1")
        assert result.stderr.count("\n") == 1


def test_a_stale_expected_version_exits_1(run: Run) -> None:
    """`--expected-version` that no longer matches is a refused action (exit 1)."""
    _to_assessment(run)
    result = run(
        "case", "fire", "LDN-1", "withdraw", "--reason", "r", "--expected-version", "1",
        "--at", "2026-01-09", *TM, code=1,
    )  # fmt: skip
    assert result.stderr == f"error: {nw.ConcurrentUpdate('LDN-1', 1, 2)}\n"
    run(
        "case", "fire", "LDN-1", "withdraw", "--reason", "r", "--expected-version", "2",
        "--at", "2026-01-09", *TM,
    )  # fmt: skip


def test_case_record_prints_what_changed(run: Run, db: str) -> None:
    """`case record` prints the recorded facts, and says when nothing changed."""
    _open(run)
    result = run(
        "case",
        "record",
        "LDN-1",
        "--fact",
        "proceedings_issued_on=2026-01-20",
        "--at",
        "2026-01-21",
        *SW,
    )
    assert result.stdout == "LDN-1: recorded proceedings_issued_on=2026-01-20 (version 2)\n"
    assert _case(db).facts["proceedings_issued_on"] == dt.date(2026, 1, 20)
    again = run(
        "case", "record", "LDN-1", "--fact", "consent_recorded=true", "--at", "2026-01-21", *SW
    )
    assert "nothing changed" in again.stdout


def test_pause_and_resume_move_the_deadlines(run: Run) -> None:
    """Pause stops the clock, firing while paused exits 1, resume prints the new due dates."""
    _open(run)
    paused = run(
        "case", "pause", "LDN-1", "--reason", "child in hospital", "--at", "2026-01-06",
        *COORDINATOR,
    )  # fmt: skip
    assert paused.stdout == (
        "LDN-1: paused in stage Referral; its stage deadlines stand still "
        "(statutory clocks run on)\n"
    )
    refused = run("case", "fire", "LDN-1", "accept_referral", "--at", "2026-01-07", *TM, code=1)
    assert refused.stderr == f"error: {nw.CasePaused('LDN-1', 'accept_referral')}\n"
    resumed = run("case", "resume", "LDN-1", "--at", "2026-01-08", *COORDINATOR)
    # Two working days paused (6th and 7th): 2026-01-19 becomes 2026-01-21.
    assert resumed.stdout == "LDN-1: resumed\n  referral_decision now due on 2026-01-21\n"


def test_pause_needs_the_right_role(run: Run) -> None:
    """A social worker may not pause a case: exit 1."""
    _open(run)
    result = run("case", "pause", "LDN-1", "--reason", "r", "--at", "2026-01-06", *SW, code=1)
    assert result.stderr.startswith("error: case LDN-1")
    assert "coordinator" in result.stderr


def test_extend_moves_a_deadline_within_its_limit(run: Run) -> None:
    """`case extend` moves the deadline by one step; beyond the rule's limit it exits 1."""
    _open(run)
    result = run(
        "case", "extend", "LDN-1", "referral_decision", "--reason", "awaiting records",
        "--at", "2026-01-06", *TM,
    )  # fmt: skip
    assert result.stdout == (
        "LDN-1: referral_decision extended (extension 1); now due on 2026-01-26\n"
    )
    refused = run(
        "case", "extend", "LDN-1", "referral_decision", "--reason", "again",
        "--at", "2026-01-07", *TM, code=1,
    )  # fmt: skip
    assert refused.stderr.startswith("error: case LDN-1")
    assert "referral_decision" in refused.stderr


def test_extend_says_when_the_deadline_is_still_overdue(run: Run) -> None:
    """An extension granted late that leaves the deadline past due says it is still overdue."""
    _open(run)  # referral decision due Mon 19 January 2026
    result = run(
        "case", "extend", "LDN-1", "referral_decision", "--reason", "awaiting records",
        "--by", "1 working_days", "--at", "2026-01-23", *TM,
    )  # fmt: skip
    assert result.stdout == (
        "LDN-1: referral_decision extended (extension 1); now due on 2026-01-20, still overdue\n"
    )


def test_extend_by_records_what_the_court_granted_up_to_the_step(run: Run) -> None:
    """`case extend --by` moves care_proceedings by the grant; beyond 8 weeks it exits 2."""
    run(
        "case", "open", "LDN-1", "--pathway", "nim-uk-england", "--site", "london",
        "--fact", "proceedings_issued_on=2026-01-05", "--at", "2026-01-05", *SW,
    )  # fmt: skip
    # 26 weeks beginning with Mon 5 Jan 2026 end on Sun 5 Jul; + 3 weeks = Sun 26 Jul.
    result = run(
        "case", "extend", "LDN-1", "care_proceedings", "--by", "3 weeks",
        "--reason", "court order", "--at", "2026-06-01", *COURT,
    )  # fmt: skip
    assert result.stdout == (
        "LDN-1: care_proceedings extended (extension 1); now due on 2026-07-26\n"
    )
    refused = run(
        "case", "extend", "LDN-1", "care_proceedings", "--by", "9 weeks",
        "--reason", "court order", "--at", "2026-06-02", *COURT, code=2,
    )  # fmt: skip
    assert "longer than the most" in refused.stderr
    assert "8 weeks" in refused.stderr


def _v1_england_case(db: str, reference: str, stage_to: str | None = None) -> None:
    """A case opened on version 1 of the England pathway (as kept in pathways/archive/)."""
    v1 = ROOT / "pathways" / "archive" / "nim-uk-england.v1.yaml"
    with nw.Engine(db, pathways=[v1]) as engine:
        engine.open_case(
            reference,
            pathway="nim-uk-england",
            site="london",
            actor=nw.Actor("sw-017", roles={"social_worker"}),
            at=dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC),
            facts={"proceedings_issued_on": dt.date(2026, 1, 5)},
        )


def test_case_upgrade_dry_run_lists_changes_then_the_upgrade_applies_them(
    run: Run, db: str
) -> None:
    """--dry-run prints each date that would change and writes nothing; without it, applied."""
    _v1_england_case(db, "LDN-OLD")
    args = ("case", "upgrade", "--pathway", "nim-uk-england", "--reason", "clocks corrected")
    # Version 1: 5 Jan + 182 days = Mon 6 Jul; version 2: 26 weeks beginning with 5 Jan, Sun 5 Jul.
    dry = run(*args, "--dry-run", "--at", "2026-02-01", *COORDINATOR)
    assert dry.stdout.splitlines() == [
        "nim-uk-england: would move 1 case(s); 1 due date(s) change",
        "LDN-OLD: v1 -> v4, referral",
        "  care_proceedings #1: 2026-07-06 -> 2026-07-05 (moved)",
    ]
    assert _case(db, "LDN-OLD").pathway_version == 1
    done = run(*args, "--at", "2026-02-01", "--json", *COORDINATOR)
    (upgrade,) = json.loads(done.stdout)
    assert (upgrade["reference"], upgrade["applied"], upgrade["to_version"]) == ("LDN-OLD", True, 4)
    assert _case(db, "LDN-OLD").pathway_version == 4
    assert {d.name: d.due_on for d in _deadlines(db, "LDN-OLD")}["care_proceedings"] == dt.date(
        2026, 7, 5
    )
    denied = run(*args, *TM, code=1)
    assert "may not upgrade nim-uk-england" in denied.stderr


def test_case_upgrade_refuses_a_bad_stage_map(run: Run, db: str) -> None:
    """--map with a stage the new version lacks, or not OLD=NEW, exits 2 and writes nothing."""
    _v1_england_case(db, "LDN-MAP")
    args = ("case", "upgrade", "--pathway", "nim-uk-england", "--reason", "r", *COORDINATOR)
    wrong = run(*args, "--map", "referral=nowhere", code=2)
    assert "'nowhere' is not a stage" in wrong.stderr
    malformed = run(*args, "--map", "referral", code=2)
    assert "OLD=NEW" in malformed.stderr
    assert _case(db, "LDN-MAP").pathway_version == 1


def test_extend_an_unknown_deadline_is_bad_input(run: Run) -> None:
    """A deadline name the pathway does not have exits 2."""
    _open(run)
    result = run("case", "extend", "LDN-1", "nonsense", "--reason", "r", *TM, code=2)
    assert result.stderr.startswith("error: ")
    assert "'nonsense'" in result.stderr


def test_case_show_prints_timeline_deadlines_pauses_and_audit(run: Run) -> None:
    """`case show` prints stages in local time with working days, deadlines, pauses, audit."""
    _to_assessment(run)
    run(
        "case", "record", "LDN-1", "--fact", "entered_care_on=2026-01-10", "--at", "2026-01-12", *SW
    )
    run("case", "pause", "LDN-1", "--reason", "hospital", "--at", "2026-01-13", *COORDINATOR)
    out = run("case", "show", "LDN-1", "--at", "2026-02-02").stdout
    assert out.startswith("LDN-1  nim-uk-england v4  site london (Europe/London)\n")
    assert "stage: Assessment since 2026-01-08 12:00 GMT (version 4)" in out
    assert "paused since 2026-01-13 12:00 GMT" in out
    assert "Referral    2026-01-05 12:00 GMT  2026-01-08 12:00 GMT  3" in out
    assert "referral_decision (stage Referral): due on 2026-01-19, met 2026-01-08 12:00 GMT" in out
    assert "lac_review (statutory clock): due on 2026-02-06, open" in out
    assert "2026-01-13 12:00 GMT -> still paused" in out
    for section in ("Timeline", "Deadlines", "Pauses", "Audit trail"):
        assert f"\n{section}\n" in out
    assert "pc-001" in out
    assert "reason: hospital" in out


def test_case_show_includes_each_deadlines_explanation(run: Run, db: str) -> None:
    """Every explanation line of every deadline appears under it in `case show`."""
    _open(run)
    out = run("case", "show", "LDN-1", "--at", "2026-01-06").stdout
    for deadline in _deadlines(db):
        for line in deadline.explain().lines():
            assert f"      {line}\n" in out
    assert "      rule: referral_decision: 10 working_days" in out


def test_case_show_json_has_the_timeline_and_explanations(run: Run) -> None:
    """`case show --json` gives the case, history, deadlines with explanations and audit."""
    _to_assessment(run)
    data = json.loads(run("case", "show", "LDN-1", "--json", "--at", "2026-01-09").stdout)
    assert set(data) == {"case", "timezone", "history", "deadlines", "pauses", "audit"}
    assert data["case"]["stage"] == "assessment"
    assert [i["stage"] for i in data["history"]] == ["referral", "assessment"]
    assert data["history"][0]["entered_at"] == "2026-01-05T12:00:00+00:00"
    assert data["deadlines"][0]["explanation"][0].startswith("clock started 2026-01-05")
    assert [e["action"] for e in data["audit"]] == ["opened", "transition"]


# -- listings -------------------------------------------------------------------------------------

CASE_KEYS = {
    "reference", "pathway", "pathway_version", "site", "stage", "version", "opened_at",
    "stage_entered_at", "paused", "closed_at", "outcome", "worker", "facts", "days_in_stage",
    "working_days_in_stage",
}  # fmt: skip
DEADLINE_KEYS = {
    "reference", "site", "deadline", "kind", "occurrence", "stage", "deadline_stage", "due_on",
    "due_at", "status", "settled_at", "extensions",
}  # fmt: skip


def test_cases_table_shows_stage_and_days_in_it(run: Run) -> None:
    """`cases` lists open cases with calendar and working days in their stage."""
    _to_assessment(run, "LDN-1")
    _open(run, "GLA-1", site="glasgow")
    lines = run("cases", "--at", "2026-01-12").stdout.splitlines()
    assert lines[0].split() == [
        "reference", "site", "pathway", "stage", "since", "days", "working", "days", "worker",
        "state",
    ]  # fmt: skip
    # Oldest opened first; both opened on the 5th, so by reference.
    assert lines[1].split()[:6] == [
        "GLA-1", "glasgow", "nim-uk-scotland", "Referral", "2026-01-05", "7",
    ]  # fmt: skip
    assert lines[2].split() == [
        "LDN-1", "london", "nim-uk-england", "Assessment", "2026-01-08", "4", "2", "-", "open",
    ]  # fmt: skip


def test_cases_json_shape_from_the_group_and_the_command(run: Run) -> None:
    """`--json` works before and after the command and gives stable keys with ISO dates."""
    _to_assessment(run)
    for args in (("--json", "cases"), ("cases", "--json")):
        data = json.loads(run(*args, "--at", "2026-01-12").stdout)
        assert isinstance(data, list)
        assert set(data[0]) == CASE_KEYS
        assert data[0]["stage_entered_at"] == "2026-01-08T12:00:00+00:00"
        assert data[0]["days_in_stage"] == 4
        assert data[0]["working_days_in_stage"] == 2


def test_cases_filters_by_site_and_stage_and_all(run: Run) -> None:
    """--site and --stage filter; --all includes closed cases."""
    _to_assessment(run, "LDN-1")
    _open(run, "GLA-1", site="glasgow")
    run("case", "fire", "GLA-1", "withdraw", "--reason", "moved", "--at", "2026-01-06", *TM)
    _open(run, "LDN-2")

    def refs(*args: str) -> list[str]:
        return [c["reference"] for c in json.loads(run("cases", "--json", *args).stdout)]

    assert refs() == ["LDN-1", "LDN-2"]
    assert refs("--stage", "referral") == ["LDN-2"]
    assert refs("--site", "glasgow") == []
    assert refs("--site", "glasgow", "--all") == ["GLA-1"]
    table = run("cases", "--all", "--site", "glasgow").stdout
    assert "closed (withdrawn)" in table


def test_cases_with_none_says_so(run: Run) -> None:
    """An empty listing says so in a table and is an empty list in JSON."""
    assert run("cases").stdout == "no open cases\n"
    assert json.loads(run("cases", "--json").stdout) == []


def test_due_lists_deadlines_within_the_window(run: Run) -> None:
    """`due --within` takes days or weeks and prints days left in the site's dates."""
    _open(run)
    assert run("due", "--within", "7d", "--at", "2026-01-06").stdout == "nothing due\n"
    lines = run("due", "--within", "2w", "--at", "2026-01-06").stdout.splitlines()
    assert lines[0].split() == ["reference", "site", "deadline", "stage", "due", "on", "days",
                                "left"]  # fmt: skip
    assert lines[1].split() == ["LDN-1", "london", "referral_decision", "Referral", "2026-01-19",
                                "13"]  # fmt: skip


def test_due_json_shape(run: Run) -> None:
    """`due --json` gives one object per deadline with stable keys and days_left."""
    _open(run)
    data = json.loads(run("--json", "due", "--within", "14d", "--at", "2026-01-06").stdout)
    assert len(data) == 1
    assert set(data[0]) == DEADLINE_KEYS | {"days_left"}
    assert data[0]["due_on"] == "2026-01-19"
    assert data[0]["due_at"] == "2026-01-20T00:00:00+00:00"
    assert data[0]["days_left"] == 13


def test_due_rejects_a_bad_window(run: Run) -> None:
    """A window that is not Nd or Nw exits 2."""
    result = run("due", "--within", "3 months", code=2)
    assert "write days as 14d or weeks as 2w" in result.stderr


def test_overdue_lists_past_deadlines(run: Run) -> None:
    """`overdue` prints days overdue, table and JSON, filtered by site."""
    _open(run)
    _open(run, "GLA-1", site="glasgow")
    table = run("overdue", "--site", "london", "--at", "2026-01-23").stdout.splitlines()
    assert table[0].split()[-2:] == ["days", "overdue"]
    assert table[1].split() == ["LDN-1", "london", "referral_decision", "Referral", "2026-01-19",
                                "4"]  # fmt: skip
    assert len(table) == 2
    data = json.loads(run("overdue", "--json", "--at", "2026-01-23").stdout)
    assert {d["reference"] for d in data} == {"LDN-1", "GLA-1"}
    assert set(data[0]) == DEADLINE_KEYS | {"days_overdue"}
    assert run("overdue", "--at", "2026-01-10").stdout == "nothing overdue\n"


def _late_and_pending(run: Run) -> None:
    """LDN-1's referral decision due Mon 19 January 2026, LDN-2's due Mon 26 January."""
    _open(run, "LDN-1")
    _open(run, "LDN-2", at="2026-01-12")


def test_a_deadline_past_due_reads_overdue_in_case_show_text_and_json(run: Run) -> None:
    """`case show` says overdue, as of --at, where the deadline is open and past due."""
    _late_and_pending(run)
    text = run("case", "show", "LDN-1", "--at", "2026-01-23").stdout
    assert "referral_decision (stage Referral): due on 2026-01-19, overdue\n" in text
    before = run("case", "show", "LDN-1", "--at", "2026-01-12").stdout
    assert "referral_decision (stage Referral): due on 2026-01-19, open\n" in before
    data = json.loads(run("case", "show", "LDN-1", "--json", "--at", "2026-01-23").stdout)
    assert [d["status"] for d in data["deadlines"]] == ["overdue"]


def test_overdue_json_says_overdue_with_the_days_overdue(run: Run) -> None:
    """`overdue --json` gives status overdue beside positive days_overdue."""
    _late_and_pending(run)
    data = json.loads(run("overdue", "--json", "--at", "2026-01-23").stdout)
    assert [(d["reference"], d["status"], d["days_overdue"]) for d in data] == [
        ("LDN-1", "overdue", 4)
    ]


def test_due_leaves_out_what_is_overdue_by_default(run: Run) -> None:
    """`due` lists only what is not yet overdue: status open, days left never negative."""
    _late_and_pending(run)
    lines = run("due", "--at", "2026-01-23").stdout.splitlines()
    assert lines[0].split()[-2:] == ["days", "left"]
    assert [line.split() for line in lines[1:]] == [
        ["LDN-2", "london", "referral_decision", "Referral", "2026-01-26", "3"]
    ]
    data = json.loads(run("due", "--json", "--at", "2026-01-23").stdout)
    assert [(d["reference"], d["status"], d["days_left"]) for d in data] == [("LDN-2", "open", 3)]


def test_due_with_include_overdue_adds_them_in_one_days_column_that_reads_right(
    run: Run,
) -> None:
    """`due --include-overdue` lists overdue ones first: "4 overdue" beside "3 left"."""
    _late_and_pending(run)
    lines = run("due", "--include-overdue", "--at", "2026-01-23").stdout.splitlines()
    assert lines[0].split() == ["reference", "site", "deadline", "stage", "due", "on", "days"]
    assert [line.split() for line in lines[1:]] == [
        ["LDN-1", "london", "referral_decision", "Referral", "2026-01-19", "4", "overdue"],
        ["LDN-2", "london", "referral_decision", "Referral", "2026-01-26", "3", "left"],
    ]
    data = json.loads(run("due", "--include-overdue", "--json", "--at", "2026-01-23").stdout)
    assert [set(d) - DEADLINE_KEYS for d in data] == [{"days_overdue"}, {"days_left"}]
    assert [(d["reference"], d["status"]) for d in data] == [
        ("LDN-1", "overdue"),
        ("LDN-2", "open"),
    ]
    assert (data[0]["days_overdue"], data[1]["days_left"]) == (4, 3)
    # The same deadline reads the same in `due --include-overdue` and in `overdue`.
    overdue = json.loads(run("overdue", "--json", "--at", "2026-01-23").stdout)
    assert overdue == data[:1]
    help_text = run("due", "--help").stdout
    assert "--include-overdue" in help_text


def test_no_json_listing_says_open_beside_negative_days(run: Run) -> None:
    """Across case show, due and overdue, an open status never comes with days past due."""
    _late_and_pending(run)
    at = ("--at", "2026-01-27")  # both overdue by now
    outputs = [
        json.loads(run("due", "--include-overdue", "--json", *at).stdout),
        json.loads(run("overdue", "--json", *at).stdout),
        *(
            json.loads(run("case", "show", ref, "--json", *at).stdout)["deadlines"]
            for ref in ("LDN-1", "LDN-2")
        ),
    ]
    rows = [row for output in outputs for row in output]
    assert len(rows) == 6
    assert {row["status"] for row in rows} == {"overdue"}
    assert all(row.get("days_left", 0) >= 0 for row in rows)
    assert json.loads(run("due", "--json", *at).stdout) == []


# -- sites ----------------------------------------------------------------------------------------

UNKNOWN_LONDON = (
    "error: unknown site 'London'; did you mean 'london'? "
    "(declared sites: glasgow, jefferson-parish, london)\n"
)


def test_site_list_prints_the_declared_sites(run: Run) -> None:
    """`site list` prints each declared site: id, pathways, calendar, zone, closures, title."""
    lines = run("site", "list").stdout.splitlines()
    assert lines[0].split() == [
        "id", "pathways", "calendar", "time", "zone", "closure", "days", "title",
    ]  # fmt: skip
    assert [line.split()[:4] for line in lines[1:]] == [
        ["glasgow", "best-facs-glasgow,nim-uk-scotland", "scotland", "Europe/London"],
        ["jefferson-parish", "nim-us-louisiana", "louisiana", "America/Chicago"],
        ["london", "best-sau-london,nim-uk-england", "england-and-wales", "Europe/London"],
    ]
    assert lines[3].split()[4:] == ["0", "London", "Infant", "and", "Family", "Team"]


def test_site_list_json_gives_identifiers(run: Run) -> None:
    """`site list --json` (or `--json site list`) gives each site's id, pathways and zone."""
    for args in (("site", "list", "--json"), ("--json", "site", "list")):
        data = json.loads(run(*args).stdout)
        assert [site["id"] for site in data] == ["glasgow", "jefferson-parish", "london"]
        assert data[2] == {
            "id": "london",
            "title": "London Infant and Family Team",
            "pathways": ["best-sau-london", "nim-uk-england"],
            "calendar": "england-and-wales",
            "timezone": "Europe/London",
            "closure_days": 0,
            "source": nw.bundled_sites()["london"].source,
            "closure_source": None,
        }


@pytest.mark.parametrize(
    "args",
    [
        ("cases", "--site", "London"),
        ("due", "--site", "London"),
        ("overdue", "--site", "London"),
        ("case", "open", "LDN-1", "--pathway", "nim-uk-england", "--site", "London", *SW),
        ("staff", "add", "sw-9", "--role", "social_worker", "--site", "London",
         "--actor", "admin-1"),
    ],
    ids=["cases", "due", "overdue", "case-open", "staff-add"],
)  # fmt: skip
def test_an_unknown_site_option_is_bad_input_with_a_suggestion(
    run: Run, args: tuple[str, ...]
) -> None:
    """Every --site refuses a typo: exit 2, one line naming the nearest declared site."""
    result = run(*args, code=2)
    assert result.stdout == ""
    # staff add names the argument it read the site from: "error: sites: unknown site ...".
    prefix = "error: sites: " if args[0] == "staff" else "error: "
    assert result.stderr == prefix + UNKNOWN_LONDON.removeprefix("error: ")


def test_report_refuses_an_unknown_site_and_writes_nothing(run: Run, tmp_path: Path) -> None:
    """`report --site nowhere` exits 2 naming the declared sites and writes no file."""
    target = tmp_path / "report.html"
    result = run("report", "--html", str(target), "--site", "nowhere", code=2)
    assert result.stderr == (
        "error: unknown site 'nowhere' (declared sites: glasgow, jefferson-parish, london)\n"
    )
    assert not target.exists()


def test_case_open_at_an_unknown_site_opens_nothing(run: Run, db: str) -> None:
    """A typo in `case open --site` is caught before the roster check, and no case is made."""
    result = run(
        "case", "open", "X-1", "--pathway", "nim-uk-england", "--site", "narnia", *SW, code=2
    )  # fmt: skip
    assert result.stderr.startswith("error: unknown site 'narnia' (declared sites: ")
    with nw.Engine(db) as engine:
        assert engine.cases(open_only=False) == []


def test_case_open_on_a_pathway_the_site_does_not_run_is_bad_input(run: Run) -> None:
    """Opening a Scottish case at London exits 2 naming the pathways London runs."""
    result = run(
        "case", "open", "X-1", "--pathway", "nim-uk-scotland", "--site", "london", *SW, code=2
    )  # fmt: skip
    assert result.stderr == (
        "error: site 'london' does not run pathway 'nim-uk-scotland'; it runs best-sau-london, "
        "nim-uk-england\n"
    )


# -- worker ---------------------------------------------------------------------------------------


def test_worker_once_fires_what_is_due(run: Run) -> None:
    """`worker --once` fires reminders, breaches and escalations once and prints them."""
    _open(run)
    # The referral decision is due Mon 19 January, its reminder on Wed 14 January.
    lines = run("worker", "--once", "--at", "2026-01-15").stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["reminder"]
    lines = run("worker", "--once", "--at", "2026-01-21").stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["breach", "escalation"]
    assert lines[1].endswith("referral_decision to team_manager, due on 2026-01-19")
    assert run("worker", "--once", "--at", "2026-01-21").stdout == "nothing due\n"


def test_worker_once_refuses_the_future_unless_asked(run: Run) -> None:
    """`worker --once --at` after now exits 2; with --allow-future it simulates that time."""
    _open(run, at=dt.date.today().isoformat())
    later = (dt.date.today() + dt.timedelta(days=40)).isoformat()
    refused = run("worker", "--once", "--at", later, code=2)
    assert "allow_future" in refused.stderr
    fired = run("worker", "--once", "--allow-future", "--at", later).stdout.splitlines()
    assert [line.split()[2] for line in fired] == ["breach", "escalation"]


def test_worker_once_json(run: Run) -> None:
    """`worker --once --json` gives the fired events as objects."""
    _open(run)
    data = json.loads(run("worker", "--once", "--json", "--at", "2026-01-21").stdout)
    # Caught up after the due date: the reminder lapses, the breach and escalation fire.
    assert [e["kind"] for e in data] == ["breach", "escalation"]
    assert set(data[0]) == {"kind", "reference", "at", "seq", "detail"}
    assert data[0]["detail"]["deadline"] == "referral_decision"


def test_worker_at_needs_once(run: Run) -> None:
    """`--at` without `--once` is a usage error."""
    run("worker", "--at", "2026-01-21", code=2)


def test_worker_stops_cleanly_on_sigterm(db: str) -> None:
    """The long-running worker stops its scheduler and exits 0 on SIGTERM."""
    code = "import sys; from nim_workflow._cli import main; sys.exit(main())"
    with subprocess.Popen(
        [sys.executable, "-c", code, "--db", db, "worker", "--sweep", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("worker started on ")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip().endswith("worker stopped")


# -- demo and report (present once their modules are) ---------------------------------------------


def _module_with(name: str, *functions: str) -> Any:
    module = pytest.importorskip(name)
    missing = [f for f in functions if not hasattr(module, f)]
    if missing:
        pytest.skip(f"{name} has no {', '.join(missing)} yet")
    return module


def test_report_writes_the_html_file(run: Run, tmp_path: Path) -> None:
    """`report --html` writes the coordinator's report to the file."""
    _module_with("nim_workflow._report", "build_report")
    _to_assessment(run)
    target = tmp_path / "report.html"
    result = run("report", "--html", str(target))
    assert result.stdout == f"report written to {target}\n"
    assert "<html" in target.read_text(encoding="utf-8").lower()


def test_report_to_an_unwritable_path_is_one_error_line(run: Run, tmp_path: Path) -> None:
    """A report file that cannot be written gives one error line and exit 2."""
    _module_with("nim_workflow._report", "build_report")
    target = tmp_path / "missing-folder" / "report.html"
    result = run("report", "--html", str(target), code=2)
    assert result.stderr.startswith(f"error: cannot write the report to {target}")


@pytest.mark.slow
def test_demo_prints_the_summary_and_writes_the_report(tmp_path: Path) -> None:
    """`demo` runs the simulated cohort on its own database and writes the report."""
    _module_with("nim_workflow._demo", "run_demo")
    _module_with("nim_workflow._report", "format_summary")
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    html = tmp_path / "demo.html"
    result = CliRunner().invoke(main, ["demo", "--db", url, "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(f"report: {html}")
    assert html.is_file()


def test_demo_without_its_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the demo cannot be imported, `demo` says so on one line instead of a traceback."""
    monkeypatch.setitem(sys.modules, "nim_workflow._demo", None)
    result = CliRunner().invoke(main, ["demo", "--db", "sqlite://", "--html", "x.html"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the demo is not available in this installation: ")
    assert result.stderr.count("\n") == 1


def test_control_characters_stored_by_other_means_are_escaped_in_output(run: Run, db: str) -> None:
    """A reference holding terminal escapes or a bidi override prints as visible escapes."""
    _open(run)
    raw = "LDN-1\x1b[2J\u202e"
    bind = sa.create_engine(db)
    with bind.begin() as conn:
        # A copy of the case under the hostile reference, written past the engine's door.
        row = conn.execute(sa.select(cases).where(cases.c.reference == "LDN-1")).one()
        conn.execute(cases.insert().values({**row._mapping, "reference": raw}))
        for interval in conn.execute(
            sa.select(stage_intervals).where(stage_intervals.c.reference == "LDN-1")
        ).all():
            copied = {k: v for k, v in interval._mapping.items() if k != "id"}
            conn.execute(stage_intervals.insert().values({**copied, "reference": raw}))
    bind.dispose()
    out = run("cases").stdout
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "LDN-1\\u001b[2J\\u202e" in out


def test_due_within_more_than_ten_years_is_refused(run: Run) -> None:
    """`due --within 999999999d` exits 2 instead of overflowing."""
    result = run("due", "--within", "999999999d", code=2)
    assert "more than 3650 days" in result.stderr


# -- one fact syntax, --json everywhere, --at as a view of the past, stage titles ----------------


def test_case_record_takes_facts_with_the_fact_option(run: Run, db: str) -> None:
    """`case record --fact NAME=VALUE` (repeatable) records typed facts, as `case open` takes."""
    _open(run)
    result = run(
        "case", "record", "LDN-1", "--fact", "entered_care_on=2026-01-02",
        "--fact", "consent_recorded=false", "--at", "2026-01-06", *SW,
    )  # fmt: skip
    assert result.stdout == (
        "LDN-1: recorded consent_recorded=false, entered_care_on=2026-01-02 (version 2)\n"
    )
    assert result.stderr == ""
    facts = _case(db).facts
    assert (facts["entered_care_on"], facts["consent_recorded"]) == (dt.date(2026, 1, 2), False)
    help_text = run("case", "record", "--help").stdout
    assert "--fact NAME=VALUE" in help_text
    assert "Usage: main case record [OPTIONS] REFERENCE\n" in help_text


def test_case_record_positional_facts_still_work_with_a_deprecation_line(run: Run, db: str) -> None:
    """The old `case record REF NAME=VALUE` records, and warns on stderr that it is going."""
    _open(run)
    result = run("case", "record", "LDN-1", "entered_care_on=2026-01-02", "--at", "2026-01-06", *SW)
    assert result.stdout == "LDN-1: recorded entered_care_on=2026-01-02 (version 2)\n"
    assert result.stderr.startswith("warning: `case record REFERENCE NAME=VALUE` is deprecated")
    assert "--fact NAME=VALUE" in result.stderr
    assert _case(db).facts["entered_care_on"] == dt.date(2026, 1, 2)


def test_case_record_without_a_fact_is_a_usage_error(run: Run) -> None:
    """`case record REF` with no fact exits 2 and says how to give one."""
    _open(run)
    result = run("case", "record", "LDN-1", *SW, code=2)
    assert "--fact NAME=VALUE" in result.stderr


def _leaf_commands(group: Any = main, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every command under the group, walked recursively, as its words."""
    found: set[tuple[str, ...]] = set()
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found |= _leaf_commands(command, (*path, name))
        else:
            found.add((*path, name))
    return found


#: --json is refused (exit 2) by these uses of a command; every other command honours it.
JSON_REFUSED = {("worker",)}


def _fake_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for the slow simulation; the command's own printing is what is under test."""
    demo = pytest.importorskip("nim_workflow._demo")
    summary = pytest.importorskip("nim_workflow._report").Summary

    def run_demo(url: str, *, html: str, progress: Any = None) -> Any:
        counts = demo.DemoCounts(
            cases=0, open_cases=0, closed_cases=0, transitions=0, events={"opened": 0},
            deadlines_met=0, deadlines_missed=0, paused_cases=0, extensions=0, withdrawn=0,
        )  # fmt: skip
        now = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
        return demo.DemoResult(
            url=url, as_of=now, counts=counts, summary=summary(at=now, sites=(), pathway_ids=()),
            html=Path(html), operator="admin-1",
        )  # fmt: skip

    monkeypatch.setattr(demo, "run_demo", run_demo)


def _json_calls(tmp_path: Path) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """One use of every command, in an order where each finds what it needs."""
    key = tmp_path / "signing.pem"
    return [
        (("db", "upgrade"), ()),
        (("pathway", "validate"), (str(BUNDLED[0]),)),
        (("pathway", "show"), ("nim-uk-england",)),
        (("site", "list"), ()),
        (("staff", "list"), ()),
        (("staff", "add"), ("sw-900", "--role", "social_worker", "--site", "london",
                            "--actor", "admin-1")),
        (("staff", "remove"), ("sw-900", "--actor", "admin-1")),
        (("case", "open"), ("LDN-9", "--pathway", "nim-uk-england", "--site", "london",
                            "--fact", "consent_recorded=true", "--at", "2026-01-05", *SW)),
        (("case", "record"), ("LDN-9", "--fact", "entered_care_on=2026-01-02",
                              "--at", "2026-01-06", *SW)),
        (("case", "extend"), ("LDN-9", "referral_decision", "--reason", "records",
                              "--at", "2026-01-06", *TM)),
        (("case", "pause"), ("LDN-9", "--reason", "hospital", "--at", "2026-01-07",
                             *COORDINATOR)),
        (("case", "resume"), ("LDN-9", "--at", "2026-01-08", *COORDINATOR)),
        (("case", "fire"), ("LDN-9", "accept_referral", "--at", "2026-01-09", *TM)),
        (("case", "assign"), ("LDN-9", "--worker", "sw-017", "--at", "2026-01-09T15:00Z", *TM)),
        (("case", "show"), ("LDN-9",)),
        (("case", "upgrade"), ("--pathway", "nim-uk-england", "--reason", "check", "--dry-run",
                               *COORDINATOR)),
        (("family", "open"), ("FAM-9", "--site", "london", "--child", "LDN-9", "--child", "LDN-8",
                              "--fact", "consent_recorded=true", "--at", "2026-01-09T16:00Z",
                              *SW)),
        (("family", "add-child"), ("FAM-9", "LDN-7", "--at", "2026-01-09T16:00Z", *SW)),
        (("family", "show"), ("FAM-9",)),
        (("family", "list"), ()),
        (("family", "allocate"), ("FAM-9", "--arm", "nim", "--allocation-id", "BEST-9",
                                  "--at", "2026-01-10", *COORDINATOR)),
        (("family", "pause"), ("FAM-9", "--reason", "hospital", "--at", "2026-01-11",
                               *COORDINATOR)),
        (("family", "resume"), ("FAM-9", "--at", "2026-01-12", *COORDINATOR)),
        (("family", "fire"), ("FAM-9", "withdraw", "--reason", "moved away",
                              "--at", "2026-01-13", *TM)),
        (("family", "visit"), ("FAM-9", "baseline", "--child", "LDN-9", "--held-on",
                               "2026-02-10", "--at", "2026-02-10", *COORDINATOR)),
        (("family", "status"), ("FAM-9", "completed", "--at", "2026-02-11", *COORDINATOR)),
        (("cases",), ()),
        (("caseload",), ()),
        (("due",), ()),
        (("overdue",), ()),
        (("report",), ("--html", str(tmp_path / "report.html"))),
        (("export",), ("--out", str(tmp_path / "export"), "--no-pseudonymise")),
        (("audit", "keygen"), ("--private", str(key), "--public", str(tmp_path / "pub.pem"))),
        (("audit", "checkpoint"), ("--signing-key", str(key))),
        (("audit", "verify"), ()),
        (("worker",), ()),
        (("demo",), ("--db", f"sqlite:///{tmp_path / 'demo.db'}",
                     "--html", str(tmp_path / "demo.html"))),
    ]  # fmt: skip


@pytest.mark.parametrize("where", ["group", "command"])
def test_every_command_honours_or_refuses_json(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Walking every command: --json gives one JSON document, or exit 2 saying why; never text."""
    _fake_demo(monkeypatch)
    calls = _json_calls(tmp_path)
    assert {words for words, _ in calls} == _leaf_commands()
    for words, args in calls:
        argv = ("--json", *words, *args) if where == "group" else (*words, *args, "--json")
        refused = words in JSON_REFUSED
        result = run(*argv, code=2 if refused else 0)
        if refused:
            assert "--json is not available" in result.stderr, words
            assert result.stdout == "", words
        else:
            json.loads(result.stdout)  # one document, nothing else on stdout


def test_json_of_state_changing_commands_keeps_identifiers(run: Run) -> None:
    """`case open|fire --json` give the case by identifiers: stage ids, not titles."""
    opened = json.loads(
        run(
            "case", "open", "LDN-1", "--pathway", "nim-uk-england", "--site", "london",
            "--fact", "consent_recorded=true", "--at", "2026-01-05", "--json", *SW,
        ).stdout
    )  # fmt: skip
    assert (opened["reference"], opened["stage"], opened["version"]) == ("LDN-1", "referral", 1)
    fired = json.loads(
        run("case", "fire", "LDN-1", "accept_referral", "--at", "2026-01-08", "--json", *TM).stdout
    )
    assert (fired["from_stage"], fired["stage"], fired["trigger"]) == (
        "referral", "assessment", "accept_referral",
    )  # fmt: skip


def test_pathway_show_json_and_its_refusal_with_mermaid() -> None:
    """`pathway show --json` gives stages with ids and titles; with --format mermaid it exits 2."""
    result = CliRunner().invoke(main, ["pathway", "show", "nim-uk-england", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id"] == "nim-uk-england"
    assert {"id": "referral", "title": "Referral", "initial": True, "final": False} in (
        data["stages"]
    )
    refused = CliRunner().invoke(
        main, ["pathway", "show", "nim-uk-england", "--format", "mermaid", "--json"]
    )
    assert refused.exit_code == 2
    assert "--json is not available with --format mermaid" in refused.stderr


def test_pathway_validate_json_lists_each_file(tmp_path: Path) -> None:
    """`pathway validate --json` gives each file's verdict and problems; exit 2 if any is bad."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["pathway", "validate", str(BUNDLED[0]), str(bad), "--json"])
    assert result.exit_code == 2
    good, broken = json.loads(result.stdout)
    assert (good["ok"], broken["ok"]) == (True, False)
    assert broken["problems"]
    assert all(str(bad) in p for p in broken["problems"])


def test_report_json_says_where_and_counts(run: Run, tmp_path: Path) -> None:
    """`report --json` names the file written and gives the summary's counts per site."""
    _module_with("nim_workflow._report", "summarize")
    _to_assessment(run)
    target = tmp_path / "report.html"
    data = json.loads(run("report", "--html", str(target), "--json").stdout)
    assert data["html"] == str(target)
    assert target.is_file()
    (london,) = data["summary"]["sites"]
    assert (london["site"], london["opened"], london["open"]) == ("london", 1, 1)
    assert london["open_by_stage"] == {"assessment": 1}


def test_report_refuses_a_past_at(run: Run, tmp_path: Path) -> None:
    """`report --at` in the past exits 2: the report reads the cases as they are now."""
    target = tmp_path / "report.html"
    result = run("report", "--html", str(target), "--at", "2026-02-01", code=2)
    assert "--at cannot be in the past" in result.stderr
    assert not target.exists()


def test_worker_json_needs_once(run: Run) -> None:
    """`worker --once --json` prints a JSON list; `worker --json` (runs until stopped) exits 2."""
    assert json.loads(run("worker", "--once", "--json").stdout) == []
    refused = run("worker", "--json", code=2)
    assert "--json is not available without --once" in refused.stderr


def _moving_cohort(run: Run) -> None:
    """Four London cases: LDN-1 moves on (8th), LDN-3 closes (9th), LDN-4 opens late (12th).

    LDN-2 stays in referral, paused from the 6th to the 7th.
    """
    for reference in ("LDN-1", "LDN-2", "LDN-3"):
        _open(run, reference)
    _open(run, "LDN-4", at="2026-01-12")
    run("case", "fire", "LDN-1", "accept_referral", "--at", "2026-01-08", *TM)
    run(
        "case", "fire", "LDN-3", "withdraw", "--reason", "family moved", "--at", "2026-01-09", *TM
    )  # fmt: skip
    run("case", "pause", "LDN-2", "--reason", "hospital", "--at", "2026-01-06", *COORDINATOR)
    run("case", "resume", "LDN-2", "--at", "2026-01-07", *COORDINATOR)


def test_cases_at_shows_the_cases_as_they_were(run: Run) -> None:
    """`cases --at` in the past: the stage then, days up to then, only cases opened by then."""
    _moving_cohort(run)
    then = {
        c["reference"]: c
        for c in json.loads(run("cases", "--json", "--at", "2026-01-07T18:00Z").stdout)
    }
    assert set(then) == {"LDN-1", "LDN-2", "LDN-3"}  # LDN-4 was not opened yet
    assert [then[r]["stage"] for r in ("LDN-1", "LDN-2", "LDN-3")] == ["referral"] * 3
    assert then["LDN-1"]["days_in_stage"] == 2
    # LDN-1 left referral later; its working days up to then equal LDN-3's, which also had not.
    assert then["LDN-1"]["working_days_in_stage"] == then["LDN-3"]["working_days_in_stage"]
    assert then["LDN-3"]["closed_at"] is None
    assert then["LDN-3"]["outcome"] is None
    assert (then["LDN-2"]["paused"], then["LDN-1"]["paused"]) == (False, False)
    assert json.loads(run("cases", "--json", "--at", "2026-01-06T18:00Z").stdout)[1]["paused"]
    # What the case is now (its facts, its version) is not claimed for the past.
    assert (then["LDN-1"]["facts"], then["LDN-1"]["version"]) == (None, None)
    later = json.loads(run("cases", "--json", "--at", "2026-01-12T18:00Z").stdout)
    assert [c["reference"] for c in later] == ["LDN-1", "LDN-2", "LDN-4"]  # LDN-3 closed by then
    assert later[0]["stage"] == "assessment"
    with_closed = json.loads(run("cases", "--all", "--json", "--at", "2026-01-12T18:00Z").stdout)
    assert with_closed[2]["outcome"] == "withdrawn"
    table = run("cases", "--stage", "referral", "--at", "2026-01-07T18:00Z").stdout
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["LDN-1", "LDN-2", "LDN-3"]
    assert "Referral" in table


def test_due_and_overdue_refuse_a_past_at_before_a_later_change(run: Run) -> None:
    """`due`/`overdue --at` before a listed case changed exit 2: the deadline met since is gone."""
    _open(run)  # referral_decision due Mon 19 January 2026
    assert json.loads(run("overdue", "--json", "--at", "2026-01-21").stdout)[0]["reference"] == (
        "LDN-1"
    )
    run("case", "fire", "LDN-1", "accept_referral", "--at", "2026-01-22", *TM)  # met late
    for command in ("due", "overdue"):
        refused = run(command, "--at", "2026-01-21", code=2)
        assert "--at 2026-01-21T12:00:00+00:00 is before the latest change" in refused.stderr
        assert "(transition on LDN-1" in refused.stderr
    assert run("overdue", "--at", "2026-01-23").stdout == "nothing overdue\n"
    assert run("due", "--at", "2026-01-23", "--site", "glasgow").stdout == "nothing due\n"


def test_case_show_refuses_a_past_at_before_the_case_last_changed(run: Run) -> None:
    """`case show --at` before the case's last change (or its opening) exits 2 saying why."""
    _to_assessment(run)  # opened on the 5th, moved on the 8th
    refused = run("case", "show", "LDN-1", "--at", "2026-01-06", code=2)
    assert "before LDN-1's last change (transition" in refused.stderr
    assert "cases --at" in refused.stderr
    early = run("case", "show", "LDN-1", "--at", "2026-01-01", code=2)
    assert "LDN-1 was opened 2026-01-05 12:00 GMT, after --at" in early.stderr
    assert "stage: Assessment since" in run("case", "show", "LDN-1", "--at", "2026-01-09").stdout


def test_text_output_names_stages_by_title_and_json_by_id(run: Run) -> None:
    """Text shows the pathway's stage titles; JSON keeps the stage ids."""
    run(
        "case", "open", "LDN-1", "--pathway", "nim-uk-england", "--site", "london",
        "--fact", "consent_recorded=true", *SW,
    )  # fmt: skip
    run("case", "fire", "LDN-1", "accept_referral", *TM)
    assert " Assessment " in run("cases").stdout
    assert json.loads(run("cases", "--json").stdout)[0]["stage"] == "assessment"
    assert "Referral -> Assessment" in run("case", "show", "LDN-1").stdout


# -- caseloads ------------------------------------------------------------------------------------


def test_case_assign_gives_the_case_to_a_worker_and_shows_it_everywhere(run: Run, db: str) -> None:
    """assign, then cases --worker, case show, the audit trail and the caseload all agree."""
    _open(run, "LDN-1")
    _open(run, "LDN-2", at="2026-01-06")
    out = run("case", "assign", "LDN-1", "--worker", "sw-017", "--at", "2026-01-07", *TM)
    assert out.stdout == "LDN-1: held by sw-017\n"
    assert _case(db, "LDN-1").worker == "sw-017"
    listed = json.loads(run("cases", "--worker", "sw-017", "--json").stdout)
    assert [(c["reference"], c["worker"]) for c in listed] == [("LDN-1", "sw-017")]
    table = run("cases").stdout.splitlines()
    assert "worker" in table[0].split()
    assert [line.split()[0] for line in table[1:] if "sw-017" in line] == ["LDN-1"]
    show = run("case", "show", "LDN-1").stdout
    assert "worker: sw-017" in show
    assert "worker: unassigned -> sw-017" in show
    assert "worker: unassigned" in run("case", "show", "LDN-2").stdout

    loads = json.loads(run("caseload", "--json").stdout)
    assert loads == [
        {
            "site": "london",
            "worker": "sw-017",
            "active": True,
            "cases": 1,
            "by_stage": {"referral": 1},
            "paused": 0,
            "overdue": loads[0]["overdue"],
        },
        {
            "site": "london",
            "worker": None,
            "active": True,
            "cases": 1,
            "by_stage": {"referral": 1},
            "paused": 0,
            "overdue": loads[1]["overdue"],
        },
    ]
    text = run("caseload", "--site", "london").stdout.splitlines()
    assert text[0].split() == [
        "site",
        "worker",
        "open",
        "cases",
        "paused",
        "overdue",
        "by",
        "stage",
    ]
    assert text[1].split()[:3] == ["london", "sw-017", "1"]
    assert text[1].endswith("Referral 1")
    assert text[2].split()[:3] == ["london", "(unassigned)", "1"]

    done = run("case", "assign", "LDN-1", "--unassign", "--reason", "on leave", "--json", *TM)
    assert json.loads(done.stdout)["worker"] is None


def test_case_assign_refusals_exit_with_the_contract_s_codes(run: Run, db: str) -> None:
    """A social worker may not assign (1, audited); a worker off the roster or site is bad input."""
    _open(run, "LDN-1")
    denied = run("case", "assign", "LDN-1", "--worker", "sw-017", *SW, code=1)
    assert "team_manager" in denied.stderr
    unknown = run("case", "assign", "LDN-1", "--worker", "sw-999", *TM, code=2)
    assert "sw-999 is not on the staff roster" in unknown.stderr
    elsewhere = run("case", "assign", "LDN-1", "--worker", "sw-gla", *TM, code=2)
    assert "sw-gla does not work at london" in elsewhere.stderr
    neither = run("case", "assign", "LDN-1", *TM, code=2)
    assert "--worker ID or --unassign" in neither.stderr
    both = run("case", "assign", "LDN-1", "--worker", "sw-017", "--unassign", *TM, code=2)
    assert "--worker ID or --unassign" in both.stderr
    assert _case(db, "LDN-1").worker is None
    with nw.Engine(db) as engine:
        actions = [e.action for e in engine.audit("LDN-1")]
    assert actions == ["opened", "denied"]


def test_cases_in_the_past_refuse_a_worker_filter(run: Run) -> None:
    _open(run, "LDN-1")
    refused = run("cases", "--at", "2026-01-06", "--worker", "sw-017", code=2)
    assert "cannot filter by --worker" in refused.stderr
    then = json.loads(run("cases", "--at", "2026-01-06", "--json").stdout)
    assert [(c["reference"], c["worker"]) for c in then] == [("LDN-1", None)]


def test_caseload_unknown_site_is_refused(run: Run) -> None:
    refused = run("caseload", "--site", "London", code=2)
    assert "london" in refused.stderr


def test_a_past_listing_names_the_newest_change_among_the_site_s_cases(run: Run) -> None:
    """The newest change decides (here an assignment); another site's cases do not count."""
    _open(run, "LDN-1")
    _open(run, "LDN-2", at="2026-01-06")
    _open(run, "GLA-1", site="glasgow", at="2026-01-06")
    run("case", "record", "LDN-1", "--fact", "entered_care_on=2026-01-02", "--at", "2026-01-08",
        *SW)  # fmt: skip
    run("case", "assign", "LDN-2", "--worker", "sw-017", "--at", "2026-01-09", *TM)
    refused = run("overdue", "--at", "2026-01-07", "--site", "london", code=2)
    assert "(assigned on LDN-2 at 2026-01-09T12:00:00+00:00)" in refused.stderr
    assert run("overdue", "--at", "2026-01-07", "--site", "glasgow").stdout == "nothing overdue\n"
