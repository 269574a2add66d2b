"""The report's data tables as one model: columns that say how they sort, rows of raw values.

Every table on the page is a :class:`Table`: its columns (what each holds, how it sorts, whether
its cells show a title for an identifier) and its rows of :class:`Cell` objects, each with the
text shown and the raw value behind it. One Jinja macro draws any table from this model, with
the data attributes the page's script sorts, filters and exports by, so the script never parses
display text. The page's tables are built by the functions in :data:`SITE_TABLES`, each turning a
site's summary into one :class:`Table`; adding a table to the page is adding one such function.

:meth:`Table.to_csv` is the CSV the page's "Download CSV" button produces from the same table
(the page builds it in the browser from the drawn rows; the two are kept equal by the browser
test): every row, filtered out or not, raw values and identifiers, plus a title column beside
each column that shows titles.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup, escape

from nim_workflow._report._summary import (
    DeadlineItem,
    OpenCase,
    SiteMonths,
    SiteSummary,
    Summary,
)

__all__ = [
    "SITE_TABLES",
    "Cell",
    "Column",
    "Labels",
    "Row",
    "SiteData",
    "Table",
    "csv_field",
    "rule_label",
]

SortKind = Literal["text", "number", "date"]

#: Characters a spreadsheet may read as the start of a formula: a cell starting with one is
#: prefixed with a quote in the CSV (OWASP's "CSV injection" advice), unless it is a number.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
#: Words of deadline-rule names written as acronyms in their labels.
_ACRONYMS: Mapping[str, str] = {
    "asfa": "ASFA",
    "cso": "CSO",
    "icso": "ICSO",
    "lac": "LAC",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """A table column: its CSV name (``key``), its heading and how it sorts.

    ``sort`` is ``number`` (compared as numbers), ``date`` (ISO dates or months, compared in
    order) or ``text``. A ``titled`` column shows titles for identifiers: its CSV has the
    identifier under ``key`` and the title under ``key_title``. ``style`` overrides how its
    cells are drawn (``ref`` for case references).
    """

    key: str
    label: str
    sort: SortKind = "text"
    titled: bool = False
    hint: str = ""
    style: str = ""

    @property
    def numeric(self) -> bool:
        """Whether the column holds numbers (drawn right-aligned)."""
        return self.sort == "number"

    @property
    def css(self) -> str:
        """How the column is drawn: ``num`` (right-aligned), ``date`` (unbroken), ``ref``, or ""."""
        return self.style or {"number": "num", "date": "date"}.get(self.sort, "")

    @property
    def csv_keys(self) -> tuple[str, ...]:
        """The column's CSV header names."""
        return (self.key, f"{self.key}_title") if self.titled else (self.key,)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """One cell: the text shown, and the raw value behind it when that differs.

    ``tags`` are small labels drawn after the text (``statutory``, ``paused``), each as (text,
    CSS class); they are neither sorted by nor exported. ``hint`` is the tooltip.
    """

    text: str
    value: str | None = None
    hint: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    css: str = ""

    @property
    def raw(self) -> str:
        """The value sorted by and exported: ``value`` if given, else the text."""
        return self.text if self.value is None else self.value

    def attributes(self, column: Column) -> tuple[tuple[str, str], ...]:
        """The cell's attributes: what the page's script reads instead of the text, the hint.

        ``data-value`` when the raw value differs from what the cell's text reads as (tags are
        part of that text), ``data-label`` for a titled cell with tags: without them the
        script reads the text itself, which then is the value. ``title`` (the tooltip) only
        when it says more than the value. Only what is needed, to keep a page of 10,000 rows
        small.
        """
        found: list[tuple[str, str]] = []
        if self.css:
            found.append(("class", self.css))
        if self.raw != self.text or self.tags:
            found.append(("data-value", self.raw))
        if column.titled and self.tags:
            found.append(("data-label", self.text))
        if self.hint and self.hint != self.raw:
            found.append(("title", self.hint))
        return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """A table row: its cells and the data attributes that name what it is about."""

    cells: tuple[Cell, ...]
    data: tuple[tuple[str, str], ...] = ()
    css: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    """One data table of the page, sortable, filterable and downloadable as CSV.

    ``id`` is the element id, ``name`` the table's part of the CSV file name
    (``<site>-<name>.csv``), ``css`` its classes; ``heading``, ``note`` and ``badge`` (a count
    shown beside the heading) are drawn above it, ``empty`` as its one row when it has none.
    A ``wide`` table spans the page's whole width.
    """

    id: str
    name: str
    site: str
    heading: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    css: str = ""
    note: str = ""
    badge: str | None = None
    badge_css: str = ""
    empty: str = "None."
    wide: bool = False

    @property
    def column_classes(self) -> str:
        """Classes saying how each column is drawn (``num-4``: the fourth is numeric).

        The page's style draws the cells by these, so no cell repeats a class of its own.
        """
        return " ".join(f"{c.css}-{i}" for i, c in enumerate(self.columns, 1) if c.css)

    @property
    def file_name(self) -> str:
        """The CSV download's file name: ``<site>-<table>.csv``, safe on every system."""
        return f"{_file_part(self.site) or 'site'}-{_file_part(self.name) or 'table'}.csv"

    def body_html(self) -> Markup:
        """The table's body rows as HTML, every value escaped.

        Drawn here rather than cell by cell in the template: a site of 10,000 cases has tables
        of 10,000 rows, and a template call per cell would take most of the report's time.
        """
        if not self.rows:
            return Markup('<tr class="empty"><td colspan="{}">{}</td></tr>').format(
                len(self.columns), self.empty
            )
        lines = []
        for row in self.rows:
            head = f' class="{escape(row.css)}"' if row.css else ""
            head += "".join(f' data-{escape(k)}="{escape(v)}"' for k, v in row.data)
            cells = "".join(
                "<td"
                + "".join(f' {k}="{escape(v)}"' for k, v in cell.attributes(column))
                + f">{escape(cell.text)}"
                + "".join(
                    f' <span class="tag {escape(css)}">{escape(text)}</span>'
                    for text, css in cell.tags
                )
                + "</td>"
                for column, cell in zip(self.columns, row.cells, strict=True)
            )
            lines.append(f"<tr{head}>{cells}</tr>")
        return Markup("\n".join(lines))

    def csv_rows(self) -> list[list[str]]:
        """The header and every row as the CSV holds them (before quoting)."""
        rows = [[key for column in self.columns for key in column.csv_keys]]
        for row in self.rows:
            fields: list[str] = []
            for column, cell in zip(self.columns, row.cells, strict=True):
                fields.append(_squash(cell.raw))
                if column.titled:
                    fields.append(_squash(cell.text))
            rows.append(fields)
        return rows

    def to_csv(self) -> str:
        """The table as RFC 4180 CSV (CRLF line ends), guarded against formula injection."""
        return "".join(
            ",".join(csv_field(f) for f in fields) + "\r\n" for fields in self.csv_rows()
        )


