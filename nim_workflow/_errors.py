"""The exceptions nim-workflow raises, and only those.

Every exception is a :class:`NimWorkflowError`; each also subclasses the builtin it means, so a
caller may catch either (``except nw.CaseNotFound`` or ``except LookupError``)::

    NimWorkflowError (Exception)
    ├── PathwayError (ValueError)            a pathway definition is invalid; lists every problem
    ├── InvalidInput (ValueError)            a bad argument: naive datetime, undeclared fact, ...
    │   └── UnknownSite                      no declared site has that id; suggests the nearest
    ├── CaseNotFound (LookupError)           no case has that reference
    ├── CaseExists (ValueError)              a case with that reference is already open
    ├── StaffNotFound (LookupError)          nobody on the staff roster has that id
    ├── ActionRefused                        the case is fine, the action is not allowed now
    │   ├── TransitionNotAllowed             trigger not valid from the current stage
    │   ├── RequirementsNotMet               required facts or a reason are missing
    │   ├── PermissionDenied (PermissionError) the actor lacks every role the action needs
    │   ├── CasePaused                       the case's clock is stopped
    │   ├── ExtensionNotAllowed              the deadline's rule allows no (further) extension
    │   └── OutsideWindow                    a window's fact recorded before the window opens
    └── ConcurrentUpdate                     someone else changed the case first

Each carries its context as attributes (``reference``, ``trigger``, ``roles``, ...), so hosts can
build their own messages without parsing ours.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class NimWorkflowError(Exception):
    """The base of every error this library raises."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a pathway file: where it is, which field, and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}"


class PathwayError(NimWorkflowError, ValueError):
    """A pathway definition is invalid. ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in pathway definition"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class StaffNotFound(NimWorkflowError, LookupError):
    """Nobody on the staff roster has this id (or they were removed from it)."""

    def __init__(self, staff_id: str, *, removed: bool = False) -> None:
        self.staff_id = staff_id
        self.removed = removed
        super().__init__(
            f"{staff_id} was removed from the staff roster"
            if removed
            else f"{staff_id} is not on the staff roster"
        )


class InvalidInput(NimWorkflowError, ValueError):
    """An argument is not acceptable: a naive datetime, an undeclared fact, a bad value."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class UnknownSite(InvalidInput):
    """No declared site has this id; the nearest declared one is suggested.

    ``known`` lists the declared sites; ``suggestion`` is the nearest of them (compared
    case-insensitively), or ``None`` when none is near.

    ``field`` is the argument that named it: ``"site"`` unless given (``"closures"``, ...).
    """

    def __init__(self, site: str, known: Iterable[str], *, field: str = "site") -> None:
        self.site = site
        self.known: tuple[str, ...] = tuple(sorted(known))
        self.suggestion: str | None = nearest_site(site, self.known)
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion is not None else ""
        declared = ", ".join(self.known) if self.known else "none"
        prefix = "" if field == "site" else f"{field}: "
        super().__init__(
            f"{prefix}unknown site {site!r}{hint} (declared sites: {declared})", field=field
        )


def nearest_site(site: str, known: Iterable[str]) -> str | None:
    """The declared site nearest to ``site`` (case-insensitive, ``difflib``), or ``None``."""
    by_folded: dict[str, str] = {}
    for name in sorted(known):
        by_folded.setdefault(name.casefold(), name)
    found = difflib.get_close_matches(site.casefold(), list(by_folded), n=1)
    return by_folded[found[0]] if found else None


class CaseNotFound(NimWorkflowError, LookupError):
    """No case has this reference."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"no case with reference {reference!r}")


class CaseExists(NimWorkflowError, ValueError):
    """A case with this reference already exists."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"a case with reference {reference!r} already exists")


class FamilyNotFound(NimWorkflowError, LookupError):
    """No family has this reference."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"no family with reference {reference!r}")


class FamilyExists(NimWorkflowError, ValueError):
    """A family with this reference already exists."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        super().__init__(f"a family with reference {reference!r} already exists")


