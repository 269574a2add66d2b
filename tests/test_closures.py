"""Tests for nim_workflow._closures: site closure files, their rules, and how the engine uses them.

Dates are worked by hand. Western Easter is Sunday 5 April 2026 and Sunday 28 March 2027, so
Lundi Gras (Easter - 48) is Monday 16 February 2026 and Monday 8 February 2027, Ash Wednesday
(Easter - 46) Wednesday 18 February 2026 and 10 February 2027, Holy Thursday (Easter - 3)
Thursday 2 April 2026 and 25 March 2027. Thanksgiving is the fourth Thursday of November (26
November 2026, 25 November 2027), so the day after is Friday 27 November 2026 and 26 November 2027.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import holidays
import pytest
from deadline_helpers import LOUISIANA, chicago, migrated_engine, open_case

import nim_workflow as nw
import nim_workflow._pathway._bundled as bundled_module
from nim_workflow._calendar import WorkingCalendar
from nim_workflow._closures import (
    CLOSURE_YEARS,
    bundled_closures,
    load_closure_folder,
    load_closures,
    load_closures_text,
)
from nim_workflow._errors import InvalidInput, PathwayError

JEFFERSON_PARISH = {
    2026: {
        date(2026, 2, 16): "Lundi Gras",
        date(2026, 2, 18): "Ash Wednesday",
        date(2026, 4, 2): "Holy Thursday",
        date(2026, 11, 1): "All Saints' Day",  # a Sunday
        date(2026, 11, 27): "Day after Thanksgiving",
        date(2026, 12, 24): "Christmas Eve",
        date(2026, 12, 31): "New Year's Eve",
    },
    2027: {
        date(2027, 2, 8): "Lundi Gras",
        date(2027, 2, 10): "Ash Wednesday",
        date(2027, 3, 25): "Holy Thursday",
        date(2027, 11, 1): "All Saints' Day",
        date(2027, 11, 26): "Day after Thanksgiving",
        date(2027, 12, 24): "Christmas Eve",
        date(2027, 12, 31): "New Year's Eve",
    },
}

# Easter Monday is Easter + 1; the Glasgow Fair Monday the third Monday of July (July 2026 starts
# on a Wednesday: Mondays 6, 13, 20; July 2027 on a Thursday: 5, 12, 19); the September weekend
# the last Monday of September (28 September 2026, 27 September 2027) and the Friday before.
GLASGOW = {
    2026: {
        date(2026, 4, 6): "Easter Monday",
        date(2026, 7, 20): "Glasgow Fair Monday",
        date(2026, 9, 25): "September weekend (Friday)",
        date(2026, 9, 28): "September weekend (Monday)",
    },
    2027: {
        date(2027, 3, 29): "Easter Monday",
        date(2027, 7, 19): "Glasgow Fair Monday",
        date(2027, 9, 24): "September weekend (Friday)",
        date(2027, 9, 27): "September weekend (Monday)",
    },
}

HEADER = "site: croydon\ncalendar: england-and-wales\ntitle: Croydon office closures\n"


def in_year(names: dict[date, str], year: int) -> dict[date, str]:
    """The entries of ``names`` that fall in ``year``."""
    return {day: name for day, name in names.items() if day.year == year}


def closures_file(tmp_path: Path, body: str, name: str = "croydon.yaml") -> Path:
    """Write a closure file with the Croydon header and ``body`` (its closures section)."""
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


# -- the bundled files ----------------------------------------------------------------------------


def test_bundled_sites_are_jefferson_parish_and_glasgow() -> None:
    """The bundled closures are Jefferson Parish's and Glasgow's, each for its pathway calendar."""
    bundled = bundled_closures()
    assert sorted(bundled) == ["glasgow", "jefferson-parish"]
    assert bundled["jefferson-parish"].calendar == "louisiana"
    assert bundled["glasgow"].calendar == "scotland"
    assert all(closures.title for closures in bundled.values())
    assert "london" not in bundled


@pytest.mark.parametrize("year", [2026, 2027])
def test_jefferson_parish_court_closures(year: int) -> None:
    """Jefferson Parish closes on the seven court closures, on the hand-worked dates."""
    names = bundled_closures()["jefferson-parish"].names
    assert in_year(names, year) == JEFFERSON_PARISH[year]


@pytest.mark.parametrize("year", [2026, 2027])
def test_glasgow_local_holidays(year: int) -> None:
    """Glasgow closes on Easter Monday, the Fair Monday and the September weekend."""
    names = bundled_closures()["glasgow"].names
    assert in_year(names, year) == GLASGOW[year]


def test_jefferson_parish_file_repeats_no_state_holiday() -> None:
    """No court closure is one of the Louisiana state holidays the holidays package has."""
    state = holidays.country_holidays(
        "US", subdiv="LA", categories="public", years=CLOSURE_YEARS
    ).values()
    names = set(bundled_closures()["jefferson-parish"].names.values())
    assert len(names) == 7
    assert not names & set(state)


def test_rules_expand_from_2000_through_2100() -> None:
    """The bundled rules are expanded for every year from 2000 through 2100, and no other."""
    days = bundled_closures()["jefferson-parish"].dates
    assert {day.year for day in days} == set(range(2000, 2101))
    assert len(days) == 7 * len(CLOSURE_YEARS)


def test_the_pathway_loader_ignores_the_closures_folder() -> None:
    """Bundled pathways are only the *.yaml files directly in pathways/, not closures/."""
    files = bundled_module._bundled_files()
    assert "glasgow" not in files
    assert "jefferson-parish" not in files
    assert all(not name.startswith("closures") for name in files)


def test_closures_are_read_from_the_packaged_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a built wheel the closure files are found under nim_workflow/_bundled/closures/."""
    folder = tmp_path / "_bundled" / "closures"
    folder.mkdir(parents=True)
    source = Path(bundled_module.__file__).resolve().parents[2] / "pathways" / "closures"
    for name in ("glasgow.yaml", "jefferson-parish.yaml"):
        (folder / name).write_bytes((source / name).read_bytes())
    monkeypatch.setattr(bundled_module, "files", lambda package: tmp_path)
    found = load_closure_folder(bundled_module._bundled_dir() / "closures")
    assert {site: c.days for site, c in found.items()} == {
        site: c.days for site, c in bundled_closures().items()
    }


