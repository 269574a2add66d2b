"""The pathway files that ship with the library, found and loaded wherever the package runs from.

A built wheel carries the repository's ``pathways/`` folder inside the package as
``nim_workflow/_bundled/`` (hatchling ``force-include``), read through :mod:`importlib.resources`.
A source checkout or an editable install has no such folder, so the top-level ``pathways/`` next to
the package is used instead. Loaded pathways are immutable, so they are loaded once per process.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from nim_workflow._errors import InvalidInput
from nim_workflow._pathway._loader import load_pathway_text
from nim_workflow._pathway._model import Pathway

__all__ = ["bundled_path", "bundled_pathways"]

_SUFFIX = ".yaml"


def _bundled_dir() -> Traversable:
    """The folder holding the bundled pathway files."""
    packaged = files("nim_workflow") / "_bundled"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "pathways"


@functools.cache
def _bundled_files() -> dict[str, Traversable]:
    """Each bundled file, keyed by its name without ``.yaml`` (by convention the pathway id)."""
    folder = _bundled_dir()
    if not folder.is_dir():
        return {}
    entries = (entry for entry in folder.iterdir() if entry.name.endswith(_SUFFIX))
    return {
        entry.name.removesuffix(_SUFFIX): entry
        for entry in sorted(entries, key=lambda entry: entry.name)
        if entry.is_file()
    }


@functools.cache
def _load_all() -> dict[str, Pathway]:
    pathways = (_load(entry) for entry in _bundled_files().values())
    return {pathway.id: pathway for pathway in pathways}


def _load(entry: Traversable) -> Pathway:
    # Decoding the bytes (rather than read_text) keeps line endings as stored, so the content hash
    # is the hash of the file exactly as shipped.
    return load_pathway_text(entry.read_bytes().decode("utf-8"), str(entry))


def bundled_pathways() -> dict[str, Pathway]:
    """Every bundled pathway, keyed by pathway id.

    Raises :class:`~nim_workflow.PathwayError` if a bundled file is invalid.
    """
    return dict(_load_all())


def bundled_path(pathway_id: str) -> Traversable:
    """The bundled file named after ``pathway_id`` (a ``pathlib.Path`` outside a zipped install).

    Raises :class:`~nim_workflow.InvalidInput` naming the bundled ids when there is no such file.
    """
    entries = _bundled_files()
    try:
        return entries[pathway_id]
    except KeyError:
        known = ", ".join(entries) or "none"
        raise InvalidInput(
            f"no bundled pathway {pathway_id!r}; bundled pathways: {known}", field="pathway_id"
        ) from None
