"""Read a trial file, check it against the pathways and sites it names, compile a :class:`Trial`.

Loading is the pathway loader's pipeline and reuses its parse step and its readers of single
values (strings, names, durations, lists), so a trial file's problems read like a pathway file's:

1. *parse*: the YAML becomes a tree of ``_Node`` values, each with its line and field path.
2. *check*: every section is read against the format in ``_model``, and against the pathways and
   sites the trial runs on (each arm's pathway at each site is known, the site runs it, their
   calendars agree, a visit's anchor is a date fact of every arm's pathway), and each trial
   action's permitted roles against the declared ones; each mistake becomes a :class:`Problem`
   and checking goes on, so one run reports every problem in the file.
3. *compile*: when nothing is wrong, the checked values become the frozen :class:`Trial`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar

from nim_workflow._errors import PathwayError, Problem
from nim_workflow._pathway._bundled import bundled_pathways
from nim_workflow._pathway._loader import (
    DOCUMENT,
    FILE,
    _Compiler,
    _listing,
    _Node,
    _parse,
    _span_bounds,
    _surely_longer,
)
from nim_workflow._pathway._model import Duration, Pathway
from nim_workflow._sites import bundled_sites
from nim_workflow._trial._model import (
    RANDOMISED,
    STATUSES,
    TRIAL_ACTIONS,
    ReminderWhen,
    Trial,
    TrialArm,
    VisitReminder,
    VisitRule,
    VisitUnit,
)
from nim_workflow._values import Site

__all__ = ["load_trial", "load_trial_text"]

_TOP_KEYS = (
    *("id", "title", "registration", "unit", "arms", "visits", "statuses"),
    *("roles", "permissions"),
)
_PER: tuple[VisitUnit, ...] = ("child", "family")
_WHEN: tuple[ReminderWhen, ...] = ("opens", "before_close")
_T = TypeVar("_T")


def load_trial(
    path: str | os.PathLike[str],
    *,
    pathways: Mapping[str, Pathway] | None = None,
    sites: Mapping[str, Site] | None = None,
) -> Trial:
    """Load, check and compile the trial file at ``path``.

    Arms are checked against ``pathways`` and ``sites`` (default: the bundled ones). Raises
    :class:`PathwayError` listing every problem in the file, in file order.
    """
    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        problem = Problem(file=source, line=None, field=FILE, message=f"cannot read it: {reason}")
        raise PathwayError([problem]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problem = Problem(file=source, line=line, field=DOCUMENT, message="is not UTF-8 text")
        raise PathwayError([problem]) from exc
    return _load(text, source, hashlib.sha256(data).hexdigest(), pathways, sites)


def load_trial_text(
    text: str,
    source: str = "<string>",
    *,
    pathways: Mapping[str, Pathway] | None = None,
    sites: Mapping[str, Site] | None = None,
) -> Trial:
    """Check and compile a trial given as YAML text; ``source`` names it in problems."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _load(text, source, digest, pathways, sites)


def _load(
    text: str,
    source: str,
    content_hash: str,
    pathways: Mapping[str, Pathway] | None,
    sites: Mapping[str, Site] | None,
) -> Trial:
    if pathways is None:
        pathways = bundled_pathways()
    if sites is None:
        sites = bundled_sites()
    problems: list[Problem] = []
    root = _parse(text, source, problems)
    trial = None
    if root is None:
        last = problems[-1] if problems else None
        if last is not None and last.message.startswith("is empty"):
            # The parse step speaks of pathway files; say what a trial file holds instead.
            problems[-1] = Problem(
                source,
                last.line,
                DOCUMENT,
                f"is empty; a trial file is a mapping with the keys {', '.join(_TOP_KEYS)}",
            )
    else:
        trial = _Checker(source, problems, pathways, sites).compile_trial(root, content_hash)
    if problems or trial is None:
        # Stable sort: problems found on one line keep the order they were found in.
        raise PathwayError(sorted(problems, key=lambda p: p.line or 0))
    return trial


def _surely_no_longer(shorter: Duration, longer: Duration) -> bool:
    """Whether ``shorter`` spans no more days than ``longer`` wherever both start."""
    if shorter.unit == longer.unit:
        return shorter.amount <= longer.amount
    return _span_bounds(shorter)[1] <= _span_bounds(longer)[0]


