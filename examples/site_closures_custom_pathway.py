"""A site with its own closure days, running its own version of a pathway.

This example's one job: show the two ways a site adapts the engine without touching the bundled
pathways. ``examples/custom-pathway.yaml`` is a copy of ``nim-uk-england`` under a new id that
adds a ``professionals_meeting`` deadline to the assessment stage; it is loaded with
``nw.load_pathway`` and registered with ``nw.Engine(pathways=[...])``. ``closures=`` gives the
Croydon site an office closure day, which moves a working-day due date a day later, and the
deadline's explanation names the closure.

    python examples/site_closures_custom_pathway.py                  # a temporary SQLite file
    python examples/site_closures_custom_pathway.py sqlite:///croydon.db
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


def main(argv: list[str]) -> int:
    """Run the example on the database URL in ``argv`` (default: a temporary SQLite file)."""
    if len(argv) > 1:
        url = argv[1]
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='nimwf-croydon-')) / 'croydon.db'}"

    # Loading validates the whole file; a mistake raises nw.PathwayError naming file, line, field.
    croydon = nw.load_pathway(PATHWAY_FILE)
    print(f"loaded {croydon.id} version {croydon.version} from {PATHWAY_FILE.name}")
    print(f"  content hash {croydon.content_hash[:16]}...; stored with every case opened on it")
    added = croydon.rule("professionals_meeting")
    print(f"  added deadline: {added.name} in stage {added.stage}, {added.duration}")

    engine = nw.Engine(
        url,
        clock=lambda: REFERRED_AT,
        # Only these pathways are registered; add nw.bundled_pathways().values() to keep them too.
        pathways=[croydon],
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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
