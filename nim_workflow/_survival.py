"""Kaplan-Meier estimates of time to an event, for the report's time-to-permanence curves.

:func:`kaplan_meier` turns observations ``(duration_days, event)`` into a :class:`SurvivalCurve`:
``event`` is true when the child achieved permanence on that day, false when the child was
still without permanence when last seen that day. A censored child is never dropped: it counts
as at risk up to and including the day it was last seen, and leaves the risk set afterwards.

Conventions, the same as lifelines' ``KaplanMeierFitter`` (which the tests check us against):

- **Ties**: at a day with both events and censorings, the events come first, so the children
  censored that day are still at risk for that day's events.
- **Confidence intervals** are pointwise, from Greenwood's variance on the log(-log) scale (the
  "exponential Greenwood" interval): with ``g(t) = Σ d / (n (n - d))`` over event days up to
  ``t`` and ``h = z · sqrt(g) / -log S``, the interval is ``[S ** exp(h), S ** exp(-h)]``. It
  stays inside [0, 1] and is ``[1, 1]`` before the first event. When every child at risk has
  the event (``d == n``), ``S`` falls to 0, that day's Greenwood term is undefined and is left
  out, and the interval is ``[0, 0]``.
- **Median**: the first day ``S(t) <= 0.5``; ``None`` when the curve never gets there.

The module needs nothing beyond the standard library (``statistics.NormalDist`` gives ``z``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from nim_workflow._errors import InvalidInput

__all__ = ["SurvivalCurve", "kaplan_meier"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SurvivalCurve:
    """A Kaplan-Meier curve as its step points, one per distinct observed day, in parallel tuples.

    ``times`` starts at 0 and holds every distinct day on which a child had the event *or* was
    censored (so no censoring disappears between event days); ``survival`` changes only on
    event days. At index ``i``: ``at_risk[i]`` children were at risk on day ``times[i]``
    (including those censored that day), ``events[i]`` achieved permanence that day and
    ``censored[i]`` were last seen that day without it. ``survival[i]`` is ``S(times[i])``, the
    estimated share still without permanence at the end of that day; ``greenwood[i]`` is the
    Greenwood sum ``Σ d / (n (n - d))`` so far, and ``lower[i]`` and ``upper[i]`` bound
    ``S`` at ``level`` confidence. An empty input gives empty tuples.

    The report shows the rising view, :attr:`cumulative_incidence` (``1 - S``, the share who
    have achieved permanence), with its bounds :attr:`cumulative_incidence_lower` and
    :attr:`cumulative_incidence_upper`.
    """

    level: float
    times: tuple[float, ...]
    at_risk: tuple[int, ...]
    events: tuple[int, ...]
    censored: tuple[int, ...]
    survival: tuple[float, ...]
    greenwood: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    median: float | None

    @property
    def subjects(self) -> int:
        """How many children the curve follows (everyone is at risk on day 0)."""
        return self.at_risk[0] if self.at_risk else 0

    @property
    def total_events(self) -> int:
        """How many children achieved permanence."""
        return sum(self.events)

    @property
    def total_censored(self) -> int:
        """How many children were last seen without permanence."""
        return sum(self.censored)

    @property
    def event_times(self) -> tuple[float, ...]:
        """The days on which at least one child achieved permanence (where the curve steps)."""
        return tuple(t for t, d in zip(self.times, self.events, strict=True) if d)

    @property
    def censored_times(self) -> tuple[float, ...]:
        """The days on which at least one child was censored."""
        return tuple(t for t, c in zip(self.times, self.censored, strict=True) if c)

    @property
    def variance(self) -> tuple[float, ...]:
        """Greenwood's variance of ``S`` at each time: ``S² · Σ d / (n (n - d))``."""
        return tuple(s * s * g for s, g in zip(self.survival, self.greenwood, strict=True))

    @property
    def cumulative_incidence(self) -> tuple[float, ...]:
        """The share who have achieved permanence by each time: ``1 - S``."""
        return tuple(1.0 - s for s in self.survival)

    @property
    def cumulative_incidence_lower(self) -> tuple[float, ...]:
        """The lower confidence bound of :attr:`cumulative_incidence` (``1 - upper``)."""
        return tuple(1.0 - u for u in self.upper)

    @property
    def cumulative_incidence_upper(self) -> tuple[float, ...]:
        """The upper confidence bound of :attr:`cumulative_incidence` (``1 - lower``)."""
        return tuple(1.0 - lo for lo in self.lower)

    def survival_at(self, day: float) -> float:
        """``S(day)``: the share still without permanence at the end of ``day`` (1 before 0)."""
        index = bisect.bisect_right(self.times, day) - 1
        return self.survival[index] if index >= 0 else 1.0

    def cumulative_incidence_at(self, day: float) -> float:
        """The share who have achieved permanence by the end of ``day``: ``1 - S(day)``."""
        return 1.0 - self.survival_at(day)


