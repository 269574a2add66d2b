"""nim-workflow: an embeddable workflow engine for the New Orleans Intervention Model pathway.

A case moves through referral, assessment, treatment, recommendation and court, each stage with
deadlines in its site's working-day calendar, statutory clocks beside them, and every action in a
tamper-evident audit log. Everything public is importable from here::

    import nim_workflow as nw

    engine = nw.Engine("sqlite:///nim-workflow.db")
    engine.migrate()
    case = engine.open_case("LDN-2026-0001", pathway="nim-uk-england", site="london",
                            actor=nw.Actor("sw-017", roles={"social_worker"}))
"""

from __future__ import annotations

import logging

from nim_workflow._checkpoint import Checkpoint
from nim_workflow._engine import Engine
from nim_workflow._errors import (
    ActionRefused,
    AlreadyAllocated,
    CaseExists,
    CaseNotFound,
    CasePaused,
    ConcurrentUpdate,
    ExtensionNotAllowed,
    FamilyExists,
    FamilyNotFound,
    InvalidInput,
    NimWorkflowError,
    OutsideWindow,
    PathwayError,
    PermissionDenied,
    Problem,
    RequirementsNotMet,
    StaffNotFound,
    TransitionNotAllowed,
    UnknownSite,
)
from nim_workflow._pathway._bundled import bundled_pathways
from nim_workflow._pathway._loader import load_pathway, load_pathway_text
from nim_workflow._pathway._model import Pathway
from nim_workflow._sites import bundled_sites, load_site
from nim_workflow._trial._bundled import bundled_trials
from nim_workflow._trial._loader import load_trial
from nim_workflow._trial._model import Trial
from nim_workflow._values import (
    Actor,
    AuditEvent,
    AuditReport,
    Case,
    Caseload,
    CaseUpgrade,
    Deadline,
    DeadlineChange,
    Event,
    Explanation,
    ExportManifest,
    Family,
    Site,
    StaffMember,
    StageInterval,
    Visit,
)

__version__ = "0.1.0"

# A library adds a NullHandler and nothing else: the host decides where logs go.
logging.getLogger("nim_workflow").addHandler(logging.NullHandler())

__all__ = [
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
