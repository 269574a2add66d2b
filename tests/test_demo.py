"""Tests of nim_workflow._demo: the simulated three-site cohort and what it leaves behind."""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import hashlib
import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import nim_workflow as nw
from nim_workflow._cli import main
from nim_workflow._demo import (
    DEMO_APPLICATION_ID,
    DEMO_DAYS,
    DEMO_END,
    DEMO_MARK_TABLE,
    DEMO_START,
    EXAMPLE_REFERENCE,
    FALLBACK_OPERATOR,
    DemoResult,
    _claim,
    demo_start,
    format_trial,
    run_demo,
)
from nim_workflow._report import format_summary

SITES = {
    "london": "nim-uk-england",
    "glasgow": "nim-uk-scotland",
    "jefferson-parish": "nim-us-louisiana",
}
#: The BeST? trial's arms at its two UK sites (trials/best.yaml); Louisiana is outside the trial.
ARMS = {
    "london": {"nim": "nim-uk-england", "comparator": "best-sau-london"},
    "glasgow": {"nim": "nim-uk-scotland", "comparator": "best-facs-glasgow"},
}
#: The portal's block size the demo stands in for: arms balanced to within half a block per site.
BLOCK = 4
OPEN_STAGES = ("referral", "assessment", "treatment", "recommendation", "court")
REFERENCE = re.compile(r"^(LDN|GLA|JEF)-20(25|26)-\d{4}$|^LDN-DEMO-0001$")
FAMILY = re.compile(r"^(LDN|GLA)-FAM-\d{3}$")
STAFF = re.compile(r"^(lon|gla|jef)-(sw|cl|tm|co|pc)-\d$|^(lon|gla)-rs-1$")


@dataclasses.dataclass(frozen=True)
class Run:
    """One demo run: its result and the progress calls it made."""

    result: DemoResult
    progress: list[tuple[int, int]]
    url: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The demo, run once for the whole module on a temporary SQLite file, pinned to DEMO_END."""
    folder = tmp_path_factory.mktemp("demo")
    url = f"sqlite:///{folder / 'demo.db'}"
    calls: list[tuple[int, int]] = []
    result = run_demo(
        url,
        html=folder / "report.html",
        end=DEMO_END,
        progress=lambda d, t: calls.append((d, t)),
    )
    return Run(result, calls, url)


@pytest.fixture(scope="module")
def engine(run: Run) -> Iterator[nw.Engine]:
    """An engine on the demo's database, to read what the demo left."""
    with nw.Engine(run.url) as reader:
        yield reader


def test_demo_writes_the_report(run: Run) -> None:
    """The demo writes a complete HTML report, as of the day it ends."""
    result = run.result
    assert result.html is not None
    html = result.html.read_text(encoding="utf-8")
    for site in SITES:
        assert f'id="site-{site}"' in html
        assert f'id="timeline-{site}"' in html
    assert result.as_of.date() == DEMO_END
    assert result.url == run.url


def test_demo_reports_progress_day_by_day(run: Run) -> None:
    """progress(done, total) is called once per simulated day, ending at the total."""
    total = run.progress[-1][1]
    assert total > 500
    assert run.progress == [(day, total) for day in range(1, total + 1)]


def test_demo_is_reproducible_over_its_own_earlier_database(run: Run, tmp_path: Path) -> None:
    """Rerun over a previous demo's database, the same seed gives the same cohort afresh."""
    earlier = tmp_path / "again.db"
    _copy_database(run.url, earlier)
    again = run_demo(f"sqlite:///{earlier}", html=None, end=DEMO_END)
    assert again.html is None
    assert _application_id(earlier) == DEMO_APPLICATION_ID
    assert again.counts == run.result.counts
    assert format_summary(again.summary) == format_summary(run.result.summary)
    with nw.Engine(f"sqlite:///{earlier}") as rerun, nw.Engine(run.url) as first:
        assert _trial_digest(rerun) == _trial_digest(first)


def _trial_digest(engine: nw.Engine) -> str:
    """A digest of every family (arm, allocation, status, children) and every research visit."""
    rows: list[object] = []
    for family in engine.families():
        rows.append(
            [
                family.reference,
                family.site,
                family.arm,
                family.allocation_id,
                family.status,
                list(family.cases),
                family.allocated_at,
            ]
        )
        for visit in engine.visits(
            family.reference, at=dt.datetime(2026, 11, 20, 23, tzinfo=dt.UTC)
        ):
            rows.append(dataclasses.astuple(visit))
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


