"""A pilot-site coordinator's weekly digest: what is overdue and what falls due this week.

This example's one job: build the digest a coordinator reads on Monday morning from
``engine.overdue(at=...)`` and ``engine.due(before=...)``, site by site, with each deadline's
explanation (``Deadline.explain()``). It first creates a small two-site cohort, driving an
injected clock through a few months so the cohort has a history, then prints the digest.

    python examples/weekly_digest.py                       # SQLite in a temporary folder
    python examples/weekly_digest.py sqlite:///digest.db

Without a URL its SQLite database lives in a temporary folder removed when it ends, so it runs
the same every time and leaves nothing behind. A URL must name a database without the cohort's
cases: run twice against one database, it stops the second time, saying the case already exists.

Dates are shown as the site's local dates; the engine stores every instant in UTC.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import nim_workflow as nw

SOCIAL_WORKER = nw.Actor("sw-101", roles={"social_worker"})
TEAM_MANAGER = nw.Actor("tm-102", roles={"team_manager"})
COURT_OFFICER = nw.Actor("co-103", roles={"court_officer"})

SITES = {"london": "nim-uk-england", "glasgow": "nim-uk-scotland"}
# Monday 1 June 2026, 08:00 in London and Glasgow: when the coordinator reads the digest.
DIGEST_AT = dt.datetime(2026, 6, 1, 7, 0, tzinfo=dt.UTC)


class SimulatedClock:
    """The engine's clock: it reads whatever instant the simulation has reached."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, year: int, month: int, day: int, hour: int = 10) -> None:
        """Move the simulation to ``hour`` UTC on a date (time only moves forward)."""
        moment = dt.datetime(year, month, day, hour, tzinfo=dt.UTC)
        assert moment >= self.now, "a simulation never goes back in time"
        self.now = moment


def build_cohort(engine: nw.Engine, clock: SimulatedClock) -> list[nw.Event]:
    """Open seven cases over the spring and move them along, as two teams would.

    Returns the alarms the deadline processor fired on catching up at the end.
    """

    def open_case(reference: str, site: str) -> None:
        engine.open_case(
            reference,
            pathway=SITES[site],
            site=site,
            actor=SOCIAL_WORKER,
            facts={"consent_recorded": True},
        )

    clock.set(2026, 2, 2)
    open_case("LDN-2026-0001", "london")
    open_case("GLA-2026-0001", "glasgow")
    clock.set(2026, 2, 9)
    engine.fire("LDN-2026-0001", "accept_referral", actor=TEAM_MANAGER)
    engine.fire("GLA-2026-0001", "accept_referral", actor=TEAM_MANAGER)
    # Care proceedings issued: England's 26-week statutory clock starts from this date.
    engine.record("LDN-2026-0001", {"proceedings_issued_on": "2026-02-06"}, actor=COURT_OFFICER)

    clock.set(2026, 3, 2)
    open_case("LDN-2026-0002", "london")
    engine.fire("LDN-2026-0002", "accept_referral", actor=TEAM_MANAGER)
    # Placed away from home: Scotland's first looked-after review is due within 6 weeks.
    engine.record("GLA-2026-0001", {"placed_on": "2026-03-02"}, actor=SOCIAL_WORKER)

    clock.set(2026, 4, 20)
    engine.record("GLA-2026-0001", {"assessment_report_filed": True}, actor=TEAM_MANAGER)
    engine.fire("GLA-2026-0001", "offer_treatment", actor=TEAM_MANAGER)
    engine.record("GLA-2026-0001", {"lac_review_held_on": "2026-04-10"}, actor=SOCIAL_WORKER)

    clock.set(2026, 4, 27)
    open_case("GLA-2026-0002", "glasgow")

    clock.set(2026, 5, 4)
    engine.record("LDN-2026-0001", {"assessment_report_filed": True}, actor=TEAM_MANAGER)
    engine.fire("LDN-2026-0001", "recommend_without_treatment", actor=TEAM_MANAGER)
    # Entered care: the first looked-after child review is due within 20 working days.
    engine.record("LDN-2026-0002", {"entered_care_on": "2026-05-04"}, actor=SOCIAL_WORKER)

    clock.set(2026, 5, 11)
    # The court adjourns the case: the team stops the clock, and restarts it three days later.
    engine.pause("LDN-2026-0001", actor=TEAM_MANAGER, reason="hearing adjourned")
    clock.set(2026, 5, 14)
    engine.resume("LDN-2026-0001", actor=TEAM_MANAGER)

    clock.set(2026, 5, 18)
    open_case("LDN-2026-0003", "london")
    open_case("GLA-2026-0004", "glasgow")
    clock.set(2026, 5, 22)
    open_case("GLA-2026-0003", "glasgow")
    engine.fire(
        "GLA-2026-0003",
        "decline_referral",
        actor=TEAM_MANAGER,
        reason="not within the pilot's criteria",
    )

    clock.now = DIGEST_AT
    # The alarms (reminders, breaches, escalations) would have fired as the weeks passed;
    # the first processor run after "downtime" fires every one of them, once.
    return engine.process_due()


