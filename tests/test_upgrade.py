"""Moving running cases onto a newer version of their pathway (``Engine.upgrade_cases``).

Version 1 of the bundled pathways (kept in ``pathways/archive/``) counted the 26 weeks a day late,
let a pause move the law's clocks and capped court extensions at three; version 2 corrects them.
Every expected date here is worked by hand in a comment.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from deadline_helpers import (
    COORDINATOR,
    COURT_OFFICER,
    SOCIAL_WORKER,
    TEAM_MANAGER,
    FakeClock,
    utc,
)

import nim_workflow as nw
from nim_workflow._pathway._bundled import bundled_path

ARCHIVE = Path(__file__).resolve().parents[1] / "pathways" / "archive"
ENGLAND_V1 = ARCHIVE / "nim-uk-england.v1.yaml"
LOUISIANA_V1 = ARCHIVE / "nim-us-louisiana.v1.yaml"
REASON = "statutory clocks corrected (pathway version 2)"


@pytest.fixture
def clock() -> FakeClock:
    """A clock the tests move by hand."""
    return FakeClock(utc(2026, 1, 5, 9))


def _as_first_released(tmp_path: Path) -> Path:
    """England version 1 as the first release ran it: its statutory clocks moved with pauses.

    The format now says so explicitly (``pausable: true``); without it an anchored clock no
    longer pauses, whatever the version.
    """
    text = ENGLAND_V1.read_text(encoding="utf-8")
    for anchor in ("anchor: proceedings_issued_on\n", "anchor: entered_care_on\n"):
        assert text.count(anchor) == 1, anchor
        text = text.replace(anchor, f"{anchor}    pausable: true\n")
    path = tmp_path / "nim-uk-england.v1.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def old_engine(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[nw.Engine]:
    """An engine that knows only version 1 of the England and Louisiana pathways."""
    old = [_as_first_released(tmp_path), LOUISIANA_V1]
    with nw.Engine(db_url, clock=clock, pathways=old) as engine:
        engine.migrate()
        yield engine


def _due(engine: nw.Engine, reference: str) -> dict[str, date]:
    return {d.name: d.due_on for d in engine.deadlines(reference) if d.status == "open"}


def _england_v1_case(engine: nw.Engine, reference: str) -> None:
    """Issued and in care Mon 5 Jan 2026; paused 2 to 16 Feb; the court extended by 8 weeks."""
    engine.open_case(
        reference,
        pathway="nim-uk-england",
        site="london",
        actor=SOCIAL_WORKER,
        at=utc(2026, 1, 5, 10),
        facts={"proceedings_issued_on": date(2026, 1, 5), "entered_care_on": date(2026, 1, 5)},
    )
    engine.pause(reference, actor=COORDINATOR, reason="hospital", at=utc(2026, 2, 2, 10))
    engine.resume(reference, actor=COORDINATOR, at=utc(2026, 2, 16, 10))
    engine.extend_deadline(
        reference, "care_proceedings", actor=COURT_OFFICER, reason="court", at=utc(2026, 6, 1, 10)
    )


# Version 1, from Mon 5 Jan 2026:
#   care_proceedings: 5 Jan + 182 days = 6 Jul; the pause (2..15 Feb, 14 dates) moved it to
#   20 Jul; + 8 weeks (56 days: 11 to 31 Jul, 31 in Aug, 14 in Sep) = 14 Sep.
#   lac_review: 20 working days: 6..9 Jan (4), 12..16 (9), 19..23 (14), 26..30 (19), Mon 2 Feb
#   (20); the pause (10 working days, 2..13 Feb) moved it to Mon 16 Feb.
#   referral_decision: 10 working days -> Mon 19 Jan, already past when the pause began.
V1_DUE = {
    "referral_decision": date(2026, 1, 19),
    "care_proceedings": date(2026, 9, 14),
    "lac_review": date(2026, 2, 16),
}
# Version 2: care_proceedings is 26 weeks beginning with 5 Jan: 5 Jan + 181 days = Sun 5 Jul,
# not moved by the pause; the extension granted stays: + 56 days (26 in Jul, 30 in Aug) = 30 Aug.
# lac_review is not moved by the pause either: Mon 2 Feb.
V2_DUE = {
    "referral_decision": date(2026, 1, 19),
    "care_proceedings": date(2026, 8, 30),
    "lac_review": date(2026, 2, 2),
}


def test_a_dry_run_lists_every_date_that_would_change_and_writes_nothing(
    old_engine: nw.Engine, db_url: str, clock: FakeClock
) -> None:
    """dry_run returns each deadline's old and new date; the database is left as it was."""
    _england_v1_case(old_engine, "LDN-U1")
    assert _due(old_engine, "LDN-U1") == V1_DUE
    audit_before = len(old_engine.audit("LDN-U1"))
    with nw.Engine(db_url, clock=clock) as engine:
        plan = engine.upgrade_cases(
            "nim-uk-england", actor=COORDINATOR, reason=REASON, dry_run=True, at=utc(2026, 6, 2)
        )
        assert [(u.reference, u.from_version, u.to_version, u.applied) for u in plan] == [
            ("LDN-U1", 1, 4, False)
        ]
        changes = {c.name: (c.due_on_before, c.due_on_after, c.change) for c in plan[0].changes}
        assert changes == {
            "referral_decision": (
                V1_DUE["referral_decision"],
                V2_DUE["referral_decision"],
                "unchanged",
            ),
            "care_proceedings": (V1_DUE["care_proceedings"], V2_DUE["care_proceedings"], "moved"),
            "lac_review": (V1_DUE["lac_review"], V2_DUE["lac_review"], "moved"),
        }
        assert plan[0].dates_changed == 2
        assert engine.case("LDN-U1").pathway_version == 1
        assert _due(engine, "LDN-U1") == V1_DUE
        assert len(engine.audit("LDN-U1")) == audit_before