def _file_part(text: str) -> str:
    """``text`` with every run of characters unsafe in a file name made one hyphen."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")


def _squash(text: str) -> str:
    """Whitespace collapsed as a browser's text reading of a cell does."""
    return " ".join(text.split())


def csv_field(value: str) -> str:
    """One CSV field: a formula-like start defused with a quote, then quoted if it must be.

    A value starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed
    with ``'`` (a number such as ``-3`` is left alone); a value holding a comma, a double quote
    or a line break is enclosed in double quotes, its quotes doubled (RFC 4180).
    """
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        value = "'" + value
    if any(c in value for c in ',"\r\n'):
        value = '"' + value.replace('"', '""') + '"'
    return value


# -- labels ---------------------------------------------------------------------------------------


def rule_label(name: str) -> str:
    """A deadline rule's label from its name: ``lac_review`` reads "LAC review".

    Pathway files give stages titles but not deadline rules, so the label is made from the
    name: words split at underscores, known acronyms in capitals, the first word capitalised.
    """
    words = [_ACRONYMS.get(word, word) for word in name.split("_") if word]
    if not words:
        return name
    first = words[0]
    words[0] = first if first.isupper() else first[:1].upper() + first[1:]
    return " ".join(words)


@dataclass(frozen=True, slots=True, kw_only=True)
class Labels:
    """Human titles for the identifiers the page shows: stages by title, rules by label."""

    stages: Mapping[str, str]

    def stage(self, stage: str | None) -> str:
        """A stage's title (its identifier if the pathways have none)."""
        if stage is None:
            return "Statutory clock"
        return self.stages.get(stage, stage)

    def rule(self, name: str, occurrence: int = 1) -> str:
        """A deadline rule's label, with its occurrence after the first (``#2``)."""
        label = rule_label(name)
        return label if occurrence == 1 else f"{label} #{occurrence}"