def test_demo_cohort_size_and_sites(run: Run, engine: nw.Engine) -> None:
    """About 30 children each in London and Glasgow, in families, and 20 Louisiana cases.

    A UK child's case is on its family's arm's pathway; a Louisiana case on its site's.
    """
    cases = engine.cases(open_only=False)
    arm_of = {child: f.arm for f in engine.families() for child in f.cases}
    by_site: dict[str, int] = {}
    for case in cases:
        if case.site in ARMS:
            assert ARMS[case.site][arm_of[case.reference]] == case.pathway_id
        else:
            assert SITES[case.site] == case.pathway_id
        assert REFERENCE.match(case.reference), case.reference
        by_site[case.site] = by_site.get(case.site, 0) + 1
    assert by_site["jefferson-parish"] == 20
    assert 25 <= by_site["london"] <= 40
    assert 25 <= by_site["glasgow"] <= 40
    assert run.result.counts.cases == len(cases)
    opened = sorted(case.opened_at for case in cases)
    assert opened[0].date() >= dt.date(2025, 5, 1)
    assert opened[0].date() < dt.date(2025, 7, 1)
    assert opened[-1].date() <= DEMO_END


def test_demo_runs_eighteen_months_up_to_its_end_date() -> None:
    """A run ending on DEMO_END starts on DEMO_START; any other end, the same span before it."""
    assert demo_start(DEMO_END) == DEMO_START
    assert 540 <= DEMO_DAYS <= 570  # about eighteen months
    assert demo_start(dt.date(2027, 3, 1)) == dt.date(2027, 3, 1) - dt.timedelta(days=DEMO_DAYS)


