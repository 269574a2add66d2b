"""Pictures of a pathway for people: a plain-text summary and a mermaid ``stateDiagram-v2``.

Both are drawn from the :class:`Pathway` model alone, never from the shared runtime machine, so
drawing can neither bind a model to it nor change it.
"""

from __future__ import annotations

from nim_workflow._pathway._model import DeadlineRule, Pathway, Reminder, Transition

__all__ = ["render_mermaid", "render_text"]

_INDENT = "  "
# Stage ids mermaid's stateDiagram-v2 lexer takes for keywords (ids here are [a-z][a-z0-9_]*);
# such a stage is drawn under an alias and shown with its own id.
_MERMAID_KEYWORDS = frozenset(
    {
        "class",
        "classdef",
        "click",
        "default",
        "href",
        "note",
        "scale",
        "state",
        "statediagram",
        "style",
    }
)


def render_text(pathway: Pathway) -> str:
    """A plain-text summary: stages, transitions (roles, requirements), deadlines and clocks."""
    lines = [
        pathway.title,
        f"{pathway.id} version {pathway.version}; calendar {pathway.calendar}; "
        f"time zone {pathway.timezone}",
        "",
        "Stages",
    ]
    width = max(len(stage.id) for stage in pathway.stages)
    for stage in pathway.stages:
        marks = [mark for mark, on in (("initial", stage.initial), ("final", stage.final)) if on]
        suffix = f" ({', '.join(marks)})" if marks else ""
        lines.append(f"{_INDENT}{stage.id:<{width}}  {stage.title}{suffix}")

    lines += ["", "Transitions"]
    for transition in pathway.transitions:
        lines += _transition_lines(transition)

    stage_rules = [rule for rule in pathway.deadlines if rule.kind == "stage"]
    clock_rules = [rule for rule in pathway.deadlines if rule.kind != "stage"]
    if stage_rules:
        lines += ["", "Stage deadlines (from entering the stage)"]
        for rule in stage_rules:
            lines += _rule_lines(rule, f"stage {rule.stage}")
    if clock_rules:
        lines += ["", "Statutory clocks and windows (from the date facts recorded)"]
        for rule in clock_rules:
            lines += _rule_lines(rule, _clock_start(rule))
    return "\n".join(lines) + "\n"


def _clock_start(rule: DeadlineRule) -> str:
    """What starts a clock, in words: its anchor, its candidates or its condition."""
    if rule.cumulative is not None:
        starts = " or ".join(
            f"{s.anchor} + {s.plus}" if s.plus else s.anchor for s in rule.cumulative.starts
        )
        return (
            f"days from the earliest of {starts}, ended by {rule.cumulative.leaves}, "
            f"begun again by {rule.cumulative.returns}"
        )
    if rule.candidates:
        candidates = "; ".join(
            f"{c.anchor} + {c.duration}"
            + (f" if {c.when_preceded_by} is earlier" if c.when_preceded_by else "")
            for c in rule.candidates
        )
        return f"earliest of {candidates}"
    first = "the first " if rule.from_first else ""
    return f"from {first}{rule.anchor_fact}"


def render_mermaid(pathway: Pathway) -> str:
    """A mermaid ``stateDiagram-v2``: one edge per (trigger, source), labelled with the trigger."""
    names = _mermaid_names(pathway)
    lines = ["stateDiagram-v2"]
    for stage in pathway.stages:
        name = names[stage.id]
        if name != stage.id:
            lines.append(f'{_INDENT}state "{stage.id}" as {name}')
        lines.append(f"{_INDENT}{name} : {_mermaid_label(stage.title)}")
    lines.append(f"{_INDENT}[*] --> {names[pathway.initial_stage]}")
    for transition in pathway.transitions:
        for source in transition.sources:
            edge = f"{names[source]} --> {names[transition.dest]} : {transition.trigger}"
            lines.append(_INDENT + edge)
    for stage in pathway.stages:
        if stage.final:
            lines.append(f"{_INDENT}{names[stage.id]} --> [*]")
    return "\n".join(lines) + "\n"


def _mermaid_names(pathway: Pathway) -> dict[str, str]:
    taken = {stage.id for stage in pathway.stages}
    names: dict[str, str] = {}
    for stage in pathway.stages:
        name = stage.id
        if name in _MERMAID_KEYWORDS:
            while name in taken:
                name += "_"
            taken.add(name)
        names[stage.id] = name
    return names


def _transition_lines(transition: Transition) -> list[str]:
    head = f"{', '.join(transition.sources)} -> {transition.dest}"
    if transition.outcome is not None:
        head += f" (outcome {transition.outcome})"
    elif transition.outcome_fact is not None:
        head += f" (outcome from {transition.outcome_fact})"
    needs = list(transition.requires)
    if transition.reason_required:
        needs.append("a reason")
    return [
        f"{_INDENT}{transition.trigger}: {head}",
        f"{_INDENT * 3}roles: {', '.join(sorted(transition.roles))}",
        f"{_INDENT * 3}requires: {', '.join(needs) if needs else 'nothing'}",
    ]


def _rule_lines(rule: DeadlineRule, start: str) -> list[str]:
    if rule.cumulative is not None:
        span = f"{rule.cumulative.reaches} of the last {rule.cumulative.within}"
    elif rule.candidates:
        span = "the earliest date"
    elif rule.opens is not None:
        span = f"window from {rule.opens} to {rule.duration}"
    else:
        span = str(rule.duration)
    if rule.counting == "beginning_with":
        span += " (beginning with that day)"
    if rule.recur_fact is not None and rule.recur_durations:
        later = ", then ".join(str(duration) for duration in rule.recur_durations)
        span += f"; then from each {rule.recur_fact}: {later}"
    lines = [f"{_INDENT}{rule.name} ({start}): {span}"]
    if rule.reminders:
        reminders = "; ".join(_reminder_text(reminder) for reminder in rule.reminders)
        lines.append(f"{_INDENT * 3}reminders: {reminders}")
    lines.append(f"{_INDENT * 3}escalates to: {rule.escalate_to}")
    if rule.settled_by:
        lines.append(f"{_INDENT * 3}settled by: {', '.join(rule.settled_by)}")
    if rule.kind != "stage" or not rule.pausable:
        lines.append(f"{_INDENT * 3}pauses: {'move it' if rule.pausable else 'never move it'}")
    if rule.extension is not None:
        ext = rule.extension
        if ext.limit is None:
            how_often = "as often as granted"
        else:
            how_often = f"at most {ext.limit} {'time' if ext.limit == 1 else 'times'}"
        lines.append(
            f"{_INDENT * 3}extension: up to {ext.step} at a time, {how_often}, "
            f"by {', '.join(sorted(ext.roles))}"
        )
    return lines


def _reminder_text(reminder: Reminder) -> str:
    if reminder.before is not None:
        when = f"{reminder.before} before"
    elif reminder.every is not None:
        when = f"every {reminder.every}"
    else:
        when = f"at {reminder.fraction:g} of the span"
    return f"{reminder.label} ({when})"


def _mermaid_label(text: str) -> str:
    # A colon or a line break would end or split a mermaid state description.
    return " ".join(text.replace(":", " -").split())
