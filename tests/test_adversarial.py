"""An adversarial user at every door of the public API, on SQLite and on PostgreSQL.

A Hypothesis state machine drives one ``nw.Engine`` (with a clock only the test moves) on a fresh
database per example: it opens cases, fires triggers as random actors with random roles, records
facts, pauses, resumes, extends deadlines, processes due alarms, moves time forwards and
backwards and acts on unknown cases. Each call is either entirely good (so cases travel their
pathways), or has one odd argument (so each door is tried on its own), or may be odd anywhere:
wrong but plausible values (a role that may not act, a trigger not valid now, a missing fact or
reason, a stale version, a time before the case's newest change) and values no valid call
carries (empty, over-long, 10 KB and control-character strings, values of the wrong type, dates
out of range or in formats the docs do not allow). After every step it checks that

1. every exception the engine raises is a ``nw.NimWorkflowError``;
2. a refused call changed nothing: an action refused (``nw.ActionRefused``) adds exactly one
   ``denied`` audit event and nothing else, any other refusal adds nothing at all;
3. a value no valid call carries is never accepted and never written, not even as a denial, and
   a time before the case's newest change is refused with ``nw.InvalidInput``;
4. every case is in a stage of its pathway, closed exactly when in a final stage, with no open
   deadline but its current stage's and its running clocks', and the audit chain verifies.

Every suite runs at least ``CI_STEPS`` steps on each database (counted, so a run cannot quietly
do fewer); ``make soak`` runs ``SOAK_STEPS`` on each.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from deadline_helpers import CLOCK_FACTS
from engine_helpers import EVERYONE, FACTS_FOR, OPEN_STAGES, PATH_TO, ROLES
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import nim_workflow as nw

# -- budgets --------------------------------------------------------------------------------------

#: Steps every suite runs on each database, and how many steps one example (database) takes.
CI_STEPS = 1_000
CI_STEPS_PER_EXAMPLE = 50
#: Steps ``make soak`` runs on each database.
SOAK_STEPS = 20_000
SOAK_STEPS_PER_EXAMPLE = 100

#: Steps actually executed, per run label (a rule counts when it runs, whatever it does).
STEPS: Counter[str] = Counter()

# -- the inputs -----------------------------------------------------------------------------------

T0 = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)  # a Monday
PATHWAY_SITE = {
    "nim-uk-england": "london",
    "nim-uk-scotland": "glasgow",
    "nim-us-louisiana": "jefferson-parish",
}
#: The NIM pathways, one per site: the rounds walk cases through NIM's stages (treatment
#: included), which the trial's comparator pathways, bundled beside them, do not have.
PATHWAYS = {
    pathway_id: pathway
    for pathway_id, pathway in nw.bundled_pathways().items()
    if pathway_id in PATHWAY_SITE
}
SITES = tuple(PATHWAY_SITE.values())
PREFIX = {"london": "LDN", "glasgow": "GLA", "jefferson-parish": "JEF"}
TRIGGERS = tuple(sorted({t.trigger for p in PATHWAYS.values() for t in p.transitions}))
DEADLINE_NAMES = tuple(sorted({r.name for p in PATHWAYS.values() for r in p.deadlines}))

#: The documented limit of identifiers (references, sites, actor ids, roles, triggers, deadline
#: names): 1 to 100 characters, no surrounding spaces, no control or bidirectional characters.
IDENTIFIER_LIMIT = 100
#: Far beyond any documented limit of a reason (free text).
TEN_KB = 10 * 1024

ODD_TEXT: tuple[str, ...] = (
    "",
    "   ",
    "r" * (IDENTIFIER_LIMIT + 1),
    "k" * TEN_KB,
    "nul\x00byte",
    "\x1b[31mred",
    "\u202eevil",
    "new\nline",
    " leading-space",
)
NOT_TEXT: tuple[Any, ...] = (5, b"x", None, 3.5, ["x"], True)
UNKNOWN_REFERENCES = ("LDN-2026-9999", "NOPE-0001", "ldn-2026-0001")
UNKNOWN_TRIGGERS = ("launch_rocket", "ACCEPT_REFERRAL", "accept referral")
ACTOR_IDS = ("sw-017", "tm-004", "cl-009", "co-002", "pc-001", "ünïcode-1")
#: The roles that may do each action that is not a transition (PATHWAYS.md).
ACTION_ROLES = {
    "open_case": ("social_worker", "team_manager"),
    "record": ("social_worker", "clinician", "team_manager", "court_officer"),
    "pause": ("team_manager", "coordinator"),
    "resume": ("team_manager", "coordinator"),
}
#: Role sets that are well formed but may be wrong for the action, and values that are not roles.
OTHER_ROLES: tuple[Any, ...] = (
    set(),
    {"unknown_role"},
    {"TEAM_MANAGER"},
    *({role} for role in ROLES),
    set(ROLES) - {"team_manager"},
)
ODD_ROLES: tuple[Any, ...] = (None, 5, [5], {b"x"}, {""}, {"team\x00manager"}, {"r" * TEN_KB})
GOOD_REASONS = ("family moved away", "court granted more time", "line one\nline two")
ODD_REASONS: tuple[Any, ...] = (
    None,
    "",
    "   ",
    123,
    b"x",
    "k" * TEN_KB,
    ["why"],
    4.5,
    "nul\x00reason",
    "\x1b[2Jcleared",
)
GOOD_BY: tuple[Any, ...] = (None, None, "1 weeks", "5 days", "2 working_days", dt.timedelta(days=3))
TOO_LONG_BY: tuple[Any, ...] = (
    "52 weeks",
    dt.timedelta(days=400),
    "999999999 days",
    "99999999 weeks",
    dt.timedelta(days=999_999_999),
)
ODD_BY: tuple[Any, ...] = (
    "0 days",
    dt.timedelta(0),
    "-1 weeks",
    5,
    3.5,
    b"x",
    "forever",
    dt.timedelta(hours=5),
    "k" * TEN_KB,
    ["1 weeks"],
)
ODD_AT: tuple[Any, ...] = (
    dt.datetime(2026, 1, 5, 9, 30),  # naive
    dt.datetime(1, 1, 1, tzinfo=dt.UTC),
    dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC),
    dt.datetime(9999, 12, 31, 23, 0, tzinfo=ZoneInfo("Pacific/Kiritimati")),
    "2026-01-05T09:30:00+00:00",
    dt.date(2026, 1, 5),
    5,
    1.7e9,
)
#: Refusals that write nothing at all: the only ones a value no valid call carries may end in.
QUIET_REFUSALS = (nw.InvalidInput, nw.CaseNotFound, nw.CaseExists, nw.ConcurrentUpdate)
#: Audit actions that change a case: a call dated before the newest of them must be refused.
CHANGES = frozenset({"opened", "transition", "fact_recorded", "paused", "resumed", "extended"})


def is_bad_identifier(value: object) -> bool:
    """Whether no valid call can carry ``value`` as an identifier (the documented limits)."""
    if not isinstance(value, str) or not value.strip() or len(value) > IDENTIFIER_LIMIT:
        return True
    if value != value.strip():
        return True
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def is_bad_reason(value: object) -> bool:
    """Whether no valid call can carry ``value`` as a reason (``None`` is a missing reason)."""
    if value is None:
        return False
    if not isinstance(value, str) or len(value) >= TEN_KB:
        return True
    return "\x00" in value or "\x1b" in value


def is_bad_roles(value: object) -> bool:
    """Whether ``value`` cannot be an actor's roles (a lone string is one role, by design)."""
    if isinstance(value, str):
        return is_bad_identifier(value)
    if value is None or isinstance(value, bytes | Mapping) or not hasattr(value, "__iter__"):
        return True
    return any(is_bad_identifier(role) for role in value)


