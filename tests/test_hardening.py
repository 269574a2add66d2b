"""The engine's door: odd input is refused the same clear way on both databases, writing nothing.

Each test names an input an adversarial caller tried and the refusal it must get: always an
``nw.InvalidInput`` (a ``ValueError``) naming the argument, quoting at most a short prefix of the
value, with nothing written; refusals of *actions* stay audited denials. The last tests show
that a writer who waited for a case's lock dates its action after the winner's, and that a
host's deadlock is a ``ConcurrentUpdate``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from deadline_helpers import (
    COORDINATOR,
    COURT_OFFICER,
    SOCIAL_WORKER,
    TEAM_MANAGER,
    FakeClock,
    migrated_engine,
    utc,
)

import nim_workflow as nw

REF = "LDN-H-1"
CONSENT = {"consent_recorded": True}
T0 = utc(2026, 3, 2, 10)
HUGE = "x" * 10_000_000


@pytest.fixture
def engine(db_url: str) -> Iterator[nw.Engine]:
    """A migrated engine whose clock stands at T0, with one England case open at T0."""
    with migrated_engine(db_url, FakeClock(T0)) as built:
        built.open_case(
            REF,
            pathway="nim-uk-england",
            site="london",
            actor=SOCIAL_WORKER,
            at=T0,
            facts={"consent_recorded": True},
        )
        yield built


def _snapshot(engine: nw.Engine) -> tuple[Any, ...]:
    case = engine.case(REF)
    deadlines = [
        (d.name, d.occurrence, d.due_on, d.status, d.extensions) for d in engine.deadlines(REF)
    ]
    return case, deadlines, len(engine.audit())


def _refused(engine: nw.Engine, field: str, call: Any) -> nw.InvalidInput:
    """Run ``call``; it must raise InvalidInput naming ``field``, short, and write nothing."""
    before = _snapshot(engine)
    with pytest.raises(nw.InvalidInput) as refused:
        call()
    assert refused.value.field == field, str(refused.value)
    assert len(str(refused.value)) < 400
    assert _snapshot(engine) == before
    return refused.value


# -- strings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    ["t" * 101, "accept\x00referral", HUGE, "accept_referral\n", " accept_referral", ""],
    ids=["101-chars", "nul", "10MB", "newline", "leading-space", "empty"],
)
def test_a_trigger_too_long_or_with_control_characters_is_refused_unaudited(
    engine: nw.Engine, trigger: str
) -> None:
    """An odd trigger is InvalidInput on both databases (not a DataError), with no denial."""
    _refused(
        engine,
        "trigger",
        lambda: engine.fire(REF, trigger, actor=nw.Actor("nobody", roles=()), at=T0),
    )


@pytest.mark.parametrize(
    ("reference", "site"),
    [
        ("LDN\x1b[31m-2", "london"),
        ("LDN-\u202e2", "london"),
        ("LDN-2\n", "london"),
        ("L" * 101, "london"),
        ("LDN-2", "lon\x00don"),
        ("LDN-2", "london\u2028"),
    ],
    ids=["escape", "rtl-override", "newline", "101-chars", "nul-site", "line-separator-site"],
)
def test_references_and_sites_with_control_characters_are_refused(
    engine: nw.Engine, reference: str, site: str
) -> None:
    """Terminal escapes, bidi overrides and separators never reach the database or the CLI."""
    field = "reference" if reference != "LDN-2" else "site"
    _refused(
        engine,
        field,
        lambda: engine.open_case(
            reference, pathway="nim-uk-england", site=site, actor=SOCIAL_WORKER, at=T0
        ),
    )


def test_a_ten_megabyte_reason_is_refused_and_not_echoed(engine: nw.Engine) -> None:
    """A reason over 2,000 characters is refused; the message quotes none of its bulk."""
    error = _refused(
        engine, "reason", lambda: engine.pause(REF, actor=COORDINATOR, reason=HUGE, at=T0)
    )
    assert "2,000" in str(error)


def test_an_unknown_actor_with_a_huge_trigger_does_not_grow_the_log(engine: nw.Engine) -> None:
    """The 10 MB trigger from an actor with no roles writes no denial at all."""
    _refused(engine, "trigger", lambda: engine.fire(REF, HUGE, actor=nw.Actor("x"), at=T0))


# -- types -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [123, b"x", ["a"]], ids=["int", "bytes", "list"])
def test_a_reason_of_the_wrong_type_is_refused(engine: nw.Engine, reason: object) -> None:
    """reason=123 or b"x" is InvalidInput naming reason, not AttributeError or TypeError."""
    _refused(
        engine,
        "reason",
        lambda: engine.pause(REF, actor=COORDINATOR, reason=reason, at=T0),  # type: ignore[arg-type]
    )


def test_a_trigger_of_the_wrong_type_is_refused(engine: nw.Engine) -> None:
    """fire(ref, ["t"]) is InvalidInput naming trigger, not a driver error."""
    _refused(
        engine,
        "trigger",
        lambda: engine.fire(REF, ["t"], actor=TEAM_MANAGER, at=T0),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("version", ["1", True, 0, 1.0], ids=["text", "bool", "zero", "float"])
def test_an_expected_version_that_is_not_a_whole_number_is_refused(
    engine: nw.Engine, version: object
) -> None:
    """expected_version="1" no longer reads 'expected version 1, found 1'."""
    _refused(
        engine,
        "expected_version",
        lambda: engine.fire(
            REF,
            "accept_referral",
            actor=TEAM_MANAGER,
            at=T0,
            expected_version=version,  # type: ignore[arg-type]
        ),
    )


@pytest.mark.parametrize(
    "roles", [None, 5, b"team_manager", [None]], ids=["none", "int", "bytes", "none-role"]
)
def test_an_actor_with_roles_of_the_wrong_type_is_refused(roles: object) -> None:
    """Actor("x", roles=None) is InvalidInput (a ValueError) naming roles, not TypeError."""
    with pytest.raises(nw.InvalidInput) as refused:
        nw.Actor("x", roles=roles)  # type: ignore[arg-type]
    assert refused.value.field == "roles"
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize("actor_id", ["", " x", "x\x1b", 7, "a" * 101])
def test_an_actor_id_that_is_not_an_identifier_is_refused(actor_id: object) -> None:
    """Actor ids follow the identifier rules: text, 1 to 100 characters, no control characters."""
    with pytest.raises(nw.InvalidInput) as refused:
        nw.Actor(actor_id, roles={"social_worker"})  # type: ignore[arg-type]
    assert refused.value.field == "actor"


# -- dates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "at",
    [
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, tzinfo=dt.UTC),
        dt.datetime(1989, 12, 31, tzinfo=dt.UTC),
        dt.datetime(2100, 1, 1, tzinfo=dt.UTC),
    ],
    ids=["year-1", "year-9999", "1989", "2100"],
)
def test_an_instant_out_of_range_is_refused_not_an_overflow(
    engine: nw.Engine, at: dt.datetime
) -> None:
    """at= year 1 or 9999 is InvalidInput naming at, never OverflowError."""
    _refused(
        engine,
        "at",
        lambda: engine.record(REF, {"entered_care_on": "2026-03-01"}, actor=SOCIAL_WORKER, at=at),
    )


@pytest.mark.parametrize(
    "value",
    ["9999-12-31", "0001-01-01", dt.date(1989, 12, 31), "20260105", "2026-W02-1", "2026-02-30"],
    ids=["9999", "year-1", "1989", "basic-format", "week-date", "no-such-day"],
)
def test_a_date_fact_out_of_range_or_not_yyyy_mm_dd_is_refused(
    engine: nw.Engine, value: object
) -> None:
    """Date facts are YYYY-MM-DD from 1990 to 2099; nothing shows 739,922 days overdue."""
    _refused(
        engine,
        "entered_care_on",
        lambda: engine.record(REF, {"entered_care_on": value}, actor=SOCIAL_WORKER, at=T0),
    )


# -- time runs forwards ----------------------------------------------------------------------------


def test_a_resume_dated_before_its_pause_is_refused(engine: nw.Engine) -> None:
    """Resuming at an instant before the pause would store time running backwards."""
    engine.pause(REF, actor=COORDINATOR, reason="hospital", at=T0 + dt.timedelta(days=5))
    _refused(
        engine,
        "at",
        lambda: engine.resume(REF, actor=COORDINATOR, at=T0 + dt.timedelta(days=2)),
    )


def test_record_and_extend_dated_before_the_newest_change_are_refused(engine: nw.Engine) -> None:
    """record and extend_deadline check at= against the case's newest change, not its stage."""
    later = T0 + dt.timedelta(days=3)
    engine.record(REF, {"proceedings_issued_on": "2026-03-02"}, actor=COURT_OFFICER, at=later)
    earlier = T0 + dt.timedelta(days=1)
    _refused(
        engine,
        "at",
        lambda: engine.record(
            REF, {"entered_care_on": "2026-03-01"}, actor=SOCIAL_WORKER, at=earlier
        ),
    )
    _refused(
        engine,
        "at",
        lambda: engine.extend_deadline(
            REF, "care_proceedings", actor=COURT_OFFICER, reason="court", at=earlier
        ),
    )


