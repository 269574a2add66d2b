"""The public API: exactly the names API.md promises, typed exceptions, frozen value objects.

A name added to or dropped from ``nim_workflow.__all__`` fails here, so every change to the public
surface is a deliberate one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect

import pytest

import nim_workflow as nw

PINNED_ALL = [
    "ActionRefused",
    "Actor",
    "AlreadyAllocated",
    "AuditEvent",
    "AuditReport",
    "Case",
    "CaseExists",
    "CaseNotFound",
    "CasePaused",
    "CaseUpgrade",
    "Caseload",
    "Checkpoint",
    "ConcurrentUpdate",
    "Deadline",
    "DeadlineChange",
    "Engine",
    "Event",
    "Explanation",
    "ExportManifest",
    "ExtensionNotAllowed",
    "Family",
    "FamilyExists",
    "FamilyNotFound",
    "InvalidInput",
    "NimWorkflowError",
    "OutsideWindow",
    "Pathway",
    "PathwayError",
    "PermissionDenied",
    "Problem",
    "RequirementsNotMet",
    "Site",
    "StaffMember",
    "StaffNotFound",
    "StageInterval",
    "TransitionNotAllowed",
    "Trial",
    "UnknownSite",
    "Visit",
    "__version__",
    "bundled_pathways",
    "bundled_sites",
    "bundled_trials",
    "load_pathway",
    "load_pathway_text",
    "load_site",
    "load_trial",
]

#: Every name API.md's Python section uses on the module.
API_NAMES = [
    "load_pathway",
    "bundled_pathways",
    "Pathway",
    "Engine",
    "Actor",
    "Case",
    "StageInterval",
    "Deadline",
    "Event",
    "AuditEvent",
    "AuditReport",
    "NimWorkflowError",
    "PathwayError",
    "CaseNotFound",
    "CaseExists",
    "TransitionNotAllowed",
    "RequirementsNotMet",
    "PermissionDenied",
    "ConcurrentUpdate",
    "CasePaused",
    "InvalidInput",
    "Site",
    "UnknownSite",
    "load_trial",
    "Trial",
    "Family",
    "Visit",
    "AlreadyAllocated",
    "OutsideWindow",
]

#: Engine methods and the parameters API.md gives each (more may be added, none removed).
ENGINE_METHODS: dict[str, list[str]] = {
    "migrate": [],
    "open_case": ["reference", "pathway", "site", "actor", "at", "facts", "connection"],
    "fire": [
        "reference",
        "trigger",
        "actor",
        "reason",
        "at",
        "facts",
        "expected_version",
        "connection",
    ],
    "record": ["reference", "facts", "actor", "at", "connection"],
    "pause": ["reference", "actor", "reason", "at", "connection"],
    "resume": ["reference", "actor", "at", "connection"],
    "extend_deadline": ["reference", "name", "actor", "reason", "at", "connection"],
    "case": ["reference"],
    "cases": ["site", "stage", "open_only"],
    "allowed_triggers": ["reference", "actor"],
    "history": ["reference"],
    "deadlines": ["reference"],
    "due": ["before", "site"],
    "overdue": ["at", "site"],
    "process_due": ["at"],
    "subscribe": ["callback", "kinds"],
    "audit": ["reference", "after_seq"],
    "verify_audit": ["deep", "checkpoints", "public_key"],
    "checkpoint": [],
    "add_staff": ["staff_id", "roles", "sites", "actor"],
    "remove_staff": ["staff_id", "actor"],
    "staff": ["staff_id"],
    "start_scheduler": [],
    "stop_scheduler": [],
    "sites": [],
    "assign": ["reference", "worker", "actor"],
    "export": ["directory", "format", "pseudonym_key"],
    # The trial (TRIAL.md, API.md's additions).
    "open_family": ["reference", "site", "actor", "children", "trial", "at", "facts"],
    "add_child": ["family", "child", "actor"],
    "allocate": ["family", "arm", "allocation_id", "actor", "at"],
    "fire_family": ["family", "trigger", "actor", "facts", "reason", "at"],
    "pause_family": ["family", "actor", "reason", "at"],
    "resume_family": ["family", "actor", "at"],
    "set_trial_status": ["family", "status", "actor", "reason"],
    "record_visit": ["family", "name", "held_on", "actor"],
    "family": ["reference"],
    "visits": ["family"],
}

#: Value objects and the fields API.md lists for each.
VALUE_FIELDS: dict[str, list[str]] = {
    "ExportManifest": [
        "directory",
        "format",
        "as_of",
        "pseudonymised",
        "key_fingerprint",
        "tables",
    ],
    "Case": [
        "reference",
        "pathway_id",
        "pathway_version",
        "site",
        "stage",
        "version",
        "opened_at",
        "stage_entered_at",
        "closed_at",
        "outcome",
        "paused",
        "facts",
    ],
    "StageInterval": ["stage", "entered_at", "left_at", "trigger", "working_days"],
    "Deadline": [
        "reference",
        "stage",
        "name",
        "due_on",
        "due_at",
        "status",
        "settled_at",
        "extensions",
    ],
    "Event": ["kind", "reference", "at", "detail"],
    "AuditEvent": [
        "seq",
        "reference",
        "at",
        "actor_id",
        "action",
        "from_stage",
        "to_stage",
        "reason",
        "detail",
        "hash",
    ],
    "AuditReport": ["ok", "checked", "problems"],
    "Checkpoint": ["size", "root_hash", "signed_at", "signature"],
    "StaffMember": ["id", "roles", "sites"],
    "Site": ["id", "title", "timezone", "pathways", "calendar", "closures"],
    "Family": ["reference", "site", "trial", "arm", "allocation_id", "status", "cases"],
    "Visit": ["name", "opens_on", "closes_on", "held_on", "status"],
}

ERRORS = [
    "PathwayError",
    "CaseNotFound",
    "CaseExists",
    "TransitionNotAllowed",
    "RequirementsNotMet",
    "PermissionDenied",
    "ConcurrentUpdate",
    "CasePaused",
    "InvalidInput",
    "UnknownSite",
    "AlreadyAllocated",
    "OutsideWindow",
]

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


def test_all_is_sorted_and_pinned() -> None:
    """nw.__all__ is sorted and is exactly the pinned list: nothing leaked, nothing lost."""
    assert nw.__all__ == sorted(nw.__all__)
    assert nw.__all__ == PINNED_ALL
    for name in nw.__all__:
        assert hasattr(nw, name), name


def test_every_api_name_exists() -> None:
    """Every name API.md's Python section uses is exported by the package."""
    for name in API_NAMES:
        assert name in nw.__all__, name
        assert getattr(nw, name) is not None


