"""Sites shipped as data: read a site declaration file and check it, every problem at once.

A site is where cases are opened (``london``): the pathways it runs, its working-day calendar and
time zone, and the closure days it adds to that calendar. Sites are declared data, so a typo
(``London``, ``narnia``) is refused instead of silently becoming a new site. One YAML file per
site in ``pathways/sites/`` (inside a wheel, ``nim_workflow/_bundled/sites/``)::

    site: jefferson-parish                  # the id cases are opened at
    title: Jefferson Parish Infant Team     # shown by `nim-workflow site list`
    timezone: America/Chicago               # the IANA time zone of its pathways
    calendar: louisiana                     # the holiday calendar of its pathways
    pathways: [nim-us-louisiana]            # the pathway ids the site runs (one at least)
    closures: ../closures/jefferson-parish.yaml   # optional: its closure file

``closures`` names a closure file (:mod:`nim_workflow._closures`), relative to the site file's
folder; that file's ``site`` and ``calendar`` must be the site's. Loading is the pathway loader's
pipeline and reuses its parse step: every problem in a file, or across a folder of files (a site
declared twice among them), is reported at once as a :class:`PathwayError` naming file, line and
field; the closure file's own problems name that file.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Iterable
from importlib.resources.abc import Traversable
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nim_workflow import _validate
from nim_workflow._closures import CLOSURE_YEARS, _in_order, _read, load_folder
from nim_workflow._closures import _check as _check_closures
from nim_workflow._errors import InvalidInput, PathwayError, Problem
from nim_workflow._pathway._bundled import _bundled_dir
from nim_workflow._pathway._loader import _BROKEN, DOCUMENT, _kind, _Node, _parse
from nim_workflow._pathway._model import CALENDARS
from nim_workflow._values import Site

__all__ = ["bundled_sites", "load_site", "load_site_folder", "load_site_text"]

_SUFFIX = ".yaml"
_FOLDER = "sites"
_TOP_KEYS = ("site", "title", "timezone", "calendar", "pathways", "closures")
_REQUIRED = ("site", "title", "timezone", "calendar", "pathways")


def load_site(path: str | os.PathLike[str]) -> Site:
    """Load and check the site file at ``path`` (and the closure file it names).

    Raises :class:`PathwayError` listing every problem, in file order.
    """
    source = os.fspath(path)
    entry = Path(source)
    problems: list[Problem] = []
    text = _read(entry, source, problems)
    checked = None if text is None else _check(text, source, entry.parent, problems)
    if problems or checked is None:
        raise PathwayError(_in_order(problems))
    return checked[0]


def load_site_text(
    text: str, source: str = "<string>", folder: Traversable | str | None = None
) -> Site:
    """Check a site file given as YAML text; ``source`` names it in problems.

    A ``closures`` path is read relative to ``folder`` (default: the working directory).
    """
    where = Path(folder or ".") if isinstance(folder, str) or folder is None else folder
    problems: list[Problem] = []
    checked = _check(text, source, where, problems)
    if problems or checked is None:
        raise PathwayError(_in_order(problems))
    return checked[0]


def load_site_folder(folder: Traversable | str | os.PathLike[str]) -> dict[str, Site]:
    """Every ``*.yaml`` site file directly in ``folder``, keyed by site id.

    A missing folder declares no sites. Raises :class:`PathwayError` listing every problem in
    every file, a site declared by two files among them.
    """
    return load_folder(
        folder,
        _check,
        key=lambda site: site.id,
        duplicate=lambda site, first: f"site {site.id!r} is already declared in {first}",
    )


@functools.cache
def _bundled() -> dict[str, Site]:
    return load_site_folder(_bundled_dir() / _FOLDER)


def bundled_sites() -> dict[str, Site]:
    """The sites bundled with the library (``pathways/sites/``), keyed by site id.

    Loaded once per process; the dict is fresh on each call. Raises :class:`PathwayError` if a
    bundled file is invalid.
    """
    return dict(_bundled())


def sites_given(items: Iterable[Site | str | os.PathLike[str]]) -> dict[str, Site]:
    """``Engine(sites=...)``: Site objects or file paths, keyed by id; a duplicate id refused."""
    if isinstance(items, str | bytes | os.PathLike) or not isinstance(items, Iterable):
        raise InvalidInput("sites must be a list of nw.Site objects or file paths", field="sites")
    found: dict[str, Site] = {}
    for item in items:
        if isinstance(item, Site):
            site = item
        elif isinstance(item, str | os.PathLike):
            site = load_site(item)
        else:
            raise InvalidInput(
                f"sites: {type(item).__name__} {_validate.shown(item)} is neither an nw.Site "
                "nor a file path",
                field="sites",
            )
        if site.id in found:
            raise InvalidInput(f"sites: site {site.id!r} is declared twice", field="sites")
        found[site.id] = site
    return found


def _check(
    text: str, source: str, folder: Traversable, problems: list[Problem]
) -> tuple[Site, int] | None:
    """Parse and check one file: its site and the line of its ``site`` key, or ``None``."""
    before = len(problems)
    root = _parse(text, source, problems)
    if root is None:
        last = problems[-1] if len(problems) > before else None
        if last is not None and last.message.startswith("is empty"):
            # The parse step speaks of pathway files; say what a site file holds instead.
            problems[-1] = Problem(
                source,
                last.line,
                DOCUMENT,
                f"is empty; a site file is a mapping with the keys {', '.join(_TOP_KEYS)}",
            )
        return None
    return _Checker(source, folder, problems).site(root)


class _Checker:
    """Reads the :class:`_Node` tree of one site file, reporting every problem it finds."""

    def __init__(self, source: str, folder: Traversable, problems: list[Problem]) -> None:
        self._source = source
        self._folder = folder
        self._problems = problems

    def _bad(self, node: _Node, message: str) -> None:
        self._problems.append(Problem(self._source, node.line, node.field, message))

    def _string(self, node: _Node) -> str | None:
        if isinstance(node.value, str):
            if node.value.strip():
                return node.value
            self._bad(node, "must not be empty")
        elif isinstance(node.value, bool | int | float):
            self._bad(node, f"must be text, not {_kind(node)} (quote it if you meant text)")
        elif node.value is not _BROKEN:
            self._bad(node, f"must be text, not {_kind(node)}")
        return None

    def _identifier(self, node: _Node, what: str) -> str | None:
        text = self._string(node)
        if text is None:
            return None
        try:
            return _validate.identifier(text, node.field, what)
        except InvalidInput as exc:
            self._bad(node, str(exc))
            return None

    def site(self, root: _Node) -> tuple[Site, int] | None:
        """Check the whole file; its site and the line of ``site``, or ``None``."""
        before = len(self._problems)
        if not isinstance(root.value, dict):
            if root.value is not _BROKEN:
                self._bad(root, f"must be a mapping, not {_kind(root)}")
            return None
        top = root.value
        for key, child in top.items():
            if key not in _TOP_KEYS:
                self._bad(child, f"unknown key {key!r}; expected one of {', '.join(_TOP_KEYS)}")
        for key in _REQUIRED:
            if key not in top:
                self._problems.append(Problem(self._source, root.line, key, "is missing"))
        site_id = self._identifier(top["site"], "a site id") if "site" in top else None
        title = self._string(top["title"]) if "title" in top else None
        timezone = self._timezone(top["timezone"]) if "timezone" in top else None
        calendar = self._calendar(top["calendar"]) if "calendar" in top else None
        runs = self._pathways(top["pathways"]) if "pathways" in top else None
        closures = None
        if "closures" in top and site_id is not None:
            closures = self._closures(top["closures"], site_id, calendar)
        if (
            len(self._problems) > before
            or site_id is None
            or title is None
            or timezone is None
            or calendar is None
            or runs is None
        ):
            return None
        site = Site(
            id=site_id,
            title=title,
            timezone=timezone,
            calendar=calendar,
            pathways=frozenset(runs),
            closures=closures[0] if closures else {},
            source=self._source,
            closure_source=closures[1] if closures else None,
        )
        return site, top["site"].line

    def _timezone(self, node: _Node) -> str | None:
        name = self._string(node)
        if name is None:
            return None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self._bad(node, f"unknown time zone {name!r}; give an IANA name like Europe/London")
            return None
        return name

    def _calendar(self, node: _Node) -> str | None:
        name = self._string(node)
        if name is None:
            return None
        if name not in CALENDARS:
            self._bad(node, f"unknown calendar {name!r}; expected one of {', '.join(CALENDARS)}")
            return None
        return name

    def _pathways(self, node: _Node) -> list[str] | None:
        if not isinstance(node.value, list):
            if node.value is not _BROKEN:
                self._bad(node, f"must be a list of pathway ids, not {_kind(node)}")
            return None
        if not node.value:
            self._bad(node, "must name one pathway at least: the ones the site runs")
            return None
        ids = [self._identifier(item, "a pathway id") for item in node.value]
        found: list[str] = []
        for item, pathway_id in zip(node.value, ids, strict=True):
            if pathway_id is None:
                continue
            if pathway_id in found:
                self._bad(item, f"pathway {pathway_id!r} is listed twice")
            found.append(pathway_id)
        return None if None in ids else found

    def _closures(
        self, node: _Node, site_id: str, calendar: str | None
    ) -> tuple[dict[dt.date, str], str] | None:
        relative = self._string(node)
        if relative is None:
            return None
        entry = self._folder / relative
        if isinstance(entry, Path):  # "sites/../closures/x.yaml" read as "closures/x.yaml"
            entry = Path(os.path.normpath(entry))
        source = str(entry)
        before = len(self._problems)
        text = _read(entry, source, self._problems)
        if text is None:
            # The problem names the closure file; say which site file pointed at it.
            missing = self._problems.pop()
            self._bad(node, f"cannot read the closure file {relative}: {missing.message}")
            return None
        checked = _check_closures(text, source, self._problems, CLOSURE_YEARS)
        if checked is None or len(self._problems) > before:
            return None
        closures = checked[0]
        if closures.site != site_id:
            self._bad(
                node, f"{relative} holds the closures of site {closures.site!r}, not this one"
            )
        if calendar is not None and closures.calendar != calendar:
            self._bad(
                node,
                f"{relative} is meant for calendar {closures.calendar!r}, not the site's "
                f"{calendar!r}",
            )
        if len(self._problems) > before:
            return None
        return dict(closures.days), source
