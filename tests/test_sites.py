"""Tests for nim_workflow._sites and the engine's declared sites: files, refusals, suggestions.

A site is declared data: the bundled ones (``pathways/sites/``) or the host's own
(``nw.Engine(sites=...)``). Every place the engine takes a site refuses an undeclared one with
:class:`nw.UnknownSite`, naming the nearest declared site.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import COORD, SW

import nim_workflow as nw
import nim_workflow._pathway._bundled as bundled_module
from nim_workflow._closures import bundled_closures
from nim_workflow._pathway._bundled import bundled_path
from nim_workflow._report import build_report
from nim_workflow._sites import load_site_folder, load_site_text

NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
ADMIN = nw.Actor("admin-1", roles={"administrator"})
CROYDON = nw.Site(
    id="croydon",
    title="Croydon Infant Team",
    timezone="Europe/London",
    calendar="england-and-wales",
    pathways={"nim-uk-england"},
    closures=[dt.date(2026, 3, 6)],
)
CROYDON_FILE = (
    "site: croydon\n"
    "title: Croydon Infant Team\n"
    "timezone: Europe/London\n"
    "calendar: england-and-wales\n"
    "pathways: [nim-uk-england]\n"
)


@pytest.fixture
def engine(db_url: str) -> Iterator[nw.Engine]:
    """A migrated engine over the bundled pathways and sites, its clock fixed."""
    with nw.Engine(db_url, clock=lambda: NOW) as built:
        built.migrate()
        yield built


def site_file(folder: Path, text: str, name: str = "croydon.yaml") -> Path:
    """Write ``text`` as the site file ``name`` in ``folder``."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the bundled sites ----------------------------------------------------------------------------


def test_bundled_sites_are_the_three_pilot_sites() -> None:
    """london, glasgow and jefferson-parish, each running its pathways in its own zone.

    The two trial sites also run the BeST? trial's comparator pathway (TRIAL.md).
    """
    found = {
        site.id: (sorted(site.pathways), site.calendar, site.timezone)
        for site in nw.bundled_sites().values()
    }
    assert found == {
        "glasgow": (["best-facs-glasgow", "nim-uk-scotland"], "scotland", "Europe/London"),
        "jefferson-parish": (["nim-us-louisiana"], "louisiana", "America/Chicago"),
        "london": (["best-sau-london", "nim-uk-england"], "england-and-wales", "Europe/London"),
    }


def test_bundled_sites_carry_their_closure_files() -> None:
    """Each bundled closure file belongs to a bundled site, whose closures are its dates."""
    sites = nw.bundled_sites()
    for site_id, closures in bundled_closures().items():
        assert dict(sites[site_id].closures) == closures.names
        assert sites[site_id].closure_source == closures.source
    assert sites["london"].closures == {}
    assert sites["london"].closure_source is None


def test_bundled_sites_agree_with_their_pathways() -> None:
    """A bundled site keeps the calendar and time zone of every bundled pathway it runs."""
    pathways = nw.bundled_pathways()
    for site in nw.bundled_sites().values():
        for pathway_id in site.pathways:
            pathway = pathways[pathway_id]
            assert (pathway.calendar, pathway.timezone) == (site.calendar, site.timezone)