def test_demo_refuses_an_end_after_today(tmp_path: Path) -> None:
    """An end date in the future is refused before anything is created."""
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    target = tmp_path / "demo.db"
    with pytest.raises(nw.InvalidInput, match="cannot end after today"):
        run_demo(f"sqlite:///{target}", html=tmp_path / "report.html", end=tomorrow)
    with pytest.raises(nw.InvalidInput, match="must be a date"):
        run_demo(f"sqlite:///{target}", html=None, end=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    assert list(tmp_path.iterdir()) == []


def test_demo_example_case_is_open_and_unpaused_at_the_end(engine: nw.Engine) -> None:
    """The README's example case is London's newest, open and not paused when the demo ends.

    Its plan is drawn like every other case's (the rest of the cohort is the one of before), but
    it is opened on a working day before the end day and never declined, withdrawn or paused.
    """
    case = engine.case(EXAMPLE_REFERENCE)
    assert case.site == "london"
    assert case.is_open
    assert not case.paused
    newest = max(engine.cases(site="london", open_only=False), key=lambda c: c.opened_at)
    assert newest.reference == EXAMPLE_REFERENCE


def test_cli_demo_ends_with_the_commands_that_read_its_database(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's last lines: activate (when not on PATH), NIM_WORKFLOW_DB, a command to try."""
    monkeypatch.setattr("nim_workflow._demo.run_demo", lambda *args, **kwargs: run.result)
    monkeypatch.setattr("shutil.which", lambda *args, **kwargs: None)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(format_summary(run.result.summary))
    closing = result.stdout.split("to read the demo's database with the other commands")[1]
    *commands, report = closing.splitlines()[1:]
    assert report == f"report: {run.result.html}"
    lines = [line.strip() for line in commands]
    activate = Path(sys.executable).parent / "activate"
    expected = [f"export NIM_WORKFLOW_DB={run.url}", "nim-workflow overdue"]
    if run.result.operator == FALLBACK_OPERATOR:  # pragma: no cover - no OS user to act as
        expected.insert(1, f"export NIM_WORKFLOW_ACTOR={FALLBACK_OPERATOR}")
    if activate.is_file():
        expected.insert(0, f". {activate}")
    assert lines == expected


def test_demo_leaves_cases_in_every_stage_at_every_site(run: Run) -> None:
    """Every open stage holds cases at the end, every site has open and closed cases."""
    stages: set[str] = set()
    for site in run.result.summary.sites:
        open_stages = {group.stage for group in site.open_by_stage}
        assert len(open_stages) >= 3, site.site
        assert site.open > 0
        assert site.closed > 0
        stages |= open_stages
    assert stages == set(OPEN_STAGES)


def test_demo_has_met_and_missed_deadlines(run: Run) -> None:
    """Some deadlines are met and some missed, at stage and statutory level."""
    counts = run.result.counts
    assert counts.deadlines_met > 100
    assert counts.deadlines_missed > 10
    for site in run.result.summary.sites:
        assert any(rate.missed for rate in site.on_time), site.site
        assert any(rate.met for rate in site.on_time if rate.kind == "clock"), site.site


def test_demo_has_paused_extended_withdrawn_and_declined_cases(run: Run, engine: nw.Engine) -> None:
    """Some cases were paused and resumed, some deadlines extended, some cases withdrawn."""
    counts = run.result.counts
    assert counts.paused_cases > 0
    assert counts.events["resumed"] > 0
    assert counts.withdrawn > 0
    assert counts.extensions > 0
    outcomes = {case.outcome for case in engine.cases(open_only=False)}
    assert {"withdrawn", "not_eligible", "adoption"} <= outcomes
    extended = [e for e in engine.audit() if e.action == "extended"]
    glasgow_treatment = [
        e
        for e in extended
        if e.reference.startswith("GLA-") and e.detail["deadline"] == "treatment"
    ]
    assert glasgow_treatment
    assert all("team_manager" in e.roles for e in glasgow_treatment)
    proceedings = [e for e in extended if e.detail["deadline"] == "care_proceedings"]
    assert proceedings
    assert all(e.reference.startswith("LDN-") for e in proceedings)
    assert all(e.roles == ("court_officer",) for e in proceedings)


def test_demo_fires_every_alarm_kind(run: Run) -> None:
    """Reminders, breaches and escalations all fired along the way."""
    events = run.result.counts.events
    for kind in ("reminder", "breach", "escalation"):
        assert events[kind] > 0, kind
    assert events["opened"] == run.result.counts.cases
    assert events["transition"] == run.result.counts.transitions > 80


def test_demo_statutory_clocks_run(engine: nw.Engine) -> None:
    """Each pathway's statutory clocks were started by their date facts."""
    seen: dict[str, set[str]] = {}
    for case in engine.cases(open_only=False):
        for deadline in engine.deadlines(case.reference):
            if deadline.kind == "clock":
                seen.setdefault(case.pathway_id, set()).add(deadline.name)
    assert seen["nim-uk-england"] == {"care_proceedings", "lac_review"}
    assert seen["nim-uk-scotland"] == {"lac_review", "cso_review", "interim_cso", "icso_limit"}
    assert seen["nim-us-louisiana"] == {"case_review", "permanency_hearing", "asfa_15_of_22"}
    # The law's clocks run whichever arm of the trial a child is in.
    assert seen["best-sau-london"] == seen["nim-uk-england"]
    assert seen["best-facs-glasgow"] == seen["nim-uk-scotland"]


def test_demo_audit_chain_verifies(engine: nw.Engine) -> None:
    """The whole audit log verifies, deeply (case and family streams)."""
    report = engine.verify_audit(deep=True)
    assert report.ok, report.problems
    assert report.checked > 1000


def _fact_maps(detail: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [value for key, value in detail.items() if key == "facts" and value]


def test_demo_holds_only_declared_facts_and_references(run: Run, engine: nw.Engine) -> None:
    """Cases and audit events hold declared facts only, by staff ids, under references."""
    pathways = engine.pathways
    pathway_of = {case.reference: case.pathway_id for case in engine.cases(open_only=False)}
    for case in engine.cases(open_only=False):
        assert set(case.facts) <= set(pathways[case.pathway_id].facts), case.reference
    for event in engine.audit():
        if event.stream == "staff":
            # The roster's entries name staff ids, changed by the person running the demo.
            assert STAFF.match(event.reference) or event.reference == run.result.operator
            assert event.actor_id == run.result.operator
            continue
        assert STAFF.match(event.actor_id) or event.actor_id.startswith("system:"), event.actor_id
        if event.stream == "family":
            assert FAMILY.match(event.reference), event.reference
            # A child's facts on joining are declared by both arms' pathways at the site.
            site = _site_of(event.reference)
            both = set.intersection(*(set(pathways[p].facts) for p in ARMS[site].values()))
            given = event.detail.get("facts") or {}
            per_child = given.values() if event.action == "family_opened" else [given]
            for facts in per_child:
                assert set(facts) <= both, (event.seq, facts)
            continue
        assert REFERENCE.match(event.reference), event.reference
        case_facts = pathways[pathway_of[event.reference]].facts
        for facts in _fact_maps(event.detail):
            assert set(facts) <= set(case_facts), (event.seq, facts)


def test_demo_records_facts_with_the_right_roles(engine: nw.Engine) -> None:
    """Each fact is recorded by the role that would know it."""
    expected = {
        "consent_recorded": {"social_worker"},
        "assessment_report_filed": {"clinician"},
        "treatment_review_filed": {"clinician"},
        "final_report_filed": {"clinician"},
        "recommendation": {"team_manager"},
        "lac_review_held_on": {"social_worker"},
        "proceedings_issued_on": {"social_worker"},
        "cso_made_on": {"court_officer"},
        "cso_continued_on": {"court_officer"},
        "icso_made_on": {"court_officer"},
        "adjudicated_on": {"court_officer"},
        "disposition_on": {"court_officer"},
        "case_review_held_on": {"social_worker"},
        "permanency_hearing_held_on": {"court_officer"},
        "placed_on": {"social_worker"},
        # Filed with the final report, or noted by the team manager as a child leaves early.
        "intervention_received": {"clinician", "team_manager"},
    }
    seen: dict[str, set[str]] = {}
    for event in engine.audit():
        if event.action == "fact_recorded":
            for fact in event.detail["facts"]:
                seen.setdefault(fact, set()).update(event.roles)
        if event.action == "transition" and event.trigger == "record_decision":
            assert event.roles == ("court_officer",)
            assert "decision" in event.detail["facts"]
            if event.reference.startswith(("LDN-", "GLA-")):
                assert "permanence_achieved_on" in event.detail["facts"]
    assert seen == expected


def test_demo_makes_the_person_running_it_the_roster_administrator(
    run: Run, engine: nw.Engine
) -> None:
    """The OS user is added first, as administrator and coordinator at every site."""
    operator = run.result.operator
    try:
        expected = getpass.getuser()
    except OSError:  # pragma: no cover - a machine that cannot name its user
        expected = FALLBACK_OPERATOR
    assert operator == expected
    member = engine.staff(operator)
    assert member.roles >= {"administrator", "coordinator"}
    assert member.sites == {"*"}
    first = next(e for e in engine.audit() if e.stream == "staff")
    assert (first.action, first.reference, first.actor_id) == ("staff_added", operator, operator)


def test_demo_staff_act_only_in_their_roster_roles_and_sites(run: Run, engine: nw.Engine) -> None:
    """Every case and family action was taken by a roster member with that role at that site."""
    roster = {member.id: member for member in engine.roster()}
    sites = {case.reference: case.site for case in engine.cases(open_only=False)}
    sites |= {family.reference: family.site for family in engine.families()}
    # The operator; per site three social workers, four others; a researcher per trial site.
    assert len(roster) == 1 + 3 * 7 + 2
    acted = 0
    for event in engine.audit():
        if event.stream not in ("case", "family") or event.actor_id.startswith("system:"):
            continue
        member = roster[event.actor_id]
        assert set(event.roles) <= member.roles, (event.seq, event.roles, member.roles)
        assert member.works_at(sites[event.reference]), (event.seq, event.reference)
        acted += 1
    assert acted > 500


def test_cli_acts_as_the_person_who_ran_the_demo(run: Run, tmp_path: Path) -> None:
    """After the demo, `case pause` and `case resume` work as copied, with no --actor."""
    copy = tmp_path / "copy.db"
    _copy_database(run.url, copy)
    url = f"sqlite:///{copy}"
    with nw.Engine(url) as reader:
        reference = next(c.reference for c in reader.cases(site="london") if not c.paused)
    env = {"NIM_WORKFLOW_DB": url, "NIM_WORKFLOW_ACTOR": None}
    if run.result.operator == FALLBACK_OPERATOR:  # pragma: no cover - no OS user to act as
        env["NIM_WORKFLOW_ACTOR"] = FALLBACK_OPERATOR
    for args in (["case", "pause", reference, "--reason", "child in hospital"],
                 ["case", "resume", reference]):  # fmt: skip
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
    with nw.Engine(url) as reader:
        trail = reader.audit(reference)[-2:]
    assert [(e.action, e.actor_id) for e in trail] == [
        ("paused", run.result.operator),
        ("resumed", run.result.operator),
    ]


def test_demo_refuses_an_existing_database(run: Run) -> None:
    """Without fresh=True the demo will not run over a database that holds cases."""
    with pytest.raises(nw.NimWorkflowError, match="empty database"):
        run_demo(run.url, html=None, fresh=False)


# -- the demo never destroys what it did not create ----------------------------------------------

SW = nw.Actor("sw-1", roles={"social_worker"})
REFUSED = "is not a database the demo created"
COMPANIONS = ("-wal", "-shm", "-journal")


def _copy_database(url: str, target: Path) -> None:
    """A consistent copy of the SQLite database at ``url`` (its header and mark included)."""
    with (
        sqlite3.connect(url.removeprefix("sqlite:///")) as source,
        sqlite3.connect(target) as copy,
    ):
        source.backup(copy)
    source.close()
    copy.close()


def _application_id(path: Path) -> int:
    """The ``application_id`` in a SQLite file's header, read without opening it as a database."""
    header = path.read_bytes()[:100]
    assert header.startswith(b"SQLite format 3\x00")
    return int.from_bytes(header[68:72], "big")


def _case_database(path: Path) -> None:
    """A real case database, as a host would have it: migrated, one case open."""
    with nw.Engine(f"sqlite:///{path}") as engine:
        engine.migrate()
        engine.open_case(
            "LDN-2026-0001",
            pathway="nim-uk-england",
            site="london",
            actor=SW,
            facts={"entered_care_on": dt.date(2026, 1, 5)},
        )


def _sqlite_file(path: Path, *pragmas: str) -> None:
    with sqlite3.connect(path) as connection:
        for pragma in pragmas:
            connection.execute(pragma)
    connection.close()


#: Things at the demo's path that are not its database, each made by a function of the path.
NOT_THE_DEMOS: dict[str, tuple[Callable[[Path], object], str]] = {
    "a case database": (_case_database, "a SQLite database without the demo's mark"),
    "a text file": (lambda path: path.write_text("notes\n", encoding="utf-8"), "not a SQLite"),
    "a directory": (lambda path: path.mkdir(), "a directory"),
    "an empty file": (lambda path: path.touch(), "an empty file"),
    "an unmarked empty SQLite database": (
        lambda path: _sqlite_file(path, "PRAGMA user_version = 1"),
        "a SQLite database without the demo's mark",
    ),
    "another application's SQLite database": (
        lambda path: _sqlite_file(path, "PRAGMA application_id = 1196444487"),  # GeoPackage
        "a SQLite database without the demo's mark",
    ),
}


def _snapshot(path: Path) -> tuple[object, ...]:
    """What must not change at ``path``: its kind, bytes (or listing) and modification time."""
    info = path.stat()
    content: object = sorted(os.listdir(path)) if path.is_dir() else path.read_bytes()
    return (info.st_mode, info.st_size, info.st_mtime_ns, content)


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "not-fresh"])
@pytest.mark.parametrize("kind", list(NOT_THE_DEMOS))
def test_demo_refuses_what_it_did_not_create_and_leaves_it_untouched(
    tmp_path: Path, kind: str, fresh: bool
) -> None:
    """A case database, a text file, a directory, an empty file: refused, nothing written."""
    make, why = NOT_THE_DEMOS[kind]
    target = tmp_path / "target.db"
    make(target)
    before = _snapshot(target)
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(nw.InvalidInput) as refused:
        run_demo(f"sqlite:///{target}", html=tmp_path / "report.html", fresh=fresh)
    message = str(refused.value)
    assert message.startswith(f"{target} {REFUSED} (it is {why}")
    assert "never overwrites other files" in message
    assert refused.value.field == "url"
    assert _snapshot(target) == before
    assert sorted(os.listdir(tmp_path)) == listing  # no -wal, -shm or report appeared


def test_demo_refusing_a_case_database_keeps_its_case(tmp_path: Path) -> None:
    """The case in a real case database is still there, and still open, after the refusal."""
    target = tmp_path / "nim-workflow.db"
    _case_database(target)
    with pytest.raises(nw.InvalidInput, match=REFUSED):
        run_demo(f"sqlite:///{target}", html=None)
    with nw.Engine(f"sqlite:///{target}") as engine:
        assert [c.reference for c in engine.cases()] == ["LDN-2026-0001"]


def test_demo_refuses_a_link_to_nothing_and_leftover_companions(tmp_path: Path) -> None:
    """A dangling symbolic link, or a -wal with no database beside it, is not the demo's."""
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "nowhere.db")
    with pytest.raises(nw.InvalidInput, match="symbolic link to nothing"):
        run_demo(f"sqlite:///{link}", html=None)
    assert link.is_symlink()
    assert not (tmp_path / "nowhere.db").exists()
    gone = tmp_path / "gone.db"
    wal = Path(f"{gone}-wal")
    wal.write_bytes(b"someone's log")
    with pytest.raises(nw.InvalidInput, match=f"{gone} does not exist but {wal} does"):
        run_demo(f"sqlite:///{gone}", html=None)
    assert wal.read_bytes() == b"someone's log"
    assert not gone.exists()


