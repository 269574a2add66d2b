"""The Kaplan-Meier estimator: a hand-worked example, edge cases, bad input, and lifelines."""

from __future__ import annotations

import math
import os
import random
from fractions import Fraction

import pytest
from ci_guard import skip_or_fail

from nim_workflow._errors import InvalidInput
from nim_workflow._survival import SurvivalCurve, kaplan_meier

TOLERANCE = 1e-9

# The hand-worked example: ten children, days from the anchor until permanence (E) or until last
# seen without it (C). Day 60 has two events; day 120 has an event and a censoring (the event
# comes first, so the child censored on day 120 is still at risk for it).
#
#   child   1    2    3    4    5    6    7    8    9    10
#   day     30   60   60   90   120  120  150  200  240  300
#   event   E    E    E    C    E    C    C    E    C    C
HAND = [
    (30, True),
    (60, True),
    (60, True),
    (90, False),
    (120, True),
    (120, False),
    (150, False),
    (200, True),
    (240, False),
    (300, False),
]

# Step by step: n at risk, d events, c censored; S(t) = S(t-) * (n - d) / n; Greenwood's sum
# g(t) = g(t-) + d / (n (n - d)); Var S = S^2 g.
#
#   day  n   d  c  S                  g                                 Var S = S^2 g
#   0    10  0  0  1                  0                                 0
#   30   10  1  0  9/10               1/(10*9) = 1/90                   0.81/90 = 0.009
#   60   9   2  0  9/10 * 7/9 = 7/10  1/90 + 2/(9*7) = 27/630 = 3/70    0.49*3/70 = 0.021
#   90   7   0  1  7/10               3/70                              0.021
#   120  6   1  1  7/10 * 5/6 = 7/12  3/70 + 1/(6*5) = 16/210 = 8/105   49/144*8/105 = 7/270
#   150  4   0  1  7/12               8/105                             7/270
#   200  3   1  0  7/12 * 2/3 = 7/18  8/105 + 1/(3*2) = 51/210 = 17/70  49/324*17/70 = 119/3240
#   240  2   0  1  7/18               17/70                             119/3240
#   300  1   0  1  7/18               17/70                             119/3240
#
# (At risk falls by the previous day's d + c: 10, 10, 10-1=9, 9-2=7, 7-1=6, 6-2=4, 4-1=3, 3-1=2,
# 2-1=1.) The median is day 200, the first day S <= 0.5 (S = 7/12 > 0.5 on day 120).
#
# The 95% interval on the log(-log) scale: z = 1.959963984540054 (the 0.975 normal quantile),
# h = z * sqrt(g) / -ln S, lower = S ** exp(h), upper = S ** exp(-h).
#
#   day  ln S             sqrt(g)         h               exp(h)          exp(-h)
#   30   -0.105360515658  0.105409255339  1.960870662141  7.105510872074  0.140735834200
#   60   -0.356674943939  0.207019667803  1.137593486394  3.119252801354  0.320589597472
#   120  -0.538996500733  0.276026223737  1.003719795170  2.728412109681  0.366513547001
#   200  -0.944461608841  0.492805380305  1.022678728011  2.780633356994  0.359630296991
#
#   day  lower = S ** exp(h)   upper = S ** exp(-h)
#   30   0.9 ** 7.1055...  = 0.473009271362050   0.9 ** 0.14073... = 0.985281393367343
#   60   0.7 ** 3.1192...  = 0.328716593279735   0.7 ** 0.32058... = 0.891949041224844
#   120  (7/12) ** 2.7284... = 0.229786518923984  (7/12) ** 0.36651... = 0.820739497172156
#   200  (7/18) ** 2.7806... = 0.072352776264676  (7/18) ** 0.35963... = 0.712014495531805
#
# Before the first event S = 1 and the interval is [1, 1]; days without events keep the last.
HAND_DAYS = (0, 30, 60, 90, 120, 150, 200, 240, 300)
HAND_AT_RISK = (10, 10, 9, 7, 6, 4, 3, 2, 1)
HAND_EVENTS = (0, 1, 2, 0, 1, 0, 1, 0, 0)
HAND_CENSORED = (0, 0, 0, 1, 1, 1, 0, 1, 1)
_S = (Fraction(1), Fraction(9, 10), Fraction(7, 10), Fraction(7, 12), Fraction(7, 18))
_G = (Fraction(0), Fraction(1, 90), Fraction(3, 70), Fraction(8, 105), Fraction(17, 70))
_VAR = (Fraction(0), Fraction(9, 1000), Fraction(21, 1000), Fraction(7, 270), Fraction(119, 3240))
_LOWER = (1.0, 0.473009271362050, 0.328716593279735, 0.229786518923984, 0.072352776264676)
_UPPER = (1.0, 0.985281393367343, 0.891949041224844, 0.820739497172156, 0.712014495531805)
# Which of the five distinct levels holds on each of the nine days.
_LEVEL_ON_DAY = (0, 1, 2, 2, 3, 3, 4, 4, 4)
HAND_SURVIVAL = tuple(float(_S[k]) for k in _LEVEL_ON_DAY)
HAND_GREENWOOD = tuple(float(_G[k]) for k in _LEVEL_ON_DAY)
HAND_VARIANCE = tuple(float(_VAR[k]) for k in _LEVEL_ON_DAY)
HAND_LOWER = tuple(_LOWER[k] for k in _LEVEL_ON_DAY)
HAND_UPPER = tuple(_UPPER[k] for k in _LEVEL_ON_DAY)