def test_sites_are_read_from_the_packaged_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a built wheel the site files (and the closure files they name) are under _bundled/."""
    source = Path(bundled_module.__file__).resolve().parents[2] / "pathways"
    for folder in ("sites", "closures"):
        (tmp_path / "_bundled" / folder).mkdir(parents=True)
        for entry in (source / folder).glob("*.yaml"):
            (tmp_path / "_bundled" / folder / entry.name).write_bytes(entry.read_bytes())
    monkeypatch.setattr(bundled_module, "files", lambda package: tmp_path)
    found = load_site_folder(bundled_module._bundled_dir() / "sites")
    assert found.keys() == nw.bundled_sites().keys()
    for site_id, site in found.items():
        assert site.source == str(tmp_path / "_bundled" / "sites" / f"{site_id}.yaml")
        assert site.closures == nw.bundled_sites()[site_id].closures


def test_engine_sites_are_the_bundled_ones_by_default(engine: nw.Engine) -> None:
    """engine.sites() gives the bundled sites, sorted by id, as nw.Site values."""
    sites = engine.sites()
    assert list(sites) == ["glasgow", "jefferson-parish", "london"]
    assert all(isinstance(site, nw.Site) for site in sites.values())
    assert sites["glasgow"].closures[dt.date(2026, 7, 20)] == "Glasgow Fair Monday"


def test_engine_sites_include_the_closures_the_host_adds() -> None:
    """closures= adds its dates to the site engine.sites() gives, under the default label."""
    extra = dt.date(2026, 3, 6)
    with nw.Engine("sqlite://", closures={"london": [extra]}) as built:
        assert built.sites()["london"].closures == {extra: "site closure"}
    assert nw.bundled_sites()["london"].closures == {}


# -- refusals, with the nearest name suggested --------------------------------------------------


@pytest.mark.parametrize(
    ("given", "suggestion"),
    [
        ("London", "london"),
        ("glasgo", "glasgow"),
        ("jefferson", "jefferson-parish"),
        ("narnia", None),
    ],
)
def test_open_case_refuses_an_unknown_site_suggesting_the_nearest(
    engine: nw.Engine, given: str, suggestion: str | None
) -> None:
    """open_case at an undeclared site raises UnknownSite with the nearest name; nothing opens."""
    with pytest.raises(nw.UnknownSite) as raised:
        engine.open_case("LDN-1", pathway="nim-uk-england", site=given, actor=SW)
    error = raised.value
    assert (error.site, error.suggestion, error.field) == (given, suggestion, "site")
    assert error.known == ("glasgow", "jefferson-parish", "london")
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    assert str(error) == (
        f"unknown site {given!r}{hint} (declared sites: glasgow, jefferson-parish, london)"
    )
    assert engine.cases(open_only=False) == []


def _filters(engine: nw.Engine) -> dict[str, Callable[[str], Any]]:
    return {
        "cases": lambda site: engine.cases(site=site),
        "due": lambda site: engine.due(before=NOW, site=site),
        "overdue": lambda site: engine.overdue(at=NOW, site=site),
        "calendar": lambda site: engine.calendar(site, "nim-uk-england"),
        "report": lambda site: build_report(engine, site=site, at=NOW),
        "add_staff": lambda site: engine.add_staff(
            "sw-1", roles={"social_worker"}, sites={site}, actor=ADMIN
        ),
    }


@pytest.mark.parametrize("call", ["cases", "due", "overdue", "calendar", "report", "add_staff"])
def test_every_site_filter_refuses_an_unknown_site(engine: nw.Engine, call: str) -> None:
    """cases, due, overdue, calendar, the report and the staff roster refuse a typo alike."""
    with pytest.raises(nw.UnknownSite, match=r"unknown site 'London'; did you mean 'london'\?"):
        _filters(engine)[call]("London")


@pytest.mark.parametrize("call", ["cases", "due", "overdue", "calendar", "report"])
def test_every_site_filter_takes_a_declared_site(engine: nw.Engine, call: str) -> None:
    """A declared site with no cases is an empty answer, not a refusal."""
    _filters(engine)[call]("glasgow")


def test_a_pathway_the_site_does_not_run_is_refused(engine: nw.Engine) -> None:
    """Opening a Scottish case in London is InvalidInput on pathway, naming London's pathways."""
    with pytest.raises(nw.InvalidInput) as raised:
        engine.open_case("LDN-1", pathway="nim-uk-scotland", site="london", actor=SW)
    assert not isinstance(raised.value, nw.UnknownSite)
    assert raised.value.field == "pathway"
    assert str(raised.value) == (
        "site 'london' does not run pathway 'nim-uk-scotland'; it runs best-sau-london, "
        "nim-uk-england"
    )


def test_closures_for_an_undeclared_site_are_refused() -> None:
    """closures= naming a site nobody declared is refused on closures, with the suggestion."""
    with pytest.raises(nw.UnknownSite) as raised:
        nw.Engine("sqlite://", closures={"glasgw": [dt.date(2026, 3, 6)]})
    assert (raised.value.field, raised.value.suggestion) == ("closures", "glasgow")
    assert str(raised.value).startswith("closures: unknown site 'glasgw'; did you mean 'glasgow'?")