def short(value: object, limit: int = 80) -> str:
    """A bounded repr of a value, for failure messages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}...<{len(text)} chars>"


def describe(name: str, *args: object, **kwargs: object) -> str:
    """``name(args, kwargs)`` with every value shortened."""
    parts = [short(a) for a in args] + [f"{k}={short(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


class Clock:
    """The engine's injected clock: only the state machine moves it."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass(frozen=True)
class Snapshot:
    """What the public API says before a call: every case, one case's deadlines, the audit log."""

    cases: tuple[nw.Case, ...]
    deadlines: tuple[nw.Deadline, ...] | None
    audit: tuple[nw.AuditEvent, ...]

    def case(self, reference: object) -> nw.Case | None:
        """The case with ``reference``, if one exists (odd references included)."""
        for case in self.cases:
            if isinstance(reference, str) and case.reference == reference:
                return case
        return None

    def newest_change(self, reference: object) -> dt.datetime | None:
        """When the case last changed (opened, moved, facts, pause, resume, extension)."""
        times = [e.at for e in self.audit if e.reference == reference and e.action in CHANGES]
        return max(times, default=None)


@dataclass(frozen=True)
class Arg:
    """A drawn argument and, when no valid call may carry it, which argument it is."""

    value: Any
    bad: str | None = None


def has_cases(machine: AdversarialMachine) -> bool:
    """Whether the engine has opened a case (calls on a case need one to be interesting)."""
    return bool(machine.references)


# -- the state machine ----------------------------------------------------------------------------


