"""The trial files that ship with the library, found and loaded wherever the package runs from.

A built wheel carries the repository's ``trials/`` folder inside the package as
``nim_workflow/_bundled_trials/`` (hatchling ``force-include``), read through
:mod:`importlib.resources`; a source checkout or an editable install reads the top-level
``trials/`` next to the package. Each is checked against the bundled pathways and sites, and,
being immutable, loaded once per process.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from nim_workflow._trial._loader import load_trial_text
from nim_workflow._trial._model import Trial

__all__ = ["bundled_trials"]

_SUFFIX = ".yaml"


def _bundled_dir() -> Traversable:
    """The folder holding the bundled trial files."""
    packaged = files("nim_workflow") / "_bundled_trials"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "trials"


@functools.cache
def _load_all() -> dict[str, Trial]:
    folder = _bundled_dir()
    if not folder.is_dir():
        return {}
    entries = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(_SUFFIX) and entry.is_file()),
        key=lambda entry: entry.name,
    )
    # Decoding the bytes (rather than read_text) keeps line endings as stored, so the content hash
    # is the hash of the file exactly as shipped.
    trials = (load_trial_text(entry.read_bytes().decode("utf-8"), str(entry)) for entry in entries)
    return {trial.id: trial for trial in trials}


def bundled_trials() -> dict[str, Trial]:
    """Every bundled trial, keyed by trial id; the dict is fresh on each call.

    Raises :class:`~nim_workflow.PathwayError` if a bundled file is invalid.
    """
    return dict(_load_all())
