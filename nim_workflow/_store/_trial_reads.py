"""The trial's bulk reads, shared by the evaluator's export and the coordinator's report.

One statement per table: the families (at a site, or everywhere), their children, their
research visits, the children's cases with the outcome facts the evaluation needs, and each
child's placements as recorded over time. Nothing here writes.

Placements come from the audit log, not the case row: the row keeps a fact's newest value, and
each new ``placed_on`` recorded is a placement change (TRIAL.md: "each placement change, so
moves can be counted"). The audit log is append-only, so the count cannot quietly shrink.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from nim_workflow._store._schema import audit_events, cases, families, family_children, visits

__all__ = [
    "OUTCOME_FACTS",
    "PLACEMENT_FACT",
    "TrialRead",
    "placements",
    "read_trial",
]

#: The fact whose every new value is a placement (the first one is the child's first placement).
PLACEMENT_FACT = "placed_on"
#: The outcome and delivery facts the trial's pathways declare (TRIAL.md), with ``decision``
#: the permanence decision in the nation's types.
OUTCOME_FACTS = ("decision", "permanence_achieved_on", "intervention_received", "entered_care_on")
#: Audit actions whose detail carries the facts a command recorded.
_FACT_ACTIONS = ("opened", "transition", "fact_recorded")


@dataclass(frozen=True, slots=True)
class TrialRead:
    """What the export and the report read of the trial.

    ``families`` are rows of ``nimwf_families`` in reference order; ``children`` rows of
    ``nimwf_family_children`` (``family``, ``reference``, ``joined_at``) by family, then in the
    order they joined; ``visits`` rows of
    ``nimwf_visits``; ``cases`` maps a child's reference to its case row (``None`` before the
    allocation opens it): ``pathway_id``, ``stage``, ``opened_at``, ``closed_at``,
    ``outcome``, ``facts`` (the stored JSON). ``placements`` maps a child's reference to each
    ``placed_on`` date recorded, oldest first.
    """

    families: Sequence[Any]
    children: Sequence[Any]
    visits: Sequence[Any]
    cases: Mapping[str, Any]
    placements: Mapping[str, list[dt.date]]

    def children_of(self, family: str) -> list[Any]:
        """The family's children rows, in the order they joined."""
        return [child for child in self.children if child.family == family]

    def moves(self, reference: str) -> int:
        """How many times the child moved placement: the placements recorded after the first."""
        return max(0, len(self.placements.get(reference, [])) - 1)


def read_trial(conn: Connection, site: str | None = None) -> TrialRead:
    """The families at ``site`` (every site when ``None``), with everything hanging off them."""
    family_query = sa.select(families).order_by(families.c.reference)
    if site is not None:
        family_query = family_query.where(families.c.site == site)
    family_rows = conn.execute(family_query).all()
    of_site = sa.select(families.c.reference)
    if site is not None:
        of_site = of_site.where(families.c.site == site)
    child_rows = conn.execute(
        sa.select(family_children)
        .where(family_children.c.family.in_(of_site))
        .order_by(
            family_children.c.family, family_children.c.joined_at, family_children.c.reference
        )
    ).all()
    visit_rows = conn.execute(
        sa.select(visits).where(visits.c.family.in_(of_site)).order_by(visits.c.family, visits.c.id)
    ).all()
    children = sa.select(family_children.c.reference).where(family_children.c.family.in_(of_site))
    case_rows = conn.execute(
        sa.select(
            cases.c.reference,
            cases.c.pathway_id,
            cases.c.pathway_version,
            cases.c.site,
            cases.c.stage,
            cases.c.opened_at,
            cases.c.closed_at,
            cases.c.outcome,
            cases.c.facts,
        ).where(cases.c.reference.in_(children))
    ).all()
    return TrialRead(
        families=family_rows,
        children=child_rows,
        visits=visit_rows,
        cases={row.reference: row for row in case_rows},
        placements=placements(conn, children),
    )


def placements(conn: Connection, references: Any) -> dict[str, list[dt.date]]:
    """Each ``placed_on`` recorded on the cases ``references`` selects, oldest first.

    A value recorded again unchanged is not a new placement (the engine writes no entry for a
    fact recorded with its current value, and this skips a repeat anyway).
    """
    rows = conn.execute(
        sa.select(audit_events.c.reference, audit_events.c.detail)
        .where(
            audit_events.c.stream == "case",
            audit_events.c.reference.in_(references),
            audit_events.c.action.in_(_FACT_ACTIONS),
            # A cheap filter the database can apply before the detail is parsed here.
            sa.cast(audit_events.c.detail, sa.Text).like(f'%"{PLACEMENT_FACT}"%'),
        )
        .order_by(audit_events.c.reference, audit_events.c.position)
    ).all()
    out: dict[str, list[dt.date]] = {}
    for row in rows:
        detail = row.detail if isinstance(row.detail, Mapping) else json.loads(row.detail)
        value = (detail.get("facts") or {}).get(PLACEMENT_FACT)
        if value is None:
            continue
        day = dt.date.fromisoformat(value)
        seen = out.setdefault(row.reference, [])
        if not seen or seen[-1] != day:
            seen.append(day)
    return out