@pytest.mark.parametrize("method", sorted(ENGINE_METHODS))
def test_engine_methods_take_the_documented_parameters(method: str) -> None:
    """Each Engine method API.md lists exists and accepts its documented parameters by name."""
    function = getattr(nw.Engine, method)
    assert callable(function)
    parameters = inspect.signature(function).parameters
    for name in ENGINE_METHODS[method]:
        assert name in parameters, f"Engine.{method} lacks {name!r}"


def test_engine_constructor_takes_the_documented_parameters() -> None:
    """nw.Engine(url, clock=None, pathways=None, closures=None) as API.md gives it."""
    parameters = inspect.signature(nw.Engine).parameters
    assert list(parameters)[:4] == ["url", "clock", "pathways", "closures"]
    for name in ("clock", "pathways", "closures"):
        assert parameters[name].default is None


@pytest.mark.parametrize("name", ERRORS)
def test_every_exception_is_a_nim_workflow_error(name: str) -> None:
    """Every exception API.md names subclasses nw.NimWorkflowError (and so Exception)."""
    error = getattr(nw, name)
    assert issubclass(error, nw.NimWorkflowError)
    assert issubclass(nw.NimWorkflowError, Exception)


@pytest.mark.parametrize(
    ("name", "builtin"),
    [
        ("CaseNotFound", LookupError),
        ("InvalidInput", ValueError),
        ("PermissionDenied", PermissionError),
        ("PathwayError", ValueError),
        ("UnknownSite", ValueError),
    ],
)
def test_exceptions_also_subclass_the_builtin_they_mean(name: str, builtin: type) -> None:
    """Callers may catch the builtin: CaseNotFound is a LookupError, InvalidInput a ValueError..."""
    assert issubclass(getattr(nw, name), builtin)


def test_exceptions_carry_their_context() -> None:
    """Errors name their case, trigger, roles and missing facts as attributes and in the text."""
    denied = nw.PermissionDenied("R-1", "accept_referral", "sw-1", {"team_manager"})
    assert (denied.reference, denied.required) == ("R-1", ("team_manager",))
    assert "team_manager" in str(denied)
    missing = nw.RequirementsNotMet("R-1", "accept_referral", ["consent_recorded"])
    assert missing.missing == ("consent_recorded",)
    assert "consent_recorded" in str(missing)
    invalid = nw.TransitionNotAllowed("R-1", "offer_treatment", "referral", ["withdraw"])
    assert invalid.allowed == ("withdraw",)
    assert "withdraw" in str(invalid)
    assert "R-1" in str(nw.CaseNotFound("R-1"))
    unknown = nw.UnknownSite("London", ["london", "glasgow"])
    assert (unknown.site, unknown.known, unknown.suggestion) == (
        "London",
        ("glasgow", "london"),
        "london",
    )
    assert unknown.field == "site"
    assert isinstance(unknown, nw.InvalidInput)
    assert "did you mean 'london'?" in str(unknown)


@pytest.mark.parametrize("name", sorted(VALUE_FIELDS))
def test_value_objects_have_the_documented_fields(name: str) -> None:
    """Each value object is a dataclass with at least the fields API.md lists."""
    cls = getattr(nw, name)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(VALUE_FIELDS[name]) <= fields


