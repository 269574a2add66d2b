"""Tests of nim_workflow._trial: the trial model, its loader and the bundled trial file.

The bundled trial's values are written out from TRIAL.md and DOMAIN.md (S5 Table 2), so a change
to ``trials/best.yaml`` the design does not also make fails here. Every file under
``tests/trials/invalid/`` opens with one comment line per expected problem,
``# expect: <line>: <field>: <part of the message>``, in file order, as the pathway corpus does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_pathway_mutation import MUTATIONS

import nim_workflow as nw
import nim_workflow._trial._bundled as bundled_module
from nim_workflow._pathway._model import Duration
from nim_workflow._trial._loader import load_trial, load_trial_text
from nim_workflow._trial._model import (
    STATUSES,
    TRIAL_ACTIONS,
    Trial,
    TrialArm,
    VisitReminder,
    VisitRule,
)

ROOT = Path(__file__).resolve().parents[1]
BEST = ROOT / "trials" / "best.yaml"
INVALID = Path(__file__).parent / "trials" / "invalid"
CORPUS = sorted(INVALID.glob("*.yaml"))
_EXPECT = re.compile(r"# expect: (\d+): (\S+): (.+)")
_DURATION_TEXT = re.compile(r"\b\d+\s+(?:working_days|days|weeks|months)\b")
_SOURCE_COMMENT = re.compile(r"#.*(?:\bS([1-9]|[12]\d|3[0-2])\b|\bassumption:)")
#: The trial's sites and, per arm, the pathway its children follow there (TRIAL.md).
ARM_PATHWAYS = {
    "nim": {"london": "nim-uk-england", "glasgow": "nim-uk-scotland"},
    "comparator": {"london": "best-sau-london", "glasgow": "best-facs-glasgow"},
}


def _weeks(amount: int) -> Duration:
    return Duration(amount=amount, unit="weeks")


def _months(amount: int) -> Duration:
    return Duration(amount=amount, unit="months")


PATHWAYS = nw.bundled_pathways()


@pytest.fixture(scope="module")
def best() -> nw.Trial:
    """The bundled BeST? trial file, checked against the bundled pathways and sites."""
    return nw.load_trial(BEST, pathways=nw.bundled_pathways())


def _expected(path: Path) -> list[tuple[int, str, str]]:
    expected = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _EXPECT.fullmatch(line)
        if match is None:
            break
        expected.append((int(match.group(1)), match.group(2), match.group(3)))
    return expected


def _problems(text: str, **kwargs: Any) -> list[str]:
    with pytest.raises(nw.PathwayError) as caught:
        load_trial_text(text, "t.yaml", **kwargs)
    return [str(problem) for problem in caught.value.problems]


# --- the bundled trial ---------------------------------------------------------------------------


def test_best_header(best: nw.Trial) -> None:
    """BeST?'s id, title, registration (S4) and unit (families, S5) are as written."""
    assert isinstance(best, nw.Trial)
    assert (best.id, best.title, best.registration, best.unit) == (
        "best",
        "Best Services Trial (BeST?)",
        "NCT02653716",
        "family",
    )


def test_best_arms(best: nw.Trial) -> None:
    """Two arms, NIM and the comparator, each with its pathway at London and Glasgow."""
    assert dict(best.arms) == {
        "nim": TrialArm(
            id="nim", title="New Orleans Intervention Model", pathways=ARM_PATHWAYS["nim"]
        ),
        "comparator": TrialArm(
            id="comparator", title="Services as usual", pathways=ARM_PATHWAYS["comparator"]
        ),
    }
    assert best.sites == ("glasgow", "london")
    assert best.pathway_for("comparator", "glasgow") == "best-facs-glasgow"


def test_best_visits(best: nw.Trial) -> None:
    """Baseline 4 to 14 weeks after entry to care; 15 months after it; 30 after randomisation."""
    opened = VisitReminder(when="opens", lead=None)
    assert best.visits == (
        VisitRule(
            name="baseline",
            title="Baseline visit (visit 3)",
            per="child",
            anchor="entered_care_on",
            opens=_weeks(4),
            closes=_weeks(14),
            target=None,
            reminders=(opened, VisitReminder(when="before_close", lead=_weeks(2))),
        ),
        VisitRule(
            name="month_15",
            title="15-month follow-up (visit 4)",
            per="child",
            anchor="entered_care_on",
            opens=_months(14),
            closes=_months(16),
            target=_months(15),
            reminders=(opened, VisitReminder(when="before_close", lead=_weeks(4))),
        ),
        VisitRule(
            name="month_30",
            title="2.5-year follow-up, primary outcome (visit 5)",
            per="family",
            anchor="randomised",
            opens=_months(28),
            closes=_months(32),
            target=_months(30),
            reminders=(opened, VisitReminder(when="before_close", lead=_weeks(4))),
        ),
    )
    assert best.visit("month_30").anchor == "randomised"
    with pytest.raises(KeyError):
        best.visit("month_12")


