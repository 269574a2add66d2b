"""A host case-management system that moves NIM cases inside its own database transactions.

This example's one job: show a host keeping its own table (``host_case_notes``, made with its
own ``MetaData``) and a case's pathway state in step, by passing its ``Connection`` to the engine
with ``connection=``. On commit both land and subscribers are called afterwards; on rollback
neither lands and no subscriber is called. Whatever happens, the host tails the durable audit
feed with ``engine.audit(after_seq=...)`` so it misses nothing.

    python examples/host_case_system.py                      # SQLite in a temporary folder
    python examples/host_case_system.py postgresql+psycopg://user@localhost/casesystem

Without a URL its SQLite database lives in a temporary folder removed when it ends, so it runs
the same every time and leaves nothing behind. A URL must name a database without its case:
run twice against one database, it stops the second time, saying the case already exists.

The host's table holds no personal details: a case reference and a note category only.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

import nim_workflow as nw

# The host's own schema: its own MetaData, created by the host, never by the engine.
host_metadata = sa.MetaData()
host_case_notes = sa.Table(
    "host_case_notes",
    host_metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("reference", sa.String(100), nullable=False),
    sa.Column("category", sa.String(50), nullable=False),
)

REFERENCE = "HOST-2026-0001"
SOCIAL_WORKER = nw.Actor("sw-017", roles={"social_worker"})
TEAM_MANAGER = nw.Actor("tm-003", roles={"team_manager"})


class SteppingClock:
    """An injected clock: every reading is one hour after the last, so runs are repeatable."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start

    def __call__(self) -> dt.datetime:
        self._now += dt.timedelta(hours=1)
        return self._now


def note_categories(host: sa.Engine) -> list[str]:
    """The host's notes on the case, read on a fresh connection (so: only committed rows)."""
    with host.connect() as conn:
        query = (
            sa.select(host_case_notes.c.category)
            .where(host_case_notes.c.reference == REFERENCE)
            .order_by(host_case_notes.c.id)
        )
        return list(conn.execute(query).scalars())


def run(url: str) -> None:
    """Run the example on the database at ``url``."""
    shown_url = sa.make_url(url).render_as_string(hide_password=True)
    print(f"database: {shown_url}")

    # The host owns the SQLAlchemy engine and hands it to nim-workflow, which never disposes of
    # it: one connection pool serves both the host's tables and the engine's.
    host = sa.create_engine(url)
    engine = nw.Engine(host, clock=SteppingClock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)))
    engine.migrate()  # the library's tables (nimwf_*), under its own version table
    host_metadata.create_all(host)  # the host's table, by the host

    heard: list[str] = []

    def subscriber(event: nw.Event) -> None:
        heard.append(event.kind)
        print(f"  subscriber called: {event.kind} on {event.reference} (audit seq {event.seq})")

    engine.subscribe(subscriber)

    engine.open_case(
        REFERENCE,
        pathway="nim-uk-england",
        site="london",
        actor=SOCIAL_WORKER,
        facts={"consent_recorded": True},
    )
    print(f"opened {REFERENCE} in stage {engine.case(REFERENCE).stage}")

    # The audit feed: remember the last seq seen, ask only for what came after it.
    cursor = 0

    def tail_audit() -> None:
        nonlocal cursor
        events = engine.audit(after_seq=cursor)
        if not events:
            print(f"  audit feed after seq {cursor}: nothing new")
        for item in events:
            change = f"{item.from_stage} -> {item.to_stage}" if item.from_stage else item.to_stage
            print(
                f"  audit seq {item.seq}: {item.action} {item.reference} by {item.actor_id} "
                f"({change})"
            )
            cursor = item.seq

    print("audit feed so far:")
    tail_audit()

    # 1. Commit: the host's note and the transition land together.
    print("\n1. host transaction that commits")
    heard.clear()
    with host.connect() as conn, conn.begin():
        conn.execute(host_case_notes.insert().values(reference=REFERENCE, category="panel"))
        case = engine.fire(REFERENCE, "accept_referral", actor=TEAM_MANAGER, connection=conn)
        print(
            f"  inside the transaction: case moves to {case.stage}; subscriber calls so far: "
            f"{len(heard)}"
        )
        # Leaving the block commits; the engine publishes only once the commit succeeded.
    print(
        f"  after commit: stage {engine.case(REFERENCE).stage}, "
        f"host notes {note_categories(host)}, subscriber calls {len(heard)}"
    )
    tail_audit()

    # 2. Rollback: neither the host's note nor the facts and transition land.
    print("\n2. host transaction that rolls back")
    heard.clear()
    with host.connect() as conn:
        trans = conn.begin()
        conn.execute(host_case_notes.insert().values(reference=REFERENCE, category="assessment"))
        engine.record(
            REFERENCE, {"assessment_report_filed": True}, actor=TEAM_MANAGER, connection=conn
        )
        case = engine.fire(REFERENCE, "offer_treatment", actor=TEAM_MANAGER, connection=conn)
        print(f"  inside the transaction: case moves to {case.stage}")
        trans.rollback()  # say the host's own validation failed after the engine call
    case = engine.case(REFERENCE)
    print(
        f"  after rollback: stage {case.stage}, "
        f"assessment_report_filed recorded: {'assessment_report_filed' in case.facts}, "
        f"host notes {note_categories(host)}, subscriber calls {len(heard)}"
    )
    tail_audit()

    # 3. A refusal inside the host's transaction: the host decides what to keep.
    print("\n3. a refused transition inside a host transaction")
    with host.connect() as conn, conn.begin():
        try:
            engine.fire(REFERENCE, "offer_treatment", actor=TEAM_MANAGER, connection=conn)
        except nw.RequirementsNotMet as exc:
            print(f"  refused: {exc}")
        # Committing keeps the engine's 'denied' audit event; a rollback would drop it.
    tail_audit()

    report = engine.verify_audit()
    print(f"\naudit chain ok: {report.ok} ({report.checked} events checked)")
    engine.close()
    host.dispose()  # the host's engine is the host's to dispose of


def main(argv: list[str]) -> int:
    """Run on the database URL in ``argv``, or on a SQLite file in a temporary folder."""
    if len(argv) > 1:
        try:
            run(argv[1])
        except nw.CaseExists as exc:
            print(f"{exc}: this example needs a database without its cases", file=sys.stderr)
            return 1
        return 0
    with tempfile.TemporaryDirectory(prefix="nimwf-host-") as folder:
        run(f"sqlite:///{Path(folder) / 'casesystem.db'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
