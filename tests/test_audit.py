"""The audit log is append-only and tamper-evident, on SQLite and on PostgreSQL.

Every test builds some real activity, then changes the stored log behind the engine's back with raw
SQL (as someone with database access could) and checks that ``verify_audit()`` names what changed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from engine_helpers import CO, COORD, SW, TM, Clock, new_engine, open_at, tables_of

import nim_workflow as nw

AUDIT = "nimwf_audit_events"
HEAD = "nimwf_audit_head"


@pytest.fixture
def clock() -> Clock:
    """The engine's injected clock."""
    return Clock()


@pytest.fixture
def engine(db_url: str, clock: Clock) -> Iterator[nw.Engine]:
    """A migrated engine with a few cases' worth of every kind of audit event."""
    eng = new_engine(db_url, clock)
    make_activity(eng, clock)
    yield eng
    eng.close()


def make_activity(engine: nw.Engine, clock: Clock) -> None:
    """Open, record, move, deny, pause, resume, extend, and let the deadline processor fire."""
    open_at(engine, "AUD-1", "referral")
    clock.advance(days=1)
    engine.fire("AUD-1", "accept_referral", actor=TM)
    clock.advance(days=1)
    with pytest.raises(nw.PermissionDenied):
        engine.fire("AUD-1", "offer_treatment", actor=SW)
    engine.pause("AUD-1", actor=COORD, reason="adjourned")
    clock.advance(days=2)
    engine.resume("AUD-1", actor=COORD)
    engine.extend_deadline("AUD-1", "assessment", actor=TM, reason="interpreter needed")
    engine.open_case(
        "AUD-2",
        pathway="nim-uk-england",
        site="london",
        actor=SW,
        facts={"proceedings_issued_on": "2026-02-27"},
    )
    # AUD-2 opened Fri 6 March: referral decision due Fri 20 March, reminded Tue 17 March.
    clock.advance(days=12)
    assert [e.kind for e in engine.process_due()] == ["reminder"]
    clock.advance(days=18)
    assert engine.process_due(), "the deadline processor should have fired the breach"
    engine.record("AUD-2", {"consent_recorded": True}, actor=SW)
    engine.fire("AUD-2", "decline_referral", actor=TM, reason="not eligible")
    with pytest.raises(nw.TransitionNotAllowed):
        engine.fire("AUD-2", "accept_referral", actor=TM)
    open_at(engine, "AUD-3", "court", pathway="nim-us-louisiana")
    engine.fire("AUD-3", "record_decision", actor=CO, facts={"decision": "adoption"})


def rows(engine: nw.Engine, table: str = AUDIT) -> list[dict[str, Any]]:
    """Every row of a table, as stored, in key order."""
    meta = tables_of(engine.sqlalchemy_engine)
    tab = meta.tables[table]
    with engine.sqlalchemy_engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(tab).order_by(*tab.primary_key))]


def update(engine: nw.Engine, table: str, key: dict[str, Any], values: dict[str, Any]) -> None:
    """A raw UPDATE of one row, outside the engine."""
    tab = tables_of(engine.sqlalchemy_engine).tables[table]
    condition = sa.and_(*(tab.c[k] == v for k, v in key.items()))
    with engine.sqlalchemy_engine.begin() as conn:
        assert conn.execute(tab.update().where(condition).values(**values)).rowcount == 1


def delete(engine: nw.Engine, seqs: list[int]) -> None:
    """A raw DELETE of audit rows, outside the engine."""
    tab = tables_of(engine.sqlalchemy_engine).tables[AUDIT]
    with engine.sqlalchemy_engine.begin() as conn:
        conn.execute(tab.delete().where(tab.c.seq.in_(seqs)))


def names(problems: tuple[str, ...], seq: int) -> bool:
    """Whether some problem names this seq."""
    return any(re.search(rf"\bseq {seq}\b", p) for p in problems)


def altered(column: str, value: Any) -> Any:
    """A different value of the same type for a column."""
    if column == "seq":
        return value + 1000
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(seconds=1)
    if isinstance(value, list):
        return [*value, "intruder"]
    if isinstance(value, dict):
        return {**value, "tampered": True}
    if value is None:
        return "x"
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1] != "0" else "1")
    raise AssertionError(f"no tamper for {column}={value!r}")


def test_chain_verifies_after_activity(engine: nw.Engine) -> None:
    """After real activity of every kind the whole chain verifies and every event is checked."""
    report = engine.verify_audit()
    events = engine.audit()
    assert report.ok, report.problems
    assert report.problems == ()
    assert report.checked == len(events)
    assert {e.action for e in events} >= {
        "opened",
        "fact_recorded",
        "transition",
        "denied",
        "paused",
        "resumed",
        "extended",
        "reminder",
    }
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash


def test_editing_any_field_of_any_row_is_detected(engine: nw.Engine) -> None:
    """Changing any single column of any audit row is reported, naming that row's seq."""
    stored = rows(engine)
    picks = {0, len(stored) // 3, len(stored) // 2, len(stored) - 1}
    picks |= {next(i for i, r in enumerate(stored) if r["action"] == "denied")}
    picks |= {next(i for i, r in enumerate(stored) if r["action"] == "reminder")}
    tried = 0
    for index in sorted(picks):
        original = stored[index]
        seq = original["seq"]
        for column, value in original.items():
            changed = altered(column, value)
            update(engine, AUDIT, {"seq": seq}, {column: changed})
            report = engine.verify_audit()
            assert not report.ok, (seq, column)
            assert names(report.problems, seq), (seq, column, report.problems)
            key = changed if column == "seq" else seq
            update(engine, AUDIT, {"seq": key}, {column: value})
            assert engine.verify_audit().ok, (seq, column)
            tried += 1
    assert tried == len(picks) * len(stored[0]) >= 6 * 13


def test_deleting_a_middle_row_is_detected(engine: nw.Engine) -> None:
    """Removing an event from the middle of the log is reported as that seq missing."""
    middle = len(engine.audit()) // 2
    delete(engine, [middle])
    report = engine.verify_audit()
    assert not report.ok
    assert names(report.problems, middle)


def test_deleting_the_newest_rows_is_detected(engine: nw.Engine) -> None:
    """Removing the newest event, then two more (a truncated log), is caught by the chain head."""
    newest = engine.audit()[-1].seq
    for gone in ([newest], [newest - 2, newest - 1]):
        delete(engine, gone)
        report = engine.verify_audit()
        assert not report.ok
        assert any("head" in p for p in report.problems), report.problems


def test_truncation_with_a_forged_head_is_caught_by_the_case_head(engine: nw.Engine) -> None:
    """Removing a case's newest event and rewinding the chain head still shows: the case says so."""
    events = engine.audit()
    newest = events[-1]
    assert newest.action == "transition"
    delete(engine, [newest.seq])
    previous = events[-2]
    update(engine, HEAD, {"id": 1}, {"last_seq": previous.seq, "last_hash": previous.hash})
    report = engine.verify_audit()
    assert not report.ok
    assert any(newest.reference in p for p in report.problems), report.problems


def test_truncating_a_denied_event_is_caught_by_the_chain_head(engine: nw.Engine) -> None:
    """Removing a newest event that did not change the case (a denial) is caught by the head."""
    with pytest.raises(nw.TransitionNotAllowed):
        engine.fire("AUD-3", "withdraw", actor=TM, reason="late")
    newest = engine.audit()[-1]
    assert newest.action == "denied"
    delete(engine, [newest.seq])
    report = engine.verify_audit()
    assert not report.ok
    assert any("head" in p for p in report.problems), report.problems


def test_swapping_two_rows_is_detected(engine: nw.Engine) -> None:
    """Exchanging the contents of two events (a reordering) is reported for both seqs."""
    stored = rows(engine)
    first, second = stored[2], stored[5]
    body = [c for c in first if c != "seq"]
    update(engine, AUDIT, {"seq": first["seq"]}, {c: second[c] for c in body})
    update(engine, AUDIT, {"seq": second["seq"]}, {c: first[c] for c in body})
    report = engine.verify_audit()
    assert not report.ok
    assert names(report.problems, first["seq"])
    assert names(report.problems, second["seq"])


def test_editing_the_chain_head_is_detected(engine: nw.Engine) -> None:
    """Changing the head row's seq or hash is reported; restoring it verifies again."""
    (head,) = rows(engine, HEAD)
    for column in ("last_seq", "last_hash"):
        changed = head[column] + 1 if column == "last_seq" else altered(column, head[column])
        update(engine, HEAD, {"id": head["id"]}, {column: changed})
        report = engine.verify_audit()
        assert not report.ok, column
        assert any("head" in p for p in report.problems), report.problems
        update(engine, HEAD, {"id": head["id"]}, {column: head[column]})
        assert engine.verify_audit().ok


def test_editing_a_case_head_is_detected(engine: nw.Engine) -> None:
    """Changing the newest-event pointer a case row keeps is reported, naming the case."""
    case_rows = rows(engine, "nimwf_cases")
    target = case_rows[0]
    for column in ("audit_head_seq", "audit_head_hash"):
        value = target[column]
        changed = value - 1 if column == "audit_head_seq" else altered(column, value)
        update(engine, "nimwf_cases", {"reference": target["reference"]}, {column: changed})
        report = engine.verify_audit()
        assert not report.ok
        assert any(target["reference"] in p for p in report.problems), report.problems
        update(engine, "nimwf_cases", {"reference": target["reference"]}, {column: value})
    assert engine.verify_audit().ok


def test_audit_after_seq_returns_exactly_the_later_events(engine: nw.Engine) -> None:
    """audit(after_seq=N) returns every event after N, in order, and nothing else."""
    everything = engine.audit()
    top = everything[-1].seq
    for after in range(top + 2):
        assert engine.audit(after_seq=after) == [e for e in everything if e.seq > after]
        for reference in ("AUD-1", "AUD-2", "AUD-3"):
            assert engine.audit(reference, after_seq=after) == [
                e for e in everything if e.seq > after and e.reference == reference
            ]
    assert engine.audit(after_seq=None) == everything


def test_a_tailing_host_misses_nothing(db_url: str, clock: Clock) -> None:
    """A host tailing audit(after_seq=last seen) sees every event of two engines once, in order."""
    first = new_engine(db_url, clock)
    second = nw.Engine(db_url, clock=clock)
    seen: list[nw.AuditEvent] = []

    def tail() -> None:
        last = seen[-1].seq if seen else 0
        seen.extend(first.audit(after_seq=last))

    try:
        tail()
        assert seen == []
        for number in range(4):
            writer = first if number % 2 else second
            reference = f"TAIL-{number}"
            open_at(writer, reference, "referral")
            tail()
            clock.advance(hours=1)
            with pytest.raises(nw.PermissionDenied):
                second.fire(reference, "accept_referral", actor=SW)
            first.fire(reference, "accept_referral", actor=TM)
            if number % 2:
                tail()
        tail()
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
        assert seen == first.audit()
        assert len({e.seq for e in seen}) == len(seen)
    finally:
        first.close()
        second.close()