def test_demo_marks_the_database_it_creates(run: Run) -> None:
    """The demo's database carries its application_id, and the schema did not clear it."""
    assert _application_id(Path(run.url.removeprefix("sqlite:///"))) == DEMO_APPLICATION_ID


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "not-fresh"])
def test_claim_creates_a_marked_database_where_nothing_is(tmp_path: Path, fresh: bool) -> None:
    """Nothing at the path: a new SQLite file, marked before anything else is in it."""
    target = tmp_path / "new.db"
    _claim(f"sqlite:///{target}", fresh=fresh)
    assert _application_id(target) == DEMO_APPLICATION_ID
    with sqlite3.connect(target) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []
    connection.close()
    assert sorted(os.listdir(tmp_path)) == ["new.db"]


def test_claim_replaces_its_own_database_afresh_or_keeps_it(tmp_path: Path) -> None:
    """The demo's own database is kept without fresh, and replaced with its companions with it."""
    target = tmp_path / "demo.db"
    url = f"sqlite:///{target}"
    _claim(url, fresh=True)
    engine = nw.Engine(url)
    engine.migrate()
    engine.open_case(
        "LDN-2026-0001",
        pathway="nim-uk-england",
        site="london",
        actor=SW,
        facts={"entered_care_on": dt.date(2026, 1, 5)},
    )
    # Still open, as a worker on the demo's database would be: its -wal and -shm are there.
    assert {p.name for p in tmp_path.iterdir()} >= {"demo.db-wal", "demo.db-shm"}
    _claim(url, fresh=False)
    assert [c.reference for c in engine.cases()] == ["LDN-2026-0001"]
    engine.close()
    Path(f"{target}-journal").write_bytes(b"")  # an old rollback journal of the demo's too
    _claim(url, fresh=True)
    assert _application_id(target) == DEMO_APPLICATION_ID
    assert [p.name for p in tmp_path.iterdir()] == ["demo.db"]
    with sqlite3.connect(target) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []
    connection.close()


