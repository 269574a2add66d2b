"""Tests of nim_workflow._machine: decisions, firing, and the one shared machine per version."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from transitions import EventData, Machine, MachineError

import nim_workflow._machine as machine_module
from nim_workflow._errors import (
    ActionRefused,
    InvalidInput,
    PermissionDenied,
    RequirementsNotMet,
    TransitionNotAllowed,
)
from nim_workflow._machine import REASON, Decision, PathwayMachine
from nim_workflow._pathway._model import FactSpec, Pathway, Stage, Transition

TEAM_MANAGER = frozenset({"team_manager"})
CLINICIAN = frozenset({"clinician"})
COURT_OFFICER = frozenset({"court_officer"})
ROLES = ("social_worker", "clinician", "team_manager", "court_officer", "coordinator")
OPEN_STAGES = ("referral", "assessment", "treatment", "recommendation", "court")
DECISIONS = ("return_home", "adoption", "kinship_care", "long_term_foster_care")

# Unique ids keep every test's pathway out of every other test's registry entry.
_ids = itertools.count()


def nim_pathway(*, pathway_id: str | None = None, version: int = 1) -> Pathway:
    """The NIM stages and triggers of PATHWAYS.md, built in Python (no loader involved)."""

    def move(trigger: str, sources: tuple[str, ...], dest: str, **extra: Any) -> Transition:
        roles = frozenset(extra.pop("roles", TEAM_MANAGER))
        return Transition(trigger=trigger, sources=sources, dest=dest, roles=roles, **extra)

    bool_facts: tuple[str, ...] = ("consent_recorded", "assessment_report_filed")
    bool_facts += ("treatment_review_filed", "final_report_filed")
    facts = {name: FactSpec(name=name, type="bool") for name in bool_facts}
    facts["recommendation"] = FactSpec(
        name="recommendation", type="enum", values=("return_home", "permanence_away")
    )
    facts["decision"] = FactSpec(name="decision", type="enum", values=DECISIONS)
    facts["entered_care_on"] = FactSpec(name="entered_care_on", type="date")
    return Pathway(
        id=pathway_id or f"test-nim-{next(_ids)}",
        version=version,
        title="NIM test pathway",
        calendar="england-and-wales",
        timezone="Europe/London",
        roles={role: role.replace("_", " ") for role in ROLES},
        permissions={},
        facts=facts,
        stages=(
            Stage(id="referral", title="Referral", initial=True),
            Stage(id="assessment", title="Assessment"),
            Stage(id="treatment", title="Treatment"),
            Stage(id="recommendation", title="Recommendation"),
            Stage(id="court", title="Court"),
            Stage(id="closed", title="Closed", final=True),
        ),
        transitions=(
            move("accept_referral", ("referral",), "assessment", requires=("consent_recorded",)),
            move(
                "decline_referral",
                ("referral",),
                "closed",
                reason_required=True,
                outcome="not_eligible",
            ),
            move(
                "offer_treatment",
                ("assessment",),
                "treatment",
                requires=("assessment_report_filed",),
            ),
            move(
                "recommend_without_treatment",
                ("assessment",),
                "recommendation",
                requires=("assessment_report_filed",),
            ),
            move(
                "complete_treatment",
                ("treatment",),
                "recommendation",
                roles={"clinician", "team_manager"},
                requires=("treatment_review_filed",),
            ),
            move(
                "submit_recommendation",
                ("recommendation",),
                "court",
                requires=("final_report_filed", "recommendation"),
            ),
            move(
                "record_decision",
                ("court",),
                "closed",
                roles=COURT_OFFICER,
                requires=("decision",),
                outcome_fact="decision",
            ),
            move("withdraw", OPEN_STAGES, "closed", reason_required=True, outcome="withdrawn"),
        ),
        deadlines=(),
        content_hash=f"test-{next(_ids)}",
    )


@pytest.fixture
def machine() -> Iterator[PathwayMachine]:
    """A machine for a fresh NIM pathway; every test ends with no model bound to it."""
    built = PathwayMachine.for_pathway(nim_pathway())
    yield built
    assert built.machine.models == []


def _decide(
    machine: PathwayMachine,
    stage: str,
    trigger: str,
    roles: frozenset[str] = TEAM_MANAGER,
    facts: Mapping[str, object] | None = None,
    reason: str | None = None,
) -> Decision:
    return machine.decide(stage, trigger, roles=roles, facts=facts or {}, reason=reason)


def test_allowed_decision_names_destination(machine: PathwayMachine) -> None:
    """A valid trigger, a permitted role and met requirements give an allowed decision."""
    decision = _decide(machine, "referral", "accept_referral", facts={"consent_recorded": True})
    assert decision.allowed
    assert decision.problem is None
    assert decision.missing == ()
    assert decision.dest == "assessment"
    assert decision.outcome is None
    assert decision.roles_required == TEAM_MANAGER
    assert decision.valid_triggers == ("accept_referral", "decline_referral", "withdraw")
    assert decision.refusal(reference="C-1", actor_id="u1") is None


def test_trigger_not_valid_from_stage(machine: PathwayMachine) -> None:
    """A trigger the stage does not offer is refused as not_valid, listing the valid ones."""
    decision = _decide(machine, "assessment", "accept_referral", facts={"consent_recorded": True})
    assert not decision.allowed
    assert decision.problem == "not_valid"
    assert decision.dest is None
    assert decision.valid_triggers == ("offer_treatment", "recommend_without_treatment", "withdraw")
    error = decision.refusal(reference="C-1", actor_id="u1")
    assert isinstance(error, TransitionNotAllowed)
    assert error.allowed == ("offer_treatment", "recommend_without_treatment", "withdraw")


def test_unknown_trigger_is_not_valid(machine: PathwayMachine) -> None:
    """A trigger the pathway never declares is refused as not_valid, not as an error."""
    decision = _decide(machine, "referral", "teleport")
    assert decision.problem == "not_valid"


def test_final_stage_offers_no_trigger(machine: PathwayMachine) -> None:
    """Nothing is valid from the final stage, not even withdraw."""
    decision = _decide(machine, "closed", "withdraw", reason="gone")
    assert decision.problem == "not_valid"
    assert decision.valid_triggers == ()


def test_role_denied(machine: PathwayMachine) -> None:
    """An actor without any permitted role is refused as role, naming the roles needed."""
    decision = _decide(
        machine, "referral", "accept_referral", roles=CLINICIAN, facts={"consent_recorded": True}
    )
    assert decision.problem == "role"
    assert decision.roles_required == TEAM_MANAGER
    error = decision.refusal(reference="C-1", actor_id="u1")
    assert isinstance(error, PermissionDenied)
    assert error.required == ("team_manager",)


def test_role_is_checked_before_requirements(machine: PathwayMachine) -> None:
    """With neither role nor facts, the refusal is about the role; missing facts still listed."""
    decision = _decide(machine, "referral", "accept_referral", roles=frozenset())
    assert decision.problem == "role"
    assert decision.missing == ("consent_recorded",)


def test_any_one_permitted_role_suffices(machine: PathwayMachine) -> None:
    """Holding one of several permitted roles among others is enough."""
    facts = {"treatment_review_filed": True}
    roles = frozenset({"clinician", "coordinator"})
    decision = _decide(machine, "treatment", "complete_treatment", roles=roles, facts=facts)
    assert decision.allowed


def test_requirements_missing_are_named_in_order(machine: PathwayMachine) -> None:
    """Every unmet requirement is named, in the order the pathway lists them."""
    decision = _decide(machine, "recommendation", "submit_recommendation")
    assert decision.problem == "requirements"
    assert decision.missing == ("final_report_filed", "recommendation")
    error = decision.refusal(reference="C-1", actor_id="u1")
    assert isinstance(error, RequirementsNotMet)
    assert error.missing == ("final_report_filed", "recommendation")


@pytest.mark.parametrize("value", [False, None, "yes", 1])
def test_bool_requirement_needs_true(machine: PathwayMachine, value: object) -> None:
    """A required bool fact is met only by True itself."""
    decision = _decide(machine, "referral", "accept_referral", facts={"consent_recorded": value})
    assert decision.missing == ("consent_recorded",)


def test_other_requirement_needs_a_value(machine: PathwayMachine) -> None:
    """A required enum fact is met by any value and unmet by None."""
    base = {"final_report_filed": True}
    unmet = _decide(
        machine, "recommendation", "submit_recommendation", facts={**base, "recommendation": None}
    )
    met = _decide(
        machine,
        "recommendation",
        "submit_recommendation",
        facts={**base, "recommendation": "permanence_away"},
    )
    assert unmet.missing == ("recommendation",)
    assert met.allowed


@pytest.mark.parametrize("reason", [None, "", "   \n"])
def test_reason_missing(machine: PathwayMachine, reason: str | None) -> None:
    """A trigger needing a reason is refused without a non-blank one, naming 'reason'."""
    decision = _decide(machine, "referral", "decline_referral", reason=reason)
    assert decision.problem == "requirements"
    assert decision.missing == (REASON,)
    assert decision.reason_required


def test_reason_given(machine: PathwayMachine) -> None:
    """A non-blank reason meets reason_required, and the fixed outcome is reported."""
    decision = _decide(machine, "referral", "decline_referral", reason="over age limit")
    assert decision.allowed
    assert decision.outcome == "not_eligible"


def test_outcome_read_from_fact(machine: PathwayMachine) -> None:
    """record_decision takes its outcome from the decision fact."""
    decision = _decide(
        machine, "court", "record_decision", roles=COURT_OFFICER, facts={"decision": "adoption"}
    )
    assert decision.allowed
    assert decision.dest == "closed"
    assert decision.outcome == "adoption"


def test_allowed_triggers_for_team_manager(machine: PathwayMachine) -> None:
    """allowed_triggers lists what the actor could fire now; a reason is not needed to list."""
    stage = "assessment"
    assert machine.allowed_triggers(stage, roles=TEAM_MANAGER, facts={}) == ["withdraw"]
    assert machine.allowed_triggers(
        stage, roles=TEAM_MANAGER, facts={"assessment_report_filed": True}
    ) == ["offer_treatment", "recommend_without_treatment", "withdraw"]


def test_allowed_triggers_respects_roles(machine: PathwayMachine) -> None:
    """Roles without a permitted transition get nothing; a clinician may complete treatment."""
    facts = {"treatment_review_filed": True, "decision": "kinship_care"}
    assert machine.allowed_triggers("treatment", roles=CLINICIAN, facts=facts) == [
        "complete_treatment"
    ]
    assert machine.allowed_triggers("court", roles=frozenset({"coordinator"}), facts=facts) == []
    assert machine.allowed_triggers("court", roles=COURT_OFFICER, facts=facts) == [
        "record_decision"
    ]
    assert machine.allowed_triggers("closed", roles=frozenset(ROLES), facts=facts) == []


def test_fire_moves_case_and_unbinds(machine: PathwayMachine) -> None:
    """fire returns the destination stage and leaves no model registered."""
    stage = machine.fire(
        "referral",
        "accept_referral",
        roles=TEAM_MANAGER,
        facts={"consent_recorded": True},
        reference="C-1",
        actor_id="u1",
    )
    assert stage == "assessment"
    assert machine.machine.models == []


def test_fire_withdraw_from_every_open_stage(machine: PathwayMachine) -> None:
    """withdraw closes a case from every open stage."""
    for stage in OPEN_STAGES:
        dest = machine.fire(
            stage,
            "withdraw",
            roles=TEAM_MANAGER,
            facts={},
            reason="moved away",
            reference="C-1",
            actor_id="u1",
        )
        assert dest == "closed"
        assert machine.machine.models == []


@pytest.mark.parametrize(
    ("stage", "trigger", "roles", "facts", "error"),
    [
        (
            "court",
            "accept_referral",
            TEAM_MANAGER,
            {"consent_recorded": True},
            TransitionNotAllowed,
        ),
        ("referral", "accept_referral", CLINICIAN, {"consent_recorded": True}, PermissionDenied),
        ("referral", "accept_referral", TEAM_MANAGER, {}, RequirementsNotMet),
        ("referral", "decline_referral", TEAM_MANAGER, {}, RequirementsNotMet),
    ],
)
def test_fire_refusals_raise_with_context(
    machine: PathwayMachine,
    stage: str,
    trigger: str,
    roles: frozenset[str],
    facts: dict[str, object],
    error: type[ActionRefused],
) -> None:
    """A refused fire raises the matching ActionRefused, naming the case, and unbinds."""
    with pytest.raises(error) as raised:
        machine.fire(stage, trigger, roles=roles, facts=facts, reference="C-7", actor_id="u9")
    assert raised.value.reference == "C-7"
    assert machine.machine.models == []


class _ExplodingFacts(Mapping[str, object]):
    """Facts that answer the first ``safe`` look-ups and then raise, to fail mid-transition."""

    def __init__(self, facts: Mapping[str, object], safe: int) -> None:
        self._facts = dict(facts)
        self._left = safe
        self.lookups = 0

    def __getitem__(self, key: str) -> object:
        self.lookups += 1
        if self._left <= 0:
            raise RuntimeError("facts store went away")
        self._left -= 1
        return self._facts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._facts)

    def __len__(self) -> int:
        return len(self._facts)


def test_model_unbound_after_exception_inside_machine(machine: PathwayMachine) -> None:
    """An exception raised while the case is bound still leaves the machine without models."""
    facts = {"consent_recorded": True}
    counting = _ExplodingFacts(facts, safe=10**6)
    machine.decide("referral", "accept_referral", roles=TEAM_MANAGER, facts=counting)
    # Enough look-ups for decide() to pass, none for the machine's own condition check.
    exploding = _ExplodingFacts(facts, safe=counting.lookups)
    with pytest.raises(RuntimeError, match="went away"):
        machine.fire(
            "referral",
            "accept_referral",
            roles=TEAM_MANAGER,
            facts=exploding,
            reference="C-1",
            actor_id="u1",
        )
    assert exploding.lookups > counting.lookups
    assert machine.machine.models == []


def test_machine_is_shared_per_version() -> None:
    """for_pathway returns the same machine for the same version, even from an equal copy."""
    pathway = nim_pathway()
    first = PathwayMachine.for_pathway(pathway)
    assert PathwayMachine.for_pathway(pathway) is first
    assert PathwayMachine.for_pathway(replace(pathway, source="elsewhere.yaml")) is first
    assert PathwayMachine.for_pathway(pathway).machine is first.machine
    assert first.pathway is pathway


def test_new_version_gets_its_own_machine() -> None:
    """Another version (or content hash) of the same pathway id gets another machine."""
    pathway = nim_pathway()
    first = PathwayMachine.for_pathway(pathway)
    second = PathwayMachine.for_pathway(replace(pathway, version=2))
    rehashed = PathwayMachine.for_pathway(replace(pathway, content_hash="other"))
    assert second is not first
    assert rehashed is not first


def test_same_version_different_content_is_refused() -> None:
    """Different content under an already-built id, version and hash is refused."""
    pathway = nim_pathway()
    PathwayMachine.for_pathway(pathway)
    with pytest.raises(InvalidInput, match="new version"):
        PathwayMachine.for_pathway(replace(pathway, title="Changed"))


def test_machine_built_once_however_many_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many commands on many cases construct exactly one transitions Machine per version."""
    built: list[Machine] = []

    class CountingMachine(Machine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(machine_module, "Machine", CountingMachine)
    pathway = nim_pathway()
    for _ in range(25):
        shared = PathwayMachine.for_pathway(pathway)
        shared.fire(
            "referral",
            "accept_referral",
            roles=TEAM_MANAGER,
            facts={"consent_recorded": True},
            reference="C-1",
            actor_id="u1",
        )
    assert len(built) == 1
    assert built[0].models == []


def test_machine_declares_one_transition_per_trigger_and_source() -> None:
    """The transitions machine holds exactly the pathway's (trigger, source) edges, no auto ones."""
    pathway = nim_pathway()
    shared = PathwayMachine.for_pathway(pathway)
    edges = {
        (name, source, transition.dest)
        for name, event in shared.machine.events.items()
        for source, transitions in event.transitions.items()
        for transition in transitions
    }
    declared = {(t.trigger, source, t.dest) for t in pathway.transitions for source in t.sources}
    assert edges == declared
    assert sum(
        len(ts) for e in shared.machine.events.values() for ts in e.transitions.values()
    ) == (len(declared))


class _Probe:
    """A plain model, bound to the shared machine only to see how the machine itself behaves."""

    state: str


class _DisagreeingMachine(PathwayMachine):
    """A machine whose own condition refuses every transition that decide() allows."""

    def _requirements_met(self, event: EventData) -> bool:
        return False


def _with_transition(pathway: Pathway, trigger: str, **changes: Any) -> Pathway:
    """``pathway`` with the transition(s) of ``trigger`` changed, under a fresh content hash."""
    transitions = tuple(
        replace(t, **changes) if t.trigger == trigger else t for t in pathway.transitions
    )
    return replace(pathway, transitions=transitions, content_hash=f"test-{next(_ids)}")


def _event_data(
    shared: PathwayMachine, model: object, trigger: str | None, source: str
) -> EventData:
    """What the transitions machine passes its conditions when ``trigger`` fires from ``source``."""
    event = shared.machine.events[trigger] if trigger is not None else None
    data = EventData(shared.machine.get_state(source), event, shared.machine, model, (), {})
    if event is not None:
        data.transition = event.transitions[source][0]
    return data


def test_not_valid_refusal_carries_full_context(machine: PathwayMachine) -> None:
    """TransitionNotAllowed names the case, the trigger, the stage and the triggers valid there."""
    decision = _decide(machine, "assessment", "accept_referral", facts={"consent_recorded": True})
    error = decision.refusal(reference="C-3", actor_id="u4")
    assert isinstance(error, TransitionNotAllowed)
    assert error.reference == "C-3"
    assert error.trigger == "accept_referral"
    assert error.stage == "assessment"
    assert error.allowed == ("offer_treatment", "recommend_without_treatment", "withdraw")


def test_role_refusal_carries_full_context(machine: PathwayMachine) -> None:
    """PermissionDenied names the case, the trigger, the actor and every role that may fire it."""
    facts = {"treatment_review_filed": True}
    decision = _decide(machine, "treatment", "complete_treatment", COURT_OFFICER, facts)
    error = decision.refusal(reference="C-3", actor_id="u4")
    assert isinstance(error, PermissionDenied)
    assert error.reference == "C-3"
    assert error.action == "complete_treatment"
    assert error.actor_id == "u4"
    assert error.required == ("clinician", "team_manager")


def test_requirements_refusal_carries_full_context(machine: PathwayMachine) -> None:
    """RequirementsNotMet names the case, the trigger and every missing fact, reason last."""
    decision = _decide(machine, "recommendation", "submit_recommendation")
    error = decision.refusal(reference="C-3", actor_id="u4")
    assert isinstance(error, RequirementsNotMet)
    assert error.reference == "C-3"
    assert error.action == "submit_recommendation"
    assert error.missing == ("final_report_filed", "recommendation")


def test_decision_echoes_stage_and_trigger(machine: PathwayMachine) -> None:
    """Every decision names the stage and trigger asked about; a refusal is allowed=False."""
    not_valid = _decide(machine, "assessment", "accept_referral")
    assert not_valid.stage == "assessment"
    assert not_valid.trigger == "accept_referral"
    assert not_valid.allowed is False
    refused = _decide(machine, "referral", "accept_referral")
    assert refused.stage == "referral"
    assert refused.trigger == "accept_referral"
    assert refused.allowed is False
    allowed = _decide(machine, "referral", "accept_referral", facts={"consent_recorded": True})
    assert allowed.stage == "referral"
    assert allowed.trigger == "accept_referral"
    assert allowed.allowed is True


def test_allowed_triggers_skips_only_what_the_actor_cannot_fire(machine: PathwayMachine) -> None:
    """A trigger the actor may not fire does not hide the ones listed after it."""
    # At court, record_decision (court officer only) comes before withdraw.
    decided = {"decision": "adoption"}
    assert machine.allowed_triggers("court", roles=TEAM_MANAGER, facts=decided) == ["withdraw"]
    # In assessment, two triggers with a missing report come before withdraw.
    assert machine.allowed_triggers("assessment", roles=TEAM_MANAGER, facts={}) == ["withdraw"]


def test_shared_machine_mirrors_the_pathway() -> None:
    """The transitions machine has the pathway's stages, initial stage and triggers, no more."""
    pathway = nim_pathway()
    shared = PathwayMachine.for_pathway(pathway).machine
    assert list(shared.states) == [stage.id for stage in pathway.stages]
    assert shared.initial == pathway.initial_stage == "referral"
    # No auto transitions: no to_<stage> trigger lets a case jump anywhere.
    assert set(shared.events) == set(pathway.triggers())
    assert shared.models == []


def test_shared_machine_raises_on_invalid_trigger() -> None:
    """A trigger fired on a bound model from a stage that does not offer it raises MachineError."""
    shared = PathwayMachine.for_pathway(nim_pathway()).machine
    probe: Any = _Probe()
    shared.add_model(probe, initial="court")
    try:
        assert not hasattr(probe, "to_closed")
        with pytest.raises(MachineError, match="accept_referral"):
            probe.trigger("accept_referral")
        assert probe.state == "court"
    finally:
        shared.remove_model(probe)
    assert shared.models == []


def test_same_version_different_content_names_the_version_field() -> None:
    """The refusal of changed content under a built version points at the version to bump."""
    pathway = nim_pathway()
    PathwayMachine.for_pathway(pathway)
    with pytest.raises(InvalidInput) as raised:
        PathwayMachine.for_pathway(replace(pathway, title="Changed"))
    assert raised.value.field == "version"
    assert str(raised.value) == (
        f"pathway {pathway.id!r} version 1 is already in use with different content; "
        "give the changed definition a new version"
    )


def test_fire_permission_denied_names_the_actor(machine: PathwayMachine) -> None:
    """A fire refused for want of a role raises PermissionDenied naming the actor and trigger."""
    with pytest.raises(PermissionDenied) as raised:
        machine.fire(
            "referral",
            "accept_referral",
            roles=CLINICIAN,
            facts={"consent_recorded": True},
            reference="C-7",
            actor_id="u9",
        )
    assert raised.value.actor_id == "u9"
    assert raised.value.action == "accept_referral"
    assert raised.value.required == ("team_manager",)
    assert "u9" in str(raised.value)


def test_fire_raises_when_machine_condition_disagrees() -> None:
    """If the machine's own condition refuses what decide() allowed, fire raises and unbinds."""
    shared = _DisagreeingMachine(nim_pathway())
    facts = {"consent_recorded": True}
    assert shared.decide("referral", "accept_referral", roles=TEAM_MANAGER, facts=facts).allowed
    with pytest.raises(RequirementsNotMet) as raised:
        shared.fire(
            "referral",
            "accept_referral",
            roles=TEAM_MANAGER,
            facts=facts,
            reference="C-8",
            actor_id="u1",
        )
    assert raised.value.reference == "C-8"
    assert raised.value.action == "accept_referral"
    assert raised.value.missing == ("accept_referral",)
    assert shared.machine.models == []


def test_machine_condition_accepts_only_a_bound_case(machine: PathwayMachine) -> None:
    """The machine's condition passes a bound case meeting requirements, and nothing else."""
    facts = {"consent_recorded": True}
    bound = machine_module._BoundCase(facts, None)
    unmet = machine_module._BoundCase({}, None)
    assert machine._requirements_met(_event_data(machine, bound, "accept_referral", "referral"))
    assert not machine._requirements_met(_event_data(machine, unmet, "accept_referral", "referral"))
    # A foreign model is refused even when it carries facts that would meet the requirements.
    foreign = SimpleNamespace(facts=facts, reason=None)
    data = _event_data(machine, foreign, "accept_referral", "referral")
    assert machine._requirements_met(data) is False
    # An event with no transition, or no event at all, is refused rather than crashing.
    no_transition = _event_data(machine, bound, "accept_referral", "referral")
    no_transition.transition = None
    assert machine._requirements_met(no_transition) is False
    no_event = _event_data(machine, bound, None, "referral")
    no_event.transition = machine.machine.events["accept_referral"].transitions["referral"][0]
    assert machine._requirements_met(no_event) is False


def test_outcome_fact_is_required_even_if_not_listed() -> None:
    """A transition's outcome fact is required, named as missing, until it is recorded."""
    pathway = _with_transition(nim_pathway(), "record_decision", requires=())
    shared = PathwayMachine.for_pathway(pathway)
    unmet = shared.decide("court", "record_decision", roles=COURT_OFFICER, facts={})
    assert unmet.problem == "requirements"
    assert unmet.missing == ("decision",)
    assert shared.allowed_triggers("court", roles=COURT_OFFICER, facts={}) == []
    with pytest.raises(RequirementsNotMet) as raised:
        shared.fire(
            "court",
            "record_decision",
            roles=COURT_OFFICER,
            facts={},
            reference="C-5",
            actor_id="u2",
        )
    assert raised.value.missing == ("decision",)
    decided = {"decision": "kinship_care"}
    met = shared.decide("court", "record_decision", roles=COURT_OFFICER, facts=decided)
    assert met.allowed
    assert met.outcome == "kinship_care"
    assert shared.allowed_triggers("court", roles=COURT_OFFICER, facts=decided) == [
        "record_decision"
    ]
    assert (
        shared.fire(
            "court",
            "record_decision",
            roles=COURT_OFFICER,
            facts=decided,
            reference="C-5",
            actor_id="u2",
        )
        == "closed"
    )
    assert shared.machine.models == []


@pytest.mark.parametrize("facts", [{}, {"decision": None}])
def test_unrecorded_outcome_fact_is_missing_once_and_no_outcome(
    machine: PathwayMachine, facts: dict[str, object]
) -> None:
    """An outcome fact also listed in requires is missing once, and the outcome is None."""
    decision = _decide(machine, "court", "record_decision", COURT_OFFICER, facts)
    assert decision.problem == "requirements"
    assert decision.missing == ("decision",)
    assert decision.dest == "closed"
    assert decision.outcome is None


_FACT_VALUES: dict[str, st.SearchStrategy[object]] = {
    "consent_recorded": st.sampled_from([True, False, None, "true"]),
    "assessment_report_filed": st.sampled_from([True, False, None]),
    "treatment_review_filed": st.sampled_from([True, False, None]),
    "final_report_filed": st.sampled_from([True, False, None]),
    "recommendation": st.sampled_from(["return_home", "permanence_away", None]),
    "decision": st.sampled_from([*DECISIONS, None]),
}
_ALL_MET: dict[str, object] = {
    "consent_recorded": True,
    "assessment_report_filed": True,
    "treatment_review_filed": True,
    "final_report_filed": True,
    "recommendation": "return_home",
    "decision": "long_term_foster_care",
}
# Half the draws meet every requirement, so walks get past the first stages often.
_FACTS = st.just(_ALL_MET) | st.fixed_dictionaries({}, optional=_FACT_VALUES)
_ALL_TRIGGERS = [*dict.fromkeys(t.trigger for t in nim_pathway().transitions), "teleport"]


class CaseWalk(RuleBasedStateMachine):
    """Random commands on one case: the stage moves only along declared, permitted edges."""

    def __init__(self) -> None:
        super().__init__()
        self.pathway = nim_pathway()
        self.shared = PathwayMachine.for_pathway(self.pathway)
        self.edges = {
            (t.trigger, source, t.dest) for t in self.pathway.transitions for source in t.sources
        }
        self.stage = self.pathway.initial_stage

    @initialize()
    def open_case(self) -> None:
        """Every walk starts with a case in the initial stage."""
        self.stage = self.pathway.initial_stage

    @rule(
        data=st.data(),
        roles=st.frozensets(st.sampled_from(ROLES)),
        facts=_FACTS,
        reason=st.sampled_from([None, "", "  ", "family moved"]),
    )
    def fire(
        self,
        data: st.DataObject,
        roles: frozenset[str],
        facts: dict[str, object],
        reason: str | None,
    ) -> None:
        """Fire a random trigger; compare the result with the pathway read directly."""
        offered = [t.trigger for t in self.pathway.transitions_from(self.stage)]
        choices = st.sampled_from(_ALL_TRIGGERS)
        if offered:
            # Mostly triggers the stage offers, so walks go deep; sometimes any trigger at all.
            choices = st.sampled_from(offered) | choices
        trigger = data.draw(choices, label="trigger")
        declared = self.pathway.transition(trigger, self.stage)
        expected_ok = (
            declared is not None
            and bool(roles & declared.roles)
            and all(
                facts.get(name) is True
                if self.pathway.facts[name].type == "bool"
                else facts.get(name) is not None
                for name in declared.requires
            )
            and (not declared.reason_required or bool(reason and reason.strip()))
        )
        before = self.stage
        try:
            after = self.shared.fire(
                before,
                trigger,
                roles=roles,
                facts=facts,
                reason=reason,
                reference="C-walk",
                actor_id="walker",
            )
        except ActionRefused:
            assert not expected_ok
            return
        assert expected_ok
        assert (trigger, before, after) in self.edges
        self.stage = after

    @rule()
    def reopen(self) -> None:
        """Start again with a new case, so walks do not stall in the final stage."""
        self.stage = self.pathway.initial_stage

    @invariant()
    def no_model_left_bound(self) -> None:
        """Between commands the shared machine holds no model."""
        assert self.shared.machine.models == []


CaseWalk.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_case_walk = CaseWalk.TestCase
test_case_walk.__doc__ = "Random walks never leave a declared edge nor a bound model."
