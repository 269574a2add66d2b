"""Tests of the bundled pathway files, and of nim_workflow._pathway._bundled that loads them.

The tables here are written out from the design's PATHWAYS.md (ids, roles, requirements,
durations) and, for the BeST? trial's two comparator pathways, from TRIAL.md and DOMAIN.md, so a
change to a bundled file that the design does not also make fails here.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from pathlib import Path
from typing import Any

import pytest

import nim_workflow._pathway._bundled as bundled_module
from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._bundled import bundled_path, bundled_pathways
from nim_workflow._pathway._loader import load_pathway
from nim_workflow._pathway._model import Duration, Pathway

PATHWAYS_DIR = Path(__file__).resolve().parents[1] / "pathways"
#: The NIM pathways of PATHWAYS.md.
PATHWAY_IDS = ("nim-uk-england", "nim-uk-scotland", "nim-us-louisiana")
#: The trial's comparator pathways of TRIAL.md -> the NIM pathway of the same nation and site.
COMPARATORS = {"best-facs-glasgow": "nim-uk-scotland", "best-sau-london": "nim-uk-england"}
ALL_IDS = (*PATHWAY_IDS, *COMPARATORS)
#: Each file's version: the UK NIM files are at 4 and the comparators at 2 (the trial's outcome
#: facts, TRIAL.md); Louisiana, outside the trial, is at 3.
VERSIONS = {
    "nim-uk-england": 4,
    "nim-uk-scotland": 4,
    "nim-us-louisiana": 3,
    **dict.fromkeys(COMPARATORS, 2),
}
STAGES = ("referral", "assessment", "treatment", "recommendation", "court", "closed")
OPEN_STAGES = STAGES[:-1]
ROLES = ("social_worker", "clinician", "team_manager", "court_officer", "coordinator")

# pathway id -> (calendar, time zone)
PLACES = {
    "nim-uk-england": ("england-and-wales", "Europe/London"),
    "nim-uk-scotland": ("scotland", "Europe/London"),
    "nim-us-louisiana": ("louisiana", "America/Chicago"),
    "best-facs-glasgow": ("scotland", "Europe/London"),
    "best-sau-london": ("england-and-wales", "Europe/London"),
}

# trigger -> (sources, destination, roles, requires, reason required, outcome, outcome fact)
TRIGGERS: dict[str, tuple[tuple[str, ...], str, set[str], tuple[str, ...], bool, Any, Any]] = {
    "accept_referral": (
        ("referral",),
        "assessment",
        {"team_manager"},
        ("consent_recorded",),
        False,
        None,
        None,
    ),
    "decline_referral": (("referral",), "closed", {"team_manager"}, (), True, "not_eligible", None),
    "offer_treatment": (
        ("assessment",),
        "treatment",
        {"team_manager"},
        ("assessment_report_filed",),
        False,
        None,
        None,
    ),
    "recommend_without_treatment": (
        ("assessment",),
        "recommendation",
        {"team_manager"},
        ("assessment_report_filed",),
        False,
        None,
        None,
    ),
    "complete_treatment": (
        ("treatment",),
        "recommendation",
        {"clinician", "team_manager"},
        ("treatment_review_filed",),
        False,
        None,
        None,
    ),
    "submit_recommendation": (
        ("recommendation",),
        "court",
        {"team_manager"},
        ("final_report_filed", "recommendation"),
        False,
        None,
        None,
    ),
    "record_decision": (
        ("court",),
        "closed",
        {"court_officer"},
        ("decision",),
        False,
        None,
        "decision",
    ),
    "withdraw": (OPEN_STAGES, "closed", {"team_manager"}, (), True, "withdrawn", None),
}

# The role x trigger matrix of PATHWAYS.md, row by row: may this role fire this trigger?
MATRIX = {
    "social_worker": set[str](),
    "clinician": {"complete_treatment"},
    "team_manager": {
        "accept_referral",
        "decline_referral",
        "offer_treatment",
        "recommend_without_treatment",
        "complete_treatment",
        "submit_recommendation",
        "withdraw",
    },
    "court_officer": {"record_decision"},
    "coordinator": set[str](),
}

PERMISSIONS = {
    "open_case": {"social_worker", "team_manager"},
    "record": {"social_worker", "clinician", "team_manager", "court_officer"},
    "pause": {"team_manager", "coordinator"},
    "resume": {"team_manager", "coordinator"},
    "upgrade": {"coordinator"},
    # Not in PATHWAYS.md: who assigns a case to a worker is the project's assumption.
    "assign": {"team_manager"},
}

COMMON_FACTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "consent_recorded": ("bool", ()),
    "assessment_report_filed": ("bool", ()),
    "treatment_review_filed": ("bool", ()),
    "final_report_filed": ("bool", ()),
    "recommendation": ("enum", ("return_home", "permanence_away")),
}
_DECISIONS = ("return_home", "adoption", "kinship_care", "long_term_foster_care")
#: Each nation's own permanence decision beside the common ones (DOMAIN.md section 7).
DECISIONS = {
    "nim-uk-england": (*_DECISIONS, "special_guardianship"),
    "nim-uk-scotland": (*_DECISIONS, "permanence_order"),
    "nim-us-louisiana": (*_DECISIONS, "legal_guardianship"),
}
#: The facts the BeST? trial's evaluation needs (TRIAL.md "Outcomes and delivery"), declared by
#: both UK NIM pathways and both comparators, not by Louisiana.
OUTCOME_FACTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "permanence_achieved_on": ("date", ()),
    "intervention_received": ("enum", ("received", "partly", "not_received")),
}
TRIAL_PATHWAY_IDS = ("nim-uk-england", "nim-uk-scotland", *COMPARATORS)
DATE_FACTS = {
    "nim-uk-england": (
        "proceedings_issued_on",
        "entered_care_on",
        "lac_review_held_on",
        "placed_on",
    ),
    "nim-uk-scotland": (
        "entered_care_on",
        "placed_on",
        "lac_review_held_on",
        "cso_made_on",
        "cso_continued_on",
        "cso_terminated_on",
        "icso_made_on",
    ),
    "nim-us-louisiana": (
        "entered_care_on",
        "disposition_on",
        "adjudicated_on",
        "reunification_not_required_on",
        "case_review_held_on",
        "permanency_hearing_held_on",
        "returned_home_on",
        "reentered_care_on",
        "tpr_petition_filed_on",
    ),
}

# Stage deadlines: name -> stage, then per pathway the duration.
STAGE_DEADLINES = {
    "referral_decision": "referral",
    "assessment": "assessment",
    "treatment": "treatment",
    "final_report": "recommendation",
}
STAGE_DURATIONS = {
    "nim-uk-england": {
        "referral_decision": "10 working_days",
        "assessment": "12 weeks",
        "treatment": "5 months",
        "final_report": "4 weeks",
    },
    "nim-uk-scotland": {
        "referral_decision": "10 working_days",
        "assessment": "3 months",
        "treatment": "9 months",
        "final_report": "4 weeks",
    },
    "nim-us-louisiana": {
        "referral_decision": "10 working_days",
        "assessment": "3 months",
        "treatment": "9 months",
        "final_report": "4 weeks",
    },
}
# Statutory clocks: name -> (anchor fact, first duration, recurring fact, later durations).
#: Anchored clocks: (anchor, first span, counting, recurring fact, later spans, settled by).
CLOCKS: dict[str, dict[str, tuple[str, str, str, str | None, tuple[str, ...], tuple[str, ...]]]] = {
    "nim-uk-england": {
        "care_proceedings": ("proceedings_issued_on", "26 weeks", "beginning_with", None, (), ()),
        "lac_review": (
            "entered_care_on",
            "20 working_days",
            "after",
            "lac_review_held_on",
            ("3 months", "6 months"),
            (),
        ),
    },
    "nim-uk-scotland": {
        "lac_review": (
            "placed_on",
            "6 weeks",
            "after",
            "lac_review_held_on",
            ("3 months", "6 months"),
            (),
        ),
        "cso_review": (
            "cso_made_on",
            "12 months",
            "beginning_with",
            "cso_continued_on",
            ("12 months",),
            ("cso_terminated_on",),
        ),
        "interim_cso": ("icso_made_on", "22 days", "beginning_with", None, (), ("cso_made_on",)),
        "icso_limit": ("icso_made_on", "66 days", "beginning_with", None, (), ("cso_made_on",)),
    },
    "nim-us-louisiana": {},
}
#: earliest_of clocks: their candidates (anchor, span, when preceded by) and recurrence.
EARLIEST: dict[str, dict[str, tuple[tuple[tuple[str, str, str | None], ...], str, str]]] = {
    "nim-us-louisiana": {
        "case_review": (
            (("disposition_on", "3 months", None), ("entered_care_on", "6 months", None)),
            "case_review_held_on",
            "6 months",
        ),
        "permanency_hearing": (
            (
                ("disposition_on", "9 months", "entered_care_on"),
                ("entered_care_on", "12 months", None),
                ("reunification_not_required_on", "30 days", None),
            ),
            "permanency_hearing_held_on",
            "12 months",
        ),
    },
}
_DURATION_TEXT = re.compile(r"\b\d+\s+(?:working_days|days|weeks|months)\b")
_SOURCE_COMMENT = re.compile(r"#.*(?:\bS([1-9]|[12]\d|3[0-2])\b|\bassumption:)")


@pytest.fixture(params=PATHWAY_IDS)
def pathway(request: pytest.FixtureRequest) -> Pathway:
    """Each bundled NIM pathway in turn."""
    return bundled_pathways()[request.param]


@pytest.fixture(params=ALL_IDS)
def any_pathway(request: pytest.FixtureRequest) -> Pathway:
    """Each bundled pathway in turn, the trial's comparators included."""
    return bundled_pathways()[request.param]