def test_claim_refuses_a_uri_and_a_malformed_url(tmp_path: Path) -> None:
    """A SQLite URI filename or a URL that is no URL is refused before anything is made."""
    with pytest.raises(nw.InvalidInput, match="plain file path"):
        _claim(f"sqlite:///file:{tmp_path / 'x.db'}?uri=true", fresh=True)
    with pytest.raises(nw.InvalidInput, match="not a database URL"):
        _claim("not a url", fresh=True)
    assert list(tmp_path.iterdir()) == []


def test_claim_leaves_an_in_memory_database_alone() -> None:
    """An in-memory database is new every time: nothing to mark, nothing to refuse."""
    _claim("sqlite://", fresh=True)
    _claim("sqlite:///:memory:", fresh=False)


def test_claim_on_postgres_marks_only_an_empty_database(
    new_pg_database: Callable[[], str],
) -> None:
    """PostgreSQL: an empty database is marked and then accepted again; one with tables is not."""
    empty = new_pg_database()
    _claim(empty, fresh=True)
    _claim(empty, fresh=True)
    bind = sa.create_engine(empty)
    try:
        assert sa.inspect(bind).get_table_names() == [DEMO_MARK_TABLE]
    finally:
        bind.dispose()

    used = new_pg_database()
    with nw.Engine(used) as engine:
        engine.migrate()
        engine.open_case(
            "LDN-2026-0001",
            pathway="nim-uk-england",
            site="london",
            actor=SW,
            facts={"entered_care_on": dt.date(2026, 1, 5)},
        )
    with pytest.raises(nw.InvalidInput, match=r"is not a database the demo created \(it holds"):
        run_demo(used, html=None)
    bind = sa.create_engine(used)
    try:
        assert DEMO_MARK_TABLE not in sa.inspect(bind).get_table_names()
    finally:
        bind.dispose()
    with nw.Engine(used) as engine:
        assert [c.reference for c in engine.cases()] == ["LDN-2026-0001"]


