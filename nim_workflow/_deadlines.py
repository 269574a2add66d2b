"""Deadline rules to due dates, and the alarms (reminders, breaches, escalations) they raise.

Everything here runs inside the caller's transaction on one case: opening the deadlines of a
stage, settling them when the stage is left, starting and moving statutory clocks when their
date facts are recorded, shifting them over pauses, extending them, and (for the processor)
claiming alarms that fell due. Due dates are local dates in the site's working-day calendar; an
alarm is a row due at a UTC instant, so nothing about time lives only in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from nim_workflow._calendar import WorkingCalendar
from nim_workflow._pathway._model import DeadlineRule, Duration, Pathway
from nim_workflow._store._schema import alarms, deadlines
from nim_workflow._values import Adjustment, Deadline, Explanation

SYSTEM_ACTOR = "system:deadline-processor"


@dataclass(frozen=True, slots=True)
class CaseClock:
    """What deadline arithmetic needs to know about one case."""

    reference: str
    site: str
    pathway: Pathway
    calendar: WorkingCalendar


# -- opening, settling, cancelling ----------------------------------------------------------------


def open_deadline(
    conn: Connection,
    clock: CaseClock,
    rule: DeadlineRule,
    *,
    occurrence: int,
    start_on: dt.date,
    at: dt.datetime,
    duration: Duration | None = None,
) -> int:
    """Open one deadline of ``rule`` whose clock started on ``start_on``; return its id."""
    span = duration or rule.duration_for(occurrence)
    due_on = clock.calendar.add(start_on, span)
    result = conn.execute(
        deadlines.insert().values(
            reference=clock.reference,
            site=clock.site,
            rule=rule.name,
            kind=rule.kind,
            stage=rule.stage,
            occurrence=occurrence,
            start_on=start_on,
            base_due_on=due_on,
            due_on=due_on,
            due_at=clock.calendar.end_of(due_on),
            status="open",
            settled_at=None,
            extensions=0,
            adjustments=[],
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    deadline_id = int(key[0])
    schedule_alarms(conn, clock, rule, deadline_id, start_on=start_on, due_on=due_on, now=at)
    return deadline_id


def open_stage_deadlines(
    conn: Connection, clock: CaseClock, stage: str, at: dt.datetime
) -> list[str]:
    """Open every deadline of ``stage``, its clock starting on the local date of ``at``."""
    start_on = clock.calendar.local_date(at)
    opened = []
    for rule in clock.pathway.stage_rules(stage):
        open_deadline(conn, clock, rule, occurrence=1, start_on=start_on, at=at)
        opened.append(rule.name)
    return opened


def _close_alarms(conn: Connection, deadline_ids: Sequence[int]) -> None:
    """Cancel the pending alarms of deadlines that are no longer open."""
    if deadline_ids:
        conn.execute(
            alarms.update()
            .where(alarms.c.deadline_id.in_(deadline_ids), alarms.c.status == "pending")
            .values(status="cancelled")
        )


def _settle(
    conn: Connection,
    clock: CaseClock,
    rows: Sequence[Any],
    at: dt.datetime,
    *,
    trigger: str | None,
    closing: bool,
) -> dict[str, str]:
    left_on = clock.calendar.local_date(at)
    settled: dict[str, str] = {}
    for row in rows:
        rule = clock.pathway.rule(row.rule)
        if left_on > row.due_on:
            status = "missed"
        elif closing and trigger not in rule.met_by:
            status = "cancelled"
        else:
            status = "met"
        conn.execute(
            deadlines.update().where(deadlines.c.id == row.id).values(status=status, settled_at=at)
        )
        settled[row.rule] = status
    _close_alarms(conn, [row.id for row in rows])
    return settled


def _open_rows(conn: Connection, reference: str, *conditions: Any) -> Sequence[Any]:
    return conn.execute(
        sa.select(deadlines.c.id, deadlines.c.rule, deadlines.c.due_on).where(
            deadlines.c.reference == reference, deadlines.c.status == "open", *conditions
        )
    ).all()


def settle_stage_deadlines(
    conn: Connection,
    clock: CaseClock,
    stage: str,
    at: dt.datetime,
    *,
    closing: bool,
    trigger: str | None = None,
) -> dict[str, str]:
    """Settle the open deadlines of the stage being left.

    ``met`` when left on or before the due date, ``missed`` after it. When the case is closing
    (withdrawn, declined) a deadline not yet missed is ``cancelled`` instead of met: the work it
    measured was not done, unless the rule names the closing trigger in ``met_by``.
    """
    rows = _open_rows(conn, clock.reference, deadlines.c.stage == stage)
    return _settle(conn, clock, rows, at, trigger=trigger, closing=closing)


def settle_met_by(
    conn: Connection, clock: CaseClock, trigger: str, at: dt.datetime
) -> dict[str, str]:
    """Settle the open deadlines whose rule names ``trigger`` in ``met_by``."""
    names = [rule.name for rule in clock.pathway.deadlines if trigger in rule.met_by]
    if not names:
        return {}
    rows = _open_rows(conn, clock.reference, deadlines.c.rule.in_(names))
    return _settle(conn, clock, rows, at, trigger=trigger, closing=False)


def close_open(
    conn: Connection, clock: CaseClock, at: dt.datetime, trigger: str | None = None
) -> dict[str, str]:
    """Settle every deadline still open when the case closes.

    Those already past their due date are ``missed`` (closing does not undo a breach); those the
    closing trigger meets (``met_by``) are ``met``; the rest are ``cancelled``.
    """
    rows = _open_rows(conn, clock.reference)
    return _settle(conn, clock, rows, at, trigger=trigger, closing=True)


# -- statutory clocks ------------------------------------------------------------------------------


def record_clock_facts(
    conn: Connection,
    clock: CaseClock,
    changed: Mapping[str, Any],
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """Start or move on the statutory clocks whose date facts were just recorded.

    Recording a clock's anchor or its recurring fact with date ``d`` settles the open occurrence
    (``met`` if ``d`` is on or before its due date, else ``missed``) and opens the next one from
    ``d``, the date actually recorded, not the date that was due. A date earlier than the open
    occurrence's own start is a correction: that occurrence is cancelled and started again.
    """
    moves: list[dict[str, Any]] = []
    for rule in clock.pathway.clock_rules():
        for fact in (rule.anchor_fact, rule.recur_fact):
            if fact is None or fact not in changed:
                continue
            day = changed[fact]
            assert isinstance(day, dt.date)
            moves.append(_move_clock(conn, clock, rule, fact, day, at))
    return moves


def _move_clock(
    conn: Connection, clock: CaseClock, rule: DeadlineRule, fact: str, day: dt.date, at: dt.datetime
) -> dict[str, Any]:
    rows = conn.execute(
        sa.select(
            deadlines.c.id,
            deadlines.c.occurrence,
            deadlines.c.start_on,
            deadlines.c.due_on,
            deadlines.c.status,
        )
        .where(deadlines.c.reference == clock.reference, deadlines.c.rule == rule.name)
        .order_by(deadlines.c.id.desc())
        .limit(1)
    ).all()
    is_anchor = fact == rule.anchor_fact
    latest = rows[0] if rows else None
    if latest is None and not is_anchor:
        # A review recorded before the clock's anchor: nothing is running to move on.
        return {"rule": rule.name, "fact": fact, "started": None}
    if is_anchor and rule.recur_fact is not None and latest is not None and latest.occurrence > 1:
        # Reviews have already moved the clock on from its anchor; correcting the anchor
        # now changes nothing that is still running.
        return {"rule": rule.name, "fact": fact, "started": None}
    occurrence = 1
    settled = None
    # The anchor of a recurring clock recorded again is a correction of where the clock
    # started; the anchor of a clock with no recurring fact (a CSO made again) moves it on.
    restart = is_anchor and (rule.recur_fact is not None or latest is None)
    if latest is not None and latest.status == "open":
        if restart or day < latest.start_on:
            settled = "cancelled"
            occurrence = 1 if restart else latest.occurrence
        else:
            settled = "met" if day <= latest.due_on else "missed"
            occurrence = latest.occurrence + 1
        conn.execute(
            deadlines.update()
            .where(deadlines.c.id == latest.id)
            .values(status=settled, settled_at=at)
        )
        _close_alarms(conn, [latest.id])
    elif latest is not None:
        occurrence = 1 if restart else latest.occurrence + 1
    span = rule.duration if is_anchor else rule.duration_for(max(occurrence, 2))
    open_deadline(conn, clock, rule, occurrence=occurrence, start_on=day, at=at, duration=span)
    return {
        "rule": rule.name,
        "fact": fact,
        "started": day.isoformat(),
        "occurrence": occurrence,
        "previous": settled,
    }


# -- alarms ----------------------------------------------------------------------------------------


def effective_start(
    clock: CaseClock, rule: DeadlineRule, occurrence: int, start_on: dt.date, adjustments: Any
) -> dt.date:
    """Where the clock would have started had it never been paused.

    The start moves later by every pause applied, so reminders inside the span (monthly
    updates, a mid-way review) stand still with the deadline.
    """
    unit = rule.duration_for(occurrence).unit
    day = start_on
    for adjustment in adjustments or ():
        if adjustment.get("kind") == "pause":
            count = int(str(adjustment["shift"]).split()[0])
            day = clock.calendar.shift(day, unit, count)
    return day


def _alarm_plan(
    clock: CaseClock, rule: DeadlineRule, start_on: dt.date, due_on: dt.date
) -> list[tuple[str, str, dt.datetime]]:
    cal = clock.calendar
    due_at = cal.end_of(due_on)
    plan: list[tuple[str, str, dt.datetime]] = []
    for reminder in rule.reminders:
        days: list[dt.date] = []
        if reminder.before is not None:
            days.append(cal.subtract(due_on, reminder.before))
        elif reminder.every is not None:
            step = 1
            while True:
                day = cal.add(
                    start_on,
                    Duration(amount=reminder.every.amount * step, unit=reminder.every.unit),
                )
                if day >= due_on:
                    break
                days.append(day)
                step += 1
        elif reminder.fraction is not None:
            span = (due_on - start_on).days
            days.append(start_on + dt.timedelta(days=round(span * reminder.fraction)))
        plan.extend(("reminder", reminder.label, cal.start_of(day)) for day in days)
    plan.append(("breach", "breach", due_at))
    plan.append(("escalation", rule.escalate_to, due_at))
    return plan


def schedule_alarms(
    conn: Connection,
    clock: CaseClock,
    rule: DeadlineRule,
    deadline_id: int,
    *,
    start_on: dt.date,
    due_on: dt.date,
    now: dt.datetime,
) -> None:
    """(Re)write the pending alarms of one deadline for its current due date.

    Reminders already past at ``now`` are not raised late; a breach is always scheduled (a
    breach in the past fires at the next processing). Alarms that already fired for the same
    instant are not repeated.
    """
    conn.execute(
        alarms.delete().where(alarms.c.deadline_id == deadline_id, alarms.c.status == "pending")
    )
    fired = {
        (row.kind, row.label, row.due_at)
        for row in conn.execute(
            sa.select(alarms.c.kind, alarms.c.label, alarms.c.due_at).where(
                alarms.c.deadline_id == deadline_id, alarms.c.status == "fired"
            )
        )
    }
    due_at = clock.calendar.end_of(due_on)
    rows = []
    for kind, label, instant in _alarm_plan(clock, rule, start_on, due_on):
        if (kind, label, instant) in fired:
            continue
        if kind == "reminder" and (instant < now or instant >= due_at):
            continue
        rows.append(
            {
                "deadline_id": deadline_id,
                "reference": clock.reference,
                "kind": kind,
                "label": label,
                "due_at": instant,
                "status": "pending",
                "fired_at": None,
            }
        )
    if rows:
        conn.execute(alarms.insert(), rows)


# -- pauses and extensions -------------------------------------------------------------------------


def _adjust(
    conn: Connection,
    clock: CaseClock,
    row: Any,
    rule: DeadlineRule,
    new_due: dt.date,
    adjustment: dict[str, Any],
    at: dt.datetime,
    **values: Any,
) -> None:
    adjustments = [*row.adjustments, adjustment]
    conn.execute(
        deadlines.update()
        .where(deadlines.c.id == row.id)
        .values(
            due_on=new_due,
            due_at=clock.calendar.end_of(new_due),
            adjustments=adjustments,
            **values,
        )
    )
    start = effective_start(clock, rule, row.occurrence, row.start_on, adjustments)
    schedule_alarms(conn, clock, rule, row.id, start_on=start, due_on=new_due, now=at)


def shift_for_pause(
    conn: Connection,
    clock: CaseClock,
    paused_on: dt.date,
    resumed_on: dt.date,
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """Move every open deadline later by the paused time, in each rule's own unit."""
    moved = []
    rows = conn.execute(
        sa.select(deadlines).where(
            deadlines.c.reference == clock.reference, deadlines.c.status == "open"
        )
    ).all()
    for row in rows:
        if row.due_on < paused_on:
            # Already missed when the clock stopped: nothing was running to stand still, and
            # moving it would raise its breach a second time.
            continue
        rule = clock.pathway.rule(row.rule)
        unit = rule.duration_for(row.occurrence).unit
        # A clock started during the pause stood still only from its own start.
        count = clock.calendar.pause_shift(unit, max(paused_on, row.start_on), resumed_on)
        if count <= 0:
            continue
        new_due = clock.calendar.shift(row.due_on, unit, count)
        shift_unit = "working_days" if unit == "working_days" else "days"
        adjustment = {
            "kind": "pause",
            "at": at.isoformat(),
            "shift": f"{count} {shift_unit}",
            "previous_due_on": row.due_on.isoformat(),
            "due_on": new_due.isoformat(),
            "detail": f"paused {paused_on.isoformat()} to {resumed_on.isoformat()}",
        }
        _adjust(conn, clock, row, rule, new_due, adjustment, at)
        moved.append(
            {"deadline": row.rule, "from": row.due_on.isoformat(), "to": new_due.isoformat()}
        )
    return moved