def test_an_upgrade_recomputes_open_deadlines_under_the_new_rules_in_one_audited_step(
    old_engine: nw.Engine, db_url: str, clock: FakeClock
) -> None:
    """Upgraded: the law's clocks lose the pause, keep the court's extension, audit verifies."""
    _england_v1_case(old_engine, "LDN-U1")
    with nw.Engine(db_url, clock=clock) as engine:
        done = engine.upgrade_cases(
            "nim-uk-england", actor=COORDINATOR, reason=REASON, at=utc(2026, 6, 2)
        )
        assert [(u.reference, u.applied) for u in done] == [("LDN-U1", True)]
        case = engine.case("LDN-U1")
        assert (case.pathway_version, case.stage) == (4, "referral")
        assert _due(engine, "LDN-U1") == V2_DUE
        proceedings = next(d for d in engine.deadlines("LDN-U1") if d.name == "care_proceedings")
        why = proceedings.explain()
        assert [(a.kind, a.previous_due_on, a.due_on) for a in why.adjustments] == [
            ("extension", date(2026, 7, 5), date(2026, 8, 30))
        ]
        assert "beginning with" in why.rule
        last = engine.audit("LDN-U1")[-1]
        assert (last.action, last.actor_id, last.reason) == ("upgraded", COORDINATOR.id, REASON)
        assert (last.detail["from_version"], last.detail["to_version"]) == (1, 4)
        assert engine.verify_audit().ok
        # Already on the newest version (4): a second run has nothing to do.
        assert engine.upgrade_cases("nim-uk-england", actor=COORDINATOR, reason=REASON) == []
        # And the upgraded case acts on the corrected rules: a new extension is up to 8 weeks.
        extended = engine.extend_deadline(
            "LDN-U1",
            "care_proceedings",
            actor=COURT_OFFICER,
            reason="again",
            at=utc(2026, 6, 3),
            by="2 weeks",
        )
        assert extended.due_on == date(2026, 9, 13)


