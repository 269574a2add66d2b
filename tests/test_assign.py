"""Case assignment and caseloads: who holds each case, audited, on SQLite and PostgreSQL.

A team manager gives a case to a worker on the staff roster at the case's site; the case row,
its audit entry and its version move together; a bad worker writes nothing; a denial is
audited; a deep verify notices a worker changed outside the engine; and ``caseloads`` counts
each worker's open cases, paused ones and overdue deadlines as ``overdue`` does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from engine_helpers import CLIN, SW, TM, Clock, actor

import nim_workflow as nw
from nim_workflow._audit import STATE_COLUMNS, state_digests
from nim_workflow._store._schema import cases

ADMIN = nw.Actor("admin-1", roles={"administrator"})
ARCHIVE = Path(__file__).resolve().parents[1] / "pathways" / "archive"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(db_url: str, clock: Clock) -> Iterator[nw.Engine]:
    """A migrated engine whose roster has two London workers, a Glasgow one and a leaver."""
    eng = nw.Engine(db_url, clock=clock)
    eng.migrate()
    eng.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    eng.add_staff("sw-1", roles={"social_worker"}, sites={"london"}, actor=ADMIN)
    eng.add_staff("cl-1", roles={"clinician"}, sites={"london", "glasgow"}, actor=ADMIN)
    eng.add_staff("sw-9", roles={"social_worker"}, sites={"glasgow"}, actor=ADMIN)
    eng.add_staff("gone-1", roles={"social_worker"}, sites={"*"}, actor=ADMIN)
    eng.remove_staff("gone-1", actor=ADMIN)
    yield eng
    eng.close()


def _open(engine: nw.Engine, reference: str, site: str = "london") -> nw.Case:
    pathway = "nim-uk-england" if site == "london" else "nim-uk-scotland"
    return engine.open_case(reference, pathway=pathway, site=site, actor=SW)


def _assigned_entries(engine: nw.Engine, reference: str) -> list[tuple[str, dict[str, object]]]:
    return [(e.actor_id, dict(e.detail)) for e in engine.audit(reference) if e.action == "assigned"]


def test_a_team_manager_assigns_a_case_and_the_log_says_so(engine: nw.Engine, clock: Clock) -> None:
    """Assigning moves the case's version on, records the worker and audits who did it."""
    opened = _open(engine, "LDN-1")
    assert opened.worker is None
    clock.advance(hours=1)
    case = engine.assign("LDN-1", worker="sw-1", actor=TM, reason="allocation meeting")
    assert case.worker == "sw-1"
    assert case.version == opened.version + 1
    assert engine.case("LDN-1").worker == "sw-1"
    assert _assigned_entries(engine, "LDN-1") == [(TM.id, {"worker": "sw-1", "previous": None})]
    entry = next(e for e in engine.audit("LDN-1") if e.action == "assigned")
    assert (entry.from_stage, entry.to_stage, entry.reason) == (
        "referral",
        "referral",
        "allocation meeting",
    )
    assert entry.at == clock.now
    # Reassigning names the previous worker; unassigning (None) too.
    clock.advance(hours=1)
    engine.assign("LDN-1", worker="cl-1", actor=TM)
    clock.advance(hours=1)
    case = engine.assign("LDN-1", worker=None, actor=TM)
    assert case.worker is None
    assert _assigned_entries(engine, "LDN-1")[1:] == [
        (TM.id, {"worker": "cl-1", "previous": "sw-1"}),
        (TM.id, {"worker": None, "previous": "cl-1"}),
    ]
    assert engine.verify_audit(deep=True).ok


def test_assigning_the_same_worker_again_writes_nothing(engine: nw.Engine) -> None:
    _open(engine, "LDN-1")
    first = engine.assign("LDN-1", worker="sw-1", actor=TM)
    again = engine.assign("LDN-1", worker="sw-1", actor=TM)
    assert again.version == first.version
    assert len(_assigned_entries(engine, "LDN-1")) == 1