class AdversarialMachine(RuleBasedStateMachine):
    """One engine on one fresh database, driven by random calls; see the module docstring."""

    #: Set by the test for each run: makes a fresh database (its URL and a way to drop it).
    new_database: ClassVar[Callable[[], tuple[str, Callable[[], None]]]]
    label: ClassVar[str] = "unlabelled"

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        url, self._drop = type(self).new_database()
        self.engine = nw.Engine(url, clock=self.clock)
        self.engine.migrate()
        #: References of the cases the engine opened, in the order it opened them.
        self.references: list[str] = []
        self._odd: frozenset[str] = frozenset()
        self._anything = False

    def teardown(self) -> None:
        """Close the engine and drop its database."""
        self.engine.close()
        self._drop()

    # -- drawing arguments ------------------------------------------------------------------------

    def _step(self, data: st.DataObject | None, names: Sequence[str] = ()) -> None:
        """Count the step and choose which of this call's arguments (``names``) may be odd.

        Many calls are good throughout (so cases travel their pathways), many have exactly one
        odd argument (so each door is tried on its own), some may be odd anywhere. Hypothesis
        draws the first of a list more often, so each rule names its most telling argument first.
        """
        STEPS[self.label] += 1
        self._odd, self._anything = frozenset(), False
        if data is None or not names:
            return
        mode = data.draw(st.sampled_from(("one odd", "good", "any", "good", "one odd")), "mode")
        if mode == "one odd":
            self._odd = frozenset({data.draw(st.sampled_from(names), label="odd argument")})
        elif mode == "any":
            self._odd, self._anything = frozenset(names), True

    def _pick(
        self,
        data: st.DataObject,
        name: str,
        good: st.SearchStrategy[Any],
        odd: st.SearchStrategy[Any],
    ) -> Any:
        """A good value for argument ``name``, or an odd one when this call's mode says so."""
        if name not in self._odd:
            return data.draw(good, label=name)
        return data.draw(st.one_of(good, odd) if self._anything else odd, label=name)

    def _reference(self, data: st.DataObject) -> Arg:
        """A case that exists, or (odd) an unknown or malformed reference."""
        value = self._pick(
            data,
            "reference",
            st.sampled_from(self.references),
            st.sampled_from((*UNKNOWN_REFERENCES, *ODD_TEXT, *NOT_TEXT)),
        )
        return Arg(value, "reference" if is_bad_identifier(value) else None)

    def _actor(self, data: st.DataObject, roles_needed: Sequence[str]) -> tuple[Arg, Arg]:
        """An actor id and roles: a role that may act, or (odd) others, none or malformed."""
        actor_id = self._pick(
            data, "actor id", st.sampled_from(ACTOR_IDS), st.sampled_from(ODD_TEXT + NOT_TEXT)
        )
        right = tuple(sorted(roles_needed)) or ("team_manager",)
        roles = self._pick(
            data,
            "roles",
            st.one_of(st.sampled_from(right).map(lambda r: {r}), st.sampled_from(right)),
            st.sampled_from(OTHER_ROLES + ODD_ROLES),
        )
        return (
            Arg(actor_id, "actor id" if is_bad_identifier(actor_id) else None),
            Arg(roles, "roles" if is_bad_roles(roles) else None),
        )

    def _at(self, data: st.DataObject, snapshot: Snapshot, reference: object) -> Arg:
        """``at=``: the clock or a little after the newest change; (odd) before it, or malformed."""
        newest = max(snapshot.newest_change(reference) or self.clock.now, self.clock.now)
        kind = self._pick(
            data,
            "at",
            st.sampled_from(("clock", "clock", "clock", "after", "other zone")),
            st.sampled_from(("before", "before", "malformed")),
        )
        if kind == "clock":
            return Arg(None)
        if kind in ("after", "other zone"):
            after = newest + dt.timedelta(minutes=data.draw(st.integers(0, 120), "minutes"))
            zone = ZoneInfo("America/Chicago") if kind == "other zone" else dt.UTC
            return Arg(after.astimezone(zone))
        if kind == "before":
            newest = snapshot.newest_change(reference) or self.clock.now
            before = data.draw(st.integers(1, 60 * 24 * 60), label="minutes before")
            return Arg(newest - dt.timedelta(minutes=before))
        return Arg(data.draw(st.sampled_from(ODD_AT), label="malformed at"), "at")

    def _fact_value(self, data: st.DataObject, spec: Any, odd: bool) -> Arg:
        """A value for a declared fact: of the right type, or (``odd``) perhaps not."""
        if spec.type == "bool":
            good: tuple[Any, ...] = (True, False)
            bad: tuple[Any, ...] = ("true", "yes", 1, 0, None)
        elif spec.type == "enum":
            good = tuple(spec.values)
            bad = ("unknown_value", spec.values[0].upper(), 5, None, "k" * TEN_KB, "nul\x00")
        else:
            day = self.clock.now.date() + dt.timedelta(days=data.draw(st.integers(-400, 30)))
            good = (day, day.isoformat(), dt.date(1990, 1, 1), "2099-12-31")
            bad = (
                day.strftime("%Y%m%d"),
                day.strftime("%G-W%V-%u"),
                dt.date(1, 1, 1),
                dt.date(9999, 12, 31),
                "0001-01-01",
                "9999-12-31",
                "2026-13-01",
                int(day.strftime("%Y%m%d")),
                dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
                "",
            )
        if not odd or data.draw(st.booleans(), label=f"{spec.name} well typed"):
            return Arg(data.draw(st.sampled_from(good), label=spec.name))
        return Arg(data.draw(st.sampled_from(bad), label=spec.name), f"fact {spec.name}")

    def _facts(self, data: st.DataObject, pathway: nw.Pathway, trigger: object) -> Arg:
        """Facts ``trigger`` needs or other declared ones; (odd) none, bad ones, not a mapping."""
        kind = self._pick(
            data,
            "facts",
            st.sampled_from(("needed", "needed", "declared")),
            st.sampled_from(("none", "declared", "declared", "not a mapping")),
        )
        if kind == "none":
            return Arg(None)
        if kind == "needed" and isinstance(trigger, str) and FACTS_FOR.get(trigger):
            return Arg(dict(FACTS_FOR[trigger]))
        if kind == "not a mapping":
            value = data.draw(
                st.sampled_from((["consent_recorded"], "consent_recorded=true", 5, {"x"})),
                label="not a mapping",
            )
            return Arg(value, "facts")
        odd = "facts" in self._odd
        declared: tuple[Any, ...] = tuple(sorted(pathway.facts))
        undeclared: tuple[Any, ...] = ("unknown_fact", "", 5, "k" * TEN_KB, "nul\x00")
        names = data.draw(
            st.lists(
                st.sampled_from(declared + undeclared if odd else declared),
                min_size=1,
                max_size=3,
                unique_by=repr,
            ),
            label="fact names",
        )
        facts: dict[Any, Any] = {}
        bad: str | None = None
        for name in names:
            spec = pathway.facts.get(name) if isinstance(name, str) else None
            if spec is None:
                facts[name] = True
                bad = bad or f"fact name {short(name, 30)}"
                continue
            value = self._fact_value(data, spec, odd)
            facts[name] = value.value
            bad = bad or value.bad
        return Arg(facts, bad)

    def _reason(self, data: st.DataObject) -> Arg:
        """A reason; (odd) none, blank, or one of a wrong type or size."""
        value = self._pick(
            data, "reason", st.sampled_from(GOOD_REASONS), st.sampled_from(ODD_REASONS)
        )
        return Arg(value, "reason" if is_bad_reason(value) else None)

    def _expected_version(self, data: st.DataObject, case: nw.Case | None) -> tuple[Arg, bool]:
        """``expected_version``: none or right; (odd) wrong or of a wrong type. And if wrong."""
        version = case.version if case is not None else 1
        value = self._pick(
            data,
            "expected_version",
            st.sampled_from((None, version)),
            st.sampled_from((version + 1, version - 1, "1", True, 1.0, 2**63)),
        )
        if value is None:
            return Arg(None), False
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return Arg(value, "expected_version"), value == 0
        return Arg(value), value != version

    @staticmethod
    def _pathway(case: nw.Case | None) -> nw.Pathway:
        return PATHWAYS[case.pathway_id if case is not None else "nim-uk-england"]

    # -- calling the engine -----------------------------------------------------------------------

    def _snapshot(self, reference: object) -> Snapshot:
        """Every case, the deadlines of ``reference`` (if it is a case) and the whole audit log."""
        cases = tuple(self.engine.cases(open_only=False))
        deadlines = None
        if isinstance(reference, str) and any(c.reference == reference for c in cases):
            deadlines = tuple(self.engine.deadlines(reference))
        return Snapshot(cases, deadlines, tuple(self.engine.audit()))

    def _attempt(
        self,
        what: str,
        call: Callable[[], Any],
        *,
        before: Snapshot,
        reference: object,
        args: Sequence[Arg] = (),
        at: Arg | None = None,
        wrong_version: bool = False,
        must_fail: str | None = None,
    ) -> Any:
        """Make one call and check properties 1-3 on what it did; its result, or None."""
        bad = [a.bad for a in args if a.bad is not None]
        at_before = self._before_newest(before, reference, at)
        try:
            result = call()
        except nw.NimWorkflowError as exc:
            self._check_refusal(what, exc, before, reference)
            if bad and not isinstance(exc, QUIET_REFUSALS):
                raise AssertionError(
                    f"property 3: {what} carries invalid {bad} but was refused with "
                    f"{type(exc).__name__} (an audited denial), not InvalidInput: {exc}"
                ) from exc
            if at_before is not None and not (
                isinstance(exc, nw.InvalidInput)
                or (wrong_version and isinstance(exc, nw.ConcurrentUpdate))
            ):
                raise AssertionError(
                    f"property 3: {what} at {at_before} is before the case's newest change "
                    f"({before.newest_change(reference)}) but was refused with "
                    f"{type(exc).__name__}, not InvalidInput: {exc}"
                ) from exc
            return None
        except Exception as exc:
            raise AssertionError(
                f"property 1: {what} raised {type(exc).__module__}.{type(exc).__name__}, "
                f"not a nw.NimWorkflowError: {short(str(exc), 300)}"
            ) from exc
        if bad:
            raise AssertionError(f"property 3: {what} carries invalid {bad} and was accepted")
        if at_before is not None:
            raise AssertionError(
                f"property 3: {what} at {at_before} is before the case's newest change "
                f"({before.newest_change(reference)}) and was accepted"
            )
        if must_fail is not None:
            raise AssertionError(f"{what} must be refused ({must_fail}) and was accepted")
        return result

    def _before_newest(
        self, before: Snapshot, reference: object, at: Arg | None
    ) -> dt.datetime | None:
        """The call's time, if it is before the case's newest change (so must be refused)."""
        if at is None or at.bad is not None:
            return None
        when = self.clock.now if at.value is None else at.value
        newest = before.newest_change(reference)
        return when if newest is not None and when < newest else None

    def _check_refusal(
        self, what: str, exc: nw.NimWorkflowError, before: Snapshot, reference: object
    ) -> None:
        """Property 2: the refusal changed nothing but, for a refused action, one denial."""
        after = self._snapshot(reference)
        refused = f"{what} refused with {type(exc).__name__} ({short(str(exc), 200)})"
        assert after.cases == before.cases, f"property 2: {refused} changed a case"
        assert after.deadlines == before.deadlines, f"property 2: {refused} changed deadlines"
        assert after.audit[: len(before.audit)] == before.audit, (
            f"property 2: {refused} rewrote the audit log"
        )
        new = after.audit[len(before.audit) :]
        if isinstance(exc, nw.ActionRefused):
            assert [e.action for e in new] == ["denied"], (
                f"property 2: {refused} wrote {[e.action for e in new]}, not one denial"
            )
            assert new[0].reference == reference, (
                f"property 2: {refused} audited its denial on {short(new[0].reference)}"
            )
        else:
            assert not new, f"property 2: {refused} wrote audit events {new}"

    # -- rules ------------------------------------------------------------------------------------

    @initialize(
        cases=st.lists(
            st.tuples(
                st.sampled_from(sorted(PATHWAYS)), st.sampled_from(OPEN_STAGES), st.booleans()
            ),
            min_size=1,
            max_size=4,
        )
    )
    def open_first_cases(self, cases: list[tuple[str, str, bool]]) -> None:
        """Start each example with good cases in random stages, some with their clocks running."""
        for number, (pathway, stage, clocks) in enumerate(cases, start=1):
            site = PATHWAY_SITE[pathway]
            reference = f"{PREFIX[site]}-2025-{number:04d}"
            started = {fact: T0.date() - dt.timedelta(days=30) for fact in CLOCK_FACTS[pathway]}
            self.engine.open_case(
                reference,
                pathway=pathway,
                site=site,
                actor=nw.Actor("sw-017", roles={"social_worker"}),
                facts=started if clocks else None,
            )
            for trigger in PATH_TO[stage]:
                self.engine.fire(reference, trigger, actor=EVERYONE, facts=FACTS_FOR[trigger])
            self.references.append(reference)

    @rule(data=st.data())
    def open_case(self, data: st.DataObject) -> None:
        """Open a case: good, clashing, odd and non-text references, sites, pathways and facts."""
        self._step(data, ("site", "reference", "pathway", "facts", "roles", "actor id", "at"))
        site = self._pick(
            data,
            "site",
            st.sampled_from(SITES),
            st.sampled_from(("atlantis", "London", *ODD_TEXT, *NOT_TEXT)),
        )
        good_site = site if site in SITES else "london"
        number = data.draw(st.integers(1, 40), label="number")
        reference = self._pick(
            data,
            "reference",
            st.just(f"{PREFIX[good_site]}-2026-{number:04d}"),
            st.sampled_from((*self.references, *ODD_TEXT, *NOT_TEXT)),
        )
        by_site = {s: p for p, s in PATHWAY_SITE.items()}
        pathway = self._pick(
            data,
            "pathway",
            st.just(by_site[good_site]),
            st.sampled_from((*sorted(PATHWAYS), "nim-uk-wales", "", 5, None, "k" * TEN_KB)),
        )
        snapshot = self._snapshot(reference)
        actor_id, roles = self._actor(data, ACTION_ROLES["open_case"])
        at = self._at(data, snapshot, None)
        definition = PATHWAYS.get(pathway) if isinstance(pathway, str) else None
        facts = self._facts(data, definition or PATHWAYS[by_site[good_site]], None)
        case = self._attempt(
            describe(
                "open_case",
                reference,
                pathway=pathway,
                site=site,
                actor=(actor_id.value, roles.value),
                at=at.value,
                facts=facts.value,
            ),
            lambda: self.engine.open_case(
                reference,
                pathway=pathway,
                site=site,
                actor=nw.Actor(actor_id.value, roles=roles.value),
                at=at.value,
                facts=facts.value,
            ),
            before=snapshot,
            reference=reference,
            args=[
                Arg(reference, "reference" if is_bad_identifier(reference) else None),
                # Only the declared sites are good: "atlantis" or "London" must be refused.
                Arg(site, "site" if is_bad_identifier(site) or site not in SITES else None),
                # A pathway is refused at a site that does not run it, as when it is unknown.
                Arg(
                    pathway,
                    "pathway"
                    if definition is None or (site in SITES and pathway != by_site[site])
                    else None,
                ),
                actor_id,
                roles,
                at,
                facts,
            ],
        )
        if case is not None:
            self.references.append(case.reference)

    @precondition(has_cases)
    @rule(data=st.data())
    def fire(self, data: st.DataObject) -> None:
        """Fire real, unknown and odd triggers as random actors, with and without what is needed."""
        names = ("trigger", "roles", "facts", "reason", "at", "expected_version", "actor id")
        self._step(data, (*names, "reference"))
        reference = self._reference(data)
        snapshot = self._snapshot(reference.value)
        case = snapshot.case(reference.value)
        pathway = self._pathway(case)
        stage = case.stage if case is not None else pathway.initial_stage
        valid = pathway.transitions_from(stage)
        # Forward moves are likelier than closing ones, so cases get far along their pathways.
        forward = [t.trigger for t in valid if t.dest not in pathway.final_stages]
        weighted = forward * 4 + [t.trigger for t in valid] or list(TRIGGERS)
        trigger = self._pick(
            data,
            "trigger",
            st.sampled_from(weighted),
            st.sampled_from((*TRIGGERS, *UNKNOWN_TRIGGERS, *ODD_TEXT, *NOT_TEXT)),
        )
        transition = next((t for t in valid if t.trigger == trigger), None)
        actor_id, roles = self._actor(
            data, sorted(transition.roles) if transition is not None else ()
        )
        reason = self._reason(data)
        at = self._at(data, snapshot, reference.value)
        facts = self._facts(data, pathway, trigger)
        version, wrong_version = self._expected_version(data, case)
        self._attempt(
            describe(
                "fire",
                reference.value,
                trigger,
                actor=(actor_id.value, roles.value),
                reason=reason.value,
                at=at.value,
                facts=facts.value,
                expected_version=version.value,
            ),
            lambda: self.engine.fire(
                reference.value,
                trigger,
                actor=nw.Actor(actor_id.value, roles=roles.value),
                reason=reason.value,
                at=at.value,
                facts=facts.value,
                expected_version=version.value,
            ),
            before=snapshot,
            reference=reference.value,
            args=[
                reference,
                Arg(trigger, "trigger" if is_bad_identifier(trigger) else None),
                actor_id,
                roles,
                reason,
                at,
                facts,
                version,
            ],
            at=at,
            wrong_version=wrong_version,
        )

    @precondition(has_cases)
    @rule(data=st.data())
    def record(self, data: st.DataObject) -> None:
        """Record facts of right and wrong types, names and dates, as random actors."""
        self._step(data, ("facts", "at", "roles", "expected_version", "actor id", "reference"))
        reference = self._reference(data)
        snapshot = self._snapshot(reference.value)
        case = snapshot.case(reference.value)
        pathway = self._pathway(case)
        actor_id, roles = self._actor(data, ACTION_ROLES["record"])
        at = self._at(data, snapshot, reference.value)
        stage = case.stage if case is not None else pathway.initial_stage
        upcoming = [t.trigger for t in pathway.transitions_from(stage)] or list(TRIGGERS)
        needed_by = data.draw(st.sampled_from(upcoming), label="facts needed by")
        facts = self._facts(data, pathway, needed_by)
        version, wrong_version = self._expected_version(data, case)
        self._attempt(
            describe(
                "record",
                reference.value,
                facts.value,
                actor=(actor_id.value, roles.value),
                at=at.value,
                expected_version=version.value,
            ),
            lambda: self.engine.record(
                reference.value,
                facts.value,
                actor=nw.Actor(actor_id.value, roles=roles.value),
                at=at.value,
                expected_version=version.value,
            ),
            before=snapshot,
            reference=reference.value,
            args=[reference, actor_id, roles, at, facts, version],
            at=at,
            wrong_version=wrong_version,
        )

    @precondition(has_cases)
    @rule(data=st.data())
    def pause(self, data: st.DataObject) -> None:
        """Pause a case, with good, missing and odd reasons, as random actors."""
        self._step(data, ("reason", "at", "roles", "actor id", "reference"))
        reference = self._reference(data)
        snapshot = self._snapshot(reference.value)
        actor_id, roles = self._actor(data, ACTION_ROLES["pause"])
        reason = self._reason(data)
        at = self._at(data, snapshot, reference.value)
        self._attempt(
            describe(
                "pause",
                reference.value,
                actor=(actor_id.value, roles.value),
                reason=reason.value,
                at=at.value,
            ),
            lambda: self.engine.pause(
                reference.value,
                actor=nw.Actor(actor_id.value, roles=roles.value),
                reason=reason.value,
                at=at.value,
            ),
            before=snapshot,
            reference=reference.value,
            args=[reference, actor_id, roles, reason, at],
            at=at,
        )

    @precondition(has_cases)
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        """Resume a case, paused or not, with and without a reason, as random actors."""
        self._step(data, ("at", "reason", "roles", "actor id", "reference"))
        reference = self._reference(data)
        snapshot = self._snapshot(reference.value)
        actor_id, roles = self._actor(data, ACTION_ROLES["resume"])
        at = self._at(data, snapshot, reference.value)
        reason = self._reason(data) if data.draw(st.booleans(), "with reason") else None
        extra = {"reason": reason.value} if reason is not None else {}
        self._attempt(
            describe(
                "resume", reference.value, actor=(actor_id.value, roles.value), at=at.value, **extra
            ),
            lambda: self.engine.resume(
                reference.value,
                actor=nw.Actor(actor_id.value, roles=roles.value),
                at=at.value,
                **extra,
            ),
            before=snapshot,
            reference=reference.value,
            args=[reference, actor_id, roles, at, *([reason] if reason is not None else [])],
            at=at,
        )

    @precondition(has_cases)
    @rule(data=st.data())
    def extend_deadline(self, data: st.DataObject) -> None:
        """Extend deadlines by good, too long, zero and wrongly typed lengths."""
        self._step(data, ("by", "deadline", "roles", "reason", "at", "actor id", "reference"))
        reference = self._reference(data)
        snapshot = self._snapshot(reference.value)
        pathway = self._pathway(snapshot.case(reference.value))
        extensible = [
            d.name
            for d in snapshot.deadlines or ()
            if d.status == "open" and pathway.rule(d.name).extension is not None
        ]
        name = self._pick(
            data,
            "deadline",
            st.sampled_from(extensible or [r.name for r in pathway.deadlines]),
            st.sampled_from((*DEADLINE_NAMES, "no_such_deadline", *ODD_TEXT, *NOT_TEXT)),
        )
        try:
            extension = pathway.rule(name).extension if isinstance(name, str) else None
        except KeyError:
            extension = None
        actor_id, roles = self._actor(data, sorted(extension.roles) if extension else ())
        reason = self._reason(data)
        at = self._at(data, snapshot, reference.value)
        by_kind = self._pick(
            data, "by", st.just("good"), st.sampled_from(("too long", "malformed", "malformed"))
        )
        if by_kind == "good":
            by = Arg(data.draw(st.sampled_from(GOOD_BY), label="by value"))
        elif by_kind == "too long":
            by = Arg(data.draw(st.sampled_from(TOO_LONG_BY), label="by value"))
        else:
            by = Arg(data.draw(st.sampled_from(ODD_BY), label="by value"), "by")
        self._attempt(
            describe(
                "extend_deadline",
                reference.value,
                name,
                actor=(actor_id.value, roles.value),
                reason=reason.value,
                at=at.value,
                by=by.value,
            ),
            lambda: self.engine.extend_deadline(
                reference.value,
                name,
                actor=nw.Actor(actor_id.value, roles=roles.value),
                reason=reason.value,
                at=at.value,
                by=by.value,
            ),
            before=snapshot,
            reference=reference.value,
            args=[
                reference,
                Arg(name, "deadline" if is_bad_identifier(name) else None),
                actor_id,
                roles,
                reason,
                at,
                by,
            ],
            at=at,
            must_fail="by= is longer than any rule's step" if by_kind == "too long" else None,
        )

    @rule(data=st.data())
    def process_due(self, data: st.DataObject) -> None:
        """Fire the alarms due by the current time (as ``at=`` or the clock); odd ``at=`` too."""
        self._step(data, ("at",))
        at = self._pick(
            data,
            "at",
            st.sampled_from((None, self.clock.now)),
            st.sampled_from(ODD_AT),
        )
        self._attempt(
            describe("process_due", at=at),
            lambda: self.engine.process_due(at=at),
            before=self._snapshot(None),
            reference=None,
            args=[Arg(at, "at" if at not in (None, self.clock.now) else None)],
        )

    @rule(
        hours=st.one_of(
            st.integers(1, 48),
            st.integers(24, 24 * 31),
            st.integers(24 * 31, 24 * 120),
            st.integers(1, 48),
            st.integers(-24 * 20, -1),
        )
    )
    def move_clock(self, hours: int) -> None:
        """Move the clock forwards (hours to months) or backwards (hours to weeks)."""
        self._step(None)
        self.clock.now += dt.timedelta(hours=hours)

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        """Read cases, deadlines, history and the audit log with odd arguments: nothing written."""
        self._step(data, ("reference", "filter", "after_seq", "at", "actor id", "roles"))
        reference = self._reference(data)
        snapshot = self._snapshot(reference.value)
        at = self._at(data, snapshot, None)
        actor_id, roles = self._actor(data, ("team_manager",))
        selected = self._pick(
            data,
            "filter",
            st.sampled_from((None, *SITES, "referral", "closed", "atlantis")),
            st.sampled_from(ODD_TEXT + NOT_TEXT),
        )
        after_seq = self._pick(
            data,
            "after_seq",
            st.sampled_from((None, 0, 1, 5)),
            st.sampled_from((-1, "1", True, 1.5, 2**31, 2**63, 10**30)),
        )
        which = data.draw(
            st.sampled_from(
                (
                    "case",
                    "deadlines",
                    "history",
                    "allowed_triggers",
                    "audit",
                    "cases by site",
                    "cases by stage",
                    "due",
                    "overdue",
                )
            ),
            label="read",
        )
        ref = reference.value
        month_on = self.clock.now + dt.timedelta(days=31)
        calls: dict[str, tuple[str, Callable[[], Any]]] = {
            "case": (describe("case", ref), lambda: self.engine.case(ref)),
            "deadlines": (describe("deadlines", ref), lambda: self.engine.deadlines(ref)),
            "history": (
                describe("history", ref, at=at.value),
                lambda: self.engine.history(ref, at=at.value),
            ),
            "allowed_triggers": (
                describe("allowed_triggers", ref, actor=(actor_id.value, roles.value)),
                lambda: self.engine.allowed_triggers(
                    ref, nw.Actor(actor_id.value, roles=roles.value)
                ),
            ),
            "audit": (
                describe("audit", ref, after_seq=after_seq),
                lambda: self.engine.audit(ref, after_seq=after_seq),
            ),
            "cases by site": (
                describe("cases", site=selected),
                lambda: self.engine.cases(site=selected, open_only=False),
            ),
            "cases by stage": (
                describe("cases", stage=selected),
                lambda: self.engine.cases(stage=selected),
            ),
            "due": (
                describe("due", before=at.value or month_on, site=selected),
                lambda: self.engine.due(before=at.value or month_on, site=selected),
            ),
            "overdue": (
                describe("overdue", at=at.value, site=selected),
                lambda: self.engine.overdue(at=at.value, site=selected),
            ),
        }
        what, call = calls[which]
        self._attempt(what, call, before=snapshot, reference=ref)

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def cases_are_consistent(self) -> None:
        """Property 4: stages, closing, open deadlines and the audit chain, after every step."""
        for case in self.engine.cases(open_only=False):
            pathway = self.engine.pathway(case.pathway_id, case.pathway_version)
            stages = {stage.id for stage in pathway.stages}
            assert case.stage in stages, f"{case.reference}: stage {case.stage!r} not in {stages}"
            final = case.stage in pathway.final_stages
            assert final == (case.closed_at is not None), (
                f"{case.reference}: stage {case.stage!r} (final: {final}) with closed_at "
                f"{case.closed_at}"
            )
            for d in self.engine.deadlines(case.reference):
                if d.status != "open":
                    continue
                assert case.closed_at is None, f"{case.reference} is closed with {d} open"
                if d.kind == "stage":
                    assert d.stage == case.stage, (
                        f"{case.reference} in {case.stage!r} has another stage's deadline open: {d}"
                    )
                else:
                    assert d.kind in ("clock", "window"), f"{case.reference}: {d}"
        report = self.engine.verify_audit(deep=True)
        assert report.ok, f"the audit chain does not verify: {report.problems}"


