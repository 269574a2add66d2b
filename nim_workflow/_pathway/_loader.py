"""Read a pathway file, check every rule of the format, and compile it into a :class:`Pathway`.

Loading is a pipeline that never evaluates code:

1. *parse*: ``yaml.compose`` with a safe loader gives nodes that remember their lines; they become
   a tree of :class:`_Node` (plain values, each with its line and its field path, such as
   ``transitions[2].roles[0]``). Tags other than YAML's plain ones, aliases and duplicate keys are
   refused here.
2. *check*: every section is read against the format described in ``_model``; each mistake becomes
   a :class:`Problem`, and checking goes on, so one run reports every problem in the file.
3. *compile*: when nothing is wrong, the checked values become the frozen :class:`Pathway`.
"""

from __future__ import annotations

import hashlib
import os
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar, cast

import yaml
from yaml.constructor import SafeConstructor
from yaml.error import Mark

from nim_workflow._errors import PathwayError, Problem
from nim_workflow._pathway._model import (
    ANY_OPEN,
    CALENDARS,
    COUNTINGS,
    PERMISSION_ACTIONS,
    UNITS,
    CalendarName,
    Candidate,
    ConditionStart,
    Counting,
    Cumulative,
    DeadlineRule,
    Duration,
    Extension,
    FactSpec,
    FactType,
    Pathway,
    Reminder,
    Stage,
    Transition,
)

__all__ = ["load_pathway", "load_pathway_text"]

#: The field named in problems about the file as a whole (syntax, encoding, emptiness).
DOCUMENT = "<document>"
#: The field named when the file cannot be read at all.
FILE = "<file>"

_TAG = "tag:yaml.org,2002:"
_MAP, _SEQ, _STR = f"{_TAG}map", f"{_TAG}seq", f"{_TAG}str"
_INT, _FLOAT, _BOOL, _NULL = f"{_TAG}int", f"{_TAG}float", f"{_TAG}bool", f"{_TAG}null"
# A date-like scalar resolves to a timestamp; the format has no dates, so it is read as text.
_TIMESTAMP = f"{_TAG}timestamp"
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL, _TIMESTAMP})
# Stands in for an alias, so the refusal can name the alias's own line.
_ALIAS = "!nim-workflow/alias"

_PATHWAY_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
#: The longest duration a rule may state, in any unit (1,000 months is over 83 years).
_MAX_AMOUNT = 1000
_DEFAULT_COUNTING: Counting = "after"
#: What a date fact does under each key, for the message when a key names another type.
_DATE_FACT_ROLES = {
    "settled_by": "settled_by names date facts (the day recorded settles the clock)",
    "when_preceded_by": "when_preceded_by names a date fact to compare with the anchor",
    "leaves": "leaves names the date fact that ends a period in the condition",
    "returns": "returns names the date fact that begins another period in the condition",
}
_DEADLINE_OPTIONAL = (
    "duration",
    "stage",
    "anchor",
    "earliest_of",
    "cumulative",
    "window",
    "counting",
    "pausable",
    "from_first",
    "settled_by",
    "reminders",
    "extension",
    "recurs",
    "met_by",
)
#: Keys each kind of rule refuses: they belong to another kind, or the kind carries its own.
_INCOMPATIBLE: Mapping[str, frozenset[str]] = {
    "stage": frozenset({"recurs", "settled_by", "from_first", "window"}),
    "anchor": frozenset(),
    "window": frozenset({"duration", "recurs", "extension", "from_first", "met_by"}),
    "earliest_of": frozenset({"duration", "from_first", "window"}),
    "cumulative": frozenset(
        {"duration", "counting", "recurs", "from_first", "window", "extension"}
    ),
}
_KIND_WORDS = {
    "stage": "a stage deadline",
    "anchor": "an anchored clock",
    "window": "a window",
    "earliest_of": "an earliest_of clock",
    "cumulative": "a cumulative clock",
}


def _span_bounds(duration: Duration) -> tuple[float, float]:
    """The fewest and most calendar days ``duration`` can span, wherever it starts.

    A month is 28 to 31 days, and n months stay within 3 days of n average months; n working
    days span at least n days and, with their weekends and a run of holidays (Christmas and New
    Year), fewer than n * 7/5 + 12.
    """
    n = duration.amount
    match duration.unit:
        case "days":
            return n, n
        case "weeks":
            return 7 * n, 7 * n
        case "months":
            return max(28 * n, 30.44 * n - 3), min(31 * n, 30.44 * n + 3)
        case _:
            return n, n * 7 / 5 + 12


def _surely_longer(longer: Duration, shorter: Duration) -> bool:
    """Whether ``longer`` spans more days than ``shorter`` wherever on the calendar both start.

    Same units compare exactly; otherwise the fewest days ``longer`` can span must exceed the
    most ``shorter`` can (``31 days`` is not surely longer than ``1 months``; ``32 days`` is).
    """
    if longer.unit == shorter.unit:
        return longer.amount > shorter.amount
    return _span_bounds(longer)[0] > _span_bounds(shorter)[1]


#: Attributes the ``transitions`` library (and the bound case) give a model: a trigger with one
#: of these names would shadow them.
_RESERVED_TRIGGERS = frozenset({"trigger", "state", "facts", "reason"})
_RESERVED_PREFIXES = ("is_", "may_", "to_")


def _reserved_trigger(name: str) -> bool:
    return name in _RESERVED_TRIGGERS or name.startswith(_RESERVED_PREFIXES)


_NEGATIVE_DURATION = re.compile(r"\s*-\s*\d+\s+\S+\s*")
_FACT_TYPES: tuple[FactType, ...] = ("bool", "date", "enum")

_TOP_KEYS = (
    *("id", "version", "title", "calendar", "timezone", "roles", "permissions", "facts"),
    *("stages", "transitions", "deadlines"),
)
_DEFAULT_REMINDER = Reminder(label="reminder", before=Duration(amount=10, unit="working_days"))
_REMINDER_KINDS = ("before", "every", "fraction")
_REMINDER_LABELS = {"before": "reminder", "every": "update", "fraction": "milestone"}


class _Broken:
    """The value of a node already reported as wrong; readers skip it without a second report."""

    def __repr__(self) -> str:
        return "<broken>"