# -- the site's tables ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteData:
    """What a table function reads: the site's summary, its months, labels and the instant."""

    summary: Summary
    site: SiteSummary
    months: SiteMonths
    labels: Labels
    stage_order: Sequence[str]


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _raw_number(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value)).removesuffix(".0")


def _rate(rate: float | None) -> Cell:
    if rate is None:
        return Cell(text="-", value="")
    return Cell(text=f"{rate * 100:.0f}%", value=f"{rate:.4f}".rstrip("0").rstrip("."))


def _int(value: int) -> Cell:
    return Cell(text=str(value))


def _month(month: dt.date) -> Cell:
    return Cell(text=month.strftime("%b %Y"), value=month.strftime("%Y-%m"))


def _stage_cell(labels: Labels, stage: str | None) -> Cell:
    return Cell(text=labels.stage(stage), value=stage or "")


def _rule_cell(labels: Labels, name: str, occurrence: int = 1, extensions: int = 0) -> Cell:
    tags = ((f"extended {extensions}\u00d7", ""),) if extensions else ()
    hint = name if occurrence == 1 else f"{name} #{occurrence}"
    return Cell(text=labels.rule(name, occurrence), value=name, hint=hint, tags=tags)


def _deadline_table(
    data: SiteData, items: Sequence[DeadlineItem], *, overdue: bool
) -> tuple[tuple[Column, ...], tuple[Row, ...]]:
    columns = (
        Column(key="reference", label="Reference", style="ref"),
        Column(key="deadline", label="Deadline", titled=True),
        Column(key="stage", label="Stage", titled=True),
        Column(key="due_on", label="Due on", sort="date"),
        Column(key="days", label="Days overdue" if overdue else "Days left", sort="number"),
    )
    rows = tuple(
        Row(
            cells=(
                Cell(text=d.reference),
                _rule_cell(data.labels, d.name, d.occurrence, d.extensions),
                _stage_cell(data.labels, d.stage),
                Cell(text=d.due_on.isoformat()),
                _int(d.days),
            ),
            data=(("reference", d.reference), ("deadline", d.name)),
            css="overdue-row" if overdue else "due-soon-row",
        )
        for d in items
    )
    return columns, rows


def overdue_table(data: SiteData) -> Table:
    """The site's overdue deadlines, most overdue first."""
    columns, rows = _deadline_table(data, data.site.overdue, overdue=True)
    return Table(
        id=f"overdue-{data.site.site}",
        name="overdue",
        site=data.site.site,
        heading="Overdue",
        badge=str(len(rows)),
        badge_css="breach",
        css="deadlines overdue",
        columns=columns,
        rows=rows,
        empty="Nothing overdue.",
    )


def due_soon_table(data: SiteData) -> Table:
    """The site's open deadlines falling due soon, soonest first."""
    columns, rows = _deadline_table(data, data.site.due_soon, overdue=False)
    days = data.summary.due_soon_days
    return Table(
        id=f"due-soon-{data.site.site}",
        name="due-soon",
        site=data.site.site,
        heading=f"Due in the next {days} days",
        badge=str(len(rows)),
        css="deadlines due-soon",
        columns=columns,
        rows=rows,
        empty=f"Nothing due in the next {days} days.",
    )