def test_processing_the_future_needs_an_explicit_flag(engine: nw.Engine) -> None:
    """process_due(at=) after the engine's clock is refused unless allow_future=True."""
    engine.record(REF, {"proceedings_issued_on": "2026-03-02"}, actor=COURT_OFFICER, at=T0)
    far = T0 + dt.timedelta(days=400)
    with pytest.raises(nw.InvalidInput, match="allow_future") as refused:
        engine.process_due(at=far)
    assert refused.value.field == "at"
    assert engine.process_due(at=T0 + dt.timedelta(minutes=1)) == []  # clocks may differ a little
    fired = engine.process_due(at=far, allow_future=True)
    assert {e.detail["deadline"] for e in fired if e.kind == "breach"} >= {"care_proceedings"}


# -- races and deadlocks ---------------------------------------------------------------------------


class _RecordingClock:
    """A clock tests move by hand that remembers every value it handed out."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.read: list[dt.datetime] = []

    def __call__(self) -> dt.datetime:
        self.read.append(self.now)
        return self.now


def test_a_writer_that_waited_for_the_lock_reads_the_clock_after_it(db_url: str) -> None:
    """The loser of a race meets the winner's stage (TransitionNotAllowed), not 'time ran back'."""
    host_clock = FakeClock(T0)
    with migrated_engine(db_url, host_clock) as host:
        host.open_case(REF, pathway="nim-uk-england", site="london", actor=SOCIAL_WORKER, at=T0)
        host.record(REF, {"consent_recorded": True}, actor=SOCIAL_WORKER, at=T0)
        clock = _RecordingClock(T0 + dt.timedelta(minutes=1))
        loser = nw.Engine(db_url, clock=clock)
        waiting = threading.Event()

        def announce(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "BEGIN IMMEDIATE" in statement or "FOR UPDATE" in statement:
                waiting.set()

        sa.event.listen(loser.sqlalchemy_engine, "before_cursor_execute", announce)
        outcome: list[BaseException | None] = []

        def race() -> None:
            try:
                loser.fire(REF, "accept_referral", actor=TEAM_MANAGER)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        winner_at = T0 + dt.timedelta(minutes=5)
        with host.sqlalchemy_engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.begin()
            host.fire(REF, "accept_referral", actor=TEAM_MANAGER, at=winner_at, connection=conn)
            thread = threading.Thread(target=race)
            thread.start()
            assert waiting.wait(timeout=30)
            # The loser is queued on the lock; only now does time move past the winner's action.
            clock.now = winner_at + dt.timedelta(seconds=1)
            conn.commit()
        thread.join(timeout=60)
        loser.close()
        (error,) = outcome
        assert isinstance(error, nw.TransitionNotAllowed), repr(error)
        assert all(read > winner_at for read in clock.read), clock.read
        denied = host.audit(REF)[-1]
        assert (denied.action, denied.detail["error"]) == ("denied", "TransitionNotAllowed")


def test_two_host_transactions_that_deadlock_get_concurrent_update(
    pg_url: str, new_pg_database: Any
) -> None:
    """Cases locked in opposite orders by two host transactions: one gets ConcurrentUpdate."""
    url = new_pg_database()
    with migrated_engine(url, FakeClock(T0)) as engine:
        for ref in ("DL-A", "DL-B"):
            engine.open_case(
                ref, pathway="nim-uk-england", site="london", actor=SOCIAL_WORKER, at=T0
            )
        barrier = threading.Barrier(2, timeout=30)
        outcomes: list[BaseException | None] = []

        def engine_first() -> None:
            # Locks DL-A through the engine (the audit chain's head too), then wants DL-B.
            try:
                with engine.sqlalchemy_engine.connect() as conn, conn.begin():
                    engine.record("DL-A", CONSENT, actor=SOCIAL_WORKER, at=T0, connection=conn)
                    barrier.wait()
                    engine.record("DL-B", CONSENT, actor=SOCIAL_WORKER, at=T0, connection=conn)
                outcomes.append(None)
            except BaseException as exc:
                outcomes.append(exc)

        def host_first() -> None:
            # The host's own work locks DL-B's row first, then the engine wants DL-A.
            try:
                with engine.sqlalchemy_engine.connect() as conn, conn.begin():
                    conn.execute(
                        sa.text("SELECT 1 FROM nimwf_cases WHERE reference = 'DL-B' FOR UPDATE")
                    )
                    barrier.wait()
                    engine.record("DL-A", CONSENT, actor=SOCIAL_WORKER, at=T0, connection=conn)
                outcomes.append(None)
            except BaseException as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=engine_first), threading.Thread(target=host_first)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(outcomes) == 2
        errors = [o for o in outcomes if o is not None]
        assert len(errors) == 1, outcomes
        assert isinstance(errors[0], nw.ConcurrentUpdate), repr(errors[0])
        assert engine.verify_audit().ok