class ActionRefused(NimWorkflowError):
    """The action is not allowed on this case now; the refusal is audited as ``denied``."""

    reference: str


class TransitionNotAllowed(ActionRefused):
    """The trigger is not valid from the case's current stage."""

    def __init__(self, reference: str, trigger: str, stage: str, allowed: Iterable[str]) -> None:
        self.reference = reference
        self.trigger = trigger
        self.stage = stage
        self.allowed: tuple[str, ...] = tuple(sorted(allowed))
        valid = ", ".join(self.allowed) if self.allowed else "none"
        super().__init__(
            f"case {reference}: {trigger!r} is not valid from stage {stage!r}; "
            f"valid triggers there: {valid}"
        )


class RequirementsNotMet(ActionRefused):
    """Facts the transition requires are missing (or a required reason was not given)."""

    def __init__(self, reference: str, action: str, missing: Iterable[str]) -> None:
        self.reference = reference
        self.action = action
        self.missing: tuple[str, ...] = tuple(missing)
        needs = []
        facts = [name for name in self.missing if name != "reason"]
        if facts:
            needs.append(f"facts not yet recorded: {', '.join(facts)}")
        if "reason" in self.missing:
            needs.append("a reason")
        super().__init__(f"case {reference}: {action!r} needs {'; and '.join(needs)}")


class PermissionDenied(ActionRefused, PermissionError):
    """The actor holds none of the roles the action requires."""

    def __init__(
        self,
        reference: str,
        action: str,
        actor_id: str,
        required: Iterable[str],
        *,
        subject: str = "case",
    ) -> None:
        self.reference = reference
        self.action = action
        self.actor_id = actor_id
        self.required: tuple[str, ...] = tuple(sorted(required))
        super().__init__(
            f"{subject} {reference}: {actor_id} may not {action}; it needs one of the roles "
            f"{', '.join(self.required) or '(none: nobody may)'}"
        )


class CasePaused(ActionRefused):
    """The case's clock is stopped; resume it before firing transitions."""

    def __init__(self, reference: str, action: str) -> None:
        self.reference = reference
        self.action = action
        super().__init__(f"case {reference} is paused; resume it before {action!r}")


class ExtensionNotAllowed(ActionRefused):
    """The deadline cannot be extended: its rule allows no extension, or the limit is reached."""

    def __init__(self, reference: str, deadline: str, why: str) -> None:
        self.reference = reference
        self.deadline = deadline
        self.why = why
        super().__init__(f"case {reference}: deadline {deadline!r} cannot be extended: {why}")


class OutsideWindow(ActionRefused):
    """A window's settling fact (a research visit held) is dated before the window opens."""

    def __init__(
        self,
        reference: str,
        window: str,
        fact: str,
        day: str,
        opens_on: str,
        *,
        subject: str = "case",
    ) -> None:
        self.reference = reference
        self.window = window
        self.fact = fact
        self.day = day
        self.opens_on = opens_on
        super().__init__(
            f"{subject} {reference}: {fact} {day} is before window {window!r} opens on {opens_on}"
        )


class AlreadyAllocated(ActionRefused):
    """The family was allocated already: the portal's result is recorded once, never changed."""

    def __init__(self, reference: str, arm: str, allocation_id: str) -> None:
        self.reference = reference
        self.arm = arm
        self.allocation_id = allocation_id
        super().__init__(
            f"family {reference} is already allocated to arm {arm!r} "
            f"(allocation {allocation_id}); an allocation is recorded once"
        )


class ConcurrentUpdate(NimWorkflowError):
    """Someone else changed the case first; re-read it and decide again."""

    def __init__(self, reference: str, expected: int | None, actual: int | None) -> None:
        self.reference = reference
        self.expected = expected
        self.actual = actual
        if expected is not None and actual is not None:
            detail = f"expected version {expected}, found {actual}"
        else:
            detail = "another writer committed a change to it first"
        super().__init__(f"case {reference} was changed concurrently: {detail}")