_BROKEN = _Broken()
_Value: TypeAlias = "str | int | float | bool | dict[str, _Node] | list[_Node] | _Broken | None"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Node:
    """One value of the file as plain data, with the line it is on and its field path.

    A mapping entry's line is the line of its key, so a problem about a block value (a list under
    ``reminders:``) points at the key that names it.
    """

    path: str
    line: int
    value: _Value
    text: str = ""

    @property
    def field(self) -> str:
        return self.path or DOCUMENT


def load_pathway(path: str | os.PathLike[str]) -> Pathway:
    """Load, check and compile the pathway file at ``path``.

    Raises :class:`PathwayError` listing every problem in the file, in file order; a file that
    cannot be read is one problem with no line.
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
    return _load(text, source, hashlib.sha256(data).hexdigest())


def load_pathway_text(text: str, source: str = "<string>") -> Pathway:
    """Check and compile a pathway given as YAML text; ``source`` names it in problems.

    The content hash is the SHA-256 of the text encoded as UTF-8, which equals the hash
    :func:`load_pathway` gives the same content read from a UTF-8 file.
    """
    # surrogatepass: the text may hold lone surrogates; the YAML reader reports them with a line.
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _load(text, source, digest)


def _load(text: str, source: str, content_hash: str) -> Pathway:
    problems: list[Problem] = []
    root = _parse(text, source, problems)
    pathway = None
    if root is not None:
        pathway = _Compiler(source, problems).compile(root, content_hash)
    if problems or pathway is None:
        # Stable sort: problems found on one line keep the order they were found in.
        raise PathwayError(sorted(problems, key=lambda p: p.line or 0))
    return pathway


# --- parse -------------------------------------------------------------------------------------


class _Composer(yaml.SafeLoader):
    """A safe loader whose aliases become placeholders instead of shared nodes.

    Shared nodes would let a small file expand into a huge tree (or a cycle), and a problem found
    through an alias would point at the anchor rather than at the line that used it.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            # The stubs leave the parser's methods untyped; an AliasEvent is what was checked.
            event: yaml.AliasEvent = self.get_event()  # type: ignore[no-untyped-call]
            start, end = cast("Mark", event.start_mark), cast("Mark", event.end_mark)
            return yaml.ScalarNode(_ALIAS, f"*{event.anchor}", start, end)
        return super().compose_node(parent, index)


def _parse(text: str, source: str, problems: list[Problem]) -> _Node | None:
    """Turn YAML text into a :class:`_Node` tree, or ``None`` when the text is not YAML."""

    def fail(line: int | None, message: str) -> None:
        problems.append(Problem(file=source, line=line, field=DOCUMENT, message=message))

    try:
        node = yaml.compose(text, Loader=_Composer)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        parts = [part for part in (exc.context, exc.problem) if part]
        fail(mark.line + 1 if mark else None, f"is not valid YAML: {'; '.join(parts)}")
        return None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        character = exc.character
        shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
        fail(line, f"is not valid YAML: {exc.reason} (character {shown})")
        return None
    except yaml.YAMLError as exc:
        fail(None, f"is not valid YAML: {exc}")
        return None
    except RecursionError:
        fail(None, "is nested too deeply to be a pathway")
        return None
    if node is None:
        fail(1, "is empty; a pathway file is a mapping with the keys " + ", ".join(_TOP_KEYS))
        return None
    try:
        return _Converter(source, problems).convert(node, "", node.start_mark.line + 1)
    except RecursionError:
        fail(None, "is nested too deeply to be a pathway")
        return None