def open_cases_table(data: SiteData) -> Table:
    """Every open case: its stage, since when, and for how long (by stage, longest first)."""
    columns = (
        Column(key="reference", label="Reference", style="ref"),
        Column(key="stage", label="Stage", titled=True),
        Column(key="in_stage_since", label="In stage since", sort="date"),
        Column(key="days", label="Days", sort="number"),
        Column(key="working_days", label="Working days", sort="number"),
        Column(key="paused", label="Paused"),
    )
    rows = tuple(
        Row(
            cells=(
                Cell(text=c.reference),
                _stage_cell(data.labels, c.stage),
                Cell(text=c.entered_on.isoformat()),
                _int(c.days_in_stage),
                _int(c.working_days_in_stage),
                Cell(text="", value="yes", tags=(("paused", ""),)) if c.paused else Cell(text=""),
            ),
            data=(("reference", c.reference),),
            css="open-case",
        )
        for group in data.site.open_by_stage
        for c in group.cases
    )
    return Table(
        id=f"open-cases-{data.site.site}",
        name="open-cases",
        site=data.site.site,
        heading="Open cases",
        badge=str(len(rows)),
        css="open-cases",
        columns=columns,
        rows=rows,
        empty="No open cases.",
    )


def caseload_table(data: SiteData) -> Table:
    """Each worker's open cases (``Engine.assign``): by stage, paused, and overdue deadlines.

    The site's unassigned cases are one row, last.
    """
    stages = [group.stage for group in data.site.open_by_stage]
    columns = (
        Column(key="worker", label="Worker"),
        Column(key="open", label="Open cases", sort="number"),
        Column(key="paused", label="Paused", sort="number"),
        Column(key="overdue", label="Overdue deadlines", sort="number"),
        *(
            Column(key=f"in_{stage}", label=data.labels.stage(stage), sort="number")
            for stage in stages
        ),
    )
    held: dict[str | None, list[OpenCase]] = {}
    holder: dict[str, str | None] = {}
    for group in data.site.open_by_stage:
        for case in group.cases:
            held.setdefault(case.worker, []).append(case)
            holder[case.reference] = case.worker
    overdue: dict[str | None, int] = {}
    for item in data.site.overdue:
        if item.reference in holder:
            worker = holder[item.reference]
            overdue[worker] = overdue.get(worker, 0) + 1
    rows = []
    for worker in sorted(held, key=lambda w: (w is None, w or "")):
        cases = held[worker]
        by_stage = dict.fromkeys(stages, 0)
        for case in cases:
            by_stage[case.stage] += 1
        rows.append(
            Row(
                cells=(
                    Cell(text=worker, value=worker)
                    if worker is not None
                    else Cell(text="(unassigned)", value="", css="unassigned"),
                    _int(len(cases)),
                    _int(sum(case.paused for case in cases)),
                    _int(overdue.get(worker, 0)),
                    *(_int(by_stage[stage]) for stage in stages),
                ),
                data=(("worker", worker or ""),),
            )
        )
    return Table(
        id=f"caseload-{data.site.site}",
        name="caseload",
        site=data.site.site,
        heading="Caseload per worker",
        badge=str(sum(1 for worker in held if worker is not None)),
        note="Open cases by the worker who holds them (nim-workflow case assign).",
        css="caseload",
        columns=columns,
        rows=tuple(rows),
        empty="No open cases.",
    )


def on_time_table(data: SiteData) -> Table:
    """How often each deadline rule was kept, with what is still unsettled."""
    columns = (
        Column(key="deadline", label="Deadline", titled=True),
        Column(key="kind", label="Kind"),
        Column(key="met", label="Met", sort="number"),
        Column(key="missed", label="Missed", sort="number"),
        Column(key="on_time", label="On time", sort="number"),
        Column(key="unsettled", label="Unsettled", sort="number"),
        Column(key="overdue", label="Overdue", sort="number"),
    )
    kinds = {"stage": "stage", "clock": "statutory", "window": "window"}
    rows = tuple(
        Row(
            cells=(
                _rule_cell(data.labels, r.rule),
                Cell(text=kinds.get(r.kind, r.kind), value=r.kind),
                Cell(text=str(r.met), css="met"),
                Cell(text=str(r.missed), css="missed"),
                _rate(r.rate),
                _int(r.open),
                _int(r.open_overdue),
            ),
            data=(("rule", r.rule),),
        )
        for r in data.site.on_time
    )
    return Table(
        id=f"on-time-{data.site.site}",
        name="on-time",
        site=data.site.site,
        heading="On-time rate by deadline rule",
        note=(
            "Met / (met + missed). Unsettled: open or overdue, not in the rate yet. A deadline "
            "still open when its case closed counts as missed if it had fallen due, and not at "
            "all if it had not."
        ),
        css="on-time",
        columns=columns,
        rows=rows,
        empty="No deadlines yet.",
    )