# -- the engine uses them -------------------------------------------------------------------------


def test_a_jefferson_parish_calendar_skips_the_court_closures() -> None:
    """Working days at Jefferson Parish skip Ash Wednesday and the day after Thanksgiving."""
    with nw.Engine("sqlite://") as engine:
        site = engine.calendar("jefferson-parish", LOUISIANA)
    state_only = WorkingCalendar("louisiana", "America/Chicago")
    # Fri 13 Feb 2026: Mon 16 is Washington's Birthday (and Lundi Gras), Tue 17 Mardi Gras,
    # Wed 18 Ash Wednesday, so the first working day after is Thu 19.
    assert site.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 19)
    assert state_only.add_working_days(date(2026, 2, 13), 1) == date(2026, 2, 18)
    assert site.skipped(date(2026, 2, 13), date(2026, 2, 19)) == [
        (date(2026, 2, 16), "Washington's Birthday"),
        (date(2026, 2, 17), "Mardi Gras"),
        (date(2026, 2, 18), "Ash Wednesday"),
    ]
    # Wed 25 Nov 2026: Thu 26 is Thanksgiving, Fri 27 the court is closed, so Mon 30.
    assert site.add_working_days(date(2026, 11, 25), 1) == date(2026, 11, 30)
    assert state_only.add_working_days(date(2026, 11, 25), 1) == date(2026, 11, 27)
    assert site.non_working_reason(date(2026, 11, 27)) == "Day after Thanksgiving"


def test_a_jefferson_parish_deadline_skips_the_day_after_thanksgiving(tmp_path: Path) -> None:
    """A referral opened Fri 20 Nov 2026 has its 10 working days end Tue 8 Dec, not Mon 7 Dec."""
    with migrated_engine(f"sqlite:///{tmp_path / 'jp.db'}") as engine:
        open_case(engine, "JEF-1", LOUISIANA, chicago(2026, 11, 20, 9), site="jefferson-parish")
        (due,) = [d for d in engine.deadlines("JEF-1") if d.name == "referral_decision"]
        # Working days: 23, 24, 25, 30 Nov, 1, 2, 3, 4, 7, 8 Dec.
        assert due.due_on == date(2026, 12, 8)
        assert due.explain().skipped == (
            (date(2026, 11, 26), "Thanksgiving Day"),
            (date(2026, 11, 27), "Day after Thanksgiving"),
        )


