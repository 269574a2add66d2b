"""Research visits as windows: where each falls, when it reminds, and its status on a day.

Pure functions over a :class:`VisitRule` and a site's calendar; the engine stores what they
return. A window's first and last days are counted "after" the anchor (the anchor is day 0) in
calendar time: a trial spans sites with different working-day calendars, and its visits are
booked as dates, so weekends and bank holidays do not move them. Windows never pause.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from nim_workflow._calendar import WorkingCalendar
from nim_workflow._trial._model import VisitRule
from nim_workflow._values import VisitStatus

__all__ = ["STOPPED", "PlannedVisit", "plan", "reminders", "status", "stopped"]

#: Trial statuses that stop research visits (TRIAL.md): withdrawing consent, lost to follow-up.
STOPPED = frozenset({"withdrawn_consent", "lost_to_follow_up"})


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    """Where a visit's window falls for one anchor date."""

    anchor_on: dt.date
    opens_on: dt.date
    closes_on: dt.date
    target_on: dt.date | None


def plan(rule: VisitRule, anchor_on: dt.date, calendar: WorkingCalendar) -> PlannedVisit:
    """The window ``rule`` gives a visit whose anchor date is ``anchor_on``."""
    return PlannedVisit(
        anchor_on=anchor_on,
        opens_on=calendar.add(anchor_on, rule.opens),
        closes_on=calendar.add(anchor_on, rule.closes),
        target_on=None if rule.target is None else calendar.add(anchor_on, rule.target),
    )


def reminders(
    rule: VisitRule, planned: PlannedVisit, calendar: WorkingCalendar
) -> list[tuple[str, dt.datetime]]:
    """``(kind, due_at)`` for each reminder: at the start of the site's day it falls on.

    ``opens`` reminds as the window's first day begins; ``before_close`` reminds ``lead``
    before its last day. The loader keeps every lead inside the window.
    """
    out: list[tuple[str, dt.datetime]] = []
    for reminder in rule.reminders:
        if reminder.when == "opens":
            day = planned.opens_on
        else:
            assert reminder.lead is not None
            day = calendar.subtract(planned.closes_on, reminder.lead)
        out.append((reminder.when, calendar.start_of(day)))
    return out


def status(
    held_on: dt.date | None, opens_on: dt.date, closes_on: dt.date, today: dt.date
) -> VisitStatus:
    """A visit's status on ``today``, the site's local date.

    A visit is held in its window or late; one not held is pending until its last day has
    passed, then missed. (A visit dated before its window opens is refused, never stored.)
    """
    if held_on is not None:
        return "in_window" if held_on <= closes_on else "late"
    return "pending" if today <= closes_on else "missed"


def stopped(
    held_on: dt.date | None, closes_on: dt.date, family_status: str, status_on: dt.date
) -> bool:
    """Whether the family's trial status stopped this visit before it was held.

    Only a visit whose window had not closed by ``status_on`` (the site's date the family took
    its status) was stopped by it; one whose window had closed unheld before was missed.
    """
    return held_on is None and family_status in STOPPED and closes_on >= status_on
