"""Calendar properties that must hold through the engine, not only in the calendar module.

Each example runs on a fresh SQLite file, so examples never see each other's cases. The
expected values are built independently of the engine where that is cheap: working days are
counted by walking the dates against the ``holidays`` package directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from datetime import date, timedelta

import holidays
import pytest
from deadline_helpers import (
    CLOCK_FACTS,
    COORDINATOR,
    ENGLAND,
    LOUISIANA,
    PATHWAYS,
    SCOTLAND,
    SITE,
    TZ,
    case_in_stage,
    migrated_engine,
    open_case,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from nim_workflow._closures import bundled_closures

PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)

HOLIDAY_SOURCES = {ENGLAND: ("GB", "ENG"), SCOTLAND: ("GB", "SCT"), LOUISIANA: ("US", "LA")}

instants = st.datetimes(
    min_value=dt.datetime(2026, 1, 1),
    max_value=dt.datetime(2027, 12, 31, 23, 59),
    timezones=st.just(dt.UTC),
)


def _fresh_url(factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{factory.mktemp('example') / 'nimwf.db'}"


def _local_date(pathway: str, instant: dt.datetime) -> date:
    return instant.astimezone(TZ[pathway]).date()


def _end_of(pathway: str, day: date) -> dt.datetime:
    midnight = dt.datetime.combine(day + timedelta(days=1), dt.time(0), tzinfo=TZ[pathway])
    return midnight.astimezone(dt.UTC)


def _working_day(pathway: str, years: range) -> Callable[[date], bool]:
    """Whether a date is a working day at the pathway's site, from the holidays data directly."""
    country, subdivision = HOLIDAY_SOURCES[pathway]
    published = holidays.country_holidays(
        country, subdiv=subdivision, years=years, categories="public"
    )
    bundled = bundled_closures().get(SITE[pathway])
    closed = bundled.dates if bundled else frozenset()
    return lambda day: day.weekday() < 5 and day not in published and day not in closed


@PROPERTY_SETTINGS
@given(
    pathway=st.sampled_from(PATHWAYS),
    opened=instants,
    pauses=st.lists(
        st.tuples(st.integers(0, 900), st.integers(0, 900)),  # hours running, hours paused
        min_size=1,
        max_size=3,
    ),
)
def test_pause_and_resume_never_move_a_deadline_earlier(
    tmp_path_factory: pytest.TempPathFactory,
    pathway: str,
    opened: dt.datetime,
    pauses: list[tuple[int, int]],
) -> None:
    """Each resume moves every open deadline later by exactly its rule's share of the pause."""
    start = _local_date(pathway, opened)
    with migrated_engine(_fresh_url(tmp_path_factory)) as engine:
        definition = engine.pathway(pathway)
        is_working = _working_day(pathway, range(start.year, start.year + 4))
        open_case(engine, "P-1", pathway, opened, facts=dict.fromkeys(CLOCK_FACTS[pathway], start))
        now = opened
        for running, paused in pauses:
            before = engine.deadlines("P-1")
            paused_at = now + timedelta(hours=running)
            resumed_at = paused_at + timedelta(hours=paused)
            engine.pause("P-1", actor=COORDINATOR, reason="property", at=paused_at)
            engine.resume("P-1", actor=COORDINATOR, at=resumed_at)
            now = resumed_at
            after = engine.deadlines("P-1")

            paused_on, resumed_on = (
                _local_date(pathway, paused_at),
                _local_date(pathway, resumed_at),
            )
            assert [(d.name, d.occurrence) for d in after] == [
                (d.name, d.occurrence) for d in before
            ]
            for old, new in zip(before, after, strict=True):
                assert new.due_on >= old.due_on
                assert new.status == old.status
                assert new.due_at == _end_of(pathway, new.due_on)
                if old.due_on < paused_on:  # already missed when the clock stopped
                    assert new.due_on == old.due_on
                    continue
                if not definition.rule(old.name).pausable:  # the law's clocks run on
                    assert new.due_on == old.due_on
                    continue
                unit = definition.rule(old.name).duration_for(old.occurrence).unit
                if unit == "working_days":
                    # Counted day by day against the holidays package and the site's closures,
                    # never with the calendar's own helpers.
                    paused_days = [
                        paused_on + timedelta(days=i) for i in range((resumed_on - paused_on).days)
                    ]
                    shift = sum(1 for d in paused_days if is_working(d))
                    expected, left = old.due_on, shift
                    while left:
                        expected += timedelta(days=1)
                        left -= is_working(expected)
                    assert new.due_on == expected
                else:
                    assert new.due_on == old.due_on + timedelta(
                        days=max(0, (resumed_on - paused_on).days)
                    )


@PROPERTY_SETTINGS
@given(
    pathway=st.sampled_from(PATHWAYS),
    entered=instants,
    closure_offsets=st.sets(st.integers(0, 20), max_size=4),
)
def test_working_day_stage_deadlines_fall_on_a_working_day_n_working_days_on(
    tmp_path_factory: pytest.TempPathFactory,
    pathway: str,
    entered: dt.datetime,
    closure_offsets: set[int],
) -> None:
    """A working-day stage deadline is due on a working day, exactly N working days after entry."""
    start = _local_date(pathway, entered)
    closures = {start + timedelta(days=k) for k in closure_offsets}
    country, subdivision = HOLIDAY_SOURCES[pathway]
    published = holidays.country_holidays(
        country, subdiv=subdivision, years=range(start.year, start.year + 2), categories="public"
    )
    with migrated_engine(
        _fresh_url(tmp_path_factory), closures={SITE[pathway]: closures}
    ) as engine:
        definition = engine.pathway(pathway)
        cal = engine.calendar(SITE[pathway], pathway)
        # The site's bundled closures (Glasgow's local holidays) are closed too.
        bundled = bundled_closures().get(SITE[pathway])
        closed = closures | (bundled.dates if bundled else frozenset())
        rules = [r for r in definition.deadlines if r.stage and r.duration.unit == "working_days"]
        assert rules, f"{pathway} has no working-day stage deadline"
        for rule in rules:
            reference = f"P-{rule.name}"
            assert rule.stage is not None
            case_in_stage(engine, reference, pathway, rule.stage, entered)
            (due,) = [d for d in engine.deadlines(reference) if d.name == rule.name]
            assert due.start_on == start
            assert cal.is_working_day(due.due_on)
            assert cal.count_working_days(due.start_on, due.due_on) == rule.duration.amount

            # The same count by walking the dates against the published holidays and closures.
            walked = [start + timedelta(days=i) for i in range(1, (due.due_on - start).days + 1)]
            working = [
                d for d in walked if d.weekday() < 5 and d not in published and d not in closed
            ]
            assert len(working) == rule.duration.amount
            assert working[-1] == due.due_on
            # explain() lists exactly the weekday holidays and closures that were skipped.
            skipped = [d for d in walked if d.weekday() < 5 and (d in published or d in closed)]
            assert [d for d, _ in due.explain().skipped] == skipped