@pytest.mark.parametrize(
    "by",
    ["999999999 days", "99999999 weeks", dt.timedelta(days=999_999_999)],
    ids=["days", "weeks", "timedelta"],
)
def test_an_absurdly_long_extension_is_refused_not_an_overflow(
    engine: nw.Engine, by: object
) -> None:
    """by= beyond any step is InvalidInput naming by, never an OverflowError from the calendar."""
    engine.record(REF, {"proceedings_issued_on": "2026-03-02"}, actor=COURT_OFFICER, at=T0)
    _refused(
        engine,
        "by",
        lambda: engine.extend_deadline(
            REF,
            "care_proceedings",
            actor=COURT_OFFICER,
            reason="r",
            at=T0,
            by=by,  # type: ignore[arg-type]
        ),
    )


@pytest.mark.parametrize("after_seq", [2**31, 2**63, 10**30], ids=["2^31", "2^63", "10^30"])
def test_an_audit_position_beyond_an_integer_column_is_refused(
    engine: nw.Engine, after_seq: int
) -> None:
    """audit(after_seq=2**63) is InvalidInput on both databases, not a driver overflow."""
    with pytest.raises(nw.InvalidInput) as refused:
        engine.audit(after_seq=after_seq)
    assert refused.value.field == "after_seq"


@pytest.mark.parametrize("call", ["case", "deadlines", "audit", "cases"])
def test_a_lookup_with_a_nul_character_is_refused_on_both_databases(
    engine: nw.Engine, call: str
) -> None:
    """Reads by a name holding NUL are InvalidInput (PostgreSQL cannot even compare it)."""
    calls = {
        "case": lambda: engine.case("LDN\x00"),
        "deadlines": lambda: engine.deadlines("LDN\x00"),
        "audit": lambda: engine.audit("LDN\x00"),
        "cases": lambda: engine.cases(site="lon\x00don"),
    }
    with pytest.raises(nw.InvalidInput, match="NUL"):
        calls[call]()