def test_a_case_left_on_its_old_version_keeps_its_old_rules(
    old_engine: nw.Engine, db_url: str, clock: FakeClock
) -> None:
    """Without an upgrade a version 1 case still acts, with version 1's dates."""
    _england_v1_case(old_engine, "LDN-OLD")
    with nw.Engine(db_url, clock=clock) as engine:
        engine.record(
            "LDN-OLD", {"consent_recorded": True}, actor=SOCIAL_WORKER, at=utc(2026, 6, 2)
        )
        case = engine.fire("LDN-OLD", "accept_referral", actor=TEAM_MANAGER, at=utc(2026, 6, 2))
        assert (case.pathway_version, case.stage) == (1, "assessment")
        assert _due(engine, "LDN-OLD")["care_proceedings"] == V1_DUE["care_proceedings"]


def test_louisiana_cases_gain_the_clocks_version_two_adds(
    old_engine: nw.Engine, db_url: str, clock: FakeClock
) -> None:
    """Upgrading a Louisiana case starts art. 692's case review and ASFA's 15 of 22 months."""
    old_engine.open_case(
        "NOLA-U1",
        pathway="nim-us-louisiana",
        site="jefferson-parish",
        actor=SOCIAL_WORKER,
        at=utc(2026, 1, 5, 16),
        facts={"entered_care_on": date(2026, 1, 5)},
    )
    # Version 1: permanency hearing 12 months after removal, 5 Jan 2027.
    assert _due(old_engine, "NOLA-U1")["permanency_hearing"] == date(2027, 1, 5)
    with nw.Engine(db_url, clock=clock) as engine:
        (done,) = engine.upgrade_cases(
            "nim-us-louisiana", actor=COORDINATOR, reason=REASON, at=utc(2026, 2, 2, 16)
        )
        changes = {c.name: (c.due_on_before, c.due_on_after, c.change) for c in done.changes}
        # case_review: the earliest of disposition + 3 months (not recorded) and removal
        # + 6 months: 5 Jul 2026. asfa_15_of_22: care counts from removal + 60 days (26 days to
        # 31 Jan, 28 in Feb, 6 in Mar: 6 Mar 2026), and 15 months of it end on 6 Jun 2027.
        assert changes["permanency_hearing"] == (date(2027, 1, 5), date(2027, 1, 5), "unchanged")
        assert changes["case_review"] == (None, date(2026, 7, 5), "opened")
        assert changes["asfa_15_of_22"] == (None, date(2027, 6, 6), "opened")
        review = next(d for d in engine.deadlines("NOLA-U1") if d.name == "case_review")
        assert "entered_care_on" in review.explain().anchor


#: The trial's pathways, the archived version before the outcome facts, its site and the date facts
#: a case there opens with (each starting a statutory clock).
OUTCOME_PATHWAYS = {
    "nim-uk-england": (3, "london", ("proceedings_issued_on", "entered_care_on")),
    "nim-uk-scotland": (3, "glasgow", ("placed_on", "cso_made_on")),
    "best-sau-london": (1, "london", ("proceedings_issued_on", "entered_care_on")),
    "best-facs-glasgow": (1, "glasgow", ("placed_on", "cso_made_on")),
}
OUTCOMES = {
    "permanence_achieved_on": date(2026, 3, 2),
    "intervention_received": "partly",
    "placed_on": date(2026, 2, 2),
}


@pytest.mark.parametrize("pathway", sorted(OUTCOME_PATHWAYS))
def test_the_trial_outcome_facts_arrive_with_an_upgrade_that_moves_no_date(
    db_url: str, clock: FakeClock, pathway: str
) -> None:
    """A case on the version before the outcome facts cannot record them; moved on, it can."""
    before, site, anchors = OUTCOME_PATHWAYS[pathway]
    old = nw.load_pathway(ARCHIVE / f"{pathway}.v{before}.yaml")
    assert {"permanence_achieved_on", "intervention_received"}.isdisjoint(old.facts)
    with nw.Engine(db_url, clock=clock, pathways=[old]) as engine:
        engine.migrate()
        engine.open_case(
            "OUT-1",
            pathway=pathway,
            site=site,
            actor=SOCIAL_WORKER,
            at=utc(2026, 1, 5, 10),
            facts=dict.fromkeys(anchors, date(2026, 1, 5)),
        )
        with pytest.raises(nw.InvalidInput, match="permanence_achieved_on"):
            engine.record(
                "OUT-1",
                {"permanence_achieved_on": date(2026, 3, 2)},
                actor=SOCIAL_WORKER,
                at=utc(2026, 3, 2, 10),
            )
        due = _due(engine, "OUT-1")
    with nw.Engine(db_url, clock=clock) as engine:
        (done,) = engine.upgrade_cases(
            pathway, actor=COORDINATOR, reason="trial outcomes", at=utc(2026, 3, 2, 10)
        )
        assert (done.from_version, done.to_version, done.dates_changed) == (before, before + 1, 0)
        assert _due(engine, "OUT-1") == due
        engine.record("OUT-1", OUTCOMES, actor=SOCIAL_WORKER, at=utc(2026, 3, 2, 11))
        assert {name: engine.case("OUT-1").facts[name] for name in OUTCOMES} == OUTCOMES
        assert engine.verify_audit().ok