# -- the command ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["a case database", "a text file", "a directory"])
def test_cli_demo_refuses_what_it_did_not_create(tmp_path: Path, kind: str) -> None:
    """`demo --db` at something not the demo's: one error line, exit 2, the thing untouched."""
    make, why = NOT_THE_DEMOS[kind]
    target = tmp_path / "nim-workflow.db"
    make(target)
    before = _snapshot(target)
    html = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["demo", "--db", f"sqlite:///{target}", "--html", str(html)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {target} {REFUSED} (it is {why}")
    assert result.stderr.endswith("choose another --db or remove it yourself\n")
    assert result.stderr.count("\n") == 1
    assert _snapshot(target) == before
    assert not html.exists()
    assert not any(Path(f"{target}{suffix}").exists() for suffix in COMPANIONS)


def test_cli_demo_help_says_what_it_replaces_and_refuses() -> None:
    """`demo --help` says the demo replaces only its own database and refuses anything else."""
    result = CliRunner().invoke(main, ["demo", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "never the main one" in text
    assert "a file it marked before is replaced afresh" in text
    assert "(a case database, any other file, a directory) is refused and left untouched" in text


# -- the trial ------------------------------------------------------------------------------------


def test_demo_families_are_at_the_uk_sites_allocated_in_balanced_arms(engine: nw.Engine) -> None:
    """Families at London and Glasgow only, each allocated once, arms balanced within a block."""
    families = engine.families()
    assert {f.site for f in families} == set(ARMS)
    ids = [f.allocation_id for f in families]
    assert all(i is not None and re.fullmatch(r"BEST-\d{4}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # The portal's ids number the allocations in the order they were made, across the sites.
    by_time = sorted(families, key=lambda f: (f.allocated_at, f.reference))
    assert [f.allocation_id for f in by_time] == [f"BEST-{n:04d}" for n in range(1, len(ids) + 1)]
    for site in ARMS:
        arms = [f.arm for f in families if f.site == site]
        assert len(arms) >= 15
        assert set(arms) == {"nim", "comparator"}
        assert abs(arms.count("nim") - arms.count("comparator")) <= BLOCK // 2, site
    assert all(FAMILY.match(f.reference) for f in families)
    assert {case.site for case in engine.cases(open_only=False) if case.reference not in
            {c for f in families for c in f.cases}} == {"jefferson-parish"}  # fmt: skip


def test_demo_siblings_share_their_familys_arm(engine: nw.Engine) -> None:
    """Every child's case is on its family's arm's pathway; siblings exist, one joined later."""
    families = engine.families()
    for family in families:
        assert family.arm is not None
        pathway = ARMS[family.site][family.arm]
        for child in family.cases:
            case = engine.case(child)
            assert (case.site, case.pathway_id) == (family.site, pathway), child
    sizes = [len(f.cases) for f in families]
    assert any(size > 1 for size in sizes)
    assert 1.1 <= sum(sizes) / len(sizes) <= 1.6  # BeST?: 488 children in 382 families
    added = [e for e in engine.audit() if e.stream == "family" and e.action == "child_added"]
    assert len(added) == 2  # a baby at each site joins the family's arm
    for event in added:
        assert (
            engine.case(event.detail["child"]).pathway_id
            == ARMS[_site_of(event.reference)][engine.family(event.reference).arm or ""]
        )


def test_demo_family_actions_and_trial_statuses(engine: nw.Engine) -> None:
    """Referrals accepted as family actions; consent before allocation; a few leave follow-up."""
    events = [e for e in engine.audit() if e.stream == "family"]
    actions = {(e.detail["action"], e.detail.get("trigger")) for e in events
               if e.action == "family_action"}  # fmt: skip
    assert ("fire", "accept_referral") in actions
    assert {("pause", None), ("resume", None)} <= actions
    changes = [(e.detail["from"], e.detail["to"]) for e in events if e.action == "status_changed"]
    assert changes.count(("enrolled", "consented")) == len(engine.families())
    assert {to for _, to in changes} >= {"consented", "withdrawn_consent", "lost_to_follow_up"}
    for family in engine.families():
        trail = [e.action for e in events if e.reference == family.reference]
        assert trail[:3] == ["family_opened", "status_changed", "allocated"], family.reference
    # Siblings diverge afterwards: per-child transitions on the children's own cases.
    assert any(
        e.action == "transition" and e.actor_id.startswith(("lon-", "gla-")) for e in engine.audit()
    )


def test_demo_visits_in_window_late_and_missed(engine: nw.Engine, run: Run) -> None:
    """The baseline visits are mostly held in their window, some late, some missed."""
    statuses: dict[str, set[str]] = {}
    for family in engine.families():
        for visit in engine.visits(family.reference, at=run.result.as_of):
            statuses.setdefault(visit.name, set()).add(visit.status)
    assert {"in_window", "late", "missed"} <= statuses["baseline"]
    assert "in_window" in statuses["month_15"]  # the earliest families reached 15 months
    assert statuses["month_30"] == {"pending"}  # 2.5 years after randomisation: not yet
    recorded = [e for e in engine.audit() if e.action == "visit_recorded"]
    assert recorded
    assert all(e.roles == ("researcher",) for e in recorded)
    trial = run.result.counts.trial
    assert set(trial) == set(ARMS)
    for site, entry in trial.items():
        assert entry["families"] == len(engine.families(site=site))
        assert sum(entry["arms"].values()) == entry["families"]
        assert entry["visits"]["baseline"]["in_window"] > 0
    text = format_trial(run.result.counts)
    assert "london:" in text
    assert "glasgow:" in text
    assert "baseline:" in text


def test_demo_records_the_trials_outcomes(engine: nw.Engine) -> None:
    """Placements (some moves), permanence dates and the intervention's delivery are recorded."""
    children = {c for f in engine.families() for c in f.cases}
    moves = 0
    permanence: dict[str, int] = {}
    delivery: dict[str, dict[str, int]] = {}
    arm_of = {c: f.arm for f in engine.families() for c in f.cases}
    for reference in sorted(children):
        case = engine.case(reference)
        assert "placed_on" in case.facts
        placed = [
            e for e in engine.audit(reference) if "placed_on" in (e.detail.get("facts") or {})
        ]
        assert placed  # the first placement came with the child's facts when its case opened
        moves += len(placed) - 1
        if "permanence_achieved_on" in case.facts:
            assert case.outcome is not None
            assert case.outcome not in ("withdrawn", "not_eligible")
            permanence[case.site] = permanence.get(case.site, 0) + 1
        if "intervention_received" in case.facts:
            by_arm = delivery.setdefault(arm_of[reference] or "", {})
            value = case.facts["intervention_received"]
            by_arm[value] = by_arm.get(value, 0) + 1
    assert moves > 0
    assert permanence.get("london", 0) > 0
    assert permanence.get("london", 0) > permanence.get("glasgow", 0)  # England is faster
    nim = delivery["nim"]
    assert nim.get("received", 0) < 0.7 * sum(nim.values())  # BeST?: under 70% received NIM
    assert "received" in delivery["comparator"]


def _site_of(reference: str) -> str:
    return {"LDN": "london", "GLA": "glasgow", "JEF": "jefferson-parish"}[reference[:3]]


def test_the_demos_export_reads_back_in_a_columnar_reader(
    engine: nw.Engine, run: Run, tmp_path: Path
) -> None:
    """The demo exported as Parquet: every table opens in pyarrow with its manifest's row count."""
    pq = pytest.importorskip("pyarrow.parquet")
    key = tmp_path / "site.key"
    key.write_bytes(b"k" * 32)
    manifest = engine.export(
        tmp_path / "export", format="parquet", pseudonym_key=key, at=run.result.as_of
    )
    written = json.loads((tmp_path / "export" / "manifest.json").read_text(encoding="utf-8"))
    counts = {name: table["rows"] for name, table in written["tables"].items()}
    assert {"families", "allocations", "visits", "outcomes", "children"} <= set(counts)
    for table in manifest.tables.values():
        read = pq.read_table(tmp_path / "export" / table.file)
        assert read.num_rows == table.rows == counts[table.name], table.name
    families = pq.read_table(tmp_path / "export" / "families.parquet").to_pylist()
    assert {row["site"] for row in families} == {"london", "glasgow"}
    assert {row["arm"] for row in families} == {"nim", "comparator"}
    assert counts["families"] == len(engine.families())
    outcomes = pq.read_table(tmp_path / "export" / "outcomes.parquet").to_pylist()
    assert counts["outcomes"] == sum(len(f.cases) for f in engine.families())
    assert any(row["days_to_permanence"] is not None for row in outcomes)
    assert all(str(row["child"]).startswith("c_") for row in outcomes)