def test_bundled_ids() -> None:
    """Exactly PATHWAYS.md's three pathways and TRIAL.md's two comparators are bundled, by id."""
    assert sorted(bundled_pathways()) == sorted(ALL_IDS)
    assert sorted(path.stem for path in PATHWAYS_DIR.glob("*.yaml")) == sorted(ALL_IDS)


@pytest.mark.parametrize("path", sorted(PATHWAYS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_file_loads_from_disk(path: Path) -> None:
    """Every file under pathways/ loads, is named after its id, and is at its version."""
    pathway = load_pathway(path)
    assert pathway.id == path.stem
    assert pathway.version == VERSIONS[pathway.id]
    assert pathway.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("pathway_id", ALL_IDS)
def test_every_earlier_version_is_archived_and_not_bundled(pathway_id: str) -> None:
    """pathways/archive/ holds each earlier version as ``<id>.v<n>.yaml``; the bundle skips it."""
    archived = {
        path.name: load_pathway(path)
        for path in (PATHWAYS_DIR / "archive").glob(f"{pathway_id}.v*.yaml")
    }
    assert sorted(archived) == [f"{pathway_id}.v{n}.yaml" for n in range(1, VERSIONS[pathway_id])]
    for name, old in archived.items():
        assert (old.id, f"{old.id}.v{old.version}.yaml") == (pathway_id, name)
    assert bundled_pathways()[pathway_id].version == VERSIONS[pathway_id]


def test_bundled_equals_loaded_from_disk(any_pathway: Pathway) -> None:
    """Loading through importlib.resources gives the same pathway and hash as from the file."""
    path = bundled_path(any_pathway.id)
    assert path.name == f"{any_pathway.id}.yaml"
    assert any_pathway == load_pathway(PATHWAYS_DIR / path.name)


def test_bundled_pathways_returns_a_fresh_dict() -> None:
    """Callers may change the dict they get without changing what others get."""
    first = bundled_pathways()
    first.clear()
    assert sorted(bundled_pathways()) == sorted(ALL_IDS)


def test_bundled_path_unknown_id() -> None:
    """Asking for a pathway that is not bundled names the ones that are."""
    with pytest.raises(InvalidInput, match="nim-uk-england") as raised:
        bundled_path("nim-mars")
    assert raised.value.field == "pathway_id"


def test_source_checkout_falls_back_to_top_level_folder() -> None:
    """Without a packaged _bundled folder the repository's pathways/ is used."""
    folder = bundled_module._bundled_dir()
    assert isinstance(folder, Path)
    assert folder == PATHWAYS_DIR


def test_packaged_folder_wins_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a built wheel the files come from nim_workflow/_bundled through importlib.resources."""
    (tmp_path / "_bundled").mkdir()
    monkeypatch.setattr(bundled_module, "files", lambda package: tmp_path)
    assert bundled_module._bundled_dir() == tmp_path / "_bundled"


def test_place(any_pathway: Pathway) -> None:
    """Each pathway names the calendar and time zone of its site."""
    assert (any_pathway.calendar, any_pathway.timezone) == PLACES[any_pathway.id]


def test_stages(pathway: Pathway) -> None:
    """The six stages in order, referral initial and closed the only final one."""
    assert tuple(stage.id for stage in pathway.stages) == STAGES
    assert pathway.initial_stage == "referral"
    assert pathway.final_stages == {"closed"}


def test_roles_and_permissions(pathway: Pathway) -> None:
    """All five roles are declared, with the permissions of PATHWAYS.md."""
    assert set(pathway.roles) == set(ROLES)
    assert {action: set(roles) for action, roles in pathway.permissions.items()} == PERMISSIONS


def test_facts(pathway: Pathway) -> None:
    """The common facts, this pathway's date facts and the trial's outcome facts, no others."""
    expected = dict(COMMON_FACTS)
    expected["decision"] = ("enum", DECISIONS[pathway.id])
    expected.update(dict.fromkeys(DATE_FACTS[pathway.id], ("date", ())))
    if pathway.id in TRIAL_PATHWAY_IDS:
        expected.update(OUTCOME_FACTS)
    actual = {name: (spec.type, spec.values) for name, spec in pathway.facts.items()}
    assert actual == expected


def test_transitions_table(pathway: Pathway) -> None:
    """Every trigger has the sources, destination, roles, requirements and outcome of the table."""
    actual = {
        t.trigger: (
            t.sources,
            t.dest,
            set(t.roles),
            t.requires,
            t.reason_required,
            t.outcome,
            t.outcome_fact,
        )
        for t in pathway.transitions
    }
    assert len(pathway.transitions) == len(actual)
    assert actual == TRIGGERS


def test_role_trigger_matrix(pathway: Pathway) -> None:
    """Which role may fire which trigger equals the matrix written out from PATHWAYS.md."""
    actual = {
        role: {t.trigger for t in pathway.transitions if role in t.roles} for role in pathway.roles
    }
    assert actual == MATRIX


def _reachable(start: str, step: dict[str, set[str]]) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        for nxt in step.get(queue.popleft(), set()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def test_every_stage_reachable_from_referral(pathway: Pathway) -> None:
    """Following transitions from referral reaches every stage."""
    forward: dict[str, set[str]] = {}
    for t in pathway.transitions:
        for source in t.sources:
            forward.setdefault(source, set()).add(t.dest)
    assert _reachable("referral", forward) == set(STAGES)


def test_closed_reachable_from_every_stage(pathway: Pathway) -> None:
    """From every stage some path of transitions leads to closed."""
    backward: dict[str, set[str]] = {}
    for t in pathway.transitions:
        for source in t.sources:
            backward.setdefault(t.dest, set()).add(source)
    assert _reachable("closed", backward) == set(STAGES)


def test_stage_deadlines(pathway: Pathway) -> None:
    """The four stage deadlines, on their stages, with the durations of PATHWAYS.md."""
    rules = {rule.name: rule for rule in pathway.deadlines if rule.kind == "stage"}
    assert {name: rule.stage for name, rule in rules.items()} == STAGE_DEADLINES
    durations = {name: rule.duration for name, rule in rules.items()}
    expected = {name: Duration.parse(text) for name, text in STAGE_DURATIONS[pathway.id].items()}
    assert durations == expected


def test_statutory_clocks(pathway: Pathway) -> None:
    """The anchored clocks with their anchors, spans, counting, recurrences and settling facts."""
    actual = {
        rule.name: (
            rule.anchor_fact,
            rule.duration,
            rule.counting,
            rule.recur_fact,
            rule.recur_durations,
            rule.settled_by,
        )
        for rule in pathway.clock_rules()
        if rule.anchor_fact is not None
    }
    expected = {
        name: (
            anchor,
            Duration.parse(first),
            counting,
            recur,
            tuple(Duration.parse(d) for d in later),
            settled,
        )
        for name, (anchor, first, counting, recur, later, settled) in CLOCKS[pathway.id].items()
    }
    assert actual == expected


def test_earliest_of_clocks(pathway: Pathway) -> None:
    """Louisiana's art. 692 and 702 clocks take the earliest of their candidates, then recur."""
    actual = {
        rule.name: (
            tuple((c.anchor, c.duration, c.when_preceded_by) for c in rule.candidates),
            rule.recur_fact,
            rule.recur_durations,
        )
        for rule in pathway.clock_rules()
        if rule.candidates
    }
    expected = {
        name: (
            tuple(
                (anchor, Duration.parse(span), preceded) for anchor, span, preceded in candidates
            ),
            recur,
            (Duration.parse(later),),
        )
        for name, (candidates, recur, later) in EARLIEST.get(pathway.id, {}).items()
    }
    assert actual == expected


def test_law_clocks_never_pause_and_stage_deadlines_do(any_pathway: Pathway) -> None:
    """Every statutory clock has pausable false; every stage deadline pausable true."""
    for rule in any_pathway.deadlines:
        assert rule.pausable is (rule.kind == "stage"), rule.name


def test_asfa_counts_only_days_in_care() -> None:
    """ASFA 15 of 22: care starts at the earlier of the finding and removal + 60 days."""
    rule = bundled_pathways()["nim-us-louisiana"].rule("asfa_15_of_22")
    cumulative = rule.cumulative
    assert cumulative is not None
    assert [(s.anchor, s.plus) for s in cumulative.starts] == [
        ("adjudicated_on", None),
        ("entered_care_on", Duration.parse("60 days")),
    ]
    assert (cumulative.leaves, cumulative.returns) == ("returned_home_on", "reentered_care_on")
    assert (cumulative.reaches, cumulative.within) == (
        Duration.parse("15 months"),
        Duration.parse("22 months"),
    )
    assert rule.settled_by == ("tpr_petition_filed_on",)


def test_escalation_and_extension_roles(any_pathway: Pathway) -> None:
    """Every deadline escalates to team_manager; only care_proceedings is extended by the court."""
    for rule in any_pathway.deadlines:
        assert rule.escalate_to == "team_manager"
        assert rule.reminders, rule.name
        if rule.extension is None:
            continue
        by_court = rule.name in ("care_proceedings", "icso_limit")
        expected = {"court_officer"} if by_court else {"team_manager"}
        assert set(rule.extension.roles) == expected, rule.name
        # The court's extensions have no cap in statute; the team's own are limited.
        assert (rule.extension.limit is None) is by_court, rule.name


def test_england_treatment_and_proceedings() -> None:
    """England: LIFT's reminders on treatment and 8-week court extensions of care proceedings."""
    england = bundled_pathways()["nim-uk-england"]
    reminders = {r.label: r for r in england.rule("treatment").reminders}
    assert reminders["monthly_update"].every == Duration.parse("1 months")
    assert reminders["mid_way_review"].fraction == 0.5
    assert any(r.before == Duration.parse("10 working_days") for r in reminders.values())
    extension = england.rule("care_proceedings").extension
    assert extension is not None
    assert extension.step == Duration.parse("8 weeks")
    assert extension.limit is None


def test_scotland_treatment_extends_once_to_twelve_months() -> None:
    """Scotland: GIFT treatment is 9 months, extendable once by 3 months by a team manager."""
    rule = bundled_pathways()["nim-uk-scotland"].rule("treatment")
    assert rule.extension is not None
    assert (rule.extension.step, rule.extension.limit) == (Duration.parse("3 months"), 1)
    assert rule.extension.roles == {"team_manager"}


@pytest.mark.parametrize("path", sorted(PATHWAYS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_duration_cites_its_source(path: Path) -> None:
    """Each line with a duration carries a comment citing S1..S32 or saying 'assumption:'."""
    uncited = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        code = line.split("#", 1)[0]
        if _DURATION_TEXT.search(code) and not _SOURCE_COMMENT.search(line):
            uncited.append(f"{path.name}:{number}: {line.strip()}")
    assert uncited == []


def test_duration_check_sees_every_duration(any_pathway: Pathway) -> None:
    """The line check above is not vacuous: it finds a line for every duration in the model."""
    lines = bundled_path(any_pathway.id).read_text(encoding="utf-8").splitlines()
    cited = sum(len(_DURATION_TEXT.findall(line.split("#", 1)[0])) for line in lines)
    in_model = 0
    for rule in any_pathway.deadlines:
        in_model += len(rule.candidates) or 1
        in_model += len(rule.recur_durations)
        if rule.cumulative is not None:
            in_model += 1 + sum(start.plus is not None for start in rule.cumulative.starts)
        in_model += sum(1 for r in rule.reminders if r.before is not None or r.every is not None)
        in_model += rule.extension is not None
    assert cited == in_model


# -- the trial's comparator pathways (TRIAL.md) ----------------------------------------------------

COMPARATOR_STAGES = ("referral", "assessment", "recommendation", "court", "closed")
#: The NIM triggers a comparator keeps: all but those into and out of treatment, which it lacks.
COMPARATOR_TRIGGERS = {
    trigger: ((COMPARATOR_STAGES[:-1], *spec[1:]) if trigger == "withdraw" else spec)
    for trigger, spec in TRIGGERS.items()
    if trigger not in ("offer_treatment", "complete_treatment")
}
COMPARATOR_DATE_FACTS = {
    # The trial's visits run from entry to care (S5 Table 2), so both comparators declare it.
    "best-facs-glasgow": ("entered_care_on", *DATE_FACTS["nim-uk-scotland"]),
    "best-sau-london": DATE_FACTS["nim-uk-england"],
}
COMPARATOR_DURATIONS = {
    "best-facs-glasgow": {
        "referral_decision": "10 working_days",
        "assessment": "3 months",  # S7: a FACS assessment takes about 3 months
        "final_report": "4 weeks",
    },
    "best-sau-london": {
        "referral_decision": "10 working_days",
        "assessment": "45 working_days",  # S23: Working Together 2018 para 82
        "final_report": "4 weeks",
    },
}


@pytest.fixture(params=sorted(COMPARATORS))
def comparator(request: pytest.FixtureRequest) -> Pathway:
    """Each bundled comparator pathway in turn."""
    return bundled_pathways()[request.param]


def test_comparator_stages_have_no_treatment(comparator: Pathway) -> None:
    """A comparator has the NIM stage ids but treatment: referral initial, closed the only final."""
    assert tuple(stage.id for stage in comparator.stages) == COMPARATOR_STAGES
    assert all(stage.title for stage in comparator.stages)
    assert comparator.initial_stage == "referral"
    assert comparator.final_stages == {"closed"}
    assert "treatment_review_filed" not in comparator.facts
    assert not any(rule.stage == "treatment" for rule in comparator.deadlines)


def test_comparator_roles_and_permissions(comparator: Pathway) -> None:
    """A comparator declares the NIM roles with the NIM permissions, assign included."""
    assert set(comparator.roles) == set(ROLES)
    assert {action: set(roles) for action, roles in comparator.permissions.items()} == PERMISSIONS


def test_comparator_facts(comparator: Pathway) -> None:
    """The shared facts as NIM declares them, the nation's decisions, its date and outcome facts."""
    expected = {
        name: spec for name, spec in COMMON_FACTS.items() if name != "treatment_review_filed"
    }
    expected["decision"] = ("enum", DECISIONS[COMPARATORS[comparator.id]])
    expected.update(dict.fromkeys(COMPARATOR_DATE_FACTS[comparator.id], ("date", ())))
    expected.update(OUTCOME_FACTS)
    actual = {name: (spec.type, spec.values) for name, spec in comparator.facts.items()}
    assert actual == expected


def test_comparator_shares_the_nim_fact_specs(comparator: Pathway) -> None:
    """Every fact the comparator shares with its nation's NIM pathway is declared alike."""
    nim = bundled_pathways()[COMPARATORS[comparator.id]]
    shared = comparator.facts.keys() & nim.facts.keys()
    assert {"consent_recorded", "decision", "recommendation", "final_report_filed"} <= shared
    for name in shared:
        assert comparator.facts[name] == nim.facts[name], name


def test_comparator_transitions(comparator: Pathway) -> None:
    """The NIM triggers without treatment's: the assessment goes straight to the recommendation."""
    actual = {
        t.trigger: (
            t.sources,
            t.dest,
            set(t.roles),
            t.requires,
            t.reason_required,
            t.outcome,
            t.outcome_fact,
        )
        for t in comparator.transitions
    }
    assert len(comparator.transitions) == len(actual)
    assert actual == COMPARATOR_TRIGGERS


def test_comparator_every_stage_reachable_and_closable(comparator: Pathway) -> None:
    """From referral every stage is reached, and from every stage closed is."""
    forward: dict[str, set[str]] = {}
    backward: dict[str, set[str]] = {}
    for t in comparator.transitions:
        for source in t.sources:
            forward.setdefault(source, set()).add(t.dest)
            backward.setdefault(t.dest, set()).add(source)
    assert _reachable("referral", forward) == set(COMPARATOR_STAGES)
    assert _reachable("closed", backward) == set(COMPARATOR_STAGES)


def test_comparator_stage_deadlines(comparator: Pathway) -> None:
    """Referral, assessment and final-report deadlines on their stages, with sourced durations."""
    rules = {rule.name: rule for rule in comparator.deadlines if rule.kind == "stage"}
    assert {name: rule.stage for name, rule in rules.items()} == {
        name: stage for name, stage in STAGE_DEADLINES.items() if name != "treatment"
    }
    durations = {name: rule.duration for name, rule in rules.items()}
    expected = {
        name: Duration.parse(text) for name, text in COMPARATOR_DURATIONS[comparator.id].items()
    }
    assert durations == expected


def test_comparator_statutory_clocks_are_the_nations(comparator: Pathway) -> None:
    """The law's clocks apply whatever the trial arm: identical to the nation's NIM file's."""
    nim = bundled_pathways()[COMPARATORS[comparator.id]]
    assert comparator.clock_rules() == nim.clock_rules()
    assert comparator.clock_rules()


@pytest.mark.parametrize("comparator_id", sorted(COMPARATORS))
def test_comparator_clock_lines_are_copied_with_their_sources(comparator_id: str) -> None:
    """Each statutory clock's file lines, sources included, are those of the nation's NIM file."""

    def clock_lines(pathway_id: str) -> list[str]:
        lines = (PATHWAYS_DIR / f"{pathway_id}.yaml").read_text(encoding="utf-8").splitlines()
        start = next(i for i, line in enumerate(lines) if "# Statutory clocks" in line)
        body = [line for line in lines[start:] if line.startswith("  - ") or "    " in line[:4]]
        # The pause reasons name whose work it is (NIM's or the comparator's); the rest is equal.
        return [re.sub(r"whatever the .* does", "whatever the work does", line) for line in body]

    assert clock_lines(comparator_id) == clock_lines(COMPARATORS[comparator_id])
