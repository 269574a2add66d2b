"""A site with its own closure days, running its own version of a pathway.

This example's one job: show the two ways a site adapts the engine without touching the bundled
pathways. ``examples/custom-pathway.yaml`` is a copy of ``nim-uk-england`` under a new id that
adds a ``professionals_meeting`` deadline to the assessment stage; it is loaded with
``nw.load_pathway`` and registered with ``nw.Engine(pathways=[...])``, with the two sites that
run it declared as ``nw.Site`` objects (``sites=``). ``closures=`` gives the Croydon site an
office closure day, which moves a working-day due date a day later, and the deadline's
explanation names the closure.

    python examples/site_closures_custom_pathway.py                  # SQLite in a temporary folder
    python examples/site_closures_custom_pathway.py sqlite:///croydon.db

Without a URL its SQLite database lives in a temporary folder removed when it ends, so it runs
the same every time and leaves nothing behind. A URL must name a database without its two cases:
run twice against one database, it stops the second time, saying the case already exists.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

import nim_workflow as nw

PATHWAY_FILE = Path(__file__).with_name("custom-pathway.yaml")
# Friday 6 March 2026: the Croydon office is closed for a staff training day.
CROYDON_CLOSURES = [dt.date(2026, 3, 6)]
# Monday 2 March 2026, 10:00 in London: both referrals arrive.
REFERRED_AT = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)

SOCIAL_WORKER = nw.Actor("sw-201", roles={"social_worker"})
TEAM_MANAGER = nw.Actor("tm-202", roles={"team_manager"})


def show(deadline: nw.Deadline) -> None:
    """Print a deadline and why it is due when it is."""
    print(f"  {deadline.reference} {deadline.name}: due {deadline.due_on:%a %d %b %Y}")
    for line in deadline.explain().lines():
        print(f"      {line}")


def run(url: str) -> None:
    """Run the example on the database at ``url``."""
    # Loading validates the whole file; a mistake raises nw.PathwayError naming file, line, field.
    croydon = nw.load_pathway(PATHWAY_FILE)
    print(f"loaded {croydon.id} version {croydon.version} from {PATHWAY_FILE.name}")
    print(f"  content hash {croydon.content_hash[:16]}...; stored with every case opened on it")
    added = croydon.rule("professionals_meeting")
    print(f"  added deadline: {added.name} in stage {added.stage}, {added.duration}")

    # Cases are opened only at declared sites, on a pathway the site runs: the two sites running
    # this pathway, declared in code (a host may keep them as site files instead).
    sites = [
        nw.Site(
            id=site_id,
            title=title,
            timezone=croydon.timezone,
            calendar=croydon.calendar,
            pathways={croydon.id},
        )
        for site_id, title in (("croydon", "Croydon"), ("sutton", "Sutton"))
    ]
    engine = nw.Engine(
        url,
        clock=lambda: REFERRED_AT,
        # Only these pathways and sites are registered; add nw.bundled_pathways().values() and
        # nw.bundled_sites().values() to keep the bundled ones too.
        pathways=[croydon],
        sites=sites,
        closures={"croydon": CROYDON_CLOSURES},
    )
    with engine:
        engine.migrate()

        print("\nThe same referral on the same day, at a site with a closure and one without:")
        for reference, site in (("CRO-2026-0001", "croydon"), ("STN-2026-0001", "sutton")):
            engine.open_case(
                reference,
                pathway=croydon.id,
                site=site,
                actor=SOCIAL_WORKER,
                facts={"consent_recorded": True},
            )
            (referral,) = engine.deadlines(reference)
            show(referral)
        closed = engine.deadlines("CRO-2026-0001")[0].due_on
        usual = engine.deadlines("STN-2026-0001")[0].due_on
        print(
            f"  the closure on {CROYDON_CLOSURES[0]:%a %d %b} moved the referral decision "
            f"{(closed - usual).days} day later, to {closed:%a %d %b}"
        )

        print("\nAccepted into assessment: the stage's deadlines, the added one included:")
        case = engine.fire(
            "CRO-2026-0001",
            "accept_referral",
            actor=TEAM_MANAGER,
            at=REFERRED_AT + dt.timedelta(days=1),
        )
        print(
            f"  {case.reference} is on {case.pathway_id} version {case.pathway_version}, "
            f"stage {case.stage}"
        )
        for deadline in engine.deadlines("CRO-2026-0001"):
            if deadline.stage == "assessment":
                show(deadline)


def main(argv: list[str]) -> int:
    """Run on the database URL in ``argv``, or on a SQLite file in a temporary folder."""
    if len(argv) > 1:
        try:
            run(argv[1])
        except nw.CaseExists as exc:
            print(f"{exc}: this example needs a database without its cases", file=sys.stderr)
            return 1
        return 0
    with tempfile.TemporaryDirectory(prefix="nimwf-croydon-") as folder:
        run(f"sqlite:///{Path(folder) / 'croydon.db'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
