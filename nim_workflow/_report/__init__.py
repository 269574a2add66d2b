"""The coordinator's view: a summary of every site's cases, as data, as text and as HTML.

It reads an :class:`~nim_workflow.Engine` through the engine's bulk read (one statement per
table, never one per case), never its tables directly.
:func:`summarize` builds the :class:`Summary` tree, :func:`site_months` counts each site's
history month by month from it, :func:`format_summary` prints it as plain-text tables, and
:func:`build_report` renders one self-contained HTML page from it, whose tables sort, filter and
download as CSV by one embedded script.
"""

from __future__ import annotations

from nim_workflow._report._html import build_report, render_report
from nim_workflow._report._summary import (
    CaseTimeline,
    DeadlineItem,
    DeadlineMark,
    MonthTrend,
    OnTimeRate,
    OpenCase,
    SiteMonths,
    SiteSummary,
    StageDurations,
    StageGroup,
    StageMonth,
    StageSpan,
    Summary,
    format_summary,
    percentile,
    site_months,
    summarize,
)

__all__ = [
    "CaseTimeline",
    "DeadlineItem",
    "DeadlineMark",
    "MonthTrend",
    "OnTimeRate",
    "OpenCase",
    "SiteMonths",
    "SiteSummary",
    "StageDurations",
    "StageGroup",
    "StageMonth",
    "StageSpan",
    "Summary",
    "build_report",
    "format_summary",
    "percentile",
    "render_report",
    "site_months",
    "summarize",
]