def test_a_london_calendar_has_no_closures() -> None:
    """London has no closure file: its calendar is the plain England and Wales one."""
    with nw.Engine("sqlite://") as engine:
        london = engine.calendar("london", "nim-uk-england")
        glasgow = engine.calendar("glasgow", "nim-uk-scotland")
    assert london.closures == frozenset()
    assert london == WorkingCalendar("england-and-wales", "Europe/London")
    # Glasgow's September weekend is a working day in London.
    assert london.is_working_day(date(2026, 9, 28))
    assert not glasgow.is_working_day(date(2026, 9, 28))
    assert glasgow.non_working_reason(date(2026, 9, 28)) == "September weekend (Monday)"


def test_the_callers_closures_add_to_the_bundled_ones() -> None:
    """closures= adds its dates to a site's bundled closures and does not replace them."""
    extra = date(2026, 6, 15)
    with nw.Engine("sqlite://", closures={"jefferson-parish": [extra]}) as engine:
        site = engine.calendar("jefferson-parish", LOUISIANA)
    assert site.closures >= set(bundled_closures()["jefferson-parish"].dates) | {extra}
    assert site.non_working_reason(extra) == "site closure"
    assert site.non_working_reason(date(2026, 12, 24)) == "Christmas Eve"


def test_the_callers_closure_on_a_bundled_date_keeps_its_name() -> None:
    """A caller's date that is already a bundled closure keeps the bundled name."""
    with nw.Engine("sqlite://", closures={"glasgow": [date(2026, 7, 20)]}) as engine:
        site = engine.calendar("glasgow", "nim-uk-scotland")
    assert site.non_working_reason(date(2026, 7, 20)) == "Glasgow Fair Monday"


def test_a_site_without_a_file_has_only_the_callers_closures() -> None:
    """A declared site with no closure file (London) gets exactly the closures the caller gives."""
    with nw.Engine("sqlite://", closures={"london": [date(2026, 12, 24)]}) as engine:
        site = engine.calendar("london", "nim-uk-england")
    assert site.closures == frozenset({date(2026, 12, 24)})


def test_closures_for_a_site_nobody_declared_are_refused() -> None:
    """closures= for an undeclared site is refused naming it, never a calendar for a typo."""
    with pytest.raises(nw.UnknownSite, match="closures: unknown site 'croydon'"):
        nw.Engine("sqlite://", closures={"croydon": [date(2026, 12, 24)]})


def test_two_engines_keep_their_own_closures() -> None:
    """One engine's closures= never reaches another engine's calendar."""
    with (
        nw.Engine("sqlite://", closures={"glasgow": [date(2026, 6, 16)]}) as first,
        nw.Engine("sqlite://") as second,
    ):
        assert not first.calendar("glasgow", "nim-uk-scotland").is_working_day(date(2026, 6, 16))
        assert second.calendar("glasgow", "nim-uk-scotland").is_working_day(date(2026, 6, 16))


# -- the rules ------------------------------------------------------------------------------------


def test_each_rule_form_expands_as_documented(tmp_path: Path) -> None:
    """One-off, yearly, Easter, nth weekday and offset rules give the hand-worked dates."""
    path = closures_file(
        tmp_path,
        "closures:\n"
        "  - {name: Jubilee, date: 2026-06-15}\n"
        "  - {name: Leap day, month: 2, day: 29}\n"
        "  - {name: Good Friday eve, easter: -3}\n"
        "  - {name: Fifth Friday, month: 1, weekday: friday, nth: 5}\n"
        "  - {name: Last Monday of May, month: 5, weekday: monday, nth: -1}\n"
        "  - {name: Hogmanay eve, month: 1, day: 1, offset: -2}\n",
    )
    closures = load_closures(path, years=[2026, 2027, 2028])
    assert closures.site == "croydon"
    assert closures.calendar == "england-and-wales"
    assert closures.title == "Croydon office closures"
    assert closures.source == str(path)
    assert closures.names == {
        date(2026, 1, 30): "Fifth Friday",  # January 2026 has five Fridays: 2, 9, 16, 23, 30
        date(2026, 4, 2): "Good Friday eve",
        date(2026, 5, 25): "Last Monday of May",
        date(2026, 6, 15): "Jubilee",
        date(2026, 12, 30): "Hogmanay eve",  # 1 January 2027 - 2
        date(2027, 3, 25): "Good Friday eve",
        date(2027, 5, 31): "Last Monday of May",
        date(2027, 12, 30): "Hogmanay eve",
        date(2028, 2, 29): "Leap day",  # only a leap year has one
        date(2028, 4, 13): "Good Friday eve",  # Easter 2028 is 16 April
        date(2028, 5, 29): "Last Monday of May",
        date(2028, 12, 30): "Hogmanay eve",
        date(2027, 1, 29): "Fifth Friday",  # Fridays 1, 8, 15, 22, 29; January 2028 has four
    }