def test_best_statuses(best: nw.Trial) -> None:
    """The six statuses of TRIAL.md, in the order a family passes through them."""
    expected = (
        "enrolled",
        "consented",
        "randomised",
        "withdrawn_consent",
        "lost_to_follow_up",
        "completed",
    )
    assert best.statuses == STATUSES == expected


def test_best_roles_and_permissions(best: nw.Trial) -> None:
    """The roster's roles that act on families, and who may do each trial action."""
    assert dict(best.roles) == {
        "coordinator": "Pilot-site coordinator",
        "researcher": "Trial researcher",
        "social_worker": "Local authority social worker",
        "team_manager": "Team manager",
    }
    referrers = frozenset({"social_worker", "team_manager", "coordinator"})
    assert dict(best.permissions) == {
        "open_family": referrers,
        "add_child": referrers,
        "allocate": frozenset({"coordinator"}),
        "set_status": frozenset({"coordinator", "researcher"}),
        "record_visit": frozenset({"researcher", "coordinator"}),
    }
    assert tuple(best.permissions) == TRIAL_ACTIONS
    assert best.roles_for("allocate") == {"coordinator"}
    assert best.roles_for("record_visit") == {"researcher", "coordinator"}
    assert all(best.roles_for(action) <= best.roles.keys() for action in TRIAL_ACTIONS)


def test_roles_for_refuses_an_unknown_action(best: nw.Trial) -> None:
    """An action that is not a trial action is a KeyError, not an empty set of roles."""
    assert TRIAL_ACTIONS == ("open_family", "add_child", "allocate", "set_status", "record_visit")
    for action in ("randomise", "open_case", ""):
        with pytest.raises(KeyError):
            best.roles_for(action)


def test_roles_for_a_trial_built_in_memory() -> None:
    """A Trial built directly keeps its permissions read-only; an action it omits allows nobody."""
    trial = Trial(
        id="t",
        title="T",
        registration="R",
        unit="family",
        arms={},
        visits=(),
        statuses=STATUSES,
        roles={"coordinator": "Coordinator"},
        permissions={"allocate": frozenset({"coordinator"})},
    )
    assert trial.roles_for("allocate") == {"coordinator"}
    assert trial.roles_for("record_visit") == frozenset()
    with pytest.raises(KeyError):
        trial.roles_for("close_family")
    with pytest.raises(TypeError):
        trial.permissions["open_family"] = frozenset()  # type: ignore[index]
    with pytest.raises(TypeError):
        trial.roles["researcher"] = "Researcher"  # type: ignore[index]


def test_permissions_are_read_in_the_order_of_the_actions() -> None:
    """Permissions written in another order load the same, keyed in TRIAL_ACTIONS order."""
    head, _, tail = _best_text().partition("permissions:\n")
    actions = [line for line in tail.splitlines() if line.startswith("  ") and "#" not in line[:3]]
    assert len(actions) == len(TRIAL_ACTIONS)
    reordered = head + "permissions:\n" + "\n".join(reversed(actions)) + "\n"
    trial = load_trial_text(reordered, pathways=PATHWAYS)
    assert tuple(trial.permissions) == TRIAL_ACTIONS
    assert trial.permissions == nw.load_trial(BEST, pathways=PATHWAYS).permissions


def test_an_undeclared_role_is_reported_with_the_declared_ones() -> None:
    """Every role a permission names is declared under roles; the message lists the declared."""
    text = _best_text().replace("record_visit: [researcher, coordinator]", "record_visit: [nurse]")
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "record_visit: [nurse]" in t)
    assert _problems(text, pathways=PATHWAYS) == [
        f"t.yaml:{line}: permissions.record_visit[0]: unknown role 'nurse'; the roles are: "
        "coordinator, researcher, social_worker, team_manager"
    ]


def test_best_source_and_hash(best: nw.Trial) -> None:
    """The trial remembers its file, and its content hash is the SHA-256 of the file's bytes."""
    assert best.source == str(BEST)
    assert best.content_hash == hashlib.sha256(BEST.read_bytes()).hexdigest()
    assert load_trial_text(BEST.read_text("utf-8"), pathways=nw.bundled_pathways()) == best