def _duration(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field} must be a number of days, not {value!r}", field=field)
    if math.isnan(value):
        raise InvalidInput(f"{field} is NaN", field=field)
    if math.isinf(value):
        raise InvalidInput(f"{field} must be finite, not {value!r}", field=field)
    if value < 0:
        raise InvalidInput(f"{field} must not be negative, not {value!r}", field=field)
    return value


def _tally(observations: Iterable[tuple[float, bool]]) -> tuple[int, dict[float, list[int]]]:
    """How many observations, and ``[events, censored]`` on each distinct day (day 0 included)."""
    tally: dict[float, list[int]] = {0: [0, 0]}
    count = 0
    for index, observation in enumerate(observations):
        field = f"observations[{index}]"
        if not isinstance(observation, tuple | list) or len(observation) != 2:
            raise InvalidInput(
                f"{field} must be a pair (duration_days, event), not {observation!r}",
                field=field,
            )
        duration = _duration(observation[0], f"{field}.duration")
        event = observation[1]
        if not isinstance(event, bool):
            raise InvalidInput(
                f"{field}.event must be True or False, not {event!r}", field=f"{field}.event"
            )
        tally.setdefault(duration, [0, 0])[0 if event else 1] += 1
        count += 1
    return count, tally


def _bounds(survival: float, greenwood: float, z: float) -> tuple[float, float]:
    """The log(-log) (exponential Greenwood) interval around ``survival``."""
    if survival >= 1.0:
        return 1.0, 1.0
    if survival <= 0.0:
        return 0.0, 0.0
    half_width = z * math.sqrt(greenwood) / -math.log(survival)
    return survival ** math.exp(half_width), survival ** math.exp(-half_width)


def kaplan_meier(
    observations: Iterable[tuple[float, bool]], *, level: float = 0.95
) -> SurvivalCurve:
    """The Kaplan-Meier curve of ``observations``, with pointwise intervals at ``level``.

    Each observation is ``(duration_days, event)``: ``event`` true when permanence was achieved
    on that day, false when the child was last seen without it that day (censored). Durations
    may be whole or fractional days. Raises :class:`~nim_workflow.InvalidInput`, naming the
    field, for a negative, NaN, infinite or non-numeric duration, an event that is not a bool,
    an observation that is not a pair, or a ``level`` outside (0, 1). No observations give an
    empty curve.
    """
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise InvalidInput(f"level must be between 0 and 1 exclusive, not {level!r}", field="level")
    count, tally = _tally(observations)
    if count == 0:
        return SurvivalCurve(
            level=level,
            times=(),
            at_risk=(),
            events=(),
            censored=(),
            survival=(),
            greenwood=(),
            lower=(),
            upper=(),
            median=None,
        )
    z = NormalDist().inv_cdf(0.5 + level / 2)
    times = sorted(tally)
    at_risk: list[int] = []
    survival: list[float] = []
    greenwood: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    median: float | None = None
    risk, s, g = count, 1.0, 0.0
    for day in times:
        events, censored = tally[day]
        if events:
            s *= (risk - events) / risk
            if events < risk:  # when everyone at risk has the event the term is undefined
                g += events / (risk * (risk - events))
            if median is None and s <= 0.5:
                median = day
        low, high = _bounds(s, g, z)
        at_risk.append(risk)
        survival.append(s)
        greenwood.append(g)
        lower.append(low)
        upper.append(high)
        risk -= events + censored  # events first, then the day's censorings leave
    return SurvivalCurve(
        level=level,
        times=tuple(times),
        at_risk=tuple(at_risk),
        events=tuple(tally[t][0] for t in times),
        censored=tuple(tally[t][1] for t in times),
        survival=tuple(survival),
        greenwood=tuple(greenwood),
        lower=tuple(lower),
        upper=tuple(upper),
        median=median,
    )
