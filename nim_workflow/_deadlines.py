"""Deadline rules to due dates, and the alarms (reminders, breaches, escalations) they raise.

Everything here decides against one case's rows held in memory (:class:`CaseState`), which the
store writes afterwards in a handful of statements: opening the deadlines of a stage, settling
them when the stage is left, starting and moving statutory clocks when their date facts are
recorded, shifting them over pauses, extending them, and reworking them for another version of
the pathway. No SQL runs here, so all of it is tested without a database. Due dates are local
dates in the site's working-day calendar; an alarm is a row due at a UTC instant, so nothing
about time lives only in memory once the command commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nim_workflow._calendar import WorkingCalendar, calendar_for
from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._model import DeadlineRule, Duration, Pathway
from nim_workflow._store._case_state import CaseState, Row
from nim_workflow._values import Adjustment, Deadline, Explanation, is_overdue

SYSTEM_ACTOR = "system:deadline-processor"


@dataclass(frozen=True, slots=True)
class CaseClock:
    """What deadline arithmetic needs to know about one case.

    ``calendar`` is the site's: its holidays and its own closures, which the team's stage
    deadlines count. A statutory clock counts the law's working days, which a site's closures do
    not change (a "working day" in the regulations is any but a weekend day or a bank holiday):
    :meth:`for_rule` gives each rule the calendar it counts in.
    """

    reference: str
    site: str
    pathway: Pathway
    calendar: WorkingCalendar

    @property
    def law_calendar(self) -> WorkingCalendar:
        """The pathway's holiday calendar without the site's closures."""
        return calendar_for(self.pathway.calendar, self.pathway.timezone)

    def for_rule(self, rule: DeadlineRule) -> WorkingCalendar:
        """The calendar ``rule`` counts in: the site's for stage deadlines, the law's otherwise."""
        return self.calendar if rule.stage is not None else self.law_calendar


# -- opening, settling, cancelling ----------------------------------------------------------------


def open_deadline(
    state: CaseState,
    clock: CaseClock,
    rule: DeadlineRule,
    *,
    occurrence: int,
    start_on: dt.date,
    at: dt.datetime,
    duration: Duration | None = None,
    due_on: dt.date | None = None,
    basis: Mapping[str, Any] | None = None,
) -> Row:
    """Open one deadline of ``rule`` whose clock started on ``start_on``; return its row.

    The due date is ``duration`` (default: the rule's span for ``occurrence``) counted from
    ``start_on`` as the rule counts, unless the caller worked it out already (``due_on``: an
    earliest_of or cumulative clock). A window also opens on its own first day.
    """
    span = duration or rule.duration_for(occurrence)
    if due_on is None:
        due_on = clock.for_rule(rule).add(start_on, span, rule.counting)
    opens_on = (
        clock.for_rule(rule).add(start_on, rule.opens, rule.counting)
        if rule.opens is not None
        else None
    )
    row = state.add(
        "deadlines",
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
        opens_on=opens_on,
        basis=dict(basis) if basis is not None else None,
    )
    schedule_alarms(
        state, clock, rule, row, start_on=start_on, due_on=due_on, now=at, opens_on=opens_on
    )
    return row


def open_stage_deadlines(
    state: CaseState, clock: CaseClock, stage: str, at: dt.datetime
) -> list[str]:
    """Open every deadline of ``stage``, its clock starting on the local date of ``at``."""
    start_on = clock.calendar.local_date(at)
    opened = []
    for rule in clock.pathway.stage_rules(stage):
        open_deadline(state, clock, rule, occurrence=1, start_on=start_on, at=at)
        opened.append(rule.name)
    return opened


def _close_alarms(state: CaseState, rows: Sequence[Row]) -> None:
    """Cancel the pending alarms of deadlines that are no longer open."""
    for row in rows:
        for alarm in state.alarms_of(row, "pending"):
            state.change("alarms", alarm, status="cancelled")


def _settle(
    state: CaseState,
    clock: CaseClock,
    rows: Sequence[Row],
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
        state.change("deadlines", row, status=status, settled_at=at)
        settled[row.rule] = status
    _close_alarms(state, rows)
    return settled


def settle_stage_deadlines(
    state: CaseState,
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
    rows = [row for row in state.deadline_rows(status="open") if row.stage == stage]
    return _settle(state, clock, rows, at, trigger=trigger, closing=closing)


def settle_met_by(
    state: CaseState, clock: CaseClock, trigger: str, at: dt.datetime
) -> dict[str, str]:
    """Settle the open deadlines whose rule names ``trigger`` in ``met_by``."""
    names = [rule.name for rule in clock.pathway.deadlines if trigger in rule.met_by]
    if not names:
        return {}
    rows = [row for row in state.deadline_rows(status="open") if row.rule in names]
    return _settle(state, clock, rows, at, trigger=trigger, closing=False)


def close_open(
    state: CaseState, clock: CaseClock, at: dt.datetime, trigger: str | None = None
) -> dict[str, str]:
    """Settle every deadline still open when the case closes.

    Those already past their due date are ``missed`` (closing does not undo a breach); those the
    closing trigger meets (``met_by``) are ``met``; the rest are ``cancelled``.
    """
    rows = state.deadline_rows(status="open")
    return _settle(state, clock, rows, at, trigger=trigger, closing=True)


# -- statutory clocks and windows ----------------------------------------------------------------


def _settle_row(state: CaseState, row: Row, status: str, at: dt.datetime) -> None:
    state.change("deadlines", row, status=status, settled_at=at)
    _close_alarms(state, [row])


def window_refusal(
    state: CaseState, clock: CaseClock, changed: Mapping[str, Any]
) -> tuple[str, str, dt.date, dt.date] | None:
    """``(rule, fact, day, opens_on)`` if ``changed`` would meet an open window before it opens.

    Checked before anything is written, so the refusal can be audited on its own.
    """
    for rule in clock.pathway.clock_rules():
        if rule.opens is None:
            continue
        for fact in rule.settled_by:
            day = changed.get(fact)
            if not isinstance(day, dt.date):
                continue
            row = state.latest(rule.name)
            if row is not None and row.status == "open" and day < row.opens_on:
                return rule.name, fact, day, row.opens_on
    return None


def record_clock_facts(
    state: CaseState,
    clock: CaseClock,
    changed: Mapping[str, dt.date],
    at: dt.datetime,
    facts: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Start, move on or settle the clocks and windows whose date facts were just recorded.

    ``changed`` holds the date facts recorded now; ``facts`` every fact the case holds after
    them (an earliest_of clock weighs anchors recorded earlier). For each rule, in file order:

    * its anchor starts occurrence 1 (recorded again: a correction of a recurring clock, a
      new order for a clock that does not recur, nothing at all for a ``from_first`` clock);
    * its recurring fact settles the open occurrence (``met`` on or before the due date, else
      ``missed``) and opens the next from the date actually recorded, not the date that was due;
    * a ``settled_by`` fact settles the open occurrence and starts nothing;
    * an earliest_of clock is worked out again from every candidate recorded, and a cumulative
      clock from its periods in the condition.
    """
    all_facts = {**(facts or {}), **changed}
    moves: list[dict[str, Any]] = []
    for rule in clock.pathway.clock_rules():
        touched = sorted(
            (fact for fact in rule.facts if fact in changed),
            key=lambda fact: (changed[fact], rule.facts.index(fact)),
        )
        if not touched:
            continue
        if rule.cumulative is not None:
            moves.extend(_move_cumulative(state, clock, rule, touched, changed, all_facts, at))
            continue
        starts = [fact for fact in touched if fact in rule.start_facts]
        if rule.candidates and starts:
            move = _move_earliest(state, clock, rule, all_facts, at)
            if move is not None:
                moves.append(move)
        for fact in touched:
            if fact == rule.anchor_fact or fact == rule.recur_fact:
                moves.append(_move_clock(state, clock, rule, fact, changed[fact], at))
            elif fact in rule.settled_by:
                move = _settle_by_fact(state, clock, rule, fact, changed[fact], at)
                if move is not None:
                    moves.append(move)
    return moves


def _settle_by_fact(
    state: CaseState, clock: CaseClock, rule: DeadlineRule, fact: str, day: dt.date, at: dt.datetime
) -> dict[str, Any] | None:
    row = state.latest(rule.name)
    if row is None or row.status != "open":
        return None
    status = "met" if day <= row.due_on else "missed"
    _settle_row(state, row, status, at)
    return {"rule": rule.name, "fact": fact, "settled": status, "occurrence": row.occurrence}


def _move_clock(
    state: CaseState, clock: CaseClock, rule: DeadlineRule, fact: str, day: dt.date, at: dt.datetime
) -> dict[str, Any]:
    latest = state.latest(rule.name)
    is_anchor = fact == rule.anchor_fact
    unmoved = {"rule": rule.name, "fact": fact, "started": None}
    if latest is None and not is_anchor:
        # A review recorded before the clock's anchor (or any earliest_of candidate): nothing
        # is running to move on.
        return unmoved
    if is_anchor and latest is not None and rule.from_first:
        # Counted from the first order (s.96(4)): later ones leave it where it is.
        return unmoved
    if is_anchor and rule.recur_fact is not None and latest is not None and latest.occurrence > 1:
        # Reviews have already moved the clock on from its anchor; correcting the anchor
        # now changes nothing that is still running.
        return unmoved
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
        _settle_row(state, latest, settled, at)
    elif latest is not None:
        occurrence = 1 if restart else latest.occurrence + 1
    span = rule.duration if is_anchor else rule.duration_for(max(occurrence, 2))
    open_deadline(state, clock, rule, occurrence=occurrence, start_on=day, at=at, duration=span)
    return {
        "rule": rule.name,
        "fact": fact,
        "started": day.isoformat(),
        "occurrence": occurrence,
        "previous": settled,
    }


def governing_candidate(
    clock: CaseClock, rule: DeadlineRule, facts: Mapping[str, Any]
) -> tuple[int, dt.date, dt.date] | None:
    """``(candidate index, anchor date, due date)`` of the earliest applicable candidate.

    A candidate applies when its anchor is recorded and, if it has ``when_preceded_by``, that
    fact is recorded and falls before the anchor. Ties go to the candidate listed first.
    """
    best: tuple[int, dt.date, dt.date] | None = None
    for index, candidate in enumerate(rule.candidates):
        anchor = facts.get(candidate.anchor)
        if not isinstance(anchor, dt.date):
            continue
        if candidate.when_preceded_by is not None:
            before = facts.get(candidate.when_preceded_by)
            if not isinstance(before, dt.date) or not before < anchor:
                continue
        due = clock.for_rule(rule).add(anchor, candidate.duration, rule.counting)
        if best is None or due < best[2]:
            best = (index, anchor, due)
    return best


def _move_earliest(
    state: CaseState,
    clock: CaseClock,
    rule: DeadlineRule,
    facts: Mapping[str, Any],
    at: dt.datetime,
) -> dict[str, Any] | None:
    """Work an earliest_of clock's first occurrence out again after one of its anchors changed."""
    latest = state.latest(rule.name)
    if latest is not None and (latest.occurrence > 1 or latest.status != "open"):
        # Its hearings have moved it on (or it is settled): the anchors no longer rule it.
        return None
    governing = governing_candidate(clock, rule, facts)
    if governing is None:
        return None
    index, anchor_on, due_on = governing
    candidate = rule.candidates[index]
    basis = {"candidate": index, "anchor": candidate.anchor}
    if latest is None:
        open_deadline(
            state,
            clock,
            rule,
            occurrence=1,
            start_on=anchor_on,
            at=at,
            duration=candidate.duration,
            due_on=due_on,
            basis=basis,
        )
        return {
            "rule": rule.name,
            "fact": candidate.anchor,
            "started": anchor_on.isoformat(),
            "occurrence": 1,
            "due_on": due_on.isoformat(),
        }
    if latest.due_on == due_on and latest.basis == basis and latest.start_on == anchor_on:
        return None
    previous_due = latest.due_on
    state.change(
        "deadlines",
        latest,
        start_on=anchor_on,
        base_due_on=due_on,
        due_on=due_on,
        due_at=clock.calendar.end_of(due_on),
        basis=basis,
    )
    schedule_alarms(state, clock, rule, latest, start_on=anchor_on, due_on=due_on, now=at)
    return {
        "rule": rule.name,
        "fact": candidate.anchor,
        "governing": candidate.anchor,
        "from": previous_due.isoformat(),
        "to": due_on.isoformat(),
    }


# -- cumulative clocks -----------------------------------------------------------------------------

Period = tuple[dt.date, dt.date | None]


def condition_start(
    clock: CaseClock, rule: DeadlineRule, facts: Mapping[str, Any]
) -> dt.date | None:
    """The first day a cumulative clock's condition holds: the earliest recorded ``starts``."""
    assert rule.cumulative is not None
    days = [
        clock.calendar.add(facts[start.anchor], start.plus) if start.plus else facts[start.anchor]
        for start in rule.cumulative.starts
        if isinstance(facts.get(start.anchor), dt.date)
    ]
    return min(days) if days else None


def cumulative_due(clock: CaseClock, rule: DeadlineRule, periods: Sequence[Period]) -> dt.date:
    """The first day ``D`` whose rolling period ``[D - within, D)`` holds enough days in it.

    The last period runs on (the case is in the condition now). The threshold is ``reaches`` in
    days as it falls from the first day in the condition, so an unbroken stay from ``s`` is due
    on ``s + reaches`` exactly. The search jumps ahead by the days still missing, since each day
    adds at most one: a handful of steps, and only when a period starts or ends.
    """
    assert rule.cumulative is not None
    assert periods
    assert periods[-1][1] is None
    first = periods[0][0]
    threshold = (clock.calendar.add(first, rule.cumulative.reaches) - first).days

    day = periods[-1][0]
    while True:
        window_start = clock.calendar.subtract(day, rule.cumulative.within)
        counted = sum(
            max(0, (min(end or day, day) - max(start, window_start)).days) for start, end in periods
        )
        if counted >= threshold:
            # Already reached on the day a new period begins (the days counted before reach
            # the threshold within the rolling period): due that very day.
            return day
        # Each day adds at most one day in the condition, so none before this can reach it.
        day += dt.timedelta(days=threshold - counted)


def _periods(row: Any | None) -> list[Period]:
    if row is None or not row.basis:
        return []
    return [
        (dt.date.fromisoformat(start), dt.date.fromisoformat(end) if end else None)
        for start, end in row.basis.get("periods", ())
    ]


def _periods_json(periods: Sequence[Period]) -> dict[str, Any]:
    return {
        "periods": [[start.isoformat(), end.isoformat() if end else None] for start, end in periods]
    }


def _move_cumulative(
    state: CaseState,
    clock: CaseClock,
    rule: DeadlineRule,
    touched: Sequence[str],
    changed: Mapping[str, dt.date],
    facts: Mapping[str, Any],
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """Follow a cumulative clock's condition: it starts, ends and starts again.

    Its periods live in the basis of its newest deadline row. While the case is out of the
    condition no deadline is open; each return opens the next occurrence, due where the days
    counted so far and the days to come reach the threshold.
    """
    cumulative = rule.cumulative
    assert cumulative is not None
    moves: list[dict[str, Any]] = []
    for fact in touched:
        latest = state.latest(rule.name)
        periods = _periods(latest)
        day = changed[fact]
        if fact in rule.settled_by:
            move = _settle_by_fact(state, clock, rule, fact, day, at)
            if move is not None:
                moves.append(move)
            continue
        if fact == cumulative.leaves or fact == cumulative.returns:
            leaving = fact == cumulative.leaves
            if not periods:
                raise InvalidInput(
                    f"{fact} {day.isoformat()}: clock {rule.name!r} has not started "
                    "(its condition has no first day yet)",
                    field=fact,
                )
            start, end = periods[-1]
            if leaving and end is not None:
                raise InvalidInput(
                    f"{fact} {day.isoformat()}: the condition of {rule.name!r} already ended on "
                    f"{end.isoformat()}; record {cumulative.returns} first",
                    field=fact,
                )
            if not leaving and end is None:
                raise InvalidInput(
                    f"{fact} {day.isoformat()}: the condition of {rule.name!r} holds since "
                    f"{start.isoformat()}; record {cumulative.leaves} first",
                    field=fact,
                )
            last_day = end if end is not None else start
            if day <= last_day:
                raise InvalidInput(
                    f"{fact} {day.isoformat()} is not after {last_day.isoformat()}, where the "
                    f"condition of {rule.name!r} last changed",
                    field=fact,
                )
            if leaving:
                periods[-1] = (start, day)
                assert latest is not None
                if latest.status == "open":
                    status = "missed" if day > latest.due_on else "cancelled"
                    _settle_row(state, latest, status, at)
                state.change(
                    "deadlines", latest, basis={**(latest.basis or {}), **_periods_json(periods)}
                )
                moves.append({"rule": rule.name, "fact": fact, "left": day.isoformat()})
                continue
            periods.append((day, None))
            occurrence = (latest.occurrence + 1) if latest is not None else 1
            moves.append(_open_periods(state, clock, rule, fact, periods, occurrence, at))
            continue
        # One of the facts that say where the condition first began.
        first = condition_start(clock, rule, facts)
        if first is None or (periods and periods[0][0] == first):
            continue
        if len(periods) > 1 or (periods and periods[0][1] is not None):
            # Periods have ended and begun since: the first day is history by now.
            continue
        if latest is not None and latest.status == "open":
            _settle_row(state, latest, "cancelled", at)
        moves.append(_open_periods(state, clock, rule, fact, [(first, None)], 1, at))
    return moves


def _open_periods(
    state: CaseState,
    clock: CaseClock,
    rule: DeadlineRule,
    fact: str,
    periods: Sequence[Period],
    occurrence: int,
    at: dt.datetime,
) -> dict[str, Any]:
    """Open a cumulative clock's deadline for a period in its condition that has just begun."""
    start_on = periods[-1][0]
    due_on = cumulative_due(clock, rule, periods)
    open_deadline(
        state,
        clock,
        rule,
        occurrence=occurrence,
        start_on=start_on,
        at=at,
        due_on=due_on,
        basis=_periods_json(periods),
    )
    return {
        "rule": rule.name,
        "fact": fact,
        "started": start_on.isoformat(),
        "due_on": due_on.isoformat(),
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
    if not rule.pausable:
        return day
    for adjustment in adjustments or ():
        if adjustment.get("kind") == "pause":
            count = int(str(adjustment["shift"]).split()[0])
            day = clock.calendar.shift(day, unit, count)
    return day


def _alarm_plan(
    clock: CaseClock,
    rule: DeadlineRule,
    start_on: dt.date,
    due_on: dt.date,
    opens_on: dt.date | None = None,
) -> list[tuple[str, str, dt.datetime]]:
    cal = clock.calendar
    due_at = cal.end_of(due_on)
    plan: list[tuple[str, str, dt.datetime]] = []
    if opens_on is not None:
        # A window tells the team when it opens, as well as before it closes.
        plan.append(("reminder", "window_opens", cal.start_of(opens_on)))
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
    state: CaseState,
    clock: CaseClock,
    rule: DeadlineRule,
    deadline: Row,
    *,
    start_on: dt.date,
    due_on: dt.date,
    now: dt.datetime,
    opens_on: dt.date | None = None,
) -> None:
    """(Re)write the pending alarms of one deadline for its current due date.

    Reminders already past at ``now`` are not raised late; a breach is always scheduled (a
    breach in the past fires at the next processing). Alarms that already fired for the same
    instant are not repeated.
    """
    for alarm in state.alarms_of(deadline, "pending"):
        state.delete("alarms", alarm)
    fired = {(row.kind, row.label, row.due_at) for row in state.alarms_of(deadline, "fired")}
    due_at = clock.calendar.end_of(due_on)
    for kind, label, instant in _alarm_plan(clock, rule, start_on, due_on, opens_on):
        if (kind, label, instant) in fired:
            continue
        if kind == "reminder" and (instant < now or instant >= due_at):
            continue
        alarm = state.add(
            "alarms",
            deadline_id=deadline["id"],
            kind=kind,
            label=label,
            due_at=instant,
            status="pending",
            fired_at=None,
        )
        if deadline["id"] is None:
            # Added in this command too: the store fills in its id once it has one.
            alarm["_deadline"] = deadline


# -- pauses and extensions -------------------------------------------------------------------------


def _adjust(
    state: CaseState,
    clock: CaseClock,
    row: Row,
    rule: DeadlineRule,
    new_due: dt.date,
    adjustment: dict[str, Any],
    at: dt.datetime,
    **values: Any,
) -> None:
    adjustments = [*row.adjustments, adjustment]
    state.change(
        "deadlines",
        row,
        due_on=new_due,
        due_at=clock.calendar.end_of(new_due),
        adjustments=adjustments,
        **values,
    )
    start = effective_start(clock, rule, row.occurrence, row.start_on, row.adjustments)
    schedule_alarms(
        state, clock, rule, row, start_on=start, due_on=new_due, now=at, opens_on=row.opens_on
    )


def shift_for_pause(
    state: CaseState,
    clock: CaseClock,
    paused_on: dt.date,
    resumed_on: dt.date,
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """Move every open pausable deadline later by the paused time, in each rule's own unit.

    The law's clocks and research windows (``pausable: false``) run on: a pause of the team's
    work never moves a court's or a panel's date (DOMAIN.md section 7).
    """
    moved = []
    for row in state.deadline_rows(status="open"):
        if row.due_on < paused_on:
            # Already missed when the clock stopped: nothing was running to stand still, and
            # moving it would raise its breach a second time.
            continue
        rule = clock.pathway.rule(row.rule)
        if not rule.pausable:
            continue
        unit = row_span(rule, row).unit
        # A clock started during the pause stood still only from its own start.
        cal = clock.for_rule(rule)
        count = cal.pause_shift(unit, max(paused_on, row.start_on), resumed_on)
        if count <= 0:
            continue
        new_due = cal.shift(row.due_on, unit, count)
        shift_unit = "working_days" if unit == "working_days" else "days"
        adjustment = {
            "kind": "pause",
            "at": at.isoformat(),
            "shift": f"{count} {shift_unit}",
            "previous_due_on": row.due_on.isoformat(),
            "due_on": new_due.isoformat(),
            "detail": f"paused {paused_on.isoformat()} to {resumed_on.isoformat()}",
        }
        previous_due = row.due_on
        _adjust(state, clock, row, rule, new_due, adjustment, at)
        moved.append(
            {"deadline": row.rule, "from": previous_due.isoformat(), "to": new_due.isoformat()}
        )
    return moved


def open_deadline_row(state: CaseState, name: str) -> Row | None:
    """The newest open deadline of this rule on this case, or ``None``."""
    rows = state.deadline_rows(name, status="open")
    return rows[-1] if rows else None


def extend(
    state: CaseState,
    clock: CaseClock,
    row: Row,
    rule: DeadlineRule,
    *,
    by: Duration,
    at: dt.datetime,
    actor_id: str,
    reason: str,
) -> dt.date:
    """Move one open deadline later by ``by`` (what was granted); return the new due date."""
    assert rule.extension is not None
    new_due = clock.for_rule(rule).add(row.due_on, by)
    limit = rule.extension.limit
    of = f" of {limit}" if limit is not None else ""
    adjustment = {
        "kind": "extension",
        "at": at.isoformat(),
        "shift": str(by),
        "previous_due_on": row.due_on.isoformat(),
        "due_on": new_due.isoformat(),
        "detail": f"extension {row.extensions + 1}{of} by {actor_id}: {reason}",
    }
    _adjust(state, clock, row, rule, new_due, adjustment, at, extensions=row.extensions + 1)
    return new_due


def longer_than(
    clock: CaseClock, rule: DeadlineRule, due_on: dt.date, by: Duration, step: Duration
) -> bool:
    """Whether extending from ``due_on`` by ``by`` goes further than the rule's ``step`` would.

    Compared on the calendar, from the date being extended, so "4 weeks" against a step of
    "1 months" or "10 working_days" against "2 weeks" is decided by where each would land.
    """
    cal = clock.for_rule(rule)
    return cal.add(due_on, by) > cal.add(due_on, step)


# -- moving a case onto another version of its pathway --------------------------------------------


def _replayed_due(
    clock: CaseClock,
    rule: DeadlineRule,
    row: Any,
    base_due: dt.date,
    closed_pauses: Sequence[tuple[dt.date, dt.date]],
) -> tuple[dt.date, list[dict[str, Any]]]:
    """``base_due`` with the case's finished pauses and the row's extensions applied again.

    Pauses are replayed only on a pausable rule, each as :func:`shift_for_pause` would have
    applied it; extensions keep the length granted. The adjustments are rebuilt to match.
    """
    due = base_due
    adjustments: list[dict[str, Any]] = []
    unit = row_span(rule, row).unit
    cal = clock.for_rule(rule)
    if rule.pausable:
        for paused_on, resumed_on in closed_pauses:
            if due < paused_on:
                continue
            count = cal.pause_shift(unit, max(paused_on, row.start_on), resumed_on)
            if count <= 0:
                continue
            new_due = cal.shift(due, unit, count)
            shift_unit = "working_days" if unit == "working_days" else "days"
            adjustments.append(
                {
                    "kind": "pause",
                    "at": clock.calendar.start_of(resumed_on).isoformat(),
                    "shift": f"{count} {shift_unit}",
                    "previous_due_on": due.isoformat(),
                    "due_on": new_due.isoformat(),
                    "detail": f"paused {paused_on.isoformat()} to {resumed_on.isoformat()}",
                }
            )
            due = new_due
    for old in row.adjustments or ():
        if old.get("kind") != "extension":
            continue
        new_due = cal.add(due, Duration.parse(str(old["shift"])))
        adjustments.append(
            {**old, "previous_due_on": due.isoformat(), "due_on": new_due.isoformat()}
        )
        due = new_due
    return due, adjustments


def _base_due(
    clock: CaseClock, rule: DeadlineRule, row: Any, facts: Mapping[str, Any]
) -> tuple[dt.date, dt.date, dict[str, Any] | None] | None:
    """``(start_on, due_on, basis)`` of an open row worked out under ``rule`` from its anchors.

    ``None`` when the rule no longer applies to what started the row (its anchors are gone).
    """
    if rule.cumulative is not None:
        periods = _periods(row)
        if not periods or periods[-1][1] is not None:
            first = condition_start(clock, rule, facts)
            if first is None:
                return None
            periods = [(first, None)]
        return periods[-1][0], cumulative_due(clock, rule, periods), _periods_json(periods)
    if rule.candidates and row.occurrence <= 1:
        governing = governing_candidate(clock, rule, facts)
        if governing is None:
            return None
        index, anchor_on, due_on = governing
        return anchor_on, due_on, {"candidate": index, "anchor": rule.candidates[index].anchor}
    span = rule.duration_for(row.occurrence)
    return row.start_on, clock.for_rule(rule).add(row.start_on, span, rule.counting), None


def rework_open(
    state: CaseState,
    new: CaseClock,
    stage: str,
    facts: Mapping[str, Any],
    closed_pauses: Sequence[tuple[dt.date, dt.date]],
    stage_started_on: dt.date,
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """Rework a case's open deadlines under ``new`` (another version of its pathway).

    Settled deadlines are history and stay as they are. Each open one is worked out again from
    its anchors (its start date, the case's facts, a cumulative clock's periods) under the new
    rule, with finished pauses (on pausable rules) and granted extensions applied again; one the
    new version no longer has, or that belongs to a stage the case is not in, is cancelled.
    What the new version runs that the case lacks starts from what the case already holds (rules
    it adds, the deadlines of a stage a stage map moved the case to). Returns one change per
    deadline touched: ``{"deadline", "occurrence", "from", "to", "change"}``.
    """
    changes: list[dict[str, Any]] = []
    rows = state.deadline_rows(status="open")
    names = {rule.name for rule in new.pathway.deadlines}
    for row in rows:
        rule = new.pathway.rule(row.rule) if row.rule in names else None
        worked = None
        if rule is not None and (rule.stage is None or rule.stage == stage):
            worked = _base_due(new, rule, row, facts)
        if rule is None or worked is None:
            _settle_row(state, row, "cancelled", at)
            changes.append(_change(row, row.due_on, None, "cancelled"))
            continue
        start_on, base_due, basis = worked
        due_on, adjustments = _replayed_due(new, rule, row, base_due, closed_pauses)
        opens_on = (
            new.for_rule(rule).add(start_on, rule.opens, rule.counting) if rule.opens else None
        )
        previous_due = row.due_on
        state.change(
            "deadlines",
            row,
            kind=rule.kind,
            stage=rule.stage,
            start_on=start_on,
            base_due_on=base_due,
            due_on=due_on,
            due_at=new.calendar.end_of(due_on),
            adjustments=adjustments,
            opens_on=opens_on,
            basis=basis if basis is not None else row.basis,
        )
        alarm_start = effective_start(new, rule, row.occurrence, start_on, row.adjustments)
        schedule_alarms(
            state,
            new,
            rule,
            row,
            start_on=alarm_start,
            due_on=due_on,
            now=at,
            opens_on=opens_on,
        )
        changes.append(
            _change(row, previous_due, due_on, "unchanged" if due_on == previous_due else "moved")
        )
    changes.extend(_start_missing_rules(state, new, stage, facts, stage_started_on, at))
    return changes


def _start_missing_rules(
    state: CaseState,
    new: CaseClock,
    stage: str,
    facts: Mapping[str, Any],
    stage_started_on: dt.date,
    at: dt.datetime,
) -> list[dict[str, Any]]:
    """Open what the new version runs that the case lacks.

    The deadlines of the case's stage with none open (a rule the new version adds, or one a
    stage map brought the case to), from the day the case entered that stage; and the clocks
    the case has never had a deadline of, from the facts it holds.
    """
    opened: list[dict[str, Any]] = []
    had = {(row.rule, row.status) for row in state.deadline_rows()}
    for rule in new.pathway.deadlines:
        if rule.stage is not None:
            if rule.stage != stage or (rule.name, "open") in had:
                continue
            open_deadline(state, new, rule, occurrence=1, start_on=stage_started_on, at=at)
        else:
            if any(name == rule.name for name, _ in had):
                continue
            dates = {f: facts[f] for f in rule.facts if isinstance(facts.get(f), dt.date)}
            only = CaseClock(new.reference, new.site, _only(new.pathway, rule), new.calendar)
            record_clock_facts(state, only, dates, at, facts=facts)
        for row in state.deadline_rows(rule.name, status="open"):
            opened.append(_change(row, None, row.due_on, "opened"))
    return opened


def _only(pathway: Pathway, rule: DeadlineRule) -> Pathway:
    """``pathway`` with ``rule`` as its only deadline rule, to start that rule alone."""
    return dataclasses.replace(pathway, deadlines=(rule,))


def _change(row: Any, before: dt.date | None, after: dt.date | None, change: str) -> dict[str, Any]:
    return {
        "deadline": row.rule,
        "occurrence": row.occurrence,
        "from": before.isoformat() if before else None,
        "to": after.isoformat() if after else None,
        "change": change,
    }


# -- reading ---------------------------------------------------------------------------------------


def row_span(rule: DeadlineRule, row: Any) -> Duration:
    """The span a stored deadline runs for: its occurrence's, or its governing candidate's."""
    candidate = (row.basis or {}).get("candidate")
    return rule.span(row.occurrence, candidate if isinstance(candidate, int) else None)


def _anchor_text(rule: DeadlineRule, row: Any) -> str:
    """What started the clock, in words, naming the candidate or periods that govern it."""
    if rule.stage is not None:
        return f"entered stage {rule.stage}"
    basis = row.basis or {}
    if rule.cumulative is not None:
        periods = ", ".join(
            f"{start} to {end}" if end else f"from {start}"
            for start, end in basis.get("periods", ())
        )
        return (
            f"days in the condition ({periods}) reaching {rule.cumulative.reaches} within "
            f"{rule.cumulative.within} (occurrence {row.occurrence})"
        )
    if row.occurrence > 1 and rule.recur_fact:
        return f"{rule.recur_fact} (occurrence {row.occurrence})"
    if rule.candidates:
        index = basis.get("candidate", 0)
        candidate = rule.candidates[index]
        return (
            f"{candidate.anchor} + {candidate.duration}: the earliest of "
            f"{len(rule.candidates)} candidates governs (occurrence {row.occurrence})"
        )
    return f"{rule.anchor_fact} (occurrence {row.occurrence})"


def explanation(clock: CaseClock, row: Any) -> Explanation:
    """Rebuild why a stored deadline is due when it is.

    A deadline settled under an older version of the pathway may have a rule the case's version
    no longer has (a case moved by ``upgrade_cases``): it is explained from its row alone.
    """
    try:
        rule: DeadlineRule | None = clock.pathway.rule(row.rule)
    except KeyError:
        rule = None
    if rule is None:
        anchor = f"a rule version {clock.pathway.version} no longer has"
        rule_text = f"{row.rule}: {row.status} under an earlier version of {clock.pathway.id}"
        span_unit = None
    else:
        span = row_span(rule, row)
        anchor = _anchor_text(rule, row)
        rule_text = _rule_text(clock, rule, span, row)
        span_unit = span.unit
    # Holidays and closures matter only to working-day rules; name every one between the start
    # and the due date as it stands now, so days a pause or extension pushed it over count too.
    skipped = (
        tuple(clock.for_rule(rule).skipped(row.start_on, row.due_on))
        if rule is not None and span_unit == "working_days"
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
        rule=rule_text,
        base_due_on=row.base_due_on,
        skipped=skipped,
        adjustments=adjustments,
        due_on=row.due_on,
        due_at=row.due_at,
        timezone=clock.pathway.timezone,
    )


def _rule_text(clock: CaseClock, rule: DeadlineRule, span: Duration, row: Any) -> str:
    counted = " beginning with the start" if rule.counting == "beginning_with" else ""
    opens = f", window opens {row.opens_on.isoformat()}" if row.opens_on is not None else ""
    paused = "" if rule.pausable else ", not moved by pauses"
    if rule.cumulative is not None:
        return f"{rule.name}: cumulative ({clock.pathway.calendar} calendar{paused})"
    return f"{rule.name}: {span}{counted} ({clock.pathway.calendar} calendar{opens}{paused})"


def to_deadline(clock: CaseClock, row: Any, *, at: dt.datetime | None = None) -> Deadline:
    """A stored deadline row as the public value object, with its explanation.

    ``at`` is the moment of the read, which says whether the deadline is ``overdue``.
    """
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
        opens_on=row.opens_on,
        overdue=at is not None and is_overdue(row.status, row.due_at, at),
        explanation=explanation(clock, row),
    )