def test_trial_values_are_frozen(best: nw.Trial) -> None:
    """A trial, its arms and visits cannot be changed once loaded, nor their mappings."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        best.id = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        best.visits[0].opens = _weeks(1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        best.arms["extra"] = best.arms["nim"]  # type: ignore[index]
    with pytest.raises(TypeError):
        best.arms["nim"].pathways["croydon"] = "x"  # type: ignore[index]


def test_bundled_trial_loads_against_the_bundled_pathways() -> None:
    """nw.bundled_trials() holds BeST?, checked against the pathways exactly as bundled."""
    trials = nw.bundled_trials()
    assert list(trials) == ["best"]
    assert trials["best"] == nw.load_trial(BEST)
    assert trials["best"] == nw.load_trial(BEST, pathways=nw.bundled_pathways())


def test_every_trial_duration_cites_its_source() -> None:
    """Each line of a bundled trial with a duration cites S1..S32 or says 'assumption:'."""
    uncited, seen = [], 0
    for path in sorted((ROOT / "trials").glob("*.yaml")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            found = _DURATION_TEXT.findall(line.split("#", 1)[0])
            seen += len(found)
            if found and not _SOURCE_COMMENT.search(line):
                uncited.append(f"{path.name}:{number}: {line.strip()}")
    assert uncited == []
    # Not vacuous: BeST?'s 3 windows (2 durations each), 2 targets and 3 reminder leads.
    assert seen == 11


def test_bundled_trials_come_from_the_packaged_folder_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a built wheel the trial files are under nim_workflow/_bundled_trials/."""
    assert bundled_module._bundled_dir() == ROOT / "trials"
    (tmp_path / "_bundled_trials").mkdir()
    monkeypatch.setattr(bundled_module, "files", lambda package: tmp_path)
    assert bundled_module._bundled_dir() == tmp_path / "_bundled_trials"


# --- checks against the pathways and sites -------------------------------------------------------


def _best_text() -> str:
    return BEST.read_text(encoding="utf-8")


def test_arms_are_checked_against_the_pathways_given() -> None:
    """pathways= is what arms are checked against: a comparator left out is unknown."""
    pathways = {k: v for k, v in nw.bundled_pathways().items() if not k.startswith("best-")}
    problems = _problems(_best_text(), pathways=pathways)
    assert len(problems) == 2
    assert problems[0].startswith("t.yaml:20: arms.comparator.pathways.london: unknown pathway")
    assert problems[1].startswith("t.yaml:21: arms.comparator.pathways.glasgow: unknown pathway")


def test_a_site_that_does_not_run_the_arm_pathway_is_refused() -> None:
    """A site that does not list an arm's pathway refuses it, naming what it runs."""
    sites = nw.bundled_sites()
    london = sites["london"]
    sites["london"] = nw.Site(
        id="london",
        title=london.title,
        timezone=london.timezone,
        calendar=london.calendar,
        pathways={"nim-uk-england"},
    )
    problems = _problems(_best_text(), pathways=nw.bundled_pathways(), sites=sites)
    assert problems == [
        "t.yaml:20: arms.comparator.pathways.london: site 'london' does not run pathway "
        "'best-sau-london'; it runs nim-uk-england"
    ]


def test_an_arm_pathway_in_another_calendar_than_its_site_is_refused() -> None:
    """A site whose calendar or time zone differs from an arm's pathway refuses it."""
    sites = nw.bundled_sites()
    glasgow = sites["glasgow"]
    sites["glasgow"] = nw.Site(
        id="glasgow",
        title=glasgow.title,
        timezone="Europe/Dublin",
        calendar="england-and-wales",
        pathways=glasgow.pathways,
    )
    problems = _problems(_best_text(), pathways=nw.bundled_pathways(), sites=sites)
    assert problems == [
        "t.yaml:16: arms.nim.pathways.glasgow: pathway 'nim-uk-scotland' keeps the calendar "
        "'scotland', but site 'glasgow' keeps 'england-and-wales'",
        "t.yaml:16: arms.nim.pathways.glasgow: pathway 'nim-uk-scotland' keeps the time zone "
        "'Europe/London', but site 'glasgow' keeps 'Europe/Dublin'",
        "t.yaml:21: arms.comparator.pathways.glasgow: pathway 'best-facs-glasgow' keeps the "
        "calendar 'scotland', but site 'glasgow' keeps 'england-and-wales'",
        "t.yaml:21: arms.comparator.pathways.glasgow: pathway 'best-facs-glasgow' keeps the "
        "time zone 'Europe/London', but site 'glasgow' keeps 'Europe/Dublin'",
    ]