def examples() -> list[object]:
    """One instance of each value object."""
    return [
        nw.Actor("sw-1", roles={"social_worker"}),
        nw.Case(
            reference="R-1",
            pathway_id="nim-uk-england",
            pathway_version=1,
            site="london",
            stage="referral",
            version=1,
            opened_at=NOW,
            stage_entered_at=NOW,
            closed_at=None,
            outcome=None,
            paused=False,
            facts={"consent_recorded": True},
        ),
        nw.StageInterval(
            stage="referral", entered_at=NOW, left_at=None, trigger=None, working_days=0
        ),
        nw.Deadline(
            reference="R-1",
            stage="referral",
            name="referral_decision",
            due_on=NOW.date(),
            due_at=NOW,
            status="open",
            settled_at=None,
            extensions=0,
        ),
        nw.Event(kind="opened", reference="R-1", at=NOW, detail={"site": "london"}),
        nw.AuditEvent(
            seq=1,
            reference="R-1",
            at=NOW,
            actor_id="sw-1",
            action="opened",
            from_stage=None,
            to_stage="referral",
            reason=None,
            detail={"site": "london"},
            hash="0" * 64,
        ),
        nw.AuditReport(ok=True, checked=1),
        nw.Site(
            id="croydon",
            title="Croydon",
            timezone="Europe/London",
            calendar="england-and-wales",
            pathways={"nim-uk-england"},
            closures=[dt.date(2026, 3, 6)],
        ),
    ]


@pytest.mark.parametrize("value", examples(), ids=lambda v: type(v).__name__)
def test_value_objects_are_frozen(value: object) -> None:
    """Assigning to any field of a value object raises, and so does adding an attribute."""
    for field in dataclasses.fields(value):  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field.name, getattr(value, field.name))
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        value.brand_new_attribute = 1  # type: ignore[attr-defined]


def test_mappings_inside_value_objects_are_read_only() -> None:
    """A case's facts and an event's detail cannot be changed through the object."""
    case, event, audit = (
        v for v in examples() if isinstance(v, nw.Case | nw.Event | nw.AuditEvent)
    )
    assert isinstance(case, nw.Case)
    assert isinstance(event, nw.Event)
    assert isinstance(audit, nw.AuditEvent)
    with pytest.raises(TypeError):
        case.facts["consent_recorded"] = False  # type: ignore[index]
    with pytest.raises(TypeError):
        event.detail["site"] = "elsewhere"  # type: ignore[index]
    with pytest.raises(TypeError):
        audit.detail["site"] = "elsewhere"  # type: ignore[index]


def test_actor_roles_are_a_frozenset() -> None:
    """An actor's roles are an immutable set, and a bare string is one role, not its letters."""
    actor = nw.Actor("tm-1", roles="team_manager")
    assert actor.roles == frozenset({"team_manager"})
    assert isinstance(nw.Actor("tm-1", roles=["team_manager"]).roles, frozenset)


def test_bundled_pathways_are_the_five_documented() -> None:
    """bundled_pathways() returns PATHWAYS.md's three and TRIAL.md's two comparators, by id."""
    bundled = nw.bundled_pathways()
    assert sorted(bundled) == [
        "best-facs-glasgow",
        "best-sau-london",
        "nim-uk-england",
        "nim-uk-scotland",
        "nim-us-louisiana",
    ]
    for pathway_id, pathway in bundled.items():
        assert isinstance(pathway, nw.Pathway)
        assert pathway.id == pathway_id


@pytest.mark.parametrize(
    ("status", "overdue", "state"),
    [
        ("open", False, "open"),
        ("open", True, "overdue"),
        ("met", False, "met"),
        ("missed", False, "missed"),
        ("cancelled", False, "cancelled"),
    ],
)
def test_deadline_state_is_overdue_when_overdue_else_its_status(
    status: str, overdue: bool, state: str
) -> None:
    """Deadline.state is the word to show: "overdue" for an overdue one, else the status."""
    deadline = nw.Deadline(
        reference="R-1",
        stage="referral",
        name="referral_decision",
        due_on=NOW.date(),
        due_at=NOW,
        status=status,  # type: ignore[arg-type]
        settled_at=None,
        extensions=0,
        overdue=overdue,
    )
    assert deadline.state == state
    assert deadline.status == status


def test_a_deadline_is_not_overdue_unless_a_read_says_so() -> None:
    """Deadline.overdue defaults to False, so a host building one keeps status and state alike."""
    deadline = next(v for v in examples() if isinstance(v, nw.Deadline))
    assert (deadline.overdue, deadline.state) == (False, "open")


def test_new_read_arguments_are_keyword_only_with_the_old_defaults() -> None:
    """due() gains include_overdue=True and at=None, deadlines() at=None, all keyword-only."""
    due = inspect.signature(nw.Engine.due).parameters
    assert list(due)[:3] == ["self", "before", "site"]
    for name, default in (("include_overdue", True), ("at", None)):
        assert due[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert due[name].default is default
    at = inspect.signature(nw.Engine.deadlines).parameters["at"]
    assert (at.kind, at.default) == (inspect.Parameter.KEYWORD_ONLY, None)
