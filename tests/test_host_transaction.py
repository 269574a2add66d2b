"""Embedding in the host's own transaction (``connection=``), on SQLite and on PostgreSQL.

The host has its own table, made with its own MetaData in the same database. Its row and the case
move together or not at all; subscribers hear of a change only once the host has committed it;
and the engine never commits, rolls back or closes the host's connection.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from engine_helpers import SW, TM, Clock, new_engine, open_at

import nim_workflow as nw

host_metadata = sa.MetaData()
host_notes = sa.Table(
    "host_case_notes",
    host_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("reference", sa.String(100), nullable=False),
    sa.Column("note", sa.String(200), nullable=False),
)


@pytest.fixture
def clock() -> Clock:
    """The engine's injected clock."""
    return Clock()


@pytest.fixture
def engine(db_url: str, clock: Clock) -> Iterator[nw.Engine]:
    """A migrated engine with one case in referral, ready to be accepted."""
    eng = new_engine(db_url, clock)
    open_at(eng, "HT-1", "referral")
    yield eng
    eng.close()


@pytest.fixture
def host(db_url: str, engine: nw.Engine) -> Iterator[sa.Engine]:
    """The host's own SQLAlchemy engine, with its own table in the same database."""
    host_engine = sa.create_engine(db_url)
    host_metadata.create_all(host_engine)
    yield host_engine
    host_engine.dispose()


def notes(host: sa.Engine) -> list[tuple[str, str]]:
    """The host's rows, read on a connection of its own."""
    with host.connect() as conn:
        return [(r.reference, r.note) for r in conn.execute(sa.select(host_notes))]


def test_commit_keeps_both_and_publishes_after_commit(
    engine: nw.Engine, host: sa.Engine, clock: Clock
) -> None:
    """On commit the host's row and the transition are both kept; subscribers hear once, after."""
    heard: list[tuple[str, int]] = []

    def listen(event: nw.Event) -> None:
        # Read on another connection: only a committed change is visible there.
        heard.append((event.kind, engine.case(event.reference).version))

    engine.subscribe(listen)
    before = engine.case("HT-1")
    clock.advance(hours=1)
    with host.connect() as conn:
        trans = conn.begin()
        conn.execute(host_notes.insert().values(reference="HT-1", note="accepted at panel"))
        moved = engine.fire("HT-1", "accept_referral", actor=TM, connection=conn)
        assert moved.stage == "assessment"
        assert moved.version == before.version + 1
        assert heard == []
        assert conn.in_transaction()
        assert engine.case("HT-1") == before
        trans.commit()
    assert heard == [("transition", before.version + 1)]
    assert engine.case("HT-1").stage == "assessment"
    assert notes(host) == [("HT-1", "accepted at panel")]
    assert engine.audit("HT-1")[-1].action == "transition"
    assert engine.verify_audit().ok


def test_rollback_leaves_the_case_untouched(
    engine: nw.Engine, host: sa.Engine, clock: Clock
) -> None:
    """On the host's rollback neither its row nor the transition is kept, and nobody hears."""
    heard: list[str] = []
    engine.subscribe(lambda e: heard.append(e.kind))
    before = engine.case("HT-1")
    history = engine.history("HT-1")
    audit = engine.audit()
    clock.advance(hours=1)
    with host.connect() as conn:
        trans = conn.begin()
        conn.execute(host_notes.insert().values(reference="HT-1", note="accepted at panel"))
        engine.fire("HT-1", "accept_referral", actor=TM, connection=conn)
        trans.rollback()
        # The same connection goes on; its next commit must not publish the rolled-back change.
        with conn.begin():
            conn.execute(host_notes.insert().values(reference="HT-1", note="later note"))
    assert heard == []
    assert engine.case("HT-1") == before
    assert engine.history("HT-1") == history
    assert engine.audit() == audit
    assert notes(host) == [("HT-1", "later note")]
    assert engine.verify_audit().ok


def test_rollback_undoes_a_case_opened_in_the_host_transaction(
    engine: nw.Engine, host: sa.Engine
) -> None:
    """A case opened, filled in and moved inside the host's transaction vanishes on rollback."""
    audit = engine.audit()
    with host.connect() as conn:
        trans = conn.begin()
        engine.open_case("HT-2", pathway="nim-uk-england", site="london", actor=SW, connection=conn)
        engine.record("HT-2", {"consent_recorded": True}, actor=SW, connection=conn)
        engine.fire("HT-2", "accept_referral", actor=TM, connection=conn)
        conn.execute(host_notes.insert().values(reference="HT-2", note="opened"))
        trans.rollback()
    with pytest.raises(nw.CaseNotFound):
        engine.case("HT-2")
    assert engine.audit() == audit
    assert notes(host) == []
    assert engine.verify_audit().ok