def _close(actual: tuple[float, ...], expected: tuple[float, ...]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a == pytest.approx(e, abs=TOLERANCE, rel=0)


@pytest.fixture
def hand() -> SurvivalCurve:
    """The hand-worked example's curve."""
    return kaplan_meier(HAND)


def test_hand_example_counts(hand: SurvivalCurve) -> None:
    """Every distinct day from 0 is a step point, with the children at risk, events, censored."""
    assert hand.times == HAND_DAYS
    assert hand.at_risk == HAND_AT_RISK
    assert hand.events == HAND_EVENTS
    assert hand.censored == HAND_CENSORED
    assert (hand.subjects, hand.total_events, hand.total_censored) == (10, 5, 5)
    assert hand.event_times == (30, 60, 120, 200)
    assert hand.censored_times == (90, 120, 150, 240, 300)


def test_hand_example_survival(hand: SurvivalCurve) -> None:
    """S(t) matches the hand-worked products, and 1 - S is the share with permanence."""
    _close(hand.survival, HAND_SURVIVAL)
    _close(hand.cumulative_incidence, tuple(1 - s for s in HAND_SURVIVAL))


def test_hand_example_greenwood(hand: SurvivalCurve) -> None:
    """Greenwood's sum and the variance S^2 * sum match the hand-worked fractions."""
    _close(hand.greenwood, HAND_GREENWOOD)
    _close(hand.variance, HAND_VARIANCE)


def test_hand_example_log_log_interval(hand: SurvivalCurve) -> None:
    """The 95% log(-log) bounds match the hand-worked numbers; 1 - S's bounds are mirrored."""
    assert hand.level == 0.95
    _close(hand.lower, HAND_LOWER)
    _close(hand.upper, HAND_UPPER)
    _close(hand.cumulative_incidence_lower, tuple(1 - u for u in HAND_UPPER))
    _close(hand.cumulative_incidence_upper, tuple(1 - lo for lo in HAND_LOWER))


def test_hand_example_median(hand: SurvivalCurve) -> None:
    """The median is the first day S falls to 0.5 or below."""
    assert hand.median == 200


def test_survival_at_reads_the_step(hand: SurvivalCurve) -> None:
    """Between points the curve keeps its last value; before day 0 it is 1."""
    assert hand.survival_at(-1) == 1.0
    assert hand.survival_at(29.9) == 1.0
    assert hand.survival_at(30) == pytest.approx(0.9, abs=TOLERANCE)
    assert hand.survival_at(119) == pytest.approx(0.7, abs=TOLERANCE)
    assert hand.survival_at(10_000) == pytest.approx(7 / 18, abs=TOLERANCE)
    assert hand.cumulative_incidence_at(200) == pytest.approx(11 / 18, abs=TOLERANCE)


def test_ties_put_events_before_censorings() -> None:
    """A child censored on an event's day is at risk for that event (S = 1/2, not 0)."""
    curve = kaplan_meier([(5, True), (5, False)])
    assert curve.at_risk == (2, 2)
    assert curve.survival == (1.0, 0.5)


def test_order_of_observations_does_not_matter() -> None:
    """The curve depends on the observations, not on the order they come in."""
    assert kaplan_meier(reversed(HAND)) == kaplan_meier(HAND)


def test_other_level() -> None:
    """A 90% interval uses z = 1.6448536269514722 and sits inside the 95% one."""
    curve = kaplan_meier(HAND, level=0.9)
    h = 1.6448536269514722 * math.sqrt(1 / 90) / -math.log(0.9)
    assert curve.lower[1] == pytest.approx(0.9 ** math.exp(h), abs=TOLERANCE)
    assert curve.upper[1] == pytest.approx(0.9 ** math.exp(-h), abs=TOLERANCE)
    assert HAND_LOWER[1] < curve.lower[1] < curve.upper[1] < HAND_UPPER[1]


def test_all_censored() -> None:
    """With no events S stays 1, the interval is [1, 1] and there is no median."""
    curve = kaplan_meier([(10, False), (20, False), (20, False)])
    assert curve.times == (0, 10, 20)
    assert curve.at_risk == (3, 3, 2)
    assert curve.survival == (1.0, 1.0, 1.0)
    assert curve.lower == curve.upper == (1.0, 1.0, 1.0)
    assert curve.cumulative_incidence == (0.0, 0.0, 0.0)
    assert curve.median is None


def test_all_events_on_one_day() -> None:
    """Everyone at risk having the event drops S to 0, with a [0, 0] interval, median that day."""
    curve = kaplan_meier([(40, True)] * 4)
    assert curve.times == (0, 40)
    assert curve.at_risk == (4, 4)
    assert curve.events == (0, 4)
    assert curve.survival == (1.0, 0.0)
    assert curve.greenwood == (0.0, 0.0)  # d == n: the term is undefined and left out
    assert (curve.lower, curve.upper) == ((1.0, 0.0), (1.0, 0.0))
    assert curve.median == 40


def test_single_observation() -> None:
    """One child censored gives a flat curve; one child with the event drops it to 0."""
    censored = kaplan_meier([(7.5, False)])
    assert (censored.times, censored.survival, censored.median) == ((0, 7.5), (1.0, 1.0), None)
    event = kaplan_meier([(7.5, True)])
    assert (event.times, event.survival, event.median) == ((0, 7.5), (1.0, 0.0), 7.5)


def test_event_on_day_zero() -> None:
    """Permanence on day 0 counts on day 0: S(0) is below 1."""
    curve = kaplan_meier([(0, True), (3, False)])
    assert curve.times == (0, 3)
    assert curve.survival == (0.5, 0.5)
    assert curve.median == 0


def test_empty_input_is_an_empty_curve() -> None:
    """No observations give no points, no children and no median."""
    curve = kaplan_meier([])
    assert curve.times == curve.survival == curve.lower == ()
    assert (curve.subjects, curve.total_events, curve.median) == (0, 0, None)
    assert curve.survival_at(5) == 1.0


@pytest.mark.parametrize(
    ("observations", "field", "words"),
    [
        ([(1, True), (-1, True)], "observations[1].duration", "negative"),
        ([(math.nan, False)], "observations[0].duration", "NaN"),
        ([(math.inf, False)], "observations[0].duration", "finite"),
        ([("3", True)], "observations[0].duration", "number of days"),
        ([(True, True)], "observations[0].duration", "number of days"),
        ([(3, 1)], "observations[0].event", "True or False"),
        ([(3, None)], "observations[0].event", "True or False"),
        ([(3, True), (3,)], "observations[1]", "pair"),
        ([5], "observations[0]", "pair"),
    ],
)
def test_bad_observations_are_refused(observations: list[object], field: str, words: str) -> None:
    """A bad duration, event or observation is refused with the offending field named."""
    with pytest.raises(InvalidInput, match=words) as caught:
        kaplan_meier(observations)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, math.nan, True])