def test_a_stored_case_at_an_undeclared_site_still_reads_and_moves(db_url: str) -> None:
    """Declaring fewer sites later never strands a stored case: it reads, moves and reports."""
    with nw.Engine(db_url, clock=lambda: NOW, sites=[CROYDON]) as first:
        first.migrate()
        first.open_case("CRO-1", pathway="nim-uk-england", site="croydon", actor=SW)
    with nw.Engine(db_url, clock=lambda: NOW) as later:
        assert later.case("CRO-1").site == "croydon"
        assert later.deadlines("CRO-1")
        later.pause("CRO-1", actor=COORD, reason="family moved")
        assert "CRO-1" in build_report(later, at=NOW)
        with pytest.raises(nw.UnknownSite):
            later.cases(site="croydon")


# -- a host's own sites ---------------------------------------------------------------------------


def test_a_host_site_object_opens_cases_with_its_closures(db_url: str) -> None:
    """sites=[nw.Site(...)] declares exactly those sites; their closures move working days."""
    with nw.Engine(db_url, clock=lambda: NOW, sites=[CROYDON]) as built:
        built.migrate()
        assert list(built.sites()) == ["croydon"]
        case = built.open_case("CRO-1", pathway="nim-uk-england", site="croydon", actor=SW)
        assert case.site == "croydon"
        assert built.calendar("croydon", "nim-uk-england").non_working_reason(
            dt.date(2026, 3, 6)
        ) == ("site closure")
        with pytest.raises(nw.UnknownSite, match="declared sites: croydon"):
            built.open_case("LDN-1", pathway="nim-uk-england", site="london", actor=SW)


def test_a_host_site_file_is_loaded_from_its_path(tmp_path: Path) -> None:
    """sites= takes file paths, like pathways=; the site remembers its file."""
    path = site_file(tmp_path, CROYDON_FILE)
    with nw.Engine("sqlite://", sites=[path, *nw.bundled_sites().values()]) as built:
        assert list(built.sites()) == ["croydon", "glasgow", "jefferson-parish", "london"]
        assert built.sites()["croydon"].source == str(path)


def test_a_host_site_file_can_name_its_closure_file(tmp_path: Path) -> None:
    """A site file's closures: path is read relative to it, and its dates close the site."""
    (tmp_path / "closures").mkdir()
    (tmp_path / "closures" / "croydon.yaml").write_text(
        "site: croydon\ncalendar: england-and-wales\ntitle: Croydon closures\n"
        "closures:\n  - {name: Training day, date: 2026-03-06}\n",
        encoding="utf-8",
    )
    (tmp_path / "sites").mkdir()
    path = site_file(tmp_path / "sites", CROYDON_FILE + "closures: ../closures/croydon.yaml\n")
    site = nw.load_site(path)
    assert site.closures == {dt.date(2026, 3, 6): "Training day"}
    assert site.closure_source == str(tmp_path / "closures" / "croydon.yaml")


def test_custom_pathways_need_a_declared_site_that_runs_them(db_url: str, tmp_path: Path) -> None:
    """A host's own pathway is refused at a bundled site until a site declares it runs it."""
    text = bundled_path("nim-uk-england").read_text(encoding="utf-8")
    path = tmp_path / "croydon-pathway.yaml"
    path.write_text(text.replace("id: nim-uk-england", "id: nim-uk-croydon", 1), encoding="utf-8")
    custom = nw.load_pathway(path)
    with nw.Engine(db_url, clock=lambda: NOW, pathways=[custom]) as plain:
        plain.migrate()
        with pytest.raises(nw.InvalidInput, match="does not run pathway 'nim-uk-croydon'"):
            plain.open_case("LDN-1", pathway="nim-uk-croydon", site="london", actor=SW)
    runs = nw.Site(
        id="croydon",
        title="Croydon",
        timezone="Europe/London",
        calendar="england-and-wales",
        pathways={"nim-uk-croydon"},
    )
    with nw.Engine(db_url, clock=lambda: NOW, pathways=[custom], sites=[runs]) as declared:
        case = declared.open_case("CRO-1", pathway="nim-uk-croydon", site="croydon", actor=SW)
        assert case.pathway_id == "nim-uk-croydon"


