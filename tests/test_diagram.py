"""Tests of nim_workflow._pathway._diagram: the text summary and the mermaid state diagram.

The mermaid output is checked with mermaid's own parser (``tests/mermaid/check.mjs``), installed
from npm into ``tests/mermaid/node_modules`` on first use. Without Node and npm the parser tests
skip on a developer's machine, but fail under CI (see ``ci_guard``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from ci_guard import skip_or_fail

from nim_workflow._pathway._bundled import bundled_pathways
from nim_workflow._pathway._diagram import render_mermaid, render_text
from nim_workflow._pathway._loader import load_pathway_text
from nim_workflow._pathway._model import Pathway

#: Every bundled pathway: PATHWAYS.md's three and the BeST? trial's two comparators (TRIAL.md).
PATHWAY_IDS = (
    "nim-uk-england",
    "nim-uk-scotland",
    "nim-us-louisiana",
    "best-facs-glasgow",
    "best-sau-london",
)
MERMAID_DIR = Path(__file__).parent / "mermaid"

MermaidCheck = Callable[[str], subprocess.CompletedProcess[str]]


@pytest.fixture(params=PATHWAY_IDS)
def pathway(request: pytest.FixtureRequest) -> Pathway:
    """Each bundled pathway in turn."""
    return bundled_pathways()[request.param]


def _needs_install() -> bool:
    # npm writes node_modules/.package-lock.json on every install; older than the manifest or the
    # lock file means the manifest changed since.
    installed = MERMAID_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists():
        return True
    stamp = installed.stat().st_mtime
    manifests = (MERMAID_DIR / "package.json", MERMAID_DIR / "package-lock.json")
    return any(path.exists() and path.stat().st_mtime > stamp for path in manifests)


def node_and_npm(
    environ: Mapping[str, str], which: Callable[[str], str | None] = shutil.which
) -> tuple[str, str]:
    """Node and npm, or skip (developer) / fail (CI) when either is missing."""
    node, npm = which("node"), which("npm")
    if node is None or npm is None:
        message = "node and npm are needed to check mermaid output with mermaid's parser"
        skip_or_fail(environ, message, under_ci_message=f"{message}; refusing to skip under CI")
    return node, npm


@pytest.fixture(scope="session")
def mermaid_check() -> MermaidCheck:
    """Run mermaid's real parser on some text; install it from npm on first use."""
    node, npm = node_and_npm(os.environ)
    if _needs_install():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=MERMAID_DIR,
            check=True,
            timeout=600,
        )

    def check(text: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [node, "check.mjs"],
            cwd=MERMAID_DIR,
            input=text,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return check


def _edges(pathway: Pathway) -> list[tuple[str, str, str]]:
    return [(s, t.dest, t.trigger) for t in pathway.transitions for s in t.sources]


def test_text_names_every_stage_and_trigger(pathway: Pathway) -> None:
    """The text summary names every stage, stage title and trigger of the pathway."""
    text = render_text(pathway)
    for stage in pathway.stages:
        assert stage.id in text
        assert stage.title in text
    for trigger in pathway.triggers():
        assert f"{trigger}:" in text


def test_text_shows_roles_and_requirements(pathway: Pathway) -> None:
    """Each transition's line block gives its roles and what it requires."""
    lines = render_text(pathway).splitlines()
    for transition in pathway.transitions:
        start = next(
            i for i, line in enumerate(lines) if line.strip().startswith(transition.trigger)
        )
        block = "\n".join(lines[start : start + 3])
        assert f"roles: {', '.join(sorted(transition.roles))}" in block
        for fact in transition.requires:
            assert fact in block
        assert ("a reason" in block) == transition.reason_required


def test_text_shows_deadlines_and_clocks(pathway: Pathway) -> None:
    """Every deadline appears with its duration, reminders, escalation and extension."""
    text = render_text(pathway)
    for rule in pathway.deadlines:
        assert f"{rule.name} (" in text
        assert str(rule.duration) in text
        for reminder in rule.reminders:
            assert reminder.label in text
        for duration in rule.recur_durations:
            assert str(duration) in text
        if rule.extension is not None:
            limit = rule.extension.limit
            how_often = "as often as granted" if limit is None else f"at most {limit}"
            assert f"up to {rule.extension.step} at a time, {how_often}" in text


def test_text_says_how_each_clock_counts_and_that_pauses_never_move_it() -> None:
    """Scotland's text names beginning-with counting, settling facts and the law's clocks."""
    text = render_text(bundled_pathways()["nim-uk-scotland"])
    assert "interim_cso (from icso_made_on): 22 days (beginning with that day)" in text
    assert "icso_limit (from the first icso_made_on): 66 days (beginning with that day)" in text
    assert "settled by: cso_made_on" in text
    assert text.count("pauses: never move it") == 4
    louisiana = render_text(bundled_pathways()["nim-us-louisiana"])
    assert "earliest of disposition_on + 3 months; entered_care_on + 6 months" in louisiana
    assert "15 months of the last 22 months" in louisiana


def test_text_of_england_treatment() -> None:
    """England's treatment deadline reads as LIFT's 5 months with its three reminders."""
    text = render_text(bundled_pathways()["nim-uk-england"])
    assert "treatment (stage treatment): 5 months" in text
    assert "monthly_update (every 1 months); mid_way_review (at 0.5 of the span)" in text
    assert "care_proceedings (from proceedings_issued_on): 26 weeks" in text


def test_mermaid_has_one_edge_per_transition(pathway: Pathway) -> None:
    """The diagram starts at the initial stage, ends at the final one, one edge per move."""
    lines = [line.strip() for line in render_mermaid(pathway).splitlines()]
    assert lines[0] == "stateDiagram-v2"
    assert "[*] --> referral" in lines
    assert "closed --> [*]" in lines
    edges = [line for line in lines if "-->" in line and "[*]" not in line]
    expected = [f"{source} --> {dest} : {trigger}" for source, dest, trigger in _edges(pathway)]
    assert edges == expected


def test_mermaid_parses_with_mermaid(pathway: Pathway, mermaid_check: MermaidCheck) -> None:
    """mermaid's own parser accepts each bundled pathway's diagram as a state diagram."""
    result = mermaid_check(render_mermaid(pathway))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "stateDiagram"


def test_mermaid_check_rejects_broken_text(mermaid_check: MermaidCheck) -> None:
    """The parser check is not vacuous: a malformed diagram fails it."""
    result = mermaid_check("stateDiagram-v2\n  referral --> : accept_referral\n")
    assert result.returncode == 1
    assert "Parse error" in result.stdout


_KEYWORD_STAGES = """
id: keyword-stages
version: 1
title: "Stages named like mermaid keywords: state; note"
calendar: scotland
timezone: Europe/London
roles: {team_manager: Team manager}
permissions: {}
facts: {}
stages:
  - {id: state, title: "State: first", initial: true}
  - {id: note, title: Note}
  - {id: note_, title: Not a keyword}
  - {id: default, title: Default, final: true}
transitions:
  - {trigger: go, from: state, to: note, roles: [team_manager]}
  - {trigger: onward, from: note, to: note_, roles: [team_manager]}
  - {trigger: stop, from: "*", to: default, roles: [team_manager], outcome: stopped}
deadlines: []
"""


def test_mermaid_aliases_keyword_stage_ids(mermaid_check: MermaidCheck) -> None:
    """Stage ids that are mermaid keywords are drawn under aliases and still parse."""
    pathway = load_pathway_text(_KEYWORD_STAGES, "keyword-stages.yaml")
    text = render_mermaid(pathway)
    assert 'state "state" as state_' in text
    assert 'state "note" as note__' in text
    assert "[*] --> state_" in text
    assert "default_ --> [*]" in text
    result = mermaid_check(text)
    assert result.returncode == 0, result.stdout + result.stderr