def open_deadline_row(conn: Connection, reference: str, name: str) -> Any | None:
    """The newest open deadline of this rule on this case, or ``None``."""
    return conn.execute(
        sa.select(deadlines)
        .where(
            deadlines.c.reference == reference,
            deadlines.c.rule == name,
            deadlines.c.status == "open",
        )
        .order_by(deadlines.c.id.desc())
        .limit(1)
    ).first()


def extend(
    conn: Connection,
    clock: CaseClock,
    row: Any,
    rule: DeadlineRule,
    *,
    at: dt.datetime,
    actor_id: str,
    reason: str,
) -> dt.date:
    """Move one open deadline later by its rule's extension step; return the new due date."""
    assert rule.extension is not None
    new_due = clock.calendar.add(row.due_on, rule.extension.step)
    adjustment = {
        "kind": "extension",
        "at": at.isoformat(),
        "shift": str(rule.extension.step),
        "previous_due_on": row.due_on.isoformat(),
        "due_on": new_due.isoformat(),
        "detail": (
            f"extension {row.extensions + 1} of {rule.extension.limit} by {actor_id}: {reason}"
        ),
    }
    _adjust(conn, clock, row, rule, new_due, adjustment, at, extensions=row.extensions + 1)
    return new_due


# -- reading ---------------------------------------------------------------------------------------


