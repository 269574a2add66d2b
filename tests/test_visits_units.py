"""The research visits' window rules, without a database: each boundary day pinned.

``_trial._visits`` is what the engine, the export and the report share: where a window falls,
when it reminds, a visit's status on a day, and whether a withdrawal stopped it.
"""

from __future__ import annotations

import datetime as dt

import pytest

import nim_workflow as nw
from nim_workflow._calendar import calendar_for
from nim_workflow._trial import _visits

D = dt.date
TRIAL = nw.bundled_trials()["best"]
LONDON = calendar_for("england-and-wales", "Europe/London")


@pytest.mark.parametrize(
    ("held_on", "today", "status"),
    [
        (None, D(2026, 3, 1), "pending"),  # before the window opens
        (None, D(2026, 5, 29), "pending"),  # its last day
        (None, D(2026, 5, 30), "missed"),  # the day after
        (D(2026, 3, 20), D(2026, 3, 20), "in_window"),  # its first day
        (D(2026, 5, 29), D(2026, 6, 30), "in_window"),  # its last day
        (D(2026, 5, 30), D(2026, 6, 30), "late"),  # the day after
    ],
)
def test_status_on_each_boundary_day(held_on: D | None, today: D, status: str) -> None:
    assert _visits.status(held_on, D(2026, 3, 20), D(2026, 5, 29), today) == status


@pytest.mark.parametrize(
    ("held_on", "family_status", "status_on", "stopped"),
    [
        (None, "withdrawn_consent", D(2026, 5, 29), True),  # withdrew on the window's last day
        (None, "withdrawn_consent", D(2026, 5, 30), False),  # after it closed: missed
        (None, "lost_to_follow_up", D(2026, 4, 1), True),
        (D(2026, 4, 1), "withdrawn_consent", D(2026, 4, 2), False),  # held first
        (None, "completed", D(2026, 4, 1), False),  # follow-up ended, visits not stopped
        (None, "randomised", D(2026, 4, 1), False),
    ],
)
def test_stopped_only_a_visit_not_held_whose_window_was_still_to_close(
    held_on: D | None, family_status: str, status_on: D, stopped: bool
) -> None:
    assert _visits.stopped(held_on, D(2026, 5, 29), family_status, status_on) is stopped


def test_windows_count_calendar_time_after_the_anchor() -> None:
    """Baseline 4 to 14 weeks after entry; month 15 clamps from the 31st to a shorter month."""
    baseline = _visits.plan(TRIAL.visit("baseline"), D(2026, 2, 20), LONDON)
    assert baseline == _visits.PlannedVisit(D(2026, 2, 20), D(2026, 3, 20), D(2026, 5, 29), None)
    month_15 = _visits.plan(TRIAL.visit("month_15"), D(2025, 12, 31), LONDON)
    assert (month_15.opens_on, month_15.target_on, month_15.closes_on) == (
        D(2027, 2, 28),
        D(2027, 3, 31),
        D(2027, 4, 30),
    )
    # Calendar days: a window may open on a bank holiday (Christmas Day 2026, a Friday).
    christmas = _visits.plan(TRIAL.visit("baseline"), D(2026, 11, 27), LONDON)
    assert christmas.opens_on == D(2026, 12, 25)


def test_reminders_fall_at_the_start_of_the_sites_day_across_summer_time() -> None:
    """Opens: 00:00 GMT on 20 March. Before close: 2 weeks before 29 May, 00:00 BST = 23:00 UTC."""
    rule = TRIAL.visit("baseline")
    planned = _visits.plan(rule, D(2026, 2, 20), LONDON)
    assert _visits.reminders(rule, planned, LONDON) == [
        ("opens", dt.datetime(2026, 3, 20, 0, 0, tzinfo=dt.UTC)),
        ("before_close", dt.datetime(2026, 5, 14, 23, 0, tzinfo=dt.UTC)),
    ]


def test_a_visit_without_reminders_has_none() -> None:
    rule = TRIAL.visit("baseline")
    silent = type(rule)(
        name=rule.name,
        title=rule.title,
        per=rule.per,
        anchor=rule.anchor,
        opens=rule.opens,
        closes=rule.closes,
    )
    planned = _visits.plan(silent, D(2026, 2, 20), LONDON)
    assert _visits.reminders(silent, planned, LONDON) == []


def test_the_stopping_statuses_are_the_trials_two() -> None:
    assert frozenset({"withdrawn_consent", "lost_to_follow_up"}) == _visits.STOPPED
    assert set(TRIAL.statuses) > _visits.STOPPED