class _Checker(_Compiler):
    """Reads the ``_Node`` tree of one trial file, reporting every problem it finds.

    It inherits the pathway compiler's readers of single values (``_mapping``, ``_string``,
    ``_name``, ``_duration``...), so the same mistake reads the same in both kinds of file; the
    pathway sections are not used.
    """

    def __init__(
        self,
        source: str,
        problems: list[Problem],
        pathways: Mapping[str, Pathway],
        sites: Mapping[str, Site],
    ) -> None:
        super().__init__(source, problems)
        self._known_pathways = pathways
        self._known_sites = sites
        # (arm id, site id) -> the pathway the arm follows there, for those that could be read,
        # and the node that names it.
        self._arm_pathways: dict[tuple[str, str], tuple[Pathway, _Node]] = {}

    def compile_trial(self, root: _Node, content_hash: str) -> Trial | None:
        """Check the whole file; return the compiled trial, or ``None`` if anything is wrong."""
        top = self._mapping(root, _TOP_KEYS)
        if top is None:
            return None

        def section(key: str, read: Callable[[_Node], _T | None]) -> _T | None:
            node = top.get(key)
            return None if node is None else read(node)

        trial_id = section("id", self._trial_id)
        title = section("title", self._string)
        registration = section("registration", self._string)
        unit = section("unit", self._unit)
        arms = section("arms", self._arms)
        visits = section("visits", self._visits)
        statuses = section("statuses", self._statuses)
        # Roles first: the permissions refer to them.
        roles = section("roles", self._read_roles)
        permissions = section("permissions", self._permissions)
        if self._problems:
            return None
        if (
            trial_id is None
            or title is None
            or registration is None
            or unit is None
            or arms is None
            or visits is None
            or statuses is None
            or roles is None
            or permissions is None
        ):
            # Unreachable when no problem was reported; kept so a reader bug cannot pass quietly.
            raise AssertionError("a section failed without reporting a problem")
        return Trial(
            id=trial_id,
            title=title,
            registration=registration,
            unit=unit,
            arms=arms,
            visits=visits,
            statuses=statuses,
            roles=roles,
            permissions=permissions,
            source=self._source,
            content_hash=content_hash,
        )

    # Header.

    def _trial_id(self, node: _Node) -> str | None:
        return self._hyphenated_id(node, "trial")

    def _unit(self, node: _Node) -> Literal["family"] | None:
        text = self._string(node)
        if text == "family":
            return "family"
        if text is not None:
            self._bad(
                node,
                f"unknown unit {text!r}; a trial randomises families (sibling groups), "
                "so the unit is family",
            )
        return None

    # Arms.

    def _arms(self, node: _Node) -> dict[str, TrialArm] | None:
        entries = self._free_mapping(node)
        if entries is None:
            return None
        arms: dict[str, TrialArm] = {}
        # arm id -> (its pathways node, the site ids it names), to check every arm covers a site.
        named: dict[str, tuple[_Node, set[str]]] = {}
        sound = True
        for arm_id, child in entries.items():
            arm = self._arm(arm_id, child, named)
            sound = self._key_name(arm_id, child, "arm") and arm is not None and sound
            if arm is not None:
                arms[arm_id] = arm
        if len(entries) < 2:
            self._bad(node, f"a trial compares two arms at least, not {len(entries)}")
            return None
        every_site = set().union(*(found for _, found in named.values()))
        for pathways_node, found in named.values():
            missing = sorted(every_site - found)
            if missing:
                others = sorted(other for other, (_, theirs) in named.items() if theirs - found)
                self._bad(
                    pathways_node,
                    f"names no pathway at {_sites_phrase(missing)}, where the trial runs "
                    f"(arm {_listing(map(repr, others))} names one); every arm needs a pathway "
                    "at every site",
                )
                sound = False
        sound = self._arms_differ() and sound
        return arms if sound else None

    def _arms_differ(self) -> bool:
        """Two arms following one pathway at a site would compare a service with itself."""
        first: dict[tuple[str, str], str] = {}
        ok = True
        for (arm_id, site_id), (pathway, node) in self._arm_pathways.items():
            other = first.setdefault((site_id, pathway.id), arm_id)
            if other != arm_id:
                self._bad(
                    node,
                    f"arm {other!r} already follows {pathway.id!r} at site {site_id!r}; "
                    "each arm follows its own pathway",
                )
                ok = False
        return ok

    def _arm(
        self, arm_id: str, node: _Node, named: dict[str, tuple[_Node, set[str]]]
    ) -> TrialArm | None:
        entries = self._mapping(node, ("title", "pathways"))
        if entries is None:
            return None
        title = self._string(entries["title"]) if "title" in entries else None
        pathways = None
        if "pathways" in entries:
            pathways_node = entries["pathways"]
            pathways = self._arm_pathways_at_sites(arm_id, pathways_node)
            if isinstance(pathways_node.value, dict):
                # An unknown site is reported as such, not as one the other arms lack.
                known = set(pathways_node.value) & self._known_sites.keys()
                named[arm_id] = (pathways_node, known)
        if title is None or pathways is None:
            return None
        return TrialArm(id=arm_id, title=title, pathways=pathways)

    def _arm_pathways_at_sites(self, arm_id: str, node: _Node) -> dict[str, str] | None:
        entries = self._free_mapping(node)
        if entries is None:
            return None
        if not entries:
            self._bad(node, "must name the pathway the arm's children follow at one site at least")
            return None
        found: dict[str, str] = {}
        sound = True
        for site_id, child in entries.items():
            pathway_id = self._arm_pathway(arm_id, site_id, child)
            if pathway_id is None:
                sound = False
            else:
                found[site_id] = pathway_id
        return found if sound else None

    def _arm_pathway(self, arm_id: str, site_id: str, node: _Node) -> str | None:
        """The pathway one arm follows at one site: known, run by the site, in its calendar."""
        pathway_id = self._string(node)
        if pathway_id is None:
            return None
        site = self._known_sites.get(site_id)
        if site is None:
            self._bad(
                node, f"unknown site {site_id!r}; the sites are: {_listing(self._known_sites)}"
            )
            return None
        pathway = self._known_pathways.get(pathway_id)
        if pathway is None:
            self._bad(
                node,
                f"unknown pathway {pathway_id!r}; the pathways are: "
                f"{_listing(sorted(self._known_pathways))}",
            )
            return None
        ok = True
        if pathway_id not in site.pathways:
            self._bad(
                node,
                f"site {site_id!r} does not run pathway {pathway_id!r}; it runs "
                f"{_listing(sorted(site.pathways))}",
            )
            ok = False
        for what, theirs, ours in (
            ("calendar", pathway.calendar, site.calendar),
            ("time zone", pathway.timezone, site.timezone),
        ):
            if theirs != ours:
                self._bad(
                    node,
                    f"pathway {pathway_id!r} keeps the {what} {theirs!r}, but site {site_id!r} "
                    f"keeps {ours!r}",
                )
                ok = False
        if not ok:
            return None
        self._arm_pathways[arm_id, site_id] = (pathway, node)
        return pathway_id

    # Visits.

    def _visits(self, node: _Node) -> tuple[VisitRule, ...] | None:
        items = self._list(node, nonempty=True)
        if items is None:
            return None
        names: dict[str, _Node] = {}
        visits: list[VisitRule] = []
        sound = True
        for item in items:
            visit = self._visit(item, names)
            if visit is None:
                sound = False
            else:
                visits.append(visit)
        return tuple(visits) if sound else None

    def _visit(self, node: _Node, names: dict[str, _Node]) -> VisitRule | None:
        entries = self._mapping(
            node, ("name", "title", "per", "anchor", "window"), ("target", "reminders")
        )
        if entries is None:
            return None
        name = self._name(entries["name"]) if "name" in entries else None
        if name is not None:
            if name in names:
                first = names[name].line
                self._bad(entries["name"], f"visit {name!r} is already defined at line {first}")
                name = None
            else:
                names[name] = entries["name"]
        title = self._string(entries["title"]) if "title" in entries else None
        per = self._per(entries["per"]) if "per" in entries else None
        anchor = self._anchor(entries["anchor"], per) if "anchor" in entries else None
        window = self._window(entries["window"]) if "window" in entries else None
        target_ok, target = self._optional(entries, "target", self._calendar_duration)
        if window is not None and target is not None:
            target_ok = self._target_inside(entries["target"], target, *window) and target_ok
        reminders_ok, reminders = self._optional(
            entries, "reminders", lambda n: self._reminders_of(n, window)
        )
        if (
            name is None
            or title is None
            or per is None
            or anchor is None
            or window is None
            or not target_ok
            or not reminders_ok
        ):
            return None
        opens, closes = window
        return VisitRule(
            name=name,
            title=title,
            per=per,
            anchor=anchor,
            opens=opens,
            closes=closes,
            target=target,
            reminders=reminders or (),
        )

    def _per(self, node: _Node) -> VisitUnit | None:
        text = self._string(node)
        for per in _PER:
            if text == per:
                return per
        if text is not None:
            self._bad(node, f"must be one of {_listing(_PER)}, not {text!r}")
        return None

    def _anchor(self, node: _Node, per: VisitUnit | None) -> str | None:
        """``randomised``, or a date fact every arm's pathway declares."""
        name = self._name(node)
        if name is None or name == RANDOMISED:
            return name
        if per == "family":
            self._bad(
                node,
                f"a family's visit runs from {RANDOMISED}, the family's own date; {name!r} is "
                "each child's",
            )
            return None
        lacking = []
        for (arm_id, site_id), (pathway, _) in sorted(self._arm_pathways.items()):
            spec = pathway.facts.get(name)
            if spec is None:
                lacking.append(f"{pathway.id} (arm {arm_id}, site {site_id}) does not declare it")
            elif spec.type != "date":
                lacking.append(
                    f"{pathway.id} (arm {arm_id}, site {site_id}) declares it a {spec.type}"
                )
        if lacking:
            self._bad(
                node,
                f"a visit runs from {RANDOMISED} or from a date fact of every arm's pathway; "
                f"{name!r} is not one: {'; '.join(lacking)}",
            )
            return None
        return name

    def _calendar_duration(self, node: _Node) -> Duration | None:
        duration = self._duration(node)
        if duration is not None and duration.unit == "working_days":
            self._bad(
                node,
                f"{node.value!r} counts working days, which differ between the trial's sites' "
                "calendars; use days, weeks or months",
            )
            return None
        return duration

    def _window(self, node: _Node) -> tuple[Duration, Duration] | None:
        """``opens`` and ``closes``, compared as the pathway loader compares a window's."""
        entries = self._mapping(node, ("opens", "closes"))
        if entries is None:
            return None
        opens = self._calendar_duration(entries["opens"]) if "opens" in entries else None
        closes = self._calendar_duration(entries["closes"]) if "closes" in entries else None
        if opens is None or closes is None:
            return None
        if opens.unit == closes.unit and closes.amount <= opens.amount:
            how = "no later than it opens"
        elif opens.unit != closes.unit and not _surely_longer(closes, opens):
            if _surely_longer(opens, closes):
                how = "before it opens"
            elif {opens.unit, closes.unit} <= {"days", "weeks"}:
                how = "no later than it opens"
            else:
                how = "no later than it opens on some dates"
        else:
            return opens, closes
        self._bad(
            entries["closes"],
            f"the window closes ({closes}) {how} ({opens}); it must close after it opens",
        )
        return None

    def _target_inside(
        self, node: _Node, target: Duration, opens: Duration, closes: Duration
    ) -> bool:
        for bound, ok, where in (
            (opens, _surely_no_longer(opens, target), "before the window opens"),
            (closes, _surely_no_longer(target, closes), "after the window closes"),
        ):
            if not ok:
                always = bound.unit == target.unit
                self._bad(
                    node,
                    f"the target ({target}) falls {where} ({bound})"
                    f"{'' if always else ' on some dates'}; it must fall inside the window",
                )
                return False
        return True

    def _reminders_of(
        self, node: _Node, window: tuple[Duration, Duration] | None
    ) -> tuple[VisitReminder, ...] | None:
        # An empty list is allowed: the visit sends no reminder.
        items = self._list(node)
        if items is None:
            return None
        reminders: list[VisitReminder] = []
        sound = True
        for item in items:
            reminder = self._reminder_of(item, window)
            if reminder is None:
                sound = False
            elif reminder in reminders:
                self._bad(item, "is the same reminder as an earlier one")
                sound = False
            else:
                reminders.append(reminder)
        return tuple(reminders) if sound else None

    def _reminder_of(
        self, node: _Node, window: tuple[Duration, Duration] | None
    ) -> VisitReminder | None:
        entries = self._mapping(node, ("when",), ("lead",))
        if entries is None:
            return None
        when: ReminderWhen | None = None
        if "when" in entries:
            text = self._string(entries["when"])
            for candidate in _WHEN:
                if text == candidate:
                    when = candidate
            if text is not None and when is None:
                self._bad(entries["when"], f"must be one of {_listing(_WHEN)}, not {text!r}")
        lead_ok, lead = self._optional(entries, "lead", self._calendar_duration)
        if when == "opens" and "lead" in entries:
            self._bad(entries["lead"], "a reminder when the window opens has no lead; leave it out")
            return None
        if when == "before_close" and "lead" not in entries:
            self._report(
                node.line,
                f"{node.path}.lead",
                "is missing: how long before the window closes the reminder goes",
            )
            return None
        if when is None or not lead_ok:
            return None
        if lead is not None and window is not None and self._lead_too_long(lead, *window):
            self._bad(
                entries["lead"],
                f"{lead} before the window closes ({window[1]}) falls before it opens "
                f"({window[0]}); remind when it opens instead",
            )
            return None
        return VisitReminder(when=when, lead=lead)

    @staticmethod
    def _lead_too_long(lead: Duration, opens: Duration, closes: Duration) -> bool:
        """Whether ``closes - lead`` surely falls on or before the day the window opens."""
        if lead.unit == opens.unit == closes.unit:
            return closes.amount - lead.amount <= opens.amount
        return _span_bounds(closes)[1] - _span_bounds(lead)[0] <= _span_bounds(opens)[0]

    # Statuses.

    def _statuses(self, node: _Node) -> tuple[str, ...] | None:
        items = self._list(node, nonempty=True)
        if items is None:
            return None
        found: list[str] = []
        sound = True
        for item in items:
            status = self._name(item)
            if status is None:
                sound = False
            elif status not in STATUSES:
                self._bad(
                    item, f"unknown status {status!r}; the statuses are: {_listing(STATUSES)}"
                )
                sound = False
            elif status in found:
                self._bad(item, f"status {status!r} is listed twice")
                sound = False
            else:
                found.append(status)
        missing = [status for status in STATUSES if status not in found]
        if missing:
            self._bad(
                node,
                f"misses {_listing(map(repr, missing))}; every trial declares all of: "
                f"{_listing(STATUSES)}",
            )
            sound = False
        return tuple(found) if sound else None

    # Roles and permissions. The roles are read by the pathway compiler's reader: role ids are
    # names, as arm ids are, each with a title.

    def _permissions(self, node: _Node) -> dict[str, frozenset[str]] | None:
        """Every one of TRIAL_ACTIONS, once, with the declared roles that may do it."""
        entries = self._free_mapping(node)
        if entries is None:
            return None
        found: dict[str, frozenset[str]] = {}
        sound = True
        for action, child in entries.items():
            if action not in TRIAL_ACTIONS:
                self._bad(
                    child,
                    f"unknown action {action!r}; the actions are: {_listing(TRIAL_ACTIONS)}",
                )
                sound = False
                continue
            # An action nobody may do would stall every family; the file says who does it.
            roles = self._refs(child, self._roles, "role", nonempty=True)
            if roles is None:
                sound = False
            else:
                found[action] = frozenset(roles)
        missing = [action for action in TRIAL_ACTIONS if action not in entries]
        if missing:
            self._bad(
                node,
                f"misses {_listing(map(repr, missing))}; every trial says who may do each of: "
                f"{_listing(TRIAL_ACTIONS)}",
            )
            sound = False
        if not sound:
            return None
        return {action: found[action] for action in TRIAL_ACTIONS}


def _sites_phrase(sites: list[str]) -> str:
    if len(sites) == 1:
        return f"site {sites[0]!r}"
    return f"sites {_listing(map(repr, sites))}"
