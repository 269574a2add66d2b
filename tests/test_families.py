"""The trial's families in the engine (TRIAL.md), on SQLite and PostgreSQL.

A family opens with its children's references; the allocation records the portal's arm once,
opens or moves each child onto the arm's pathway and plans the research visits as windows; family
actions move every open child or none; trial status is not service status; visits are refused
before their window, late after it, and remind exactly once. Bad input writes nothing; a denial
is audited; the log still verifies deep.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from engine_helpers import SW, TM, Clock

import nim_workflow as nw
from nim_workflow._store._schema import (
    audit_events,
    families,
    family_children,
    visit_alarms,
    visits,
)

CO = nw.Actor("co-1", roles={"coordinator"})
RS = nw.Actor("rs-1", roles={"researcher"})
D = dt.date


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(db_url: str, clock: Clock) -> Iterator[nw.Engine]:
    eng = nw.Engine(db_url, clock=clock)
    eng.migrate()
    yield eng
    eng.close()


def _glasgow(engine: nw.Engine, reference: str = "FAM-1", **kwargs: object) -> nw.Family:
    """A two-child Glasgow family: GLA-1 entered care on 20 February 2026, GLA-2 unknown yet."""
    children = kwargs.pop("children", [f"{reference}-A", f"{reference}-B"])
    facts = kwargs.pop("facts", {children[0]: {"entered_care_on": D(2026, 2, 20)}})  # type: ignore[index]
    return engine.open_family(
        reference,
        site="glasgow",
        actor=SW,
        children=children,  # type: ignore[arg-type]
        facts=facts,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def _rows(engine: nw.Engine, table: sa.Table) -> list[tuple[object, ...]]:
    with engine.sqlalchemy_engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(table).order_by(*table.primary_key))]


def _entry_count(engine: nw.Engine) -> int:
    with engine.sqlalchemy_engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar_one()


def _family_actions(engine: nw.Engine, family: str) -> list[str]:
    return [entry.action for entry in engine.audit(family=family)]


# -- opening a family -------------------------------------------------------------------------


def test_a_family_opens_with_its_children_and_no_case_until_allocation(engine: nw.Engine) -> None:
    family = _glasgow(engine)
    assert family == engine.family("FAM-1")
    assert (family.site, family.trial, family.arm, family.allocation_id) == (
        "glasgow",
        "best",
        None,
        None,
    )
    assert family.status == "enrolled"
    assert family.cases == ("FAM-1-A", "FAM-1-B")
    assert family.randomised_on is None
    with pytest.raises(nw.CaseNotFound):
        engine.case("FAM-1-A")
    assert engine.visits("FAM-1") == []
    (opened,) = engine.audit(family="FAM-1")
    assert opened.action == "family_opened"
    assert opened.actor_id == SW.id
    assert opened.detail["children"] == ["FAM-1-A", "FAM-1-B"]
    assert opened.detail["facts"]["FAM-1-A"] == {"entered_care_on": "2026-02-20"}
    assert [f.reference for f in engine.families(site="glasgow")] == ["FAM-1"]
    assert engine.families(site="london") == []


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"children": []}, "children", "at least one child"),
        ({"children": ["C-1", "C-1"]}, "children", "listed twice"),
        ({"children": "C-1"}, "children", "list of case references"),
        ({"site": "jefferson-parish"}, "site", "does not run at site"),
        ({"trial": "nope"}, "trial", "unknown trial"),
        ({"facts": {"C-1": {"unheard_of": True}}}, "facts", "unheard_of"),
        ({"facts": {"C-9": {"entered_care_on": D(2026, 1, 1)}}}, "facts", "not a child"),
    ],
)
def test_bad_input_opens_no_family_and_writes_nothing(
    engine: nw.Engine, kwargs: dict[str, object], field: str, words: str
) -> None:
    before = _entry_count(engine)
    arguments: dict[str, object] = {"site": "glasgow", "children": ["C-1", "C-2"]}
    arguments.update(kwargs)
    with pytest.raises(nw.InvalidInput, match=words) as raised:
        engine.open_family("FAM-X", actor=SW, **arguments)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert _rows(engine, families) == []
    assert _entry_count(engine) == before


def test_a_child_belongs_to_one_family_and_a_reference_to_one_family(engine: nw.Engine) -> None:
    _glasgow(engine)
    with pytest.raises(nw.InvalidInput, match="already in family FAM-1"):
        engine.open_family("FAM-2", site="glasgow", actor=SW, children=["FAM-1-B", "NEW-1"])
    with pytest.raises(nw.FamilyExists):
        engine.open_family("FAM-1", site="glasgow", actor=SW, children=["NEW-2"])
    assert [f.reference for f in engine.families()] == ["FAM-1"]
    assert [row[0] for row in _rows(engine, family_children)] == ["FAM-1-A", "FAM-1-B"]


def test_an_existing_case_joins_only_a_family_at_its_own_site(engine: nw.Engine) -> None:
    engine.open_case("LDN-1", pathway="nim-uk-england", site="london", actor=SW)
    with pytest.raises(nw.InvalidInput, match="at site 'london', not the family's site 'glasgow'"):
        engine.open_family("FAM-1", site="glasgow", actor=SW, children=["LDN-1"])
    assert engine.families() == []


def test_who_may_open_a_family_is_the_trial_files_and_a_denial_is_audited(
    engine: nw.Engine,
) -> None:
    with pytest.raises(nw.PermissionDenied, match="family FAM-1: rs-1 may not open_family"):
        engine.open_family("FAM-1", site="glasgow", actor=RS, children=["C-1"])
    assert engine.families() == []
    (denied,) = engine.audit(family="FAM-1")
    assert (denied.action, denied.actor_id) == ("denied", RS.id)
    assert denied.detail["action"] == "open_family"


# -- allocation -------------------------------------------------------------------------------


def test_allocation_opens_each_child_on_the_arms_pathway_and_plans_visits(
    engine: nw.Engine, clock: Clock
) -> None:
    _glasgow(engine)
    clock.advance(days=1)
    family = engine.allocate("FAM-1", arm="comparator", allocation_id="BEST-0412", actor=CO)
    assert (family.arm, family.allocation_id, family.status) == (
        "comparator",
        "BEST-0412",
        "randomised",
    )
    assert family.randomised_on == D(2026, 3, 3)
    assert family.allocated_at == clock.now
    for child in family.cases:
        case = engine.case(child)
        assert (case.pathway_id, case.site, case.stage) == (
            "best-facs-glasgow",
            "glasgow",
            "referral",
        )
        (opened,) = engine.audit(child)
        assert opened.action == "opened"
        assert (opened.detail["family"], opened.detail["arm"]) == ("FAM-1", "comparator")
        assert opened.actor_id == CO.id
    assert engine.case("FAM-1-A").facts["entered_care_on"] == D(2026, 2, 20)
    assert _family_actions(engine, "FAM-1") == ["family_opened", "allocated"]
    visits = {(v.name, v.subject): v for v in engine.visits("FAM-1")}
    # GLA's baseline: 4 to 14 weeks after entering care on 20 February; month 15 a month either
    # side of 15 months; month 30 two months either side of 30 months after randomisation.
    assert sorted(visits) == [
        ("baseline", "FAM-1-A"),
        ("month_15", "FAM-1-A"),
        ("month_30", "FAM-1"),
    ]
    baseline = visits[("baseline", "FAM-1-A")]
    assert (baseline.opens_on, baseline.closes_on, baseline.target_on) == (
        D(2026, 3, 20),
        D(2026, 5, 29),
        None,
    )
    month_15 = visits[("month_15", "FAM-1-A")]
    assert (month_15.opens_on, month_15.target_on, month_15.closes_on) == (
        D(2027, 4, 20),
        D(2027, 5, 20),
        D(2027, 6, 20),
    )
    month_30 = visits[("month_30", "FAM-1")]
    assert (month_30.opens_on, month_30.target_on, month_30.closes_on) == (
        D(2028, 7, 3),
        D(2028, 9, 3),
        D(2028, 11, 3),
    )
    assert {v.status for v in visits.values()} == {"pending"}
    assert engine.verify_audit(deep=True).ok


def test_randomisation_date_is_the_sites_local_date(engine: nw.Engine, clock: Clock) -> None:
    """23:30 UTC on 1 June is 00:30 on 2 June in London (BST): randomised on 2 June."""
    engine.open_family("FAM-L", site="london", actor=SW, children=["L-1"])
    clock.now = dt.datetime(2026, 6, 1, 23, 30, tzinfo=dt.UTC)
    family = engine.allocate("FAM-L", arm="nim", allocation_id="BEST-1", actor=CO)
    assert family.randomised_on == D(2026, 6, 2)
    assert engine.case("L-1").pathway_id == "nim-uk-england"


def test_a_second_allocation_is_refused_audited_and_changes_nothing(engine: nw.Engine) -> None:
    _glasgow(engine)
    first = engine.allocate("FAM-1", arm="nim", allocation_id="BEST-1", actor=CO)
    with pytest.raises(nw.AlreadyAllocated, match="already allocated to arm 'nim'") as raised:
        engine.allocate("FAM-1", arm="comparator", allocation_id="BEST-2", actor=CO)
    assert isinstance(raised.value, nw.ActionRefused)
    assert (raised.value.arm, raised.value.allocation_id) == ("nim", "BEST-1")
    assert engine.family("FAM-1") == first
    assert engine.case("FAM-1-A").pathway_id == "nim-uk-scotland"
    denied = engine.audit(family="FAM-1")[-1]
    assert (denied.action, denied.detail["error"]) == ("denied", "AlreadyAllocated")


@pytest.mark.parametrize(
    ("arm", "allocation_id", "words", "field"),
    [
        ("placebo", "BEST-9", "unknown arm 'placebo'", "arm"),
        ("nim", "BEST-1", "allocation id 'BEST-1' is family FAM-0's already", "allocation_id"),
        ("nim", "", "allocation id must not be empty", "allocation_id"),
    ],
)
def test_an_unknown_arm_or_a_taken_allocation_id_writes_nothing(
    engine: nw.Engine, arm: str, allocation_id: str, words: str, field: str
) -> None:
    engine.open_family("FAM-0", site="glasgow", actor=SW, children=["Z-1"])
    engine.allocate("FAM-0", arm="comparator", allocation_id="BEST-1", actor=CO)
    _glasgow(engine)
    before = (_entry_count(engine), _rows(engine, families))
    with pytest.raises(nw.InvalidInput, match=words) as raised:
        engine.allocate("FAM-1", arm=arm, allocation_id=allocation_id, actor=CO)
    assert raised.value.field == field
    assert (_entry_count(engine), _rows(engine, families)) == before
    with pytest.raises(nw.CaseNotFound):
        engine.case("FAM-1-A")


def test_only_the_coordinator_allocates(engine: nw.Engine) -> None:
    _glasgow(engine)
    with pytest.raises(nw.PermissionDenied, match="needs one of the roles coordinator"):
        engine.allocate("FAM-1", arm="nim", allocation_id="BEST-1", actor=TM)
    assert engine.family("FAM-1").arm is None
    with pytest.raises(nw.FamilyNotFound):
        engine.allocate("FAM-9", arm="nim", allocation_id="BEST-1", actor=CO)


def test_allocation_keeps_a_case_on_the_arms_pathway_and_moves_one_at_referral(
    engine: nw.Engine, clock: Clock
) -> None:
    engine.open_case("G-KEEP", pathway="nim-uk-scotland", site="glasgow", actor=SW)
    engine.open_case(
        "G-MOVE",
        pathway="best-facs-glasgow",
        site="glasgow",
        actor=SW,
        facts={"entered_care_on": D(2026, 2, 1)},
    )
    moving_deadlines = [d for d in engine.deadlines("G-MOVE") if d.status == "open"]
    assert moving_deadlines
    engine.open_family("FAM-1", site="glasgow", actor=SW, children=["G-KEEP", "G-MOVE", "G-NEW"])
    clock.advance(hours=2)
    engine.allocate("FAM-1", arm="nim", allocation_id="BEST-7", actor=CO)
    (allocated,) = [e for e in engine.audit(family="FAM-1") if e.action == "allocated"]
    assert (allocated.detail["opened"], allocated.detail["moved"], allocated.detail["kept"]) == (
        ["G-NEW"],
        ["G-MOVE"],
        ["G-KEEP"],
    )
    kept = engine.case("G-KEEP")
    assert (kept.pathway_id, kept.version) == ("nim-uk-scotland", 1)
    moved = engine.case("G-MOVE")
    assert (moved.pathway_id, moved.stage, moved.version) == ("nim-uk-scotland", "referral", 2)
    assert moved.facts["entered_care_on"] == D(2026, 2, 1)
    statuses = {(d.name, d.status) for d in engine.deadlines("G-MOVE")}
    assert {(d.name, "cancelled") for d in moving_deadlines} <= statuses
    last = engine.audit("G-MOVE")[-1]
    assert (last.action, last.detail["from_pathway"], last.detail["pathway"]) == (
        "allocated",
        "best-facs-glasgow",
        "nim-uk-scotland",
    )
    # The moved child's baseline window is planned from the fact it brought.
    assert ("baseline", "G-MOVE") in {(v.name, v.subject) for v in engine.visits("FAM-1")}
    assert engine.verify_audit(deep=True).ok


def test_a_case_past_its_first_stage_is_not_moved_and_nothing_is_written(
    engine: nw.Engine, clock: Clock
) -> None:
    engine.open_case(
        "G-ON",
        pathway="best-facs-glasgow",
        site="glasgow",
        actor=SW,
        facts={"consent_recorded": True},
    )
    clock.advance(hours=1)
    engine.fire("G-ON", "accept_referral", actor=TM)
    engine.open_family("FAM-1", site="glasgow", actor=SW, children=["G-NEW", "G-ON"])
    before = (_entry_count(engine), _rows(engine, families))
    with pytest.raises(nw.InvalidInput, match="G-ON is at stage 'assessment'"):
        engine.allocate("FAM-1", arm="nim", allocation_id="BEST-1", actor=CO)
    assert (_entry_count(engine), _rows(engine, families)) == before
    with pytest.raises(nw.CaseNotFound):
        engine.case("G-NEW")
    assert engine.case("G-ON").pathway_id == "best-facs-glasgow"


def test_a_sibling_who_joins_later_joins_the_arm(engine: nw.Engine, clock: Clock) -> None:
    _glasgow(engine)
    engine.add_child("FAM-1", "FAM-1-C", actor=SW)
    assert engine.family("FAM-1").cases == ("FAM-1-A", "FAM-1-B", "FAM-1-C")
    engine.allocate("FAM-1", arm="comparator", allocation_id="BEST-1", actor=CO)
    clock.advance(days=30)
    family = engine.add_child(
        "FAM-1", "FAM-1-D", actor=SW, facts={"entered_care_on": D(2026, 3, 25)}
    )
    assert family.cases[-1] == "FAM-1-D"
    assert family.version == 4
    assert engine.case("FAM-1-D").pathway_id == "best-facs-glasgow"
    baseline = next(v for v in engine.visits("FAM-1") if v.subject == "FAM-1-D")
    assert (baseline.name, baseline.opens_on) == ("baseline", D(2026, 4, 22))
    added = engine.audit(family="FAM-1")[-1]
    assert (added.action, added.detail["child"], added.detail["opened"]) == (
        "child_added",
        "FAM-1-D",
        ["FAM-1-D"],
    )
    with pytest.raises(nw.InvalidInput, match="already in family FAM-1"):
        engine.add_child("FAM-1", "FAM-1-D", actor=SW)


def test_concurrent_allocations_one_wins(db_url: str, clock: Clock) -> None:
    """Two coordinators enter a result for one family at once: one is recorded, once."""
    setup = nw.Engine(db_url, clock=clock)
    setup.migrate()
    _glasgow(setup)
    engines = [nw.Engine(db_url, clock=clock) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def allocate(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(engines[i].allocate("FAM-1", "nim", f"BEST-{i}", actor=CO))
        except (nw.AlreadyAllocated, nw.ConcurrentUpdate) as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [o for o in outcomes if isinstance(o, nw.Family)]
    assert len(won) == 1
    assert setup.family("FAM-1").allocation_id == won[0].allocation_id
    assert [e.action for e in setup.audit(family="FAM-1")].count("allocated") == 1
    for eng in [setup, *engines]:
        eng.close()


# -- family actions ---------------------------------------------------------------------------


def _allocated(engine: nw.Engine, clock: Clock) -> None:
    _glasgow(engine)
    engine.allocate("FAM-1", arm="nim", allocation_id="BEST-1", actor=CO)
    clock.advance(hours=1)


def test_fire_family_moves_every_open_child_each_audited(engine: nw.Engine, clock: Clock) -> None:
    _allocated(engine, clock)
    heard: list[tuple[str, str]] = []
    engine.subscribe(lambda event: heard.append((event.kind, event.reference)))
    moved = engine.fire_family("FAM-1", "accept_referral", TM, facts={"consent_recorded": True})
    assert [(c.reference, c.stage) for c in moved] == [
        ("FAM-1-A", "assessment"),
        ("FAM-1-B", "assessment"),
    ]
    for child in ("FAM-1-A", "FAM-1-B"):
        last = engine.audit(child)[-1]
        assert (last.action, last.trigger, last.actor_id) == (
            "transition",
            "accept_referral",
            TM.id,
        )
    action = engine.audit(family="FAM-1")[-1]
    assert action.action == "family_action"
    assert action.detail == {
        "action": "fire",
        "trigger": "accept_referral",
        "cases": ["FAM-1-A", "FAM-1-B"],
    }
    assert heard == [
        ("transition", "FAM-1-A"),
        ("transition", "FAM-1-B"),
        ("family_action", "FAM-1"),
    ]
    assert engine.verify_audit(deep=True).ok


def test_fire_family_is_all_or_nothing_and_audits_only_the_refusal(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    engine.record("FAM-1-B", {"consent_recorded": True}, actor=SW)
    clock.advance(hours=1)
    before_a = engine.case("FAM-1-A")
    before_b = engine.case("FAM-1-B")
    heard: list[tuple[str, str]] = []
    engine.subscribe(lambda event: heard.append((event.kind, event.reference)))
    # A has no consent recorded: B could move, but the family moves together or not at all.
    with pytest.raises(nw.RequirementsNotMet, match="FAM-1-A"):
        engine.fire_family("FAM-1", "accept_referral", TM)
    assert engine.case("FAM-1-A") == before_a
    assert engine.case("FAM-1-B") == before_b
    assert engine.audit("FAM-1-A")[-1].action == "denied"
    assert engine.audit("FAM-1-B")[-1].action == "fact_recorded"
    assert "family_action" not in _family_actions(engine, "FAM-1")
    assert heard == [("denied", "FAM-1-A")]
    # The refusal on the second child rolls back the first child's move too.
    engine.record("FAM-1-A", {"consent_recorded": True}, actor=SW)
    clock.advance(hours=1)
    engine.fire("FAM-1-B", "accept_referral", TM)
    clock.advance(hours=1)
    a_before = engine.case("FAM-1-A")
    with pytest.raises(nw.TransitionNotAllowed, match="FAM-1-B"):
        engine.fire_family("FAM-1", "accept_referral", TM)
    assert engine.case("FAM-1-A") == a_before
    assert engine.audit("FAM-1-B")[-1].action == "denied"
    assert engine.verify_audit(deep=True).ok


def test_pause_and_resume_family_skip_children_already_so(engine: nw.Engine, clock: Clock) -> None:
    _allocated(engine, clock)
    engine.pause("FAM-1-B", TM, reason="parent in hospital")
    clock.advance(hours=1)
    paused = engine.pause_family("FAM-1", TM, reason="family moved house")
    assert [c.reference for c in paused] == ["FAM-1-A"]
    assert all(engine.case(c).paused for c in ("FAM-1-A", "FAM-1-B"))
    clock.advance(days=3)
    resumed = engine.resume_family("FAM-1", TM)
    assert [c.reference for c in resumed] == ["FAM-1-A", "FAM-1-B"]
    with pytest.raises(nw.InvalidInput, match="no open case to resume"):
        engine.resume_family("FAM-1", TM)
    with pytest.raises(nw.PermissionDenied):
        engine.pause_family("FAM-1", SW, reason="x")
    assert not engine.case("FAM-1-A").paused


def test_family_actions_before_allocation_have_no_case_to_act_on(engine: nw.Engine) -> None:
    _glasgow(engine)
    with pytest.raises(nw.InvalidInput, match="no open case to fire"):
        engine.fire_family("FAM-1", "accept_referral", TM)
    with pytest.raises(nw.FamilyNotFound):
        engine.fire_family("FAM-9", "accept_referral", TM)


def test_fire_family_in_the_hosts_transaction_rolls_back_with_it(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    engine.record("FAM-1-B", {"consent_recorded": True}, actor=SW)
    engine.record("FAM-1-A", {"consent_recorded": True}, actor=SW)
    clock.advance(hours=1)
    heard: list[str] = []
    engine.subscribe(lambda event: heard.append(event.kind))
    with engine.sqlalchemy_engine.connect() as conn:
        conn.begin()
        engine.fire_family("FAM-1", "accept_referral", TM, connection=conn)
        conn.rollback()
    assert engine.case("FAM-1-A").stage == "referral"
    assert heard == []
    with engine.sqlalchemy_engine.connect() as conn:
        conn.begin()
        engine.fire_family("FAM-1", "accept_referral", TM, connection=conn)
        assert heard == []
        conn.commit()
    assert engine.case("FAM-1-B").stage == "assessment"
    assert heard == ["transition", "transition", "family_action"]


# -- trial status -----------------------------------------------------------------------------


def test_trial_status_moves_as_the_trial_does_and_never_moves_a_case(
    engine: nw.Engine, clock: Clock
) -> None:
    _glasgow(engine)
    assert engine.set_trial_status("FAM-1", "consented", CO).status == "consented"
    with pytest.raises(nw.InvalidInput, match="the allocation sets it"):
        engine.set_trial_status("FAM-1", "randomised", CO)
    engine.allocate("FAM-1", arm="nim", allocation_id="BEST-1", actor=CO)
    clock.advance(days=1)
    case_before = engine.case("FAM-1-A")
    lost = engine.set_trial_status("FAM-1", "lost_to_follow_up", RS, reason="moved away")
    assert lost.status == "lost_to_follow_up"
    assert engine.case("FAM-1-A") == case_before
    found = engine.set_trial_status("FAM-1", "randomised", CO, reason="traced")
    assert found.status == "randomised"
    engine.set_trial_status("FAM-1", "withdrawn_consent", CO, reason="parents withdrew")
    with pytest.raises(nw.InvalidInput, match="cannot become completed"):
        engine.set_trial_status("FAM-1", "completed", CO)
    with pytest.raises(nw.InvalidInput, match="unknown trial status 'gone'"):
        engine.set_trial_status("FAM-1", "gone", CO)
    with pytest.raises(nw.PermissionDenied):
        engine.set_trial_status("FAM-1", "completed", SW)
    changes = [
        (e.detail["from"], e.detail["to"])
        for e in engine.audit(family="FAM-1")
        if e.action == "status_changed"
    ]
    assert changes == [
        ("enrolled", "consented"),
        ("randomised", "lost_to_follow_up"),
        ("lost_to_follow_up", "randomised"),
        ("randomised", "withdrawn_consent"),
    ]
    # Withdrawing a child from the service does not withdraw the family from the trial.
    engine.fire("FAM-1-B", "withdraw", TM, reason="moved out of the area")
    assert engine.family("FAM-1").status == "withdrawn_consent"
    assert engine.case("FAM-1-B").outcome is not None


# -- research visits --------------------------------------------------------------------------


def test_a_visit_before_its_window_is_refused_audited_and_changes_nothing(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    clock.now = dt.datetime(2026, 3, 18, 12, tzinfo=dt.UTC)
    with pytest.raises(nw.OutsideWindow, match="before window 'baseline' opens on 2026-03-20"):
        engine.record_visit("FAM-1", "baseline", held_on=D(2026, 3, 18), actor=RS)
    denied = engine.audit(family="FAM-1")[-1]
    assert (denied.action, denied.detail["error"]) == ("denied", "OutsideWindow")
    assert [v.held_on for v in engine.visits("FAM-1")] == [None, None, None]


def test_visits_are_in_window_late_or_missed(engine: nw.Engine, clock: Clock) -> None:
    _allocated(engine, clock)
    engine.record("FAM-1-B", {"entered_care_on": D(2026, 1, 5)}, actor=SW)
    # B's baseline: 2 February to 13 April 2026. A's: 20 March to 29 May 2026.
    clock.now = dt.datetime(2026, 4, 1, 12, tzinfo=dt.UTC)
    (a,) = engine.record_visit("FAM-1", "baseline", D(2026, 3, 30), RS, child="FAM-1-A")
    assert (a.subject, a.status) == ("FAM-1-A", "in_window")
    by_subject = {v.subject: v for v in engine.visits("FAM-1") if v.name == "baseline"}
    assert by_subject["FAM-1-B"].status == "pending"
    clock.now = dt.datetime(2026, 4, 14, 12, tzinfo=dt.UTC)
    assert {v.subject: v.status for v in engine.visits("FAM-1") if v.name == "baseline"} == {
        "FAM-1-A": "in_window",
        "FAM-1-B": "missed",
    }
    (b,) = engine.record_visit("FAM-1", "baseline", D(2026, 4, 14), RS, child="FAM-1-B")
    assert b.status == "late"
    with pytest.raises(nw.InvalidInput, match="recorded already"):
        engine.record_visit("FAM-1", "baseline", D(2026, 4, 14), RS, child="FAM-1-B")
    with pytest.raises(nw.InvalidInput, match="after today"):
        engine.record_visit("FAM-1", "month_15", D(2027, 5, 1), RS)
    with pytest.raises(nw.InvalidInput, match="not a child of family"):
        engine.record_visit("FAM-1", "baseline", D(2026, 4, 14), RS, child="OTHER")
    with pytest.raises(nw.InvalidInput, match="unknown visit 'visit_9'"):
        engine.record_visit("FAM-1", "visit_9", D(2026, 4, 14), RS)
    with pytest.raises(nw.PermissionDenied):
        engine.record_visit("FAM-1", "baseline", D(2026, 4, 14), SW)
    recorded = [e for e in engine.audit(family="FAM-1") if e.action == "visit_recorded"]
    assert [e.detail["subjects"] for e in recorded] == [
        {"FAM-1-A": "in_window"},
        {"FAM-1-B": "late"},
    ]


def test_one_home_visit_records_every_siblings_baseline(engine: nw.Engine, clock: Clock) -> None:
    _allocated(engine, clock)
    engine.record("FAM-1-B", {"entered_care_on": D(2026, 2, 27)}, actor=SW)
    clock.now = dt.datetime(2026, 4, 2, 12, tzinfo=dt.UTC)
    recorded = engine.record_visit("FAM-1", "baseline", D(2026, 4, 1), RS)
    assert [(v.subject, v.status) for v in recorded] == [
        ("FAM-1-A", "in_window"),
        ("FAM-1-B", "in_window"),
    ]


def test_an_anchor_recorded_or_corrected_after_allocation_moves_the_window(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    assert "FAM-1-B" not in {v.subject for v in engine.visits("FAM-1")}
    engine.record("FAM-1-B", {"entered_care_on": D(2026, 2, 1)}, actor=SW)
    b = {v.name: v for v in engine.visits("FAM-1") if v.subject == "FAM-1-B"}
    assert b["baseline"].opens_on == D(2026, 3, 1)
    clock.advance(hours=1)
    engine.record("FAM-1-B", {"entered_care_on": D(2026, 2, 8)}, actor=SW)
    b = {v.name: v for v in engine.visits("FAM-1") if v.subject == "FAM-1-B"}
    assert (b["baseline"].opens_on, b["month_15"].target_on) == (D(2026, 3, 8), D(2027, 5, 8))
    # The reminders moved with it: one pending pair per visit, the old pair cancelled.
    with engine.sqlalchemy_engine.connect() as conn:
        statuses = conn.execute(
            sa.select(visit_alarms.c.status, sa.func.count())
            .where(visit_alarms.c.family == "FAM-1")
            .group_by(visit_alarms.c.status)
        ).all()
    assert dict(statuses) == {"pending": 10, "cancelled": 4}


def test_visit_reminders_fire_once_as_the_window_opens_and_before_it_closes(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    # A's baseline opens on 20 March 2026 (local midnight, GMT) and closes on 29 May (BST):
    # its before-close reminder is due 2 weeks earlier, at the start of 15 May in Glasgow.
    assert engine.next_due_at() == dt.datetime(2026, 3, 20, 0, 0, tzinfo=dt.UTC) or (
        engine.next_due_at() is not None
        and engine.next_due_at() <= dt.datetime(2026, 3, 20, tzinfo=dt.UTC)  # type: ignore[operator]
    )
    clock.now = dt.datetime(2026, 3, 20, 0, 0, tzinfo=dt.UTC)
    fired = [e for e in engine.process_due() if e.kind == "visit_reminder"]
    assert [(e.reference, e.detail["visit"], e.detail["when"]) for e in fired] == [
        ("FAM-1", "baseline", "opens")
    ]
    assert [e for e in engine.process_due() if e.kind == "visit_reminder"] == []
    clock.now = dt.datetime(2026, 5, 14, 22, 59, tzinfo=dt.UTC)
    assert [e for e in engine.process_due() if e.kind == "visit_reminder"] == []
    clock.now = dt.datetime(2026, 5, 14, 23, 0, tzinfo=dt.UTC)  # 00:00 BST on 15 May
    fired = [e for e in engine.process_due() if e.kind == "visit_reminder"]
    assert [(e.detail["visit"], e.detail["when"]) for e in fired] == [("baseline", "before_close")]
    reminders = [e for e in engine.audit(family="FAM-1") if e.action == "visit_reminder"]
    assert len(reminders) == 2


def test_a_held_visit_or_a_withdrawal_cancels_its_reminders(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    clock.now = dt.datetime(2026, 3, 21, 12, tzinfo=dt.UTC)
    engine.record_visit("FAM-1", "baseline", D(2026, 3, 21), RS)
    engine.set_trial_status("FAM-1", "withdrawn_consent", CO, reason="parents withdrew")
    clock.now = dt.datetime(2029, 1, 1, tzinfo=dt.UTC)
    assert [e for e in engine.process_due() if e.kind == "visit_reminder"] == []
    visits = {v.name: v for v in engine.visits("FAM-1")}
    assert (visits["baseline"].status, visits["baseline"].stopped) == ("in_window", False)
    assert (visits["month_15"].status, visits["month_15"].stopped) == ("missed", True)
    with pytest.raises(nw.InvalidInput, match="research visits have stopped"):
        engine.record_visit("FAM-1", "month_15", D(2027, 5, 1), RS)


def test_reminders_caught_up_after_the_window_closed_lapse_silently(
    engine: nw.Engine, clock: Clock
) -> None:
    """The processor was down all spring: no reminder to book a visit whose window has closed."""
    _allocated(engine, clock)
    clock.now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    assert [e for e in engine.process_due() if e.kind == "visit_reminder"] == []
    with engine.sqlalchemy_engine.connect() as conn:
        lapsed = conn.execute(
            sa.select(sa.func.count()).where(visit_alarms.c.status == "lapsed")
        ).scalar_one()
    assert lapsed == 2


def test_the_log_verifies_deep_and_a_rewritten_family_entry_is_found(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    engine.set_trial_status("FAM-1", "lost_to_follow_up", CO)
    assert engine.verify_audit(deep=True).ok
    with engine.sqlalchemy_engine.begin() as conn:
        conn.execute(
            audit_events.update()
            .where(audit_events.c.stream == "family", audit_events.c.action == "allocated")
            .values(detail={"arm": "comparator"})
        )
    report = engine.verify_audit(deep=True)
    assert not report.ok
    assert any("family FAM-1" in problem for problem in report.problems)


def _tamper(engine: nw.Engine, statement: sa.Executable) -> None:
    with engine.sqlalchemy_engine.begin() as conn:
        conn.execute(statement)


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        (
            families.update().values(arm="comparator"),
            "family FAM-1: its row says status randomised, arm comparator, allocation BEST-1, "
            "randomised on 2026-03-02, the log says status randomised, arm nim",
        ),
        (families.update().values(status="completed"), "its row says status completed"),
        (families.update().values(allocation_id="BEST-9"), "allocation BEST-9"),
        (families.update().values(randomised_on=D(2026, 1, 1)), "randomised on 2026-01-01"),
        (
            family_children.delete().where(family_children.c.reference == "FAM-1-B"),
            "family FAM-1: its children are FAM-1-A, the log says FAM-1-A, FAM-1-B",
        ),
        (
            visits.update().where(visits.c.name == "baseline").values(held_on=D(2026, 3, 25)),
            "family FAM-1: its visits held differ from the visits the log recorded",
        ),
        (
            visits.update().where(visits.c.name == "month_30").values(held_on=D(2026, 3, 25)),
            "its visits held differ",
        ),
    ],
)
def test_a_deep_verify_finds_a_family_row_changed_outside_the_engine(
    engine: nw.Engine, clock: Clock, statement: sa.Executable, words: str
) -> None:
    _allocated(engine, clock)
    clock.now = dt.datetime(2026, 3, 30, tzinfo=dt.UTC)
    engine.record_visit("FAM-1", "baseline", D(2026, 3, 29), RS)
    assert engine.verify_audit(deep=True).ok
    _tamper(engine, statement)
    assert engine.verify_audit().ok, "only a deep verify reads the rows"
    report = engine.verify_audit(deep=True)
    assert [p for p in report.problems if words in p], report.problems


def test_a_deep_verify_finds_a_family_added_or_removed_outside_the_engine(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    engine.open_family("FAM-2", site="london", actor=SW, children=["L-1"])
    _tamper(
        engine,
        families.insert().values(
            reference="FAM-X",
            trial="best",
            site="london",
            status="enrolled",
            status_at=clock.now,
            opened_at=clock.now,
            updated_at=clock.now,
            version=1,
        ),
    )
    _tamper(engine, family_children.delete().where(family_children.c.family == "FAM-2"))
    _tamper(engine, families.delete().where(families.c.reference == "FAM-2"))
    problems = engine.verify_audit(deep=True).problems
    assert any(
        p.startswith("family FAM-X: has a row but the log never opened it") for p in problems
    )
    assert any(p.startswith("family FAM-2: the log opened it (") for p in problems)
    assert any("but its row is gone" in p for p in problems)


def test_family_history_is_written_in_order(engine: nw.Engine, clock: Clock) -> None:
    """An allocation, a sibling or a visit dated before the family's newest change is refused."""
    _glasgow(engine)
    earlier = clock.now - dt.timedelta(days=30)
    with pytest.raises(nw.InvalidInput, match="before its newest change") as raised:
        engine.allocate("FAM-1", arm="nim", allocation_id="BEST-1", actor=CO, at=earlier)
    assert raised.value.field == "at"
    with pytest.raises(nw.InvalidInput, match="before its newest change"):
        engine.add_child("FAM-1", "FAM-1-C", actor=SW, at=earlier)
    engine.allocate("FAM-1", arm="nim", allocation_id="BEST-1", actor=CO)
    clock.now = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    engine.record_visit("FAM-1", "baseline", D(2026, 3, 31), RS)
    assert engine.family("FAM-1").version == 3
    with pytest.raises(nw.InvalidInput, match="before its newest change"):
        engine.set_trial_status("FAM-1", "completed", CO, at=clock.now - dt.timedelta(hours=1))
    assert engine.family("FAM-1").status == "randomised"