# -- running it -----------------------------------------------------------------------------------

DatabaseFactory = Callable[[], tuple[str, Callable[[], None]]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseFactory]:
    """Makes a fresh empty database per example (and a way to drop it), on each backend."""
    if request.param == "sqlite":
        numbers = iter(range(1_000_000_000))

        def new_sqlite() -> tuple[str, Callable[[], None]]:
            path = tmp_path / f"example-{next(numbers)}.db"
            return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)

        yield new_sqlite
        return
    # conftest's factory creates each database and drops any left at the end of the test; each
    # example drops its own as soon as it ends, so a long run does not pile them up.
    new_pg_database: Callable[[], str] = request.getfixturevalue("new_pg_database")
    admin: sa.Engine = request.getfixturevalue("_pg_admin_engine")

    def new_postgres() -> tuple[str, Callable[[], None]]:
        url = new_pg_database()
        name = sa.make_url(url).database

        def drop() -> None:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        return url, drop

    yield new_postgres


def run_machine(
    database_factory: DatabaseFactory, label: str, steps: int, steps_per_example: int
) -> int:
    """Run the state machine until at least ``steps`` steps ran; return how many did.

    Hypothesis may end an example early, so the examples are run in rounds until the steps are
    done; each round is derandomized (the same programs on every database and in every run) and
    named apart, so each round draws programs of its own.
    """
    STEPS[label] = 0
    for round_number in range(10):
        missing = steps - STEPS[label]
        if missing <= 0:
            break
        machine = type(
            f"AdversarialRound{round_number}",
            (AdversarialMachine,),
            {"new_database": staticmethod(database_factory), "label": label},
        )
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=math.ceil(missing / steps_per_example),
                stateful_step_count=steps_per_example,
                deadline=None,
                derandomize=True,
                database=None,
                print_blob=False,
                suppress_health_check=[
                    HealthCheck.too_slow,
                    HealthCheck.data_too_large,
                    HealthCheck.filter_too_much,
                ],
            ),
        )
    return STEPS[label]


def test_adversarial_calls_leave_engine_consistent(
    database_factory: DatabaseFactory, request: pytest.FixtureRequest
) -> None:
    """Odd calls raise only library errors, refusals change nothing, invariants always hold."""
    ran = run_machine(database_factory, request.node.name, CI_STEPS, CI_STEPS_PER_EXAMPLE)
    assert ran >= CI_STEPS, f"only {ran} of {CI_STEPS} steps ran"


@pytest.mark.soak
def test_adversarial_soak(
    database_factory: DatabaseFactory, request: pytest.FixtureRequest
) -> None:
    """The long run: the same properties hold over 20,000 steps on each database."""
    ran = run_machine(database_factory, request.node.name, SOAK_STEPS, SOAK_STEPS_PER_EXAMPLE)
    assert ran >= SOAK_STEPS, f"only {ran} of {SOAK_STEPS} steps ran"