def local(moment: dt.datetime, timezone: str) -> str:
    """An instant as the site's local date and time."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%a %d %b %Y %H:%M")


def days(count: int) -> str:
    """``1 day``, ``3 days``."""
    return f"{count} day" if count == 1 else f"{count} days"


def deadline_lines(deadline: nw.Deadline, today: dt.date, overdue: bool) -> list[str]:
    """One deadline: what and when, then its explanation, indented."""
    what = deadline.name if deadline.kind == "stage" else f"{deadline.name} (statutory clock)"
    if overdue:
        when = f"was due {deadline.due_on:%a %d %b}, {days((today - deadline.due_on).days)} ago"
    else:
        left = (deadline.due_on - today).days
        when = f"due {deadline.due_on:%a %d %b}, " + (f"in {days(left)}" if left else "today")
    lines = [f"  {deadline.reference}  {what}: {when}"]
    lines.extend(f"      {line}" for line in deadline.explain().lines())
    return lines


def digest(engine: nw.Engine, at: dt.datetime) -> str:
    """The coordinator's digest at ``at``: per site, overdue first, then due within 7 days."""
    week_end = at + dt.timedelta(days=7)
    out = [f"Weekly digest, {at:%d %B %Y %H:%M} UTC"]
    for site, pathway_id in sorted(SITES.items()):
        timezone = engine.pathway(pathway_id).timezone
        today = at.astimezone(ZoneInfo(timezone)).date()
        overdue = engine.overdue(at=at, site=site)
        late = {(d.reference, d.name, d.occurrence) for d in overdue}
        due_soon = [
            d
            for d in engine.due(before=week_end, site=site)
            if (d.reference, d.name, d.occurrence) not in late
        ]
        open_cases = engine.cases(site=site)
        out.append("")
        out.append(
            f"== {site} ({pathway_id}, {timezone}): {len(open_cases)} open cases, "
            f"local time {local(at, timezone)}"
        )
        out.append(f"Overdue ({len(overdue)}):")
        for deadline in overdue:
            out.extend(deadline_lines(deadline, today, overdue=True))
        if not overdue:
            out.append("  nothing overdue")
        out.append(
            f"Due this week, by {week_end.astimezone(ZoneInfo(timezone)):%a %d %b} "
            f"({len(due_soon)}):"
        )
        for deadline in due_soon:
            out.extend(deadline_lines(deadline, today, overdue=False))
        if not due_soon:
            out.append("  nothing due this week")
    return "\n".join(out)


def run(url: str) -> None:
    """Build the cohort on the database at ``url`` and print the digest."""
    clock = SimulatedClock(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    with nw.Engine(url, clock=clock) as engine:
        engine.migrate()
        fired = build_cohort(engine, clock)
        kinds = sorted({event.kind for event in fired})
        counts = ", ".join(f"{sum(e.kind == kind for e in fired)} {kind}" for kind in kinds)
        print(f"cohort built; the deadline processor caught up and fired: {counts or 'nothing'}")
        print()
        print(digest(engine, DIGEST_AT))


def main(argv: list[str]) -> int:
    """Run on the database URL in ``argv``, or on a SQLite file in a temporary folder."""
    if len(argv) > 1:
        try:
            run(argv[1])
        except nw.CaseExists as exc:
            print(f"{exc}: this example needs a database without its cases", file=sys.stderr)
            return 1
        return 0
    with tempfile.TemporaryDirectory(prefix="nimwf-digest-") as folder:
        run(f"sqlite:///{Path(folder) / 'digest.db'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