def test_rules_closing_the_same_date_join_their_names(tmp_path: Path) -> None:
    """Two rules on one date give it once, with both names."""
    path = closures_file(
        tmp_path,
        "closures:\n"
        "  - {name: Christmas Eve, month: 12, day: 24}\n"
        "  - {name: Office party, date: 2026-12-24}\n",
    )
    closures = load_closures(path, years=[2026])
    assert closures.days == ((date(2026, 12, 24), "Christmas Eve and Office party"),)


def test_an_empty_closures_list_is_allowed(tmp_path: Path) -> None:
    """A file may list no closures yet."""
    closures = load_closures(closures_file(tmp_path, "closures: []\n"))
    assert closures.days == ()
    assert closures.rules == ()


def test_closure_names_reach_the_working_calendar() -> None:
    """A calendar given named closures reports each by name; unnamed ones by the label."""
    named = WorkingCalendar("louisiana", "America/Chicago", {date(2026, 2, 18): "Ash Wednesday"})
    plain = WorkingCalendar("louisiana", "America/Chicago", [date(2026, 2, 18)])
    assert named.non_working_reason(date(2026, 2, 18)) == "Ash Wednesday"
    assert plain.non_working_reason(date(2026, 2, 18)) == "site closure"
    assert named != plain
    assert hash(named) == hash(
        WorkingCalendar("louisiana", "America/Chicago", {date(2026, 2, 18): "Ash Wednesday"})
    )
    with pytest.raises(InvalidInput):
        WorkingCalendar("louisiana", "America/Chicago", {date(2026, 2, 18): 7})  # type: ignore[dict-item]


# -- bad files ------------------------------------------------------------------------------------

BAD_RULES = [
    pytest.param(
        "  - {name: Closed, month: 12, day: 24, colour: red}\n",
        "closures[1].colour",
        "unknown key 'colour'",
        id="unknown-key",
    ),
    pytest.param(
        "  - {name: Closed, date: 2026-06-15, month: 6}\n",
        "closures[1]",
        "date cannot be combined with month",
        id="date-with-month",
    ),
    pytest.param(
        "  - {name: Closed, easter: 1, day: 3}\n",
        "closures[1]",
        "easter cannot be combined with day",
        id="easter-with-day",
    ),
    pytest.param(
        "  - {name: Closed, date: 2026-02-30}\n",
        "closures[1].date",
        "2026-02-30 is not a date in the calendar",
        id="impossible-one-off",
    ),
    pytest.param(
        "  - {name: Closed, month: 2, day: 30}\n",
        "closures[1].day",
        "30 February is not a date in any year",
        id="impossible-yearly",
    ),
    pytest.param(
        "  - {name: Closed, month: 13, day: 1}\n",
        "closures[1].month",
        "must be from 1 to 12, not 13",
        id="month-13",
    ),
    pytest.param(
        "  - {name: Closed, month: 7, weekday: funday, nth: 3}\n",
        "closures[1].weekday",
        "unknown weekday 'funday'",
        id="unknown-weekday",
    ),
    pytest.param(
        "  - {name: Closed, month: 7, weekday: monday, nth: 0}\n",
        "closures[1].nth",
        "must be 1 to 5",
        id="nth-0",
    ),
    pytest.param(
        "  - {name: Closed, month: 7, weekday: monday, nth: 6}\n",
        "closures[1].nth",
        "not 6",
        id="nth-6",
    ),
    pytest.param(
        "  - {name: Closed, month: 7, weekday: monday}\n",
        "closures[1]",
        "weekday needs nth",
        id="weekday-without-nth",
    ),
    pytest.param(
        "  - {name: Closed, month: 7, day: 1, weekday: monday, nth: 1}\n",
        "closures[1]",
        "not both",
        id="day-and-weekday",
    ),
    pytest.param(
        "  - {name: Closed, day: 24}\n",
        "closures[1]",
        "day needs a month",
        id="day-without-month",
    ),
    pytest.param(
        "  - {name: Closed}\n",
        "closures[1]",
        "needs a rule",
        id="no-rule",
    ),
    pytest.param(
        "  - {month: 12, day: 24}\n",
        "closures[1].name",
        "is missing",
        id="no-name",
    ),
    pytest.param(
        "  - {name: Closed, month: 12, day: 24, offset: 400}\n",
        "closures[1].offset",
        "must be from -366 to 366, not 400",
        id="offset-too-far",
    ),
    pytest.param(
        "  - {name: Closed, date: 15 June 2026}\n",
        "closures[1].date",
        "must be a date written YYYY-MM-DD",
        id="date-not-iso",
    ),
]