def test_several_calls_in_one_host_transaction_publish_once_in_order(
    engine: nw.Engine, host: sa.Engine, clock: Clock
) -> None:
    """Every change made in one host transaction is published once, in order, after its commit."""
    heard: list[tuple[str, str]] = []
    engine.subscribe(lambda e: heard.append((e.kind, e.reference)))
    with host.connect() as conn, conn.begin():
        engine.open_case("HT-3", pathway="nim-uk-england", site="london", actor=SW, connection=conn)
        clock.advance(hours=1)
        engine.record("HT-3", {"consent_recorded": True}, actor=SW, connection=conn)
        engine.fire("HT-3", "accept_referral", actor=TM, connection=conn)
        conn.execute(host_notes.insert().values(reference="HT-3", note="fast-tracked"))
        assert heard == []
    assert heard == [("opened", "HT-3"), ("fact_recorded", "HT-3"), ("transition", "HT-3")]
    assert engine.case("HT-3").stage == "assessment"


def test_every_host_transaction_publishes_its_own_events(
    engine: nw.Engine, host: sa.Engine, clock: Clock
) -> None:
    """Host transactions one after another, on fresh connections, each publish after commit."""
    heard: list[str] = []
    engine.subscribe(lambda e: heard.append(e.kind))
    for expected, (trigger, facts) in enumerate(
        [
            ("accept_referral", None),
            ("offer_treatment", {"assessment_report_filed": True}),
            ("complete_treatment", {"treatment_review_filed": True}),
        ],
        start=1,
    ):
        clock.advance(days=1)
        with host.connect() as conn, conn.begin():
            engine.fire("HT-1", trigger, actor=TM, facts=facts, connection=conn)
        assert heard == ["transition"] * expected, trigger
    assert engine.case("HT-1").stage == "recommendation"


def test_engine_neither_commits_nor_closes_the_host_connection(
    engine: nw.Engine, host: sa.Engine, clock: Clock
) -> None:
    """After engine calls (refusals too) the host's transaction is open, uncommitted and usable."""
    audit = engine.audit()
    with host.connect() as conn:
        trans = conn.begin()
        with pytest.raises(nw.PermissionDenied):
            engine.fire("HT-1", "accept_referral", actor=SW, connection=conn)
        assert conn.in_transaction()
        assert not conn.closed
        clock.advance(hours=1)
        engine.fire("HT-1", "accept_referral", actor=TM, connection=conn)
        assert conn.in_transaction()
        assert not conn.closed
        assert trans.is_active
        assert engine.audit() == audit
        assert conn.execute(sa.select(sa.func.count()).select_from(host_notes)).scalar_one() == 0
        trans.rollback()
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    assert engine.audit() == audit
    assert engine.case("HT-1").stage == "referral"


def test_two_engines_on_one_host_connection_keep_their_subscribers(
    db_url: str, engine: nw.Engine, host: sa.Engine
) -> None:
    """Two engines writing through the same host transaction each publish only to their own."""
    other = nw.Engine(db_url, clock=Clock())
    mine: list[str] = []
    theirs: list[str] = []
    engine.subscribe(lambda e: mine.append(e.reference))
    other.subscribe(lambda e: theirs.append(e.reference))
    try:
        with host.connect() as conn, conn.begin():
            engine.record("HT-1", {"entered_care_on": "2026-02-02"}, actor=SW, connection=conn)
            other.open_case(
                "HT-4", pathway="nim-uk-england", site="london", actor=SW, connection=conn
            )
    finally:
        other.close()
    assert mine == ["HT-1"]
    assert theirs == ["HT-4"]


def test_a_failure_part_way_leaves_the_hosts_work_and_nothing_half_written(
    engine: nw.Engine, host: sa.Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after the engine began writing rolls back only its own part of the host's work."""
    from nim_workflow import _deadlines

    def broken(*args: object, **kwargs: object) -> list[str]:
        raise RuntimeError("disk on fire")

    before = engine.case("HT-1")
    history = engine.history("HT-1")
    audit = engine.audit()
    clock.advance(hours=1)
    # The stage interval is already written when the deadlines of the new stage are opened.
    monkeypatch.setattr(_deadlines, "open_stage_deadlines", broken)
    with host.connect() as conn, conn.begin():
        conn.execute(host_notes.insert().values(reference="HT-1", note="kept"))
        with pytest.raises(RuntimeError, match="disk on fire"):
            engine.fire("HT-1", "accept_referral", actor=TM, connection=conn)
        # The host decides to keep its own work and commit anyway.
    assert notes(host) == [("HT-1", "kept")]
    assert engine.case("HT-1") == before
    assert engine.history("HT-1") == history
    assert engine.audit() == audit
    assert engine.verify_audit().ok