@pytest.mark.parametrize(
    ("worker", "error", "message"),
    [
        ("nobody-1", nw.StaffNotFound, "nobody-1 is not on the staff roster"),
        ("gone-1", nw.StaffNotFound, "gone-1 was removed from the staff roster"),
        ("sw-9", nw.InvalidInput, "sw-9 does not work at london"),
        ("admin-1", nw.InvalidInput, "admin-1 holds no role of pathway nim-uk-england"),
        (" sw-1", nw.InvalidInput, "staff id ' sw-1' has surrounding spaces"),
    ],
)
def test_a_worker_who_cannot_hold_the_case_is_refused_and_nothing_is_written(
    engine: nw.Engine, worker: str, error: type[Exception], message: str
) -> None:
    before = _open(engine, "LDN-1")
    log = engine.audit("LDN-1")
    with pytest.raises(error, match=message):
        engine.assign("LDN-1", worker=worker, actor=TM)
    assert engine.case("LDN-1") == before
    assert engine.audit("LDN-1") == log


def test_only_the_pathway_s_assigning_role_may_assign_and_a_denial_is_audited(
    engine: nw.Engine,
) -> None:
    _open(engine, "LDN-1")
    coordinator = actor("coordinator")
    for who in (SW, CLIN, coordinator):
        with pytest.raises(nw.PermissionDenied, match="team_manager"):
            engine.assign("LDN-1", worker="sw-1", actor=who)
    assert engine.case("LDN-1").worker is None
    denied = [e for e in engine.audit("LDN-1") if e.action == "denied"]
    assert [(e.actor_id, e.detail["action"]) for e in denied] == [
        (SW.id, "assign"),
        (CLIN.id, "assign"),
        (coordinator.id, "assign"),
    ]


def test_a_closed_case_cannot_be_assigned(engine: nw.Engine) -> None:
    _open(engine, "LDN-1")
    engine.fire("LDN-1", "decline_referral", actor=TM, reason="not eligible")
    with pytest.raises(nw.TransitionNotAllowed):
        engine.assign("LDN-1", worker="sw-1", actor=TM)
    assert engine.case("LDN-1").worker is None


def test_a_stale_version_is_refused(engine: nw.Engine) -> None:
    opened = _open(engine, "LDN-1")
    engine.record("LDN-1", {"consent_recorded": True}, actor=SW)
    with pytest.raises(nw.ConcurrentUpdate):
        engine.assign("LDN-1", worker="sw-1", actor=TM, expected_version=opened.version)
    assert engine.case("LDN-1").worker is None


def test_a_case_on_a_version_without_the_permission_says_who_may_not(
    engine: nw.Engine, db_url: str, clock: Clock
) -> None:
    """Version 2 of the bundled pathways names nobody who may assign: upgrade the case first."""
    v2 = nw.load_pathway(ARCHIVE / "nim-uk-england.v2.yaml")
    with nw.Engine(db_url, clock=clock, pathways=[v2]) as old:
        old.open_case("LDN-OLD", pathway="nim-uk-england", site="london", actor=SW)
    with pytest.raises(nw.PermissionDenied):
        engine.assign("LDN-OLD", worker="sw-1", actor=TM)
    coordinator = actor("coordinator")
    engine.upgrade_cases("nim-uk-england", actor=coordinator, reason="caseloads")
    assert engine.assign("LDN-OLD", worker="sw-1", actor=TM).worker == "sw-1"


def test_cases_filter_by_worker(engine: nw.Engine) -> None:
    for reference in ("LDN-1", "LDN-2", "LDN-3"):
        _open(engine, reference)
    engine.assign("LDN-1", worker="sw-1", actor=TM)
    engine.assign("LDN-3", worker="sw-1", actor=TM)
    engine.assign("LDN-2", worker="cl-1", actor=TM)
    assert [c.reference for c in engine.cases(worker="sw-1")] == ["LDN-1", "LDN-3"]
    assert [c.reference for c in engine.cases(worker="cl-1")] == ["LDN-2"]
    assert engine.cases(worker="nobody-1") == []


def test_caseloads_count_open_cases_paused_and_overdue_per_worker(
    engine: nw.Engine, clock: Clock
) -> None:
    for reference in ("LDN-1", "LDN-2", "LDN-3", "LDN-4"):
        _open(engine, reference)
    _open(engine, "GLA-1", site="glasgow")
    engine.assign("LDN-1", worker="sw-1", actor=TM)
    engine.assign("LDN-2", worker="sw-1", actor=TM)
    engine.assign("LDN-3", worker="cl-1", actor=TM)
    engine.assign("GLA-1", worker="cl-1", actor=TM)
    engine.record("LDN-2", {"consent_recorded": True}, actor=SW)
    engine.fire("LDN-2", "accept_referral", actor=TM)
    engine.pause("LDN-1", actor=TM, reason="family moved")
    # Closed cases leave the caseload.
    engine.fire("LDN-4", "decline_referral", actor=TM, reason="not eligible")

    loads = engine.caseloads()
    assert [(c.site, c.worker, c.cases, c.paused) for c in loads] == [
        ("glasgow", "cl-1", 1, 0),
        ("london", "cl-1", 1, 0),
        ("london", "sw-1", 2, 1),
    ]
    by_worker = {(c.site, c.worker): c for c in loads}
    assert dict(by_worker[("london", "sw-1")].by_stage) == {"referral": 1, "assessment": 1}
    assert all(c.active for c in loads)

    # Overdue: the same deadlines ``overdue`` lists, counted against their case's holder.
    later = clock.now + dt.timedelta(days=200)
    late = engine.overdue(at=later)
    loads_later = {(c.site, c.worker): c for c in engine.caseloads(at=later)}
    for key, load in loads_later.items():
        held = {c.reference for c in engine.cases(site=key[0], worker=key[1])}
        assert load.overdue == sum(d.reference in held for d in late)
    assert sum(c.overdue for c in loads_later.values()) == len(late) > 0
    assert [c.site for c in engine.caseloads(site="glasgow")] == ["glasgow"]


def test_caseloads_list_unassigned_cases_and_workers_who_left(engine: nw.Engine) -> None:
    _open(engine, "LDN-1")
    _open(engine, "LDN-2")
    engine.add_staff("sw-2", roles={"social_worker"}, sites={"london"}, actor=ADMIN)
    engine.assign("LDN-1", worker="sw-2", actor=TM)
    engine.remove_staff("sw-2", actor=ADMIN)
    loads = engine.caseloads()
    assert [(c.worker, c.active, c.cases) for c in loads] == [
        ("sw-2", False, 1),
        (None, True, 1),
    ]


def test_unknown_site_in_caseloads_is_refused(engine: nw.Engine) -> None:
    with pytest.raises(nw.UnknownSite, match="london"):
        engine.caseloads(site="London")


def test_deep_verify_notices_a_worker_changed_outside_the_engine(
    engine: nw.Engine, db_url: str
) -> None:
    _open(engine, "LDN-1")
    _open(engine, "LDN-2")
    engine.assign("LDN-1", worker="sw-1", actor=TM)
    assert engine.verify_audit(deep=True).ok
    database = sa.create_engine(db_url)
    try:
        with database.begin() as conn:
            # Moving a case onto someone's caseload, and off another's, are both edits.
            conn.execute(cases.update().where(cases.c.reference == "LDN-2").values(worker="sw-1"))
            conn.execute(cases.update().where(cases.c.reference == "LDN-1").values(worker=None))
    finally:
        database.dispose()
    report = engine.verify_audit(deep=True)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "case LDN-1" in text
    assert "case LDN-2" in text


def test_an_unassigned_case_digests_exactly_as_before_the_worker_column() -> None:
    """Entries written before migration 0006 stay valid: no worker, no change to the digest.

    The expected digest is worked here from the entry format (SHA-256 of the compact, sorted
    JSON of the row's values, first 128 bits), over the thirteen columns the case row had.
    """
    before_0006 = STATE_COLUMNS["case"][:-1]
    assert STATE_COLUMNS["case"][-1] == "worker"
    assert len(before_0006) == 13
    row: dict[str, object] = {column: f"v-{column}" for column in before_0006}
    row.update(version=3, pathway_version=3, closed_at=None, paused_at=None, facts={"a": True})
    body = json.dumps(
        [[row[c] for c in before_0006]], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    old = hashlib.sha256(body.encode()).hexdigest()[:32]
    empty: dict[str, list[dict[str, object]]] = {
        "intervals": [],
        "pauses": [],
        "deadlines": [],
        "alarms": [],
    }
    assert state_digests({**row, "worker": None}, empty)["case"] == old
    assert state_digests({**row, "worker": "sw-1"}, empty)["case"] != old