def test_a_site_whose_calendar_differs_from_its_pathway_is_refused() -> None:
    """A site keeping another calendar than a pathway it runs stops the engine, naming both."""
    wrong = nw.Site(
        id="croydon",
        title="Croydon",
        timezone="America/Chicago",
        calendar="louisiana",
        pathways={"nim-uk-england"},
    )
    with pytest.raises(nw.InvalidInput) as raised:
        nw.Engine("sqlite://", sites=[wrong])
    assert raised.value.field == "sites"
    assert "nim-uk-england, keeps england-and-wales in Europe/London" in str(raised.value)


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"id": ""}, "site", "site"),
        ({"title": " "}, "title", "title must be non-empty text"),
        ({"calendar": "wales"}, "calendar", "unknown calendar 'wales'"),
        ({"timezone": "Europe/Croydon"}, "timezone", "unknown time zone 'Europe/Croydon'"),
        ({"pathways": "nim-uk-england"}, "pathways", "must be a list of pathway ids"),
        ({"pathways": []}, "pathways", "runs no pathway"),
        ({"closures": ["2026-03-06"]}, "closures", "is not a datetime.date"),
        ({"closures": {dt.date(2026, 3, 6): ""}}, "closures", "the name must be non-empty text"),
    ],
)
def test_a_bad_site_object_is_refused(given: dict[str, Any], field: str, message: str) -> None:
    """nw.Site checks what it is given as the engine's door does: InvalidInput on the field."""
    values: dict[str, Any] = {
        "id": "croydon",
        "title": "Croydon",
        "timezone": "Europe/London",
        "calendar": "england-and-wales",
        "pathways": {"nim-uk-england"},
        **given,
    }
    with pytest.raises(nw.InvalidInput, match=message) as raised:
        nw.Site(**values)
    assert raised.value.field == field


def test_a_host_site_object_out_of_the_engine_dates_is_refused() -> None:
    """A Site built in code has its closure dates checked as closures= dates are."""
    old = nw.Site(
        id="croydon",
        title="Croydon",
        timezone="Europe/London",
        calendar="england-and-wales",
        pathways={"nim-uk-england"},
        closures=[dt.date(1980, 1, 1)],
    )
    with pytest.raises(nw.InvalidInput, match="outside the dates the engine keeps"):
        nw.Engine("sqlite://", sites=[old])


@pytest.mark.parametrize(
    ("sites", "message"),
    [
        ("london", "sites must be a list of nw.Site objects or file paths"),
        ([3], "int 3 is neither an nw.Site nor a file path"),
        ([CROYDON, CROYDON], "site 'croydon' is declared twice"),
    ],
)
def test_bad_sites_arguments_are_refused(sites: Any, message: str) -> None:
    """sites= takes a list of Site objects or paths, each site once."""
    with pytest.raises(nw.InvalidInput, match=message) as raised:
        nw.Engine("sqlite://", sites=sites)
    assert raised.value.field == "sites"


# -- bad site files: every problem, with file, line and field ------------------------------------


BAD_FILES = [
    pytest.param(
        CROYDON_FILE.replace("Europe/London", "Europe/Croydon"),
        3,
        "timezone",
        "unknown time zone 'Europe/Croydon'",
        id="timezone",
    ),
    pytest.param(
        CROYDON_FILE.replace("england-and-wales", "wales"),
        4,
        "calendar",
        "unknown calendar 'wales'",
        id="calendar",
    ),
    pytest.param(
        CROYDON_FILE.replace("[nim-uk-england]", "[]"),
        5,
        "pathways",
        "must name one pathway at least",
        id="no-pathways",
    ),
    pytest.param(
        CROYDON_FILE.replace("[nim-uk-england]", "nim-uk-england"),
        5,
        "pathways",
        "must be a list of pathway ids, not the string",
        id="pathways-not-a-list",
    ),
    pytest.param(
        CROYDON_FILE.replace("[nim-uk-england]", "[nim-uk-england, nim-uk-england]"),
        5,
        "pathways[1]",
        "pathway 'nim-uk-england' is listed twice",
        id="pathway-twice",
    ),
    pytest.param(
        CROYDON_FILE.replace("site: croydon", "site: 42"),
        1,
        "site",
        "must be text, not the number '42'",
        id="site-not-text",
    ),
    pytest.param(
        CROYDON_FILE + "owner: someone\n",
        6,
        "owner",
        "unknown key 'owner'",
        id="unknown-key",
    ),
    pytest.param(
        CROYDON_FILE + "closures: missing.yaml\n",
        6,
        "closures",
        "cannot read the closure file missing.yaml",
        id="closure-file-missing",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), BAD_FILES)