class _Converter:
    """Turns composed YAML nodes into :class:`_Node`, refusing what the format does not allow."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self._source = source
        self._problems = problems
        self._scalars = SafeConstructor()

    def _report(self, line: int, path: str, message: str) -> None:
        self._problems.append(
            Problem(file=self._source, line=line, field=path or DOCUMENT, message=message)
        )

    def _refused_tag(self, node: yaml.Node, path: str, line: int) -> bool:
        if node.tag == _ALIAS:
            self._report(line, path, f"aliases ({node.value}) are not allowed; write the value out")
            return True
        if isinstance(node, yaml.MappingNode):
            allowed = node.tag == _MAP
        elif isinstance(node, yaml.SequenceNode):
            allowed = node.tag == _SEQ
        else:
            allowed = node.tag in _SCALAR_TAGS
        if not allowed:
            tag = node.tag.replace(_TAG, "!!", 1) if node.tag.startswith(_TAG) else node.tag
            self._report(line, path, f"the YAML tag {tag!r} is not allowed in a pathway")
            return True
        return False

    def convert(self, node: yaml.Node, path: str, line: int) -> _Node:
        if self._refused_tag(node, path, line):
            return _Node(path, line, _BROKEN)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, line)
        if isinstance(node, yaml.SequenceNode):
            items = [
                self.convert(item, f"{path}[{index}]", item.start_mark.line + 1)
                for index, item in enumerate(node.value)
            ]
            return _Node(path, line, items)
        return self._scalar(cast("yaml.ScalarNode", node), path, line)

    def _mapping(self, node: yaml.MappingNode, path: str, line: int) -> _Node:
        entries: dict[str, _Node] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self._report(key_line, path, "keys must be plain names, not lists or mappings")
                continue
            if self._refused_tag(key_node, path, key_line):
                continue
            # A key is a name as written: `on:` or `1:` name things, they are not a bool or an int.
            key = str(key_node.value)
            child_path = f"{path}.{key}" if path else key
            if key in entries:
                first = entries[key].line
                self._report(key_line, child_path, f"duplicate key {key!r} (first at line {first})")
                continue
            entries[key] = self.convert(value_node, child_path, key_line)
        return _Node(path, line, entries)

    def _scalar(self, node: yaml.ScalarNode, path: str, line: int) -> _Node:
        text = str(node.value)
        value: _Value
        try:
            if node.tag == _INT:
                value = self._scalars.construct_yaml_int(node)
            elif node.tag == _FLOAT:
                value = self._scalars.construct_yaml_float(node)
            elif node.tag == _BOOL:
                value = self._scalars.construct_yaml_bool(node)
            elif node.tag == _NULL:
                value = None
            else:
                value = text
        except ValueError:
            # Python refuses to convert integers of thousands of digits.
            self._report(line, path, f"the number {_clip(text)!r} is too large")
            value = _BROKEN
        return _Node(path, line, value, text)


# --- check and compile -------------------------------------------------------------------------


def _kind(node: _Node) -> str:
    """Say what a node holds, for messages like "must be a list, not a string"."""
    value = node.value
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"the boolean {node.text!r}"
    if isinstance(value, int | float):
        return f"the number {node.text!r}"
    if isinstance(value, str):
        return f"the string {_clip(value)!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _clip(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:37]}..."


def _listing(names: Iterable[str]) -> str:
    listed = ", ".join(names)
    return listed or "(none)"


class _Compiler:
    """Checks the :class:`_Node` tree section by section and builds the model from it.

    Every reader reports what is wrong with its node and returns ``None``; callers go on with the
    rest, so a single run finds every problem. Names a broken section would have declared are
    unknown, so references to them are not checked (``None`` below), rather than each reported as
    a second, misleading problem.
    """

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self._source = source
        self._problems = problems
        self._roles: dict[str, str] | None = None
        self._facts: dict[str, FactType | None] | None = None
        self._stages: dict[str, Stage | None] | None = None
        # Trigger names, once every transition could be read (None: don't judge references).
        self._triggers: dict[str, None] | None = None
        # Stage id -> the node of its id, to point graph problems at the stage.
        self._stage_nodes: dict[str, _Node] = {}
        # (sources, dest) of every transition whose stages could be read, even if it has other
        # problems: the graph checks need every edge, not only those of faultless transitions.
        self._edges: list[tuple[tuple[str, ...], str]] = []
        self._graph_sound = True

    # Readers of single values.

    def _report(self, line: int, field: str, message: str) -> None:
        self._problems.append(Problem(file=self._source, line=line, field=field, message=message))

    def _bad(self, node: _Node, message: str) -> None:
        self._report(node.line, node.field, message)

    def _mapping(
        self, node: _Node, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> dict[str, _Node] | None:
        """The entries of a mapping with a fixed set of keys; unknown and missing keys reported."""
        entries = self._free_mapping(node)
        if entries is None:
            return None
        allowed = (*required, *optional)
        for key, child in entries.items():
            if key not in allowed:
                self._bad(child, f"unknown key {key!r}; expected one of {_listing(allowed)}")
        for key in required:
            if key not in entries:
                self._report(node.line, f"{node.path}.{key}" if node.path else key, "is missing")
        return {key: child for key, child in entries.items() if key in allowed}

    def _free_mapping(self, node: _Node) -> dict[str, _Node] | None:
        """The entries of a mapping whose keys are names the file chooses (roles, facts)."""
        if isinstance(node.value, dict):
            return node.value
        if node.value is not _BROKEN:
            self._bad(node, f"must be a mapping, not {_kind(node)}")
        return None

    def _list(self, node: _Node, *, nonempty: bool = False) -> list[_Node] | None:
        if not isinstance(node.value, list):
            if node.value is not _BROKEN:
                self._bad(node, f"must be a list, not {_kind(node)}")
            return None
        if nonempty and not node.value:
            self._bad(node, "must not be empty")
            return None
        return node.value

    def _string(self, node: _Node) -> str | None:
        if isinstance(node.value, str):
            if not node.value.strip():
                self._bad(node, "must not be empty")
                return None
            return node.value
        if isinstance(node.value, bool | int | float):
            # YAML reads yes, no, on, off, 1.0 and such as booleans and numbers.
            self._bad(node, f"must be a string, not {_kind(node)} (quote it if you meant text)")
        elif node.value is not _BROKEN:
            self._bad(node, f"must be a string, not {_kind(node)}")
        return None

    def _name(self, node: _Node) -> str | None:
        """A name the engine and its hosts key on: roles, facts, stages, triggers, labels."""
        text = self._string(node)
        if text is not None and not _NAME.fullmatch(text):
            self._bad(
                node,
                f"{text!r} is not a valid name: use lowercase letters, digits and underscores, "
                "starting with a letter",
            )
            return None
        return text

    def _key_name(self, key: str, node: _Node, what: str) -> bool:
        if _NAME.fullmatch(key):
            return True
        self._bad(
            node,
            f"{key!r} is not a valid {what} name: use lowercase letters, digits and underscores, "
            "starting with a letter",
        )
        return False

    def _bool(self, node: _Node | None, default: bool = False) -> bool | None:
        if node is None:
            return default
        if isinstance(node.value, bool):
            return node.value
        if node.value is not _BROKEN:
            self._bad(node, f"must be true or false, not {_kind(node)}")
        return None

    def _int(self, node: _Node, *, minimum: int) -> int | None:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            if value < minimum:
                self._bad(node, f"must be at least {minimum}, not {value}")
                return None
            return value
        if value is not _BROKEN:
            self._bad(node, f"must be a whole number of at least {minimum}, not {_kind(node)}")
        return None

    def _duration(self, node: _Node) -> Duration | None:
        if not isinstance(node.value, str):
            if node.value is not _BROKEN:
                self._bad(
                    node,
                    f"must be a duration like '12 weeks' (units: {', '.join(UNITS)}), "
                    f"not {_kind(node)}",
                )
            return None
        try:
            duration = Duration.parse(node.value)
        except ValueError as exc:
            if _NEGATIVE_DURATION.fullmatch(node.value):
                self._bad(node, f"{node.value!r} must be longer than zero")
            else:
                self._bad(node, str(exc))
            return None
        if duration.amount <= 0:
            self._bad(node, f"{node.value!r} must be longer than zero")
            return None
        if duration.amount > _MAX_AMOUNT:
            # Beyond a lifetime a duration is a typo, and date arithmetic would overflow.
            self._bad(node, f"{node.value!r} is too long (at most {_MAX_AMOUNT} of any unit)")
            return None
        return duration

    def _ref(self, node: _Node, known: Mapping[str, object] | None, what: str) -> str | None:
        """A name that must be declared elsewhere in the file (a role, fact or stage)."""
        name = self._string(node)
        if name is None or known is None or name in known:
            return name
        self._bad(node, f"unknown {what} {name!r}; the {what}s are: {_listing(known)}")
        return None

    def _refs(
        self,
        node: _Node,
        known: Mapping[str, object] | None,
        what: str,
        *,
        nonempty: bool = False,
    ) -> list[str] | None:
        """A list of declared names, each at most once; ``None`` if any is wrong."""
        items = self._list(node, nonempty=nonempty)
        if items is None:
            return None
        names: list[str] = []
        sound = True
        for item in items:
            name = self._ref(item, known, what)
            if name is None:
                sound = False
            elif name in names:
                self._bad(item, f"{what} {name!r} is listed twice")
                sound = False
            else:
                names.append(name)
        return names if sound else None

    def _optional(
        self, entries: Mapping[str, _Node], key: str, read: Callable[[_Node], _T | None]
    ) -> tuple[bool, _T | None]:
        """``(ok, value)`` for an optional key: absent is fine, present must read cleanly."""
        node = entries.get(key)
        if node is None:
            return True, None
        value = read(node)
        return value is not None, value

    # Sections.

    def compile(self, root: _Node, content_hash: str) -> Pathway | None:
        """Check the whole file; return the compiled pathway, or ``None`` if anything is wrong."""
        top = self._mapping(root, _TOP_KEYS)
        if top is None:
            return None

        def section(key: str, read: Callable[[_Node], _T | None]) -> _T | None:
            node = top.get(key)
            return None if node is None else read(node)

        pathway_id = section("id", self._pathway_id)
        version = section("version", lambda node: self._int(node, minimum=1))
        title = section("title", self._string)
        calendar: CalendarName | None = section("calendar", self._calendar)
        timezone = section("timezone", self._timezone)
        # Declarations first: the sections after them refer to these names.
        roles = section("roles", self._read_roles)
        facts = section("facts", self._read_facts)
        stages = section("stages", self._read_stages)
        permissions = section("permissions", self._read_permissions)
        transitions = section("transitions", self._read_transitions)
        deadlines = section("deadlines", self._read_deadlines)
        # Without its transitions every stage but the initial would be reported as unreachable.
        if stages is not None and "transitions" in top and self._graph_sound:
            self._check_graph(stages)
        if self._problems:
            return None
        if (
            pathway_id is None
            or version is None
            or title is None
            or calendar is None
            or timezone is None
            or roles is None
            or facts is None
            or stages is None
            or permissions is None
            or transitions is None
            or deadlines is None
        ):
            # Unreachable when no problem was reported; kept so a reader bug cannot pass quietly.
            raise AssertionError("a section failed without reporting a problem")
        return Pathway(
            id=pathway_id,
            version=version,
            title=title,
            calendar=calendar,
            timezone=timezone,
            roles=roles,
            permissions=permissions,
            facts=facts,
            stages=stages,
            transitions=transitions,
            deadlines=deadlines,
            source=self._source,
            content_hash=content_hash,
        )

    def _pathway_id(self, node: _Node) -> str | None:
        return self._hyphenated_id(node, "pathway")

    def _hyphenated_id(self, node: _Node, what: str) -> str | None:
        """An id of lowercase words joined by single hyphens (a pathway's, a trial's)."""
        text = self._string(node)
        if text is not None and not _PATHWAY_ID.fullmatch(text):
            self._bad(
                node,
                f"{text!r} is not a valid {what} id: use lowercase letters and digits in words "
                "joined by single hyphens",
            )
            return None
        return text

    def _calendar(self, node: _Node) -> CalendarName | None:
        text = self._string(node)
        for calendar in CALENDARS:
            if text == calendar:
                return calendar
        if text is not None:
            self._bad(node, f"unknown calendar {text!r}; expected one of {_listing(CALENDARS)}")
        return None

    def _timezone(self, node: _Node) -> str | None:
        text = self._string(node)
        if text is None:
            return None
        try:
            # "localtime" resolves on some hosts, but to whatever zone that host is set to.
            if text == "localtime":
                raise zoneinfo.ZoneInfoNotFoundError(text)
            zoneinfo.ZoneInfo(text)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            self._bad(node, f"unknown time zone {text!r}; use an IANA name like 'Europe/London'")
            return None
        return text

    def _read_roles(self, node: _Node) -> dict[str, str] | None:
        entries = self._free_mapping(node)
        if entries is None:
            return None
        roles: dict[str, str] = {}
        sound = True
        for role, child in entries.items():
            title = self._string(child)
            sound = self._key_name(role, child, "role") and title is not None and sound
            # Declared even when malformed, so its uses are not reported as unknown as well.
            roles[role] = title or ""
        self._roles = roles
        if not entries:
            self._bad(node, "must declare at least one role")
            return None
        return roles if sound else None

    def _read_facts(self, node: _Node) -> dict[str, FactSpec] | None:
        entries = self._free_mapping(node)
        if entries is None:
            return None
        self._facts = {}
        facts: dict[str, FactSpec] = {}
        sound = True
        for name, child in entries.items():
            spec = self._fact(name, child)
            sound = self._key_name(name, child, "fact") and spec is not None and sound
            self._facts[name] = spec.type if spec is not None else self._fact_type(child)
            if spec is not None:
                facts[name] = spec
        return facts if sound else None

    @staticmethod
    def _fact_type(node: _Node) -> FactType | None:
        """The declared type of a fact whose spec is otherwise wrong, to check its uses."""
        if isinstance(node.value, dict):
            type_node = node.value.get("type")
            if type_node is not None:
                for fact_type in _FACT_TYPES:
                    if type_node.value == fact_type:
                        return fact_type
        return None

    def _fact(self, name: str, node: _Node) -> FactSpec | None:
        entries = self._mapping(node, ("type",), ("values", "description"))
        if entries is None:
            return None
        fact_type: FactType | None = None
        type_node = entries.get("type")
        if type_node is not None:
            text = self._string(type_node)
            for candidate in _FACT_TYPES:
                if text == candidate:
                    fact_type = candidate
            if text is not None and fact_type is None:
                self._bad(
                    type_node,
                    f"unknown fact type {text!r}; expected one of {_listing(_FACT_TYPES)}",
                )
        ok, description = self._optional(entries, "description", self._string)
        values: tuple[str, ...] = ()
        values_node = entries.get("values")
        if fact_type == "enum":
            if values_node is None:
                self._report(node.line, f"{node.path}.values", "an enum fact needs its values")
                ok = False
            else:
                read = self._enum_values(values_node)
                ok = ok and read is not None
                values = read or ()
        elif values_node is not None and fact_type is not None:
            self._bad(values_node, f"only an enum fact has values; this fact is a {fact_type}")
            ok = False
        if not ok or fact_type is None:
            return None
        return FactSpec(name=name, type=fact_type, values=values, description=description or "")

    def _enum_values(self, node: _Node) -> tuple[str, ...] | None:
        items = self._list(node, nonempty=True)
        if items is None:
            return None
        values: list[str] = []
        sound = True
        for item in items:
            value = self._name(item)
            if value is not None and value in values:
                self._bad(item, f"value {value!r} is listed twice")
                value = None
            if value is None:
                sound = False
            else:
                values.append(value)
        return tuple(values) if sound else None

    def _read_stages(self, node: _Node) -> tuple[Stage, ...] | None:
        items = self._list(node, nonempty=True)
        if items is None:
            return None
        self._stages = {}
        stages: list[Stage] = []
        # Every stage's initial/final flags could be read, so the counts below mean something.
        flags_known = True
        for item in items:
            stage, flags = self._stage(item)
            flags_known = flags_known and flags
            if stage is not None:
                stages.append(stage)
        if not flags_known:
            self._graph_sound = False
            return None
        initial = [stage for stage in stages if stage.initial]
        if not initial:
            self._bad(node, "no stage is marked 'initial: true'; exactly one must be")
        for extra in initial[1:]:
            self._bad(
                self._stage_nodes[extra.id],
                f"stage {extra.id!r} is marked initial, but {initial[0].id!r} already is; "
                "exactly one stage is initial",
            )
        if not any(stage.final for stage in stages):
            self._bad(node, "no stage is marked 'final: true'; at least one must be")
            # The stage meant to be final is not marked so; checks that depend on which stages
            # are final would each report that one omission again.
            self._stages = dict.fromkeys(self._stages)
        if len(stages) != len(items) or len(initial) != 1 or not any(s.final for s in stages):
            self._graph_sound = False
            return None
        return tuple(stages)

    def _stage(self, node: _Node) -> tuple[Stage | None, bool]:
        """The stage, and whether its flags could be read (even if something else is wrong)."""
        entries = self._mapping(node, ("id", "title"), ("initial", "final"))
        if entries is None:
            return None, False
        stage_id = None
        if "id" in entries:
            id_node = entries["id"]
            stage_id = self._name(id_node)
            if stage_id is not None and self._stages is not None:
                if stage_id in self._stages:
                    first = self._stage_nodes[stage_id].line
                    self._bad(id_node, f"stage {stage_id!r} is already defined at line {first}")
                    return None, True
                self._stages[stage_id] = None
                self._stage_nodes[stage_id] = id_node
        title = self._string(entries["title"]) if "title" in entries else None
        initial = self._bool(entries.get("initial"))
        final = self._bool(entries.get("final"))
        if initial is None or final is None:
            return None, False
        if initial and final:
            self._bad(node, "a stage cannot be both initial and final")
            return None, False
        if stage_id is None or title is None:
            return None, True
        stage = Stage(id=stage_id, title=title, initial=initial, final=final)
        if self._stages is not None:
            self._stages[stage_id] = stage
        return stage, True

    def _read_permissions(self, node: _Node) -> dict[str, frozenset[str]] | None:
        entries = self._free_mapping(node)
        if entries is None:
            return None
        permissions: dict[str, frozenset[str]] = {}
        sound = True
        for action, child in entries.items():
            if action not in PERMISSION_ACTIONS:
                self._bad(
                    child,
                    f"unknown action {action!r}; the actions are: {_listing(PERMISSION_ACTIONS)}",
                )
                sound = False
                continue
            # An empty list is allowed: it says plainly that nobody may do this.
            roles = self._refs(child, self._roles, "role")
            if roles is None:
                sound = False
            else:
                permissions[action] = frozenset(roles)
        return permissions if sound else None

    def _stage_ref(self, node: _Node) -> str | None:
        name = self._ref(node, self._stages, "stage")
        if name is None or (self._stages is not None and name not in self._stages):
            # Edges into or out of an unknown stage are missing from the graph, so the graph
            # checks would only echo this problem as unreachable or dead-end stages.
            self._graph_sound = False
        return name

    def _is_final(self, stage_id: str) -> bool | None:
        stage = self._stages.get(stage_id) if self._stages is not None else None
        return None if stage is None else stage.final

    def _sources(self, node: _Node) -> tuple[str, ...] | None:
        """The stages a transition leaves: one stage, a list of stages, or every open stage."""
        if node.value == ANY_OPEN:
            if self._stages is None or None in self._stages.values():
                self._graph_sound = False
                return None
            return tuple(sid for sid, stage in self._stages.items() if stage and not stage.final)
        if isinstance(node.value, list):
            items = self._list(node, nonempty=True)
            if items is None:
                self._graph_sound = False
                return None
        else:
            items = [node]
        sources: list[str] = []
        sound = True
        for item in items:
            if item is not node and item.value == ANY_OPEN:
                self._bad(item, f'{ANY_OPEN!r} stands alone (from: "*"), not in a list')
                sound = False
                continue
            source = self._stage_ref(item)
            if source is None:
                sound = False
            elif source in sources:
                self._bad(item, f"stage {source!r} is listed twice")
                sound = False
            elif self._is_final(source):
                self._bad(item, f"{source!r} is a final stage; no transition may leave it")
                sound = False
            else:
                sources.append(source)
        return tuple(sources) if sound else None

    def _read_transitions(self, node: _Node) -> tuple[Transition, ...] | None:
        items = self._list(node)
        if items is None:
            self._graph_sound = False
            return None
        transitions: list[Transition] = []
        # (trigger, source stage) -> the transition that already fires it from there.
        defined: dict[tuple[str, str], _Node] = {}
        sound = True
        for item in items:
            transition = self._transition(item, defined)
            if transition is None:
                sound = False
            else:
                transitions.append(transition)
        if sound:
            self._triggers = dict.fromkeys(t.trigger for t in transitions)
        return tuple(transitions) if sound else None

    def _transition(self, node: _Node, defined: dict[tuple[str, str], _Node]) -> Transition | None:
        entries = self._mapping(
            node,
            ("trigger", "from", "to", "roles"),
            ("requires", "reason_required", "outcome", "outcome_from"),
        )
        if entries is None:
            self._graph_sound = False
            return None
        ok = all(key in entries for key in ("trigger", "from", "to", "roles"))
        trigger = self._name(entries["trigger"]) if "trigger" in entries else None
        if trigger is not None and _reserved_trigger(trigger):
            self._bad(
                entries["trigger"],
                f"{trigger!r} is reserved by the state machine (names 'trigger', 'state', "
                "'facts', 'reason' and names starting 'is_', 'may_' or 'to_'); choose another",
            )
            trigger = None
            ok = False
        sources = self._sources(entries["from"]) if "from" in entries else None
        dest = self._stage_ref(entries["to"]) if "to" in entries else None
        if sources is not None and dest is not None:
            self._edges.append((sources, dest))
        else:
            self._graph_sound = False
        roles = (
            self._refs(entries["roles"], self._roles, "role", nonempty=True)
            if "roles" in entries
            else None
        )
        requires_ok, requires = self._optional(
            entries, "requires", lambda n: self._refs(n, self._facts, "fact")
        )
        reason_required = self._bool(entries.get("reason_required"))
        outcome_ok, outcome = self._optional(entries, "outcome", self._name)
        outcome_fact_ok, outcome_fact = self._optional(entries, "outcome_from", self._outcome_fact)
        ok = ok and requires_ok and outcome_ok and outcome_fact_ok
        if "outcome" in entries and "outcome_from" in entries:
            self._bad(entries["outcome_from"], "give outcome or outcome_from, not both")
            ok = False
        if outcome_fact is not None and requires_ok and outcome_fact not in (requires or ()):
            self._bad(
                entries["outcome_from"],
                f"fact {outcome_fact!r} must also be listed in requires, so it is set when the "
                "trigger fires",
            )
            ok = False
        final = self._is_final(dest) if dest is not None else None
        if final is True and "outcome" not in entries and "outcome_from" not in entries:
            self._bad(
                entries["to"],
                f"{dest!r} is a final stage, so the transition needs an outcome or outcome_from",
            )
            ok = False
        if final is False:
            for key in ("outcome", "outcome_from"):
                if key in entries:
                    self._bad(
                        entries[key],
                        f"only a transition into a final stage has an outcome; "
                        f"{dest!r} is not final",
                    )
                    ok = False
        if trigger is not None and sources is not None:
            for source in sources:
                first = defined.setdefault((trigger, source), node)
                if first is not node:
                    self._bad(
                        entries["from"],
                        f"trigger {trigger!r} is already defined from stage {source!r} "
                        f"(line {first.line})",
                    )
                    ok = False
        if (
            not ok
            or trigger is None
            or sources is None
            or dest is None
            or roles is None
            or reason_required is None
        ):
            return None
        return Transition(
            trigger=trigger,
            sources=sources,
            dest=dest,
            roles=frozenset(roles),
            requires=tuple(requires or ()),
            reason_required=reason_required,
            outcome=outcome,
            outcome_fact=outcome_fact,
        )

    def _outcome_fact(self, node: _Node) -> str | None:
        name = self._ref(node, self._facts, "fact")
        if name is None or self._facts is None:
            return name
        fact_type = self._facts.get(name)
        if fact_type is not None and fact_type != "enum":
            self._bad(
                node, f"fact {name!r} is of type {fact_type}; outcome_from names an enum fact"
            )
            return None
        return name

    def _date_fact(self, node: _Node) -> str | None:
        name = self._ref(node, self._facts, "fact")
        if name is None or self._facts is None:
            return name
        fact_type = self._facts.get(name)
        if fact_type is not None and fact_type != "date":
            key = node.path.rsplit(".", 1)[-1].split("[", 1)[0]
            why = _DATE_FACT_ROLES.get(key, "a clock runs from a date fact")
            self._bad(node, f"fact {name!r} is of type {fact_type}; {why}")
            return None
        return name

    def _check_graph(self, stages: tuple[Stage, ...]) -> None:
        """Every stage is reachable from the initial one, and every open stage can reach a final."""
        forward: dict[str, set[str]] = {stage.id: set() for stage in stages}
        backward: dict[str, set[str]] = {stage.id: set() for stage in stages}
        for sources, dest in self._edges:
            for source in sources:
                forward[source].add(dest)
                backward[dest].add(source)
        initial = next(stage.id for stage in stages if stage.initial)
        reached = _closure([initial], forward)
        finishing = _closure([stage.id for stage in stages if stage.final], backward)
        for stage in stages:
            if stage.id not in reached:
                self._bad(
                    self._stage_nodes[stage.id],
                    f"stage {stage.id!r} cannot be reached from the initial stage {initial!r}",
                )
            if stage.id not in finishing:
                self._bad(
                    self._stage_nodes[stage.id],
                    f"stage {stage.id!r} has no path to a final stage, so a case there "
                    "never closes",
                )

    def _read_deadlines(self, node: _Node) -> tuple[DeadlineRule, ...] | None:
        items = self._list(node)
        if items is None:
            return None
        rules: list[DeadlineRule] = []
        names: dict[str, _Node] = {}
        sound = True
        for item in items:
            rule = self._deadline(item, names)
            if rule is None:
                sound = False
            else:
                rules.append(rule)
        return tuple(rules) if sound else None

    def _deadline(self, node: _Node, names: dict[str, _Node]) -> DeadlineRule | None:
        entries = self._mapping(node, ("name", "escalate_to"), _DEADLINE_OPTIONAL)
        if entries is None:
            return None
        ok = all(key in entries for key in ("name", "escalate_to"))
        name = self._name(entries["name"]) if "name" in entries else None
        if name is not None:
            first = names.setdefault(name, entries["name"])
            if first is not entries["name"]:
                self._bad(
                    entries["name"],
                    f"a deadline named {name!r} is already defined at line {first.line}",
                )
                ok = False
        escalate_to = (
            self._ref(entries["escalate_to"], self._roles, "role")
            if "escalate_to" in entries
            else None
        )
        kind = self._deadline_kind(node, entries)
        # Checked whatever else is wrong with the rule, so every problem is reported at once.
        compatible = kind is not None and self._compatible(node, entries, kind)
        ok = ok and compatible
        duration_ok, duration = self._optional(entries, "duration", self._duration)
        stage_ok, stage = self._optional(entries, "stage", self._deadline_stage)
        anchor_ok, anchor = self._optional(entries, "anchor", self._date_fact)
        candidates_ok, candidates = self._optional(entries, "earliest_of", self._candidates)
        window_ok, window = self._optional(entries, "window", self._window)
        cumulative_ok, cumulative = self._optional(entries, "cumulative", self._cumulative)
        counting: Counting | None
        counting_ok, counting = self._optional(entries, "counting", self._counting)
        pausable_ok, pausable = self._optional(entries, "pausable", self._bool)
        from_first_ok, from_first = self._optional(entries, "from_first", self._bool)
        settled_ok, settled_by = self._optional(
            entries, "settled_by", lambda n: self._date_facts(n)
        )
        ok = (
            ok
            and duration_ok
            and stage_ok
            and anchor_ok
            and candidates_ok
            and window_ok
            and cumulative_ok
            and counting_ok
            and pausable_ok
            and from_first_ok
            and settled_ok
        )
        reminders: tuple[Reminder, ...] | None = (_DEFAULT_REMINDER,)
        if "reminders" in entries:
            reminders = self._reminders(entries["reminders"])
        extension_ok, extension = self._optional(entries, "extension", self._extension)
        recurs_ok, recurs = self._optional(entries, "recurs", self._recurs)
        met_by_ok, met_by = self._optional(
            entries, "met_by", lambda n: self._refs(n, self._triggers, "trigger")
        )
        ok = ok and extension_ok and recurs_ok and met_by_ok
        starting = {anchor, recurs[0] if recurs else None} - {None}
        for fact in settled_by or ():
            if fact in starting:
                self._bad(
                    entries["settled_by"],
                    f"{fact!r} starts this clock; a fact cannot both start and settle it",
                )
                ok = False
        if kind == "window" and pausable:
            self._bad(entries["pausable"], "a window never pauses; leave pausable out")
            ok = False
        if kind == "cumulative" and pausable:
            self._bad(
                entries["pausable"],
                "a cumulative clock counts days in its condition; it never pauses",
            )
            ok = False
        opens: Duration | None = None
        if window is not None:
            opens, duration = window
        elif candidates is not None:
            duration = candidates[0].duration
        elif cumulative is not None:
            duration = cumulative.reaches
        if not ok or name is None or duration is None or escalate_to is None or reminders is None:
            return None
        recur_fact, recur_durations = recurs if recurs is not None else (None, ())
        return DeadlineRule(
            name=name,
            duration=duration,
            escalate_to=escalate_to,
            stage=stage,
            anchor_fact=anchor,
            recur_fact=recur_fact,
            recur_durations=recur_durations,
            reminders=reminders,
            extension=extension,
            met_by=frozenset(met_by or ()),
            settled_by=tuple(settled_by or ()),
            counting=counting or _DEFAULT_COUNTING,
            pausable=kind == "stage" if pausable is None else pausable,
            from_first=bool(from_first),
            candidates=tuple(candidates or ()),
            opens=opens,
            cumulative=cumulative,
        )

    def _deadline_kind(self, node: _Node, entries: Mapping[str, _Node]) -> str | None:
        """Which kind of rule this is, from the one key that starts its clock."""
        starts = [key for key in ("stage", "anchor", "earliest_of", "cumulative") if key in entries]
        if not starts:
            self._bad(
                node,
                "needs a stage (a stage deadline) or an anchor (a statutory clock or window), "
                "or earliest_of or cumulative",
            )
            return None
        if len(starts) > 1:
            if starts == ["stage", "anchor"]:
                self._bad(
                    node, "give stage (a stage deadline) or anchor (a statutory clock), not both"
                )
            else:
                self._bad(node, f"give only one of {' and '.join(starts)}; each starts the clock")
            return None
        if starts[0] == "anchor" and "window" in entries:
            return "window"
        return starts[0]

    def _compatible(self, node: _Node, entries: Mapping[str, _Node], kind: str) -> bool:
        """Report keys that make no sense for this kind of rule (and a missing duration)."""
        ok = True
        for key in sorted(_INCOMPATIBLE[kind] & entries.keys()):
            if kind == "stage" and key == "recurs":
                self._bad(entries[key], "only a statutory clock (a deadline with anchor) recurs")
            else:
                self._bad(entries[key], f"{key} does not apply to {_KIND_WORDS[kind]}")
            ok = False
        if kind in ("stage", "anchor") and "duration" not in entries:
            self._report(
                node.line, f"{node.path}.duration" if node.path else "duration", "is missing"
            )
            ok = False
        return ok

    def _counting(self, node: _Node) -> Counting | None:
        for counting in COUNTINGS:
            if node.value == counting:
                return counting
        if node.value is not _BROKEN:
            self._bad(node, f"must be one of {_listing(COUNTINGS)}, not {_kind(node)}")
        return None

    def _date_facts(self, node: _Node) -> list[str] | None:
        items = self._list(node, nonempty=True)
        if items is None:
            return None
        read = [self._date_fact(item) for item in items]
        if None in read:
            return None
        facts = [fact for fact in read if fact is not None]
        for index, fact in enumerate(facts):
            if fact in facts[:index]:
                self._bad(items[index], f"fact {fact!r} is listed twice")
                return None
        return facts

    def _candidates(self, node: _Node) -> list[Candidate] | None:
        items = self._list(node)
        if items is None:
            return None
        if len(items) < 2:
            self._bad(
                node,
                f"earliest_of needs at least two candidates, not {len(items)}; "
                "with one, write anchor and duration",
            )
            return None
        candidates: list[Candidate] = []
        sound = True
        for item in items:
            entries = self._mapping(item, ("anchor", "duration"), ("when_preceded_by",))
            if entries is None:
                sound = False
                continue
            anchor = self._date_fact(entries["anchor"]) if "anchor" in entries else None
            duration = self._duration(entries["duration"]) if "duration" in entries else None
            preceded_ok, preceded = self._optional(entries, "when_preceded_by", self._date_fact)
            if preceded is not None and preceded == anchor:
                self._bad(entries["when_preceded_by"], "must name a fact other than the anchor")
                preceded_ok = False
            if anchor is None or duration is None or not preceded_ok:
                sound = False
                continue
            candidate = Candidate(anchor=anchor, duration=duration, when_preceded_by=preceded)
            if candidate in candidates:
                self._bad(item, "is the same candidate as an earlier one")
                sound = False
                continue
            candidates.append(candidate)
        return candidates if sound else None

    def _window(self, node: _Node) -> tuple[Duration, Duration] | None:
        entries = self._mapping(node, ("opens", "closes"))
        if entries is None:
            return None
        opens = self._duration(entries["opens"]) if "opens" in entries else None
        closes = self._duration(entries["closes"]) if "closes" in entries else None
        if opens is None or closes is None:
            return None
        if opens.unit == closes.unit and closes.amount <= opens.amount:
            self._bad(
                entries["closes"],
                f"the window closes ({closes}) no later than it opens ({opens}); "
                "it must close after it opens",
            )
            return None
        if opens.unit != closes.unit and not _surely_longer(closes, opens):
            if _surely_longer(opens, closes):
                how = "before it opens"
            elif {opens.unit, closes.unit} <= {"days", "weeks"}:
                how = "no later than it opens"
            else:
                how = "no later than it opens on some dates"
            self._bad(
                entries["closes"],
                f"the window closes ({closes}) {how} ({opens}); it must close after it opens",
            )
            return None
        return opens, closes

    def _cumulative(self, node: _Node) -> Cumulative | None:
        entries = self._mapping(node, ("starts", "leaves", "returns", "reaches", "within"))
        if entries is None:
            return None
        starts: list[ConditionStart] | None = None
        items = self._list(entries["starts"], nonempty=True) if "starts" in entries else None
        if items is not None:
            starts = []
            for item in items:
                start = self._mapping(item, ("anchor",), ("plus",))
                if start is None:
                    starts = None
                    break
                anchor = self._date_fact(start["anchor"]) if "anchor" in start else None
                plus_ok, plus = self._optional(start, "plus", self._duration)
                if anchor is None or not plus_ok:
                    starts = None
                    break
                starts.append(ConditionStart(anchor=anchor, plus=plus))
        leaves = self._date_fact(entries["leaves"]) if "leaves" in entries else None
        returns = self._date_fact(entries["returns"]) if "returns" in entries else None
        reaches = self._duration(entries["reaches"]) if "reaches" in entries else None
        within = self._duration(entries["within"]) if "within" in entries else None
        # Every check runs, so each problem of the block is reported at once.
        sound = True
        anchors = [condition.anchor for condition in starts or ()]
        for index, condition_start in enumerate(starts or ()):
            if condition_start in (starts or [])[:index]:
                self._bad(items[index] if items else node, "is the same start as an earlier one")
                sound = False
        for key, fact in (("leaves", leaves), ("returns", returns)):
            if fact is not None and fact in anchors:
                self._bad(entries[key], f"{fact!r} is one of the starts; name another fact")
                sound = False
        if leaves is not None and leaves == returns:
            self._bad(entries["returns"], "must name a fact other than leaves")
            sound = False
        for key, duration in (("reaches", reaches), ("within", within)):
            if duration is not None and duration.unit == "working_days":
                self._bad(
                    entries[key],
                    "a cumulative clock counts calendar days; use days, weeks or months",
                )
                sound = False
        if reaches is not None and within is not None and not _surely_longer(within, reaches):
            self._bad(
                entries["within"],
                f"the rolling period ({within}) must be longer than what it counts to ({reaches})",
            )
            sound = False
        if (
            not sound
            or starts is None
            or leaves is None
            or returns is None
            or reaches is None
            or within is None
        ):
            return None
        return Cumulative(
            starts=tuple(starts), leaves=leaves, returns=returns, reaches=reaches, within=within
        )

    def _deadline_stage(self, node: _Node) -> str | None:
        stage = self._ref(node, self._stages, "stage")
        if stage is not None and self._is_final(stage):
            self._bad(
                node,
                f"{stage!r} is a final stage; a case never leaves it, so this deadline could "
                "only be missed",
            )
            return None
        return stage

    def _reminders(self, node: _Node) -> tuple[Reminder, ...] | None:
        # An empty list is allowed: it turns the default reminder off.
        items = self._list(node)
        if items is None:
            return None
        reminders: list[Reminder] = []
        sound = True
        for item in items:
            reminder = self._reminder(item)
            if reminder is None:
                sound = False
            else:
                reminders.append(reminder)
        return tuple(reminders) if sound else None

    def _reminder(self, node: _Node) -> Reminder | None:
        entries = self._mapping(node, (), (*_REMINDER_KINDS, "label"))
        if entries is None:
            return None
        kinds = [kind for kind in _REMINDER_KINDS if kind in entries]
        if len(kinds) != 1:
            self._bad(
                node,
                "a reminder has exactly one of before, every or fraction"
                + (f"; this one has {' and '.join(kinds)}" if kinds else ""),
            )
        label_ok, label = self._optional(entries, "label", self._name)
        before_ok, before = self._optional(entries, "before", self._duration)
        every_ok, every = self._optional(entries, "every", self._duration)
        fraction_ok, fraction = self._optional(entries, "fraction", self._fraction)
        if len(kinds) != 1 or not (label_ok and before_ok and every_ok and fraction_ok):
            return None
        return Reminder(
            label=label or _REMINDER_LABELS[kinds[0]],
            before=before,
            every=every,
            fraction=fraction,
        )

    def _fraction(self, node: _Node) -> float | None:
        value = node.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            if 0 < value < 1:
                return float(value)
            self._bad(node, f"must be between 0 and 1 (exclusive), not {node.text}")
        elif value is not _BROKEN:
            self._bad(node, f"must be a number between 0 and 1, not {_kind(node)}")
        return None

    def _extension(self, node: _Node) -> Extension | None:
        # No limit means no cap on the number of extensions (care proceedings, CA 1989 s.32).
        entries = self._mapping(node, ("step", "roles"), ("limit",))
        if entries is None:
            return None
        step = self._duration(entries["step"]) if "step" in entries else None
        limit_ok, limit = self._optional(entries, "limit", lambda n: self._int(n, minimum=1))
        roles = (
            self._refs(entries["roles"], self._roles, "role", nonempty=True)
            if "roles" in entries
            else None
        )
        if step is None or not limit_ok or roles is None:
            return None
        return Extension(step=step, limit=limit, roles=frozenset(roles))

    def _recurs(self, node: _Node) -> tuple[str, tuple[Duration, ...]] | None:
        entries = self._mapping(node, ("fact", "durations"))
        if entries is None:
            return None
        fact = self._date_fact(entries["fact"]) if "fact" in entries else None
        durations: list[Duration] | None = None
        items = self._list(entries["durations"], nonempty=True) if "durations" in entries else None
        if items is not None:
            read = [self._duration(item) for item in items]
            durations = [d for d in read if d is not None] if None not in read else None
        if fact is None or durations is None:
            return None
        return fact, tuple(durations)


def _closure(start: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
    """Every node reachable from ``start`` (``start`` included) along ``edges``."""
    seen = set(start)
    todo = list(seen)
    while todo:
        for following in edges[todo.pop()]:
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen
