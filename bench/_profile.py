"""Where a transition's client CPU goes: ``Engine.fire`` split into its parts, on SQLite.

The write path's target (at most 1 ms of client CPU per transition) is measured by the ``write``
group; this group says what bounds it. It walks cases through the bundled pathway (each
transition its own transaction, WAL and synchronous=FULL as in the ``write`` group) with the
engine's internal steps wrapped in ``time.process_time`` counters, one part at a time:

- **read the case**: the case row, its stage intervals, pauses, deadlines and alarms, and its
  audit chain's head (:func:`nim_workflow._store._case_state.load`);
- **write the rows**: the changes decided, one statement per table and kind
  (:func:`~nim_workflow._store._case_state.flush`);
- **state digests**: the digests of the case's rows the audit entry records, before and after;
- **audit entries**: building and hashing the entry, inserting it, moving the chain head and
  the Merkle log head (:func:`nim_workflow._audit.new_entry`, ``write_entries``);
- **decide deadlines**: settling and opening deadlines and their alarms in memory;
- **commit**: the database commit (on SQLite the WAL append and its fsync's system time);
- **the rest**: input checks, the machine, building the returned ``Case``, SQLAlchemy's
  connection checkout and ``BEGIN``.

The counters cost a little themselves, so the parts are read as shares of one profiled run, not
added to the ``write`` group's figure.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _cases as bc
import sqlalchemy as sa

import nim_workflow as nw
from nim_workflow import _audit, _deadlines
from nim_workflow._store import _case_state

#: The parts, in the order the page lists them: (label, module, function name).
PARTS: tuple[tuple[str, Any, str], ...] = (
    ("read the case (5 statements)", _case_state, "load"),
    ("write the rows", _case_state, "flush"),
    ("state digests (JSON + SHA-256)", _audit, "state_digests"),
    ("audit entries: build and hash", _audit, "new_entry"),
    ("audit entries: insert, chain head, log head", _audit, "write_entries"),
    ("decide deadlines: settle", _deadlines, "settle_stage_deadlines"),
    ("decide deadlines: met_by", _deadlines, "settle_met_by"),
    ("decide deadlines: open", _deadlines, "open_stage_deadlines"),
    ("decide deadlines: clock facts", _deadlines, "record_clock_facts"),
)
COMMIT = "commit"
REST = "the rest (checks, machine, Case, connection, BEGIN)"


def _counting(counter: Counter[str], label: str, function: Callable[..., Any]) -> Any:
    @functools.wraps(function)
    def counted(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            counter[label] += time.process_time() - start

    return counted


def fire_profile(cases: int) -> tuple[dict[str, float], float, int]:
    """CPU ms per transition of each part, the profiled total, and the transitions measured."""
    counter: Counter[str] = Counter()
    saved = [(module, name, getattr(module, name)) for _, module, name in PARTS]
    commit = sa.Connection.commit
    try:
        for label, module, name in PARTS:
            setattr(module, name, _counting(counter, label, getattr(module, name)))
        sa.Connection.commit = _counting(counter, COMMIT, commit)  # type: ignore[method-assign]
        with tempfile.TemporaryDirectory(prefix="nimwf-profile-") as tmp:
            engine = nw.Engine(f"sqlite:///{Path(tmp) / 'profile.db'}", clock=bc.StepClock())
            try:
                engine.migrate()
                references = [f"P-{n:05d}" for n in range(cases)]
                for reference in references:
                    engine.open_case(reference, bc.PATHWAY_ID, bc.SITE, bc.SOCIAL_WORKER)
                counter.clear()
                transitions = 0
                start = time.process_time()
                for trigger, actor, facts in bc.WALK[:-1]:
                    for reference in references:
                        engine.fire(reference, trigger, actor, facts=facts)
                        transitions += 1
                total = time.process_time() - start
            finally:
                engine.close()
    finally:
        for module, name, function in saved:
            setattr(module, name, function)
        sa.Connection.commit = commit  # type: ignore[method-assign]
    per = {label: counter[label] / transitions * 1e3 for label, _, _ in PARTS}
    per[COMMIT] = counter[COMMIT] / transitions * 1e3
    per[REST] = max(total / transitions * 1e3 - sum(per.values()), 0.0)
    return per, total / transitions * 1e3, transitions