def _renamed_stage_variant(tmp_path: Path) -> Path:
    """England at version 5 with its treatment stage renamed therapy."""
    text = Path(str(bundled_path("nim-uk-england"))).read_text(encoding="utf-8")
    text = re.sub(r"^version: 4\b.*$", "version: 5", text, count=1, flags=re.MULTILINE)
    for old, new in (
        ("- {id: treatment, title: Treatment}", "- {id: therapy, title: Therapy}"),
        ("to: treatment", "to: therapy"),
        ("from: treatment", "from: therapy"),
        ("stage: treatment", "stage: therapy"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "england-v5.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _case_in_treatment(engine: nw.Engine, reference: str) -> None:
    engine.open_case(
        reference,
        pathway="nim-uk-england",
        site="london",
        actor=SOCIAL_WORKER,
        at=utc(2026, 3, 2, 10),
        facts={"consent_recorded": True},
    )
    engine.fire(reference, "accept_referral", actor=TEAM_MANAGER, at=utc(2026, 3, 2, 11))
    engine.fire(
        reference,
        "offer_treatment",
        actor=TEAM_MANAGER,
        at=utc(2026, 3, 2, 12),
        facts={"assessment_report_filed": True},
    )


def test_a_case_in_a_stage_the_new_version_lacks_is_refused_by_name_unless_mapped(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """No stage map: InvalidInput naming the case and stage, nothing written; mapped: moved."""
    with nw.Engine(db_url, clock=clock) as engine:
        engine.migrate()
        _case_in_treatment(engine, "LDN-T")
    newer = _renamed_stage_variant(tmp_path)
    with nw.Engine(db_url, clock=clock, pathways=[newer]) as engine:
        audit_before = len(engine.audit("LDN-T"))
        with pytest.raises(nw.InvalidInput, match=r"LDN-T is in stage 'treatment'") as refused:
            engine.upgrade_cases("nim-uk-england", actor=COORDINATOR, reason=REASON)
        assert refused.value.field == "stage_map"
        with pytest.raises(nw.InvalidInput, match="'treatmnet' is not a stage"):
            engine.upgrade_cases(
                "nim-uk-england",
                actor=COORDINATOR,
                reason=REASON,
                stage_map={"treatment": "treatmnet"},
            )
        with pytest.raises(nw.InvalidInput, match="'treatmnet'"):
            engine.upgrade_cases(
                "nim-uk-england",
                actor=COORDINATOR,
                reason=REASON,
                stage_map={"treatment": "therapy", "treatmnet": "therapy"},
            )
        assert engine.case("LDN-T").pathway_version == 4
        assert len(engine.audit("LDN-T")) == audit_before

        (done,) = engine.upgrade_cases(
            "nim-uk-england",
            actor=COORDINATOR,
            reason=REASON,
            stage_map={"treatment": "therapy"},
            at=utc(2026, 4, 1, 9),
        )
        assert (done.from_stage, done.to_stage) == ("treatment", "therapy")
        # treatment: 5 months from Mon 2 Mar 2026 = 2 Aug 2026, the same under the new name.
        assert [
            (c.name, c.due_on_after, c.change) for c in done.changes if c.name == "treatment"
        ] == [("treatment", date(2026, 8, 2), "unchanged")]
        case = engine.case("LDN-T")
        assert (case.pathway_version, case.stage) == (5, "therapy")
        history = [(i.stage, i.trigger) for i in engine.history("LDN-T")]
        assert history[-2:] == [("treatment", "offer_treatment"), ("therapy", "upgraded")]
        moved_on = engine.fire(
            "LDN-T",
            "complete_treatment",
            actor=TEAM_MANAGER,
            facts={"treatment_review_filed": True},
            at=utc(2026, 4, 2, 9),
        )
        assert moved_on.stage == "recommendation"


def test_only_the_pathways_upgrade_role_may_upgrade_and_the_denial_is_audited(
    old_engine: nw.Engine, db_url: str, clock: FakeClock
) -> None:
    """A team manager is refused (PermissionDenied, audited); a reason is required."""
    _england_v1_case(old_engine, "LDN-P")
    with nw.Engine(db_url, clock=clock) as engine:
        with pytest.raises(nw.PermissionDenied):
            engine.upgrade_cases("nim-uk-england", actor=TEAM_MANAGER, reason=REASON)
        denied = engine.audit("LDN-P")[-1]
        assert (denied.action, denied.detail["action"]) == ("denied", "upgrade")
        for reason in ("", "  ", None):
            with pytest.raises(nw.InvalidInput, match="reason"):
                engine.upgrade_cases("nim-uk-england", actor=COORDINATOR, reason=reason)  # type: ignore[arg-type]
        with pytest.raises(nw.InvalidInput, match="unknown pathway"):
            engine.upgrade_cases("nim-uk-wales", actor=COORDINATOR, reason=REASON)
        with pytest.raises(nw.InvalidInput, match="unknown pathway"):
            engine.upgrade_cases("nim-uk-england", actor=COORDINATOR, reason=REASON, to_version=9)
        assert engine.case("LDN-P").pathway_version == 1


def test_closed_cases_are_not_upgraded(
    old_engine: nw.Engine, db_url: str, clock: FakeClock
) -> None:
    """A closed case keeps the version it closed on; its settled deadlines are history."""
    _england_v1_case(old_engine, "LDN-C")
    old_engine.fire("LDN-C", "withdraw", actor=TEAM_MANAGER, reason="moved", at=utc(2026, 6, 1, 12))
    settled = [(d.name, d.due_on, d.status) for d in old_engine.deadlines("LDN-C")]
    with nw.Engine(db_url, clock=clock) as engine:
        assert engine.upgrade_cases("nim-uk-england", actor=COORDINATOR, reason=REASON) == []
        assert engine.case("LDN-C").pathway_version == 1
        assert [(d.name, d.due_on, d.status) for d in engine.deadlines("LDN-C")] == settled


def test_upgrade_at_before_the_cases_stage_began_is_refused(
    old_engine: nw.Engine, db_url: str, clock: FakeClock
) -> None:
    """History is written in order: an upgrade dated before the case's stage began is refused."""
    _england_v1_case(old_engine, "LDN-E")
    with nw.Engine(db_url, clock=clock) as engine, pytest.raises(nw.InvalidInput, match="before"):
        engine.upgrade_cases(
            "nim-uk-england",
            actor=COORDINATOR,
            reason=REASON,
            at=dt.datetime(2025, 12, 1, tzinfo=dt.UTC),
        )


def test_an_upgrade_over_the_demo_database_moves_every_running_case_and_keeps_the_log_whole(
    tmp_path: Path,
) -> None:
    """The demo cohort run on version 1, then England and Scotland upgraded; Louisiana left."""
    from nim_workflow._demo import DEMO_END, run_demo

    url = f"sqlite:///{tmp_path / 'demo-v1.db'}"
    result = run_demo(url, html=None, end=DEMO_END, pathways=sorted(ARCHIVE.glob("*.v1.yaml")))
    with nw.Engine(url, clock=lambda: result.as_of) as engine:
        for pathway in ("nim-uk-england", "nim-uk-scotland"):
            running = {c.reference for c in engine.cases() if c.pathway_id == pathway}
            dry = engine.upgrade_cases(pathway, actor=COORDINATOR, reason=REASON, dry_run=True)
            done = engine.upgrade_cases(pathway, actor=COORDINATOR, reason=REASON)
            assert {u.reference for u in done} == running
            assert [(u.reference, u.changes) for u in dry] == [
                (u.reference, u.changes) for u in done
            ]
            assert sum(u.dates_changed for u in done) > 0
            assert all(engine.case(ref).pathway_version == 4 for ref in running)
        report = engine.verify_audit()
        assert report.ok, report.problems
        # Every Scotland CSO review still open now falls the day before its anniversary.
        for case in engine.cases(site="glasgow"):
            for deadline in engine.deadlines(case.reference):
                if deadline.name == "cso_review" and deadline.status == "open":
                    assert deadline.start_on is not None
                    anniversary = deadline.start_on.replace(year=deadline.start_on.year + 1)
                    assert deadline.due_on == anniversary - dt.timedelta(days=1)
        # A Louisiana case left on version 1 still acts on version 1's rules.
        louisiana = next(c for c in engine.cases() if c.pathway_id == "nim-us-louisiana")
        assert louisiana.pathway_version == 1
        held = result.as_of.date() - dt.timedelta(days=1)
        engine.record(
            louisiana.reference,
            {"permanency_hearing_held_on": held},
            actor=COURT_OFFICER,
            at=result.as_of,
        )
        hearing = [
            d for d in engine.deadlines(louisiana.reference) if d.name == "permanency_hearing"
        ]
        assert hearing[-1].start_on == held
        assert hearing[-1].due_on == held.replace(year=held.year + 1)
        assert {d.name for d in engine.deadlines(louisiana.reference)} <= {
            "referral_decision",
            "assessment",
            "treatment",
            "final_report",
            "permanency_hearing",
        }


def _without_treatment_variant(tmp_path: Path) -> Path:
    """England at version 5 with no treatment stage: its triggers and deadline are gone."""
    text = Path(str(bundled_path("nim-uk-england"))).read_text(encoding="utf-8")
    text = re.sub(r"^version: 4\b.*$", "version: 5", text, count=1, flags=re.MULTILINE)
    blocks = (
        r"  - \{id: treatment, title: Treatment\}\n",
        r"  - trigger: offer_treatment\n(?:    .*\n)+",
        r"  - trigger: complete_treatment\n(?:    .*\n)+",
        r"  - name: treatment\n(?:    .*\n|      .*\n)+",
    )
    for block in blocks:
        text, found = re.subn(block, "", text, count=1)
        assert found == 1, block
    path = tmp_path / "england-no-treatment.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_mapped_case_gets_its_new_stages_deadline_and_a_dropped_rule_stays_explained(
    db_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    """Mapped from treatment to recommendation: final_report opens, treatment is cancelled."""
    with nw.Engine(db_url, clock=clock) as engine:
        engine.migrate()
        _case_in_treatment(engine, "LDN-D")
    newer = _without_treatment_variant(tmp_path)
    with nw.Engine(db_url, clock=clock, pathways=[newer]) as engine:
        (done,) = engine.upgrade_cases(
            "nim-uk-england",
            actor=COORDINATOR,
            reason=REASON,
            stage_map={"treatment": "recommendation"},
            at=utc(2026, 4, 1, 9),
        )
        changes = {c.name: (c.due_on_before, c.due_on_after, c.change) for c in done.changes}
        # treatment (due 2 Aug 2026) has no rule in version 5; final_report runs 4 weeks from
        # the day the case was moved into recommendation, Wed 1 Apr 2026: 29 April.
        assert changes["treatment"] == (date(2026, 8, 2), None, "cancelled")
        assert changes["final_report"] == (None, date(2026, 4, 29), "opened")
        listed = {d.name: d for d in engine.deadlines("LDN-D")}
        assert listed["treatment"].status == "cancelled"
        assert "no longer has" in listed["treatment"].explain().anchor
        assert listed["final_report"].status == "open"
        assert engine.case("LDN-D").stage == "recommendation"