def test_a_withdrawal_stops_only_the_visits_whose_window_had_not_closed(
    engine: nw.Engine, clock: Clock
) -> None:
    """Baseline closed unheld on 29 May: missed, not stopped by a withdrawal in June."""
    _allocated(engine, clock)
    clock.now = dt.datetime(2026, 6, 10, 12, tzinfo=dt.UTC)
    engine.set_trial_status("FAM-1", "withdrawn_consent", CO, reason="parents withdrew")
    clock.now = dt.datetime(2029, 1, 1, tzinfo=dt.UTC)
    visits = {v.name: (v.status, v.stopped) for v in engine.visits("FAM-1")}
    assert visits == {
        "baseline": ("missed", False),
        "month_15": ("missed", True),
        "month_30": ("missed", True),
    }


def test_a_deep_verify_words_each_family_problem_exactly(engine: nw.Engine, clock: Clock) -> None:
    """Unallocated and allocated families, siblings added later, rows edited: the exact words."""
    engine.open_family("FAM-Z", site="london", actor=SW, children=["Z-1"])
    clock.advance(hours=1)
    engine.add_child("FAM-Z", "A-0", actor=SW)
    _allocated(engine, clock)
    assert engine.verify_audit(deep=True).ok, "an unallocated family and a later sibling verify"
    _tamper(engine, families.update().where(families.c.reference == "FAM-Z").values(status="x"))
    _tamper(
        engine,
        family_children.insert().values(
            reference="M-5", family="FAM-Z", joined_at=clock.now, facts={}
        ),
    )
    for reference in ("FAM-X", "FAM-Y"):
        _tamper(
            engine,
            families.insert().values(
                reference=reference,
                trial="best",
                site="london",
                status="enrolled",
                status_at=clock.now,
                opened_at=clock.now,
                updated_at=clock.now,
                version=1,
            ),
        )
    _tamper(engine, family_children.delete().where(family_children.c.family == "FAM-1"))
    problems = [p for p in engine.verify_audit(deep=True).problems if p.startswith("family ")]
    added = next(e for e in engine.audit(family="FAM-Z") if e.action == "child_added")
    allocated = next(e for e in engine.audit(family="FAM-1") if e.action == "allocated")
    assert problems == [
        "family FAM-X: has a row but the log never opened it: written outside the engine",
        "family FAM-Y: has a row but the log never opened it: written outside the engine",
        "family FAM-1: its children are none, the log says FAM-1-A, FAM-1-B: changed outside "
        "the engine",
        "family FAM-Z: its row says status x, arm (none), allocation (none), randomised on "
        "(not yet), the log says status enrolled, arm (none), allocation (none), randomised on "
        f"(not yet) (its newest entry: seq {added.seq} (family FAM-Z #2, child_added at "
        f"{added.at.isoformat(timespec='microseconds')}))",
        "family FAM-Z: its children are Z-1, A-0, M-5, the log says Z-1, A-0: changed outside "
        "the engine",
    ], problems
    assert allocated.detail["status"] == "randomised"
    # A family whose row is gone is named, and the families after it are still checked.
    _tamper(engine, visit_alarms.delete().where(visit_alarms.c.family == "FAM-1"))
    _tamper(engine, visits.delete().where(visits.c.family == "FAM-1"))
    _tamper(engine, families.delete().where(families.c.reference == "FAM-1"))
    opened = engine.audit(family="FAM-1")[0]
    problems = engine.verify_audit(deep=True).problems
    assert (
        f"family FAM-1: the log opened it (seq {opened.seq} (family FAM-1 #1, family_opened at "
        f"{opened.at.isoformat(timespec='microseconds')})) but its row is gone"
    ) in problems
    assert any(p.startswith("family FAM-Z: its children are Z-1, A-0, M-5") for p in problems)


def test_a_visit_held_outside_the_engine_is_named(engine: nw.Engine, clock: Clock) -> None:
    _allocated(engine, clock)
    _tamper(
        engine, visits.update().where(visits.c.name == "month_30").values(held_on=D(2026, 4, 1))
    )
    assert [p for p in engine.verify_audit(deep=True).problems if p.startswith("family ")] == [
        "family FAM-1: its visits held differ from the visits the log recorded: changed outside "
        "the engine"
    ]


def test_a_family_entry_whose_detail_is_not_a_mapping_is_reported_not_raised(
    engine: nw.Engine, clock: Clock
) -> None:
    _allocated(engine, clock)
    _tamper(
        engine,
        audit_events.update()
        .where(audit_events.c.stream == "family", audit_events.c.action == "family_opened")
        .values(detail=["not", "a", "mapping"]),
    )
    report = engine.verify_audit(deep=True)
    assert not report.ok
    assert any("its contents do not match its hash" in p for p in report.problems)