def stage_durations_table(data: SiteData) -> Table:
    """How long completed stays in each stage took: median and 90th percentile."""
    columns = (
        Column(key="stage", label="Stage", titled=True),
        Column(key="stays", label="Stays", sort="number"),
        Column(key="median_days", label="Median days", sort="number"),
        Column(key="p90_days", label="P90 days", sort="number"),
        Column(key="median_working_days", label="Median working days", sort="number"),
        Column(key="p90_working_days", label="P90 working days", sort="number"),
    )

    def figure(value: float, css: str) -> Cell:
        return Cell(text=_number(value), value=_raw_number(value), css=css)

    rows = tuple(
        Row(
            cells=(
                Cell(text=d.title, value=d.stage, hint=d.stage),
                _int(d.count),
                figure(d.median_days, "median-days"),
                figure(d.p90_days, "p90-days"),
                figure(d.median_working_days, "median-working-days"),
                figure(d.p90_working_days, "p90-working-days"),
            ),
            data=(("stage", d.stage),),
        )
        for d in data.site.stage_durations
    )
    return Table(
        id=f"stage-durations-{data.site.site}",
        name="stage-durations",
        site=data.site.site,
        heading="Stage durations",
        note="Completed stays in each stage (withdrawals left out): median and 90th percentile.",
        css="stage-durations",
        columns=columns,
        rows=rows,
        empty="No stage completed yet.",
    )


def trends_table(data: SiteData) -> Table:
    """Referrals and the on-time rate of the deadlines settled, month by month."""
    columns = (
        Column(key="month", label="Month", sort="date"),
        Column(key="referrals", label="Referrals", sort="number"),
        Column(key="met", label="Met", sort="number"),
        Column(key="missed", label="Missed", sort="number"),
        Column(key="on_time", label="On time", sort="number"),
    )
    rows = tuple(
        Row(
            cells=(
                _month(t.month),
                Cell(text=str(t.opened), css="referrals"),
                Cell(text=str(t.met), css="met"),
                Cell(text=str(t.missed), css="missed"),
                _rate(t.rate),
            ),
            data=(("month", t.month.strftime("%Y-%m")),),
        )
        for t in data.months.trends
    )
    return Table(
        id=f"trends-{data.site.site}",
        name="trends",
        site=data.site.site,
        heading="By month: referrals and deadlines settled",
        note=(
            "Referrals: cases opened in the month. On time: met / (met + missed) of the "
            "deadlines settled in the month, as in the table by rule. Months in the site's "
            "local time."
        ),
        css="trends",
        columns=columns,
        rows=rows,
        empty="No cases yet.",
    )


def stages_by_month_table(data: SiteData) -> Table:
    """How many cases sat in each stage at the end of each month."""
    first = data.months.stages[0].counts if data.months.stages else ()
    stages = [stage for stage, _ in first]
    columns = (
        Column(key="month", label="Month", sort="date"),
        *(
            Column(key=stage, label=data.labels.stage(stage), sort="number", hint=stage)
            for stage in stages
        ),
        Column(key="open", label="Open", sort="number"),
    )
    rows = tuple(
        Row(
            cells=(
                _month(m.month),
                *(_int(count) for _, count in m.counts),
                _int(m.total),
            ),
            data=(("month", m.month.strftime("%Y-%m")),),
        )
        for m in data.months.stages
    )
    return Table(
        id=f"stages-by-month-{data.site.site}",
        name="stages-by-month",
        site=data.site.site,
        heading="By month: open cases in each stage",
        note="Cases in each stage at the end of the month (for this month: now).",
        css="stages-by-month",
        columns=columns,
        rows=rows,
        empty="No cases yet.",
    )


#: The tables of each site's section, in the order drawn. A new table is one more function
#: here: it takes the site's :class:`SiteData` and returns a :class:`Table`.
SITE_TABLES: tuple[Callable[[SiteData], Table], ...] = (
    overdue_table,
    due_soon_table,
    open_cases_table,
    caseload_table,
    on_time_table,
    stage_durations_table,
    trends_table,
    stages_by_month_table,
)