def explanation(clock: CaseClock, row: Any) -> Explanation:
    """Rebuild why a stored deadline is due when it is."""
    rule = clock.pathway.rule(row.rule)
    span = rule.duration_for(row.occurrence)
    if rule.stage is not None:
        anchor = f"entered stage {rule.stage}"
    else:
        fact = rule.recur_fact if row.occurrence > 1 and rule.recur_fact else rule.anchor_fact
        anchor = f"{fact} (occurrence {row.occurrence})"
    # Holidays and closures matter only to working-day rules; name every one between the start
    # and the due date as it stands now, so days a pause or extension pushed it over count too.
    skipped = (
        tuple(clock.calendar.skipped(row.start_on, row.due_on))
        if span.unit == "working_days"
        else ()
    )
    adjustments = tuple(
        Adjustment(
            kind=a["kind"],
            at=dt.datetime.fromisoformat(a["at"]),
            shift=a["shift"],
            previous_due_on=dt.date.fromisoformat(a["previous_due_on"]),
            due_on=dt.date.fromisoformat(a["due_on"]),
            detail=a.get("detail", ""),
        )
        for a in row.adjustments
    )
    return Explanation(
        start_on=row.start_on,
        anchor=anchor,
        rule=f"{rule.name}: {span} ({clock.pathway.calendar} calendar)",
        base_due_on=row.base_due_on,
        skipped=skipped,
        adjustments=adjustments,
        due_on=row.due_on,
        due_at=row.due_at,
        timezone=clock.pathway.timezone,
    )


def to_deadline(clock: CaseClock, row: Any) -> Deadline:
    """A stored deadline row as the public value object, with its explanation."""
    return Deadline(
        reference=row.reference,
        stage=row.stage,
        name=row.rule,
        due_on=row.due_on,
        due_at=row.due_at,
        status=row.status,
        settled_at=row.settled_at,
        extensions=row.extensions,
        kind=row.kind,
        occurrence=row.occurrence,
        start_on=row.start_on,
        site=row.site,
        explanation=explanation(clock, row),
    )