def test_bad_level_is_refused(level: float) -> None:
    """The confidence level must lie strictly between 0 and 1."""
    with pytest.raises(InvalidInput) as caught:
        kaplan_meier(HAND, level=level)
    assert caught.value.field == "level"


# -- against lifelines ----------------------------------------------------------------------------


def _lifelines_fit(observations: list[tuple[float, bool]], level: float) -> object:
    try:
        import lifelines
        import numpy
    except ImportError:
        skip_or_fail(
            os.environ,
            "lifelines not installed (pip install lifelines): cross-check skipped",
            under_ci_message="lifelines is not installed: refusing to skip the cross-check",
        )
    fitter = lifelines.KaplanMeierFitter()
    # lifelines sets numpy's error handling process-wide; errstate puts it back afterwards.
    with numpy.errstate():
        fitter.fit([d for d, _ in observations], [e for _, e in observations], alpha=1 - level)
    return fitter


def _random_observations(seed: int) -> list[tuple[float, bool]]:
    """Durations with many ties (whole weeks) or fractional days, censoring from 20% to 80%."""
    rng = random.Random(seed)
    size = rng.randint(5, 120)
    censoring = rng.uniform(0.2, 0.8)
    whole_weeks = seed % 2 == 0
    observations: list[tuple[float, bool]] = []
    for _ in range(size):
        if whole_weeks:
            day: float = 7 * rng.randint(0, 40)
        else:
            day = round(rng.expovariate(1 / 300), 1)
        observations.append((day, rng.random() >= censoring))
    return observations


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_lifelines(seed: int) -> None:
    """S, the at-risk counts and both log(-log) bounds equal lifelines' at every point."""
    observations = _random_observations(seed)
    level = (0.95, 0.9, 0.8)[seed % 3]
    fitter = _lifelines_fit(observations, level)
    ours = kaplan_meier(observations, level=level)
    timeline = [float(t) for t in fitter.timeline]  # type: ignore[attr-defined]
    assert timeline == [float(t) for t in ours.times]
    theirs = fitter.survival_function_.iloc[:, 0].tolist()  # type: ignore[attr-defined]
    bounds = fitter.confidence_interval_  # type: ignore[attr-defined]
    table = fitter.event_table  # type: ignore[attr-defined]
    _close(ours.survival, tuple(theirs))
    _close(ours.lower, tuple(bounds.iloc[:, 0].tolist()))
    _close(ours.upper, tuple(bounds.iloc[:, 1].tolist()))
    assert ours.at_risk == tuple(int(n) for n in table["at_risk"])
    assert ours.events == tuple(int(d) for d in table["observed"])
    assert ours.censored == tuple(int(c) for c in table["censored"])
    median = fitter.median_survival_time_  # type: ignore[attr-defined]
    assert ours.median == (None if math.isinf(median) else median)
