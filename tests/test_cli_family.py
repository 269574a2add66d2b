"""``nim-workflow family``: the trial's families from the command line.

As in ``test_cli.py``, the ``db`` fixture puts the people these tests act as on the staff roster
through the engine, and every command that changes something names one with ``--actor``: the
roles come from the roster, never from the command line.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

import nim_workflow as nw
from nim_workflow._cli import family as family_group
from nim_workflow._cli import main

SW = ("--actor", "sw-017")
TM = ("--actor", "tm-004")
COORDINATOR = ("--actor", "pc-001")
RESEARCHER = ("--actor", "rs-001")
#: Who the tests act as: (roles, sites), all put on the roster by ``admin-1``.
ROSTER: dict[str, tuple[set[str], set[str]]] = {
    "admin-1": ({"administrator"}, {"*"}),
    "pc-001": ({"coordinator"}, {"*"}),
    "sw-017": ({"social_worker"}, {"london"}),
    "tm-004": ({"team_manager"}, {"london"}),
    "rs-001": ({"researcher"}, {"london"}),
    "sw-gla": ({"social_worker"}, {"glasgow"}),
}
CLEAN_ENV: dict[str, str | None] = {
    "NIM_WORKFLOW_DB": None,
    "NIM_WORKFLOW_ACTOR": None,
    "NIM_WORKFLOW_SIGNING_KEY": None,
}

Run = Callable[..., Result]


@pytest.fixture
def db(db_url: str) -> str:
    """A migrated database (SQLite, then PostgreSQL) with the tests' staff roster."""
    result = CliRunner().invoke(main, ["--db", db_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    admin = nw.Actor("admin-1", roles={"administrator"})
    with nw.Engine(db_url) as engine:
        for staff_id, (roles, sites) in ROSTER.items():
            engine.add_staff(staff_id, roles=roles, sites=sites, actor=admin)
    return db_url


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


def _open(run: Run, reference: str = "FAM-1", *children: str) -> Result:
    """A London family of two children who entered care on 2 January 2026."""
    kids = children or ("LDN-1", "LDN-2")
    return run(
        "family", "open", reference, "--site", "london",
        *(part for child in kids for part in ("--child", child)),
        "--fact", "consent_recorded=true", "--fact", "entered_care_on=2026-01-02",
        "--at", "2026-01-05", *SW,
    )  # fmt: skip


def _allocate(run: Run, reference: str = "FAM-1", *, code: int = 0, **options: str) -> Result:
    arm = options.get("arm", "nim")
    allocation = options.get("allocation_id", "BEST-0001")
    actor = options.get("actor", "pc-001")
    return run(
        "family", "allocate", reference, "--arm", arm, "--allocation-id", allocation,
        "--at", "2026-01-06", "--actor", actor, code=code,
    )  # fmt: skip


def _family(db: str, reference: str = "FAM-1") -> nw.Family:
    with nw.Engine(db) as engine:
        return engine.family(reference)


def test_help_lists_the_family_commands() -> None:
    """`family --help` names every family command, and the top-level help names the group."""
    result = CliRunner().invoke(main, ["family", "--help"])
    assert result.exit_code == 0
    for command in ("open", "add-child", "show", "list", "allocate", "fire", "pause", "resume",
                    "status", "visit"):  # fmt: skip
        assert f"  {command} " in result.stdout
    assert "  family " in CliRunner().invoke(main, ["--help"]).stdout


def test_a_family_from_opening_to_withdrawal(run: Run, db: str) -> None:
    """open -> show -> allocate -> fire -> visit -> status -> show --json, all as one flow."""
    opened = _open(run)
    assert "opened family FAM-1 in trial best at london: status enrolled" in opened.stdout
    assert "children LDN-1, LDN-2" in opened.stdout

    before = run("family", "show", "FAM-1").stdout
    assert "arm: not allocated yet" in before
    assert "status: enrolled" in before
    assert before.count("(not opened until allocation)") == 2
    assert "the research visits are planned at allocation" in before

    allocated = _allocate(run).stdout
    assert "FAM-1: allocated to arm nim (allocation BEST-0001), randomised on 2026-01-06" in (
        allocated
    )
    assert "LDN-1: nim-uk-england" in allocated
    assert "stage Referral" in allocated
    # entered_care_on was parsed as a date, so the baseline windows are planned from it.
    assert "visit baseline for LDN-1: 2026-01-30 to 2026-04-10" in allocated

    fired = run("family", "fire", "FAM-1", "accept_referral", "--at", "2026-01-08", *TM).stdout
    assert "LDN-1: accept_referral: Referral -> Assessment" in fired
    assert "LDN-2: accept_referral: Referral -> Assessment" in fired

    held = run(
        "family", "visit", "FAM-1", "baseline", "--held-on", "2026-02-10", "--child", "LDN-1",
        "--at", "2026-02-10", *RESEARCHER,
    ).stdout  # fmt: skip
    assert held.strip() == "FAM-1: baseline held on 2026-02-10: LDN-1 in_window"

    status = run(
        "family", "status", "FAM-1", "withdrawn_consent", "--reason", "parents withdrew",
        "--at", "2026-03-01", *COORDINATOR,
    ).stdout  # fmt: skip
    assert "trial status randomised -> withdrawn_consent" in status
    assert "research visits stopped" in status

    shown = run("family", "show", "FAM-1").stdout
    assert "arm: nim (nim-uk-england), allocation BEST-0001, randomised on 2026-01-06" in shown
    assert "status: withdrawn_consent" in shown
    assert "Assessment" in shown
    assert "(not opened" not in shown
    assert "pending, stopped" in shown

    data = json.loads(run("family", "show", "FAM-1", "--json").stdout)
    assert data["family"]["arm"] == "nim"
    assert data["family"]["allocation_id"] == "BEST-0001"
    assert data["family"]["status"] == "withdrawn_consent"
    assert data["family"]["randomised_on"] == "2026-01-06"
    assert data["family"]["children"] == ["LDN-1", "LDN-2"]
    assert [c["case"]["stage"] for c in data["children"]] == ["assessment", "assessment"]
    visits = {(v["name"], v["subject"]): v for v in data["visits"]}
    assert visits["baseline", "LDN-1"]["held_on"] == "2026-02-10"
    assert visits["baseline", "LDN-1"]["status"] == "in_window"
    assert visits["baseline", "LDN-1"]["stopped"] is False
    assert visits["baseline", "LDN-2"]["stopped"] is True
    assert visits["month_30", "FAM-1"]["opens_on"] == "2028-05-06"

    listed = run("family", "list", "--site", "london").stdout.splitlines()
    assert listed[0].split() == ["reference", "site", "trial", "arm", "status", "children"]
    assert listed[1].split() == ["FAM-1", "london", "best", "nim", "withdrawn_consent", "2"]

    # The children's cases run on: withdrawing consent is not leaving the service.
    with nw.Engine(db) as engine:
        assert engine.case("LDN-1").is_open


def test_pause_resume_and_a_sibling_joining(run: Run) -> None:
    """pause/resume run on every child; a sibling added after allocation joins the arm."""
    _open(run)
    _allocate(run)
    paused = run("family", "pause", "FAM-1", "--reason", "in hospital", "--at", "2026-01-07", *TM)
    assert "FAM-1: paused LDN-1, LDN-2" in paused.stdout
    resumed = run("family", "resume", "FAM-1", "--at", "2026-01-09", "--json", *TM)
    assert [c["paused"] for c in json.loads(resumed.stdout)["cases"]] == [False, False]
    joined = run(
        "family", "add-child", "FAM-1", "LDN-3", "--fact", "consent_recorded=true",
        "--at", "2026-01-10", *SW,
    ).stdout  # fmt: skip
    assert "FAM-1: LDN-3 joined (3 children); on arm nim: nim-uk-england" in joined


def test_allocating_twice_is_refused_naming_the_arm(run: Run, db: str) -> None:
    """The portal's result is recorded once: a second allocation exits 1 naming the first arm."""
    _open(run)
    _allocate(run)
    again = _allocate(run, arm="comparator", allocation_id="BEST-0002", code=1)
    assert again.stderr.startswith("error: family FAM-1 is already allocated to arm 'nim'")
    assert _family(db).allocation_id == "BEST-0001"


def test_an_unknown_arm_is_bad_input(run: Run, db: str) -> None:
    """An arm the trial lacks exits 2, naming the arms; nothing is allocated."""
    _open(run)
    result = _allocate(run, arm="bogus", code=2)
    assert "unknown arm 'bogus'" in result.stderr
    assert "comparator, nim" in result.stderr
    assert _family(db).arm is None


def test_a_visit_before_its_window_opens_is_refused(run: Run, db: str) -> None:
    """A baseline visit dated before its window opens exits 1; nothing is recorded."""
    _open(run)
    _allocate(run)
    result = run(
        "family", "visit", "FAM-1", "baseline", "--held-on", "2026-01-20", "--at", "2026-01-20",
        *RESEARCHER, code=1,
    )  # fmt: skip
    assert "before window 'baseline' opens on 2026-01-30" in result.stderr
    with nw.Engine(db) as engine:
        assert all(v.held_on is None for v in engine.visits("FAM-1"))


def test_only_a_coordinator_allocates(run: Run, db: str) -> None:
    """A team manager on the roster at the site may not allocate: permission denied, exit 1."""
    _open(run)
    result = _allocate(run, actor="tm-004", code=1)
    assert result.stderr.strip() == (
        "error: family FAM-1: tm-004 may not allocate; it needs one of the roles coordinator"
    )
    assert _family(db).arm is None


def test_the_roster_must_have_the_actor_at_the_familys_site(run: Run) -> None:
    """Roles and sites come from the roster: a Glasgow worker cannot open a London family."""
    result = run(
        "family", "open", "FAM-9", "--site", "london", "--child", "LDN-9",
        "--actor", "sw-gla", code=1,
    )  # fmt: skip
    assert "sw-gla may not act on families at site london" in result.stderr
    _open(run)
    refused = run("family", "pause", "FAM-1", "--reason", "x", "--actor", "sw-gla", code=1)
    assert "may not act on family FAM-1 at site london" in refused.stderr
    assert "--role" not in run("family", "open", "--help").stdout


def test_an_unknown_family_is_not_found(run: Run) -> None:
    """A reference with no family exits 2 with one clear line, whatever the command."""
    expected = f"error: {nw.FamilyNotFound('NOPE-1')}\n"
    assert run("family", "show", "NOPE-1", code=2).stderr == expected
    assert _allocate(run, "NOPE-1", code=2).stderr == expected
    assert run("family", "fire", "NOPE-1", "accept_referral", *TM, code=2).stderr == expected


def test_facts_are_typed_by_the_trials_pathways(run: Run) -> None:
    """A date fact that is not a date is refused as bad input before anything is written."""
    result = run(
        "family", "open", "FAM-1", "--site", "london", "--child", "LDN-1",
        "--fact", "entered_care_on=2026-13-01", *SW, code=2,
    )  # fmt: skip
    assert "entered_care_on" in result.stderr
    run("family", "show", "FAM-1", code=2)


def _family_calls() -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """One use of every family command, in an order where each finds what it needs."""
    return [
        (("family", "open"), ("FAM-1", "--site", "london", "--child", "LDN-1",
                              "--fact", "consent_recorded=true",
                              "--fact", "entered_care_on=2026-01-02", "--at", "2026-01-05", *SW)),
        (("family", "add-child"), ("FAM-1", "LDN-2", "--fact", "consent_recorded=true",
                                   "--at", "2026-01-05", *SW)),
        (("family", "show"), ("FAM-1",)),
        (("family", "list"), ()),
        (("family", "allocate"), ("FAM-1", "--arm", "nim", "--allocation-id", "BEST-0001",
                                  "--at", "2026-01-06", *COORDINATOR)),
        (("family", "pause"), ("FAM-1", "--reason", "hospital", "--at", "2026-01-07", *TM)),
        (("family", "resume"), ("FAM-1", "--at", "2026-01-08", *TM)),
        (("family", "fire"), ("FAM-1", "accept_referral", "--at", "2026-01-09", *TM)),
        (("family", "visit"), ("FAM-1", "baseline", "--held-on", "2026-02-10",
                               "--at", "2026-02-10", *RESEARCHER)),
        (("family", "status"), ("FAM-1", "completed", "--at", "2026-03-01", *COORDINATOR)),
    ]  # fmt: skip


@pytest.mark.parametrize("where", ["group", "command"])
def test_every_family_command_honours_json(run: Run, where: str) -> None:
    """Each family command prints one JSON document with --json, before or after its words."""
    calls = _family_calls()
    assert {words for words, _ in calls} == {("family", name) for name in family_group.commands}
    for words, args in calls:
        argv = ("--json", *words, *args) if where == "group" else (*words, *args, "--json")
        json.loads(run(*argv).stdout)


@pytest.mark.parametrize("name", sorted(family_group.commands))
def test_every_family_command_help_has_an_example(name: str) -> None:
    """Each family command's help says what it does and shows an example command line."""
    result = CliRunner().invoke(main, ["family", name, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    assert "  nim-workflow family " in result.stdout