def test_a_bad_site_file_is_refused_with_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    """Each kind of mistake in a site file is one problem naming the file, its line, the field."""
    path = site_file(tmp_path, text)
    with pytest.raises(nw.PathwayError) as raised:
        nw.load_site(path)
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == (str(path), line, field)
    assert message in problem.message
    assert f"{path}:{line}: {field}: " in str(raised.value)


def test_every_problem_in_a_site_file_is_reported_at_once(tmp_path: Path) -> None:
    """A site file with several mistakes lists each, in file order, with its line."""
    path = site_file(
        tmp_path, "site: croydon\ntimezone: Mars/Olympus\ncalendar: wales\npathways: {}\n"
    )
    with pytest.raises(nw.PathwayError) as raised:
        nw.load_site(path)
    assert [(p.line, p.field) for p in raised.value.problems] == [
        (1, "title"),
        (2, "timezone"),
        (3, "calendar"),
        (4, "pathways"),
    ]


def test_a_closure_file_of_another_site_or_calendar_is_refused(tmp_path: Path) -> None:
    """The named closure file must be this site's, for this calendar: refused on closures."""
    (tmp_path / "sutton.yaml").write_text(
        "site: sutton\ncalendar: scotland\ntitle: Sutton closures\nclosures: []\n",
        encoding="utf-8",
    )
    path = site_file(tmp_path, CROYDON_FILE + "closures: sutton.yaml\n")
    with pytest.raises(nw.PathwayError) as raised:
        nw.load_site(path)
    assert [(p.line, p.field) for p in raised.value.problems] == [(6, "closures"), (6, "closures")]
    assert "holds the closures of site 'sutton'" in raised.value.problems[0].message
    assert "meant for calendar 'scotland'" in raised.value.problems[1].message


def test_a_bad_closure_file_is_reported_by_its_own_file_and_line(tmp_path: Path) -> None:
    """A mistake inside the named closure file names that file and its line."""
    closures = tmp_path / "croydon-closures.yaml"
    closures.write_text(
        "site: croydon\ncalendar: england-and-wales\ntitle: T\n"
        "closures:\n  - {name: X, month: 2, day: 30}\n",
        encoding="utf-8",
    )
    site_file(tmp_path, CROYDON_FILE + "closures: croydon-closures.yaml\n")
    with pytest.raises(nw.PathwayError) as raised:
        nw.load_site(tmp_path / "croydon.yaml")
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == (str(closures), 5, "closures[0].day")


def test_an_empty_site_file_says_what_a_site_file_holds(tmp_path: Path) -> None:
    """An empty file is refused with the keys a site file has."""
    path = site_file(tmp_path, "# nothing yet\n")
    with pytest.raises(nw.PathwayError, match="site, title, timezone, calendar, pathways"):
        nw.load_site(path)


def test_a_site_declared_by_two_files_is_refused(tmp_path: Path) -> None:
    """Two files declaring one site are refused, naming the second file's site line."""
    first = site_file(tmp_path, CROYDON_FILE, "a.yaml")
    second = site_file(tmp_path, CROYDON_FILE, "b.yaml")
    with pytest.raises(nw.PathwayError) as raised:
        load_site_folder(tmp_path)
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == (str(second), 1, "site")
    assert f"already declared in {first}" in problem.message


def test_a_bad_site_file_path_stops_the_engine(tmp_path: Path) -> None:
    """Engine(sites=[path]) with a bad file raises PathwayError naming it."""
    path = site_file(tmp_path, CROYDON_FILE.replace("england-and-wales", "wales"))
    with pytest.raises(nw.PathwayError, match=f"{path}:4: calendar: "):
        nw.Engine("sqlite://", sites=[path])


def test_site_text_is_checked_the_same_way() -> None:
    """load_site_text refuses a bad file with the source name and line."""
    with pytest.raises(nw.PathwayError, match="<memo>:3: timezone: "):
        load_site_text(CROYDON_FILE.replace("Europe/London", "Nowhere"), "<memo>")


def test_a_missing_folder_declares_no_sites(tmp_path: Path) -> None:
    """A folder that does not exist declares no sites rather than an error."""
    assert load_site_folder(tmp_path / "nowhere") == {}