@pytest.mark.parametrize(("rule", "field", "message"), BAD_RULES)
def test_a_bad_rule_is_refused_with_file_line_and_field(
    tmp_path: Path, rule: str, field: str, message: str
) -> None:
    """Each kind of bad closure entry is one problem naming the file, its line and the field."""
    path = closures_file(tmp_path, "closures:\n  - {name: Fine, month: 12, day: 24}\n" + rule)
    with pytest.raises(PathwayError) as raised:
        load_closures(path)
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == (str(path), 6, field)
    assert message in problem.message
    assert f"{path}:6: {field}: " in str(raised.value)


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    """A file with several mistakes lists each, in file order, with its line."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "site: croydon\n"
        "calendar: wales\n"
        "closures:\n"
        "  - {name: A, date: 2026-06-15, month: 6}\n"
        "  - {name: B, month: 9, weekday: funday, nth: 0}\n"
        "owner: someone\n",
        encoding="utf-8",
    )
    with pytest.raises(PathwayError) as raised:
        load_closures(path)
    found = [(p.line, p.field) for p in raised.value.problems]
    assert found == [
        (1, "title"),
        (2, "calendar"),
        (4, "closures[0]"),
        (5, "closures[1].weekday"),
        (5, "closures[1].nth"),
        (6, "owner"),
    ]


def test_an_empty_file_says_what_a_closure_file_holds(tmp_path: Path) -> None:
    """An empty file is refused with the keys a closure file has, not a pathway's."""
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(PathwayError, match="site, calendar, title, closures"):
        load_closures(path)


def test_a_file_that_cannot_be_read_is_one_problem(tmp_path: Path) -> None:
    """A missing file is reported as the file, with no line."""
    with pytest.raises(PathwayError) as raised:
        load_closures(tmp_path / "missing.yaml")
    (problem,) = raised.value.problems
    assert problem.line is None
    assert "cannot read it" in problem.message


def test_yaml_text_is_checked_the_same_way() -> None:
    """load_closures_text refuses a bad rule with the source name and line."""
    with pytest.raises(PathwayError, match=r"<memo>:5: closures\[0\]\.nth: "):
        load_closures_text(
            HEADER + "closures:\n  - {name: X, month: 1, weekday: monday, nth: 9}\n", "<memo>"
        )


def test_a_site_given_by_two_files_is_refused(tmp_path: Path) -> None:
    """Two closure files for one site are refused, naming the second file's site line."""
    first = closures_file(tmp_path, "closures: []\n", "a.yaml")
    second = closures_file(tmp_path, "closures: []\n", "b.yaml")
    with pytest.raises(PathwayError) as raised:
        load_closure_folder(tmp_path)
    (problem,) = raised.value.problems
    assert (problem.file, problem.line, problem.field) == (str(second), 1, "site")
    assert f"already has closures in {first}" in problem.message


def test_problems_in_several_files_are_reported_together(tmp_path: Path) -> None:
    """Loading a folder reports the problems of every file, not only the first bad one."""
    closures_file(tmp_path, "closures:\n  - {name: X, month: 2, day: 30}\n", "a.yaml")
    (tmp_path / "b.yaml").write_text(
        "site: sutton\ncalendar: england-and-wales\ntitle: T\nclosures: {}\n", encoding="utf-8"
    )
    (tmp_path / "notes.txt").write_text("not a closure file", encoding="utf-8")
    with pytest.raises(PathwayError) as raised:
        load_closure_folder(tmp_path)
    assert [(Path(p.file).name, p.line, p.field) for p in raised.value.problems] == [
        ("a.yaml", 5, "closures[0].day"),
        ("b.yaml", 4, "closures"),
    ]


def test_a_missing_folder_holds_no_closures(tmp_path: Path) -> None:
    """A folder that does not exist gives no closures rather than an error."""
    assert load_closure_folder(tmp_path / "nowhere") == {}