def test_an_anchor_is_checked_against_every_arm_pathway() -> None:
    """An anchor missing from one arm's pathway at one site names that pathway, arm and site."""
    pathways = nw.bundled_pathways()
    london = pathways["best-sau-london"]
    facts = {k: v for k, v in london.facts.items() if k != "entered_care_on"}
    deadlines = tuple(rule for rule in london.deadlines if rule.anchor_fact != "entered_care_on")
    pathways["best-sau-london"] = dataclasses.replace(london, facts=facts, deadlines=deadlines)
    problems = _problems(_best_text(), pathways=pathways)
    assert [problem.split(": ", 2)[:2] for problem in problems] == [
        ["t.yaml:29", "visits[0].anchor"],
        ["t.yaml:39", "visits[1].anchor"],
    ]
    assert problems[0].endswith(
        "'entered_care_on' is not one: best-sau-london (arm comparator, site london) does not "
        "declare it"
    )


def test_load_trial_reports_an_unreadable_file(tmp_path: Path) -> None:
    """A file that cannot be read is one problem naming the file, with no line."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(nw.PathwayError) as caught:
        nw.load_trial(missing)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.field) == (str(missing), None, "<file>")
    assert problem.message.startswith("cannot read it")


def test_load_trial_reports_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are one problem on the line where they are."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"id: best\ntitle: caf\xe9\n")
    with pytest.raises(nw.PathwayError) as caught:
        nw.load_trial(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.field, problem.message) == (2, "<document>", "is not UTF-8 text")


# --- the invalid corpus --------------------------------------------------------------------------


def test_the_corpus_is_large_enough() -> None:
    """The corpus holds at least thirty invalid trial files, each announcing what it expects."""
    assert len(CORPUS) >= 30
    assert all(_expected(path) for path in CORPUS)


@pytest.mark.parametrize("path", CORPUS, ids=[path.stem for path in CORPUS])
def test_invalid_file_reports_exactly_the_expected_problems(path: Path) -> None:
    """Loading the file raises PathwayError whose problems are exactly the announced ones."""
    with pytest.raises(nw.PathwayError) as caught:
        load_trial(path, pathways=nw.bundled_pathways())
    found = [(p.file, p.line, p.field, p.message) for p in caught.value.problems]
    expected = _expected(path)
    assert len(found) == len(expected), "\n".join(str(p) for p in caught.value.problems)
    for (file, line, field, message), (want_line, want_field, want_text) in zip(
        found, expected, strict=True
    ):
        assert file == str(path)
        assert (line, field) == (want_line, want_field), message
        assert want_text in message


# One test draws the file, so the run stays near 200 loads however many files there are.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from([BEST, *CORPUS]), data=st.data())
def test_a_mutated_trial_loads_or_raises_pathway_error(path: Path, data: st.DataObject) -> None:
    """A damaged trial file yields a Trial or a PathwayError naming it, and no other exception."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for mutate in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        mutate(lines, data)
    result: nw.Trial | nw.PathwayError
    try:
        result = load_trial_text("\n".join(lines) + "\n", path.name, pathways=PATHWAYS)
    except nw.PathwayError as error:
        result = error
    if isinstance(result, nw.PathwayError):
        assert result.problems
        assert all(p.file == path.name for p in result.problems)
    else:
        assert isinstance(result, nw.Trial)


# --- the JSON Schema for editors -----------------------------------------------------------------


def _schema() -> dict[str, Any]:
    text = resources.files("nim_workflow._trial").joinpath("schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_schema_is_valid_draft_2020_12() -> None:
    """The trial schema.json is itself a valid JSON Schema of draft 2020-12."""
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_bundled_trial_validates_against_the_schema() -> None:
    """Every bundled trial file is also accepted by the editors' schema."""
    validator = jsonschema.Draft202012Validator(_schema())
    for path in sorted((ROOT / "trials").glob("*.yaml")):
        validator.validate(yaml.safe_load(path.read_bytes()))


STRUCTURAL = [
    "unknown-top-level-key",
    "missing-top-level-key",
    "bad-id",
    "unit-not-family",
    "one-arm",
    "unknown-arm-key",
    "unknown-key-in-visit",
    "visit-missing-window",
    "per-unknown",
    "window-in-working-days",
    "duration-in-years",
    "reminder-before-close-without-lead",
    "reminder-opens-with-lead",
    "reminder-unknown-when",
    "unknown-status",
    "missing-status",
    "duplicate-status",
    "missing-roles",
    "missing-permissions",
    "role-bad-id",
    "role-empty-title",
    "permission-unknown-action",
    "permission-missing-action",
    "permission-duplicate-role",
    "permission-empty",
    "permission-not-a-list",
]


@pytest.mark.parametrize("name", STRUCTURAL)
def test_the_schema_refuses_structural_mistakes(name: str) -> None:
    """Mistakes of shape alone (not of reference) are refused by the schema too."""
    data = yaml.safe_load((INVALID / f"{name}.yaml").read_bytes())
    assert not jsonschema.Draft202012Validator(_schema()).is_valid(data)
