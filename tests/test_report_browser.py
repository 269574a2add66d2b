"""The HTML report as a browser renders it: headless Chromium reads the demo's report.

Chromium parses the page and dumps the DOM it built, which is checked for a timeline bar for
every case, the overdue rows and every site's section; a screenshot is kept under
``test-artifacts/`` for people to look at. The tables' script is exercised by real Chromium too:
a copy of the page with a test-only script appended clicks a column's sort button, types into a
filter box and presses "Download CSV" with the download intercepted (``URL.createObjectURL``
wrapped to keep the Blob, whose text is then read), and writes what it saw into
``<pre id="results">`` as JSON, read back from the dumped DOM. (That the page reads complete
with scripts off is checked on its source, in test_report.py: Chromium dumps no DOM with
scripts off.) Without Chromium the tests are skipped, except under CI (``CI`` set to anything
but "", "0" or "false"), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path

import pytest
from ci_guard import skip_or_fail

import nim_workflow as nw
from nim_workflow._demo import DEMO_END, DemoResult, run_demo
from nim_workflow._report._html import site_views
from nim_workflow._report._tables import Table

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
)
_TIMEOUT = 120


def _chromium(
    environ: Mapping[str, str] = os.environ,
    which: Callable[[str], str | None] = shutil.which,
    fallback: Path = Path("/usr/bin/chromium"),
) -> str:
    """The Chromium executable, or skip (developer) / fail (CI) when there is none."""
    found = which("chromium") or (str(fallback) if fallback.exists() else None)
    if not found:
        skip_or_fail(
            environ,
            "chromium not installed (apt-get install chromium): browser test skipped",
            under_ci_message=(
                "chromium is not installed: refusing to skip the browser test under CI"
            ),
        )
    return found


def _png_rows(data: bytes) -> tuple[int, int, list[list[tuple[int, ...]]]]:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG into rows of pixel tuples (no alpha)."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG"
    pos, chunks, idat = 8, {}, b""
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IDAT":
            idat += body
        else:
            chunks[kind] = body
    width, height = (
        int.from_bytes(chunks[b"IHDR"][0:4], "big"),
        int.from_bytes(chunks[b"IHDR"][4:8], "big"),
    )
    depth, colour, interlace = chunks[b"IHDR"][8], chunks[b"IHDR"][9], chunks[b"IHDR"][12]
    assert (depth, interlace) == (8, 0), (depth, interlace)
    assert colour in (2, 6), colour
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * step
    previous = bytearray(stride)
    rows: list[list[tuple[int, ...]]] = []
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                near = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + near) & 0xFF
        rows.append([tuple(line[i : i + 3]) for i in range(0, stride, step)])
        previous = line
    return width, height, rows


def _run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once with a fresh profile directory."""
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [browser, *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
        check=False,
    )


class _RenderedDom(HTMLParser):
    """Collects from the dumped DOM what the test checks: sections, bars and overdue rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.bars: dict[str, set[str]] = {}
        self.overdue_rows: dict[str, int] = {}
        self._timeline: str | None = None
        self._overdue: str | None = None

    def handle_starttag(self, tag: str, attrs: Sequence[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        classes = set(attributes.get("class", "").split())
        element_id = attributes.get("id", "")
        if tag == "section" and "site" in classes:
            self.sections.append(element_id)
        if tag == "svg" and element_id.startswith("timeline-"):
            self._timeline = element_id.removeprefix("timeline-")
            self.bars[self._timeline] = set()
        if tag == "rect" and "bar" in classes and self._timeline is not None:
            self.bars[self._timeline].add(attributes["data-reference"])
        if tag == "table" and element_id.startswith("overdue-"):
            self._overdue = element_id.removeprefix("overdue-")
            self.overdue_rows[self._overdue] = 0
        if tag == "tr" and "overdue-row" in classes and self._overdue is not None:
            self.overdue_rows[self._overdue] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            # Only the timeline's own closing tag ends it: the chart holds no nested svg.
            self._timeline = None
        if tag == "table":
            self._overdue = None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """The demo's report, written to a temporary folder."""
    folder = tmp_path_factory.mktemp("browser")
    return run_demo(f"sqlite:///{folder / 'demo.db'}", html=folder / "report.html", end=DEMO_END)


def test_rendered_report_has_every_site_bar_and_overdue_row(
    demo: DemoResult, tmp_path: Path
) -> None:
    """Chromium's DOM has each site's section, a timeline bar per case and the overdue rows."""
    browser = _chromium()
    assert demo.html is not None
    done = _run_chromium(browser, tmp_path / "profile", "--dump-dom", demo.html.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _RenderedDom()
    dom.feed(done.stdout)
    dom.close()

    sites = [site.site for site in demo.summary.sites]
    assert dom.sections == [f"site-{site}" for site in sites]
    for site in demo.summary.sites:
        cases = {timeline.reference for timeline in site.timelines}
        assert dom.bars[site.site] == cases, site.site
        assert dom.overdue_rows[site.site] == len(site.overdue), site.site
    assert sum(dom.overdue_rows.values()) > 0


def test_rendered_report_screenshot(demo: DemoResult, tmp_path: Path) -> None:
    """Chromium renders the report to a screenshot, kept in test-artifacts/ to look at."""
    browser = _chromium()
    assert demo.html is not None
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = _run_chromium(
        browser,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1400,3000",
        "--hide-scrollbars",
        demo.html.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    width, height, rows = _png_rows(shot.read_bytes())
    assert (width, height) == (1400, 3000)
    # Not a blank page: the top band (the heading and summary) holds dark text on a light
    # background, and the page as a whole is drawn in many colours (bars, statuses, text).
    top = rows[: height // 20]
    assert any(min(px) < 100 for row in top for px in row), "no dark text at the top"
    colours = {px for row in rows[::25] for px in row[::5]}
    assert len(colours) > 20, f"only {len(colours)} colours: a blank or unstyled page"


#: Appended to a copy of the report: drives one table as a person would and reports as JSON.
#: ``__TABLE__`` is replaced by the table's id, ``__WORD__`` by the filter text (both JSON).
_PROBE = """
<pre id="results"></pre>
<script>
(async function () {
  const out = {};
  const blobs = [];
  const downloads = [];
  URL.createObjectURL = function (blob) { blobs.push(blob); return "blob:captured"; };
  URL.revokeObjectURL = function () {};
  HTMLAnchorElement.prototype.click = function () { downloads.push(this.download); };
  try {
    const table = document.getElementById(__TABLE__);
    const block = table.closest(".table-block");
    const headers = Array.from(table.tHead.rows[0].cells);
    const column = (key) => headers.findIndex((th) => th.dataset.key === key);
    const rows = () => Array.from(table.tBodies[0].rows);
    const read = (row, key) => {
      const cell = row.cells[column(key)];
      return cell.hasAttribute("data-value") ? cell.dataset.value : cell.textContent.trim();
    };
    // Each download's Blob is kept; all are read at the end (one wait, not one per table).
    const download = (from) => {
      from.querySelector(".table-csv").click();
      return blobs.length - 1;
    };
    out.toolsHidden = block.querySelector(".table-tools").hidden;
    out.initialCount = block.querySelector(".table-count").textContent;
    out.headerIsButton = headers.every((th) => th.querySelector("button.sort") !== null);
    const sortButton = headers[column("days")].querySelector("button.sort");
    sortButton.focus();
    out.keyboardFocus = document.activeElement === sortButton && sortButton.tabIndex === 0;
    const first = download(block);
    const every = {};
    for (const other of document.querySelectorAll("table.data")) {
      every[other.id] = download(other.closest(".table-block"));
    }
    const sortBy = (key) => headers[column(key)].querySelector("button.sort").click();
    sortBy("days");
    out.daysAscending = rows().map((row) => read(row, "days"));
    out.ariaFirst = headers[column("days")].getAttribute("aria-sort");
    sortBy("days");
    out.daysDescending = rows().map((row) => read(row, "days"));
    out.ariaSecond = headers[column("days")].getAttribute("aria-sort");
    sortBy("in_stage_since");
    out.datesAscending = rows().map((row) => read(row, "in_stage_since"));
    out.ariaOthers = headers
      .filter((th) => th.hasAttribute("aria-sort"))
      .map((th) => th.dataset.key);
    const filter = block.querySelector(".table-filter");
    filter.value = __WORD__;
    filter.dispatchEvent(new Event("input", { bubbles: true }));
    out.visible = rows().filter((row) => !row.hidden).map((row) => row.dataset.reference);
    out.filteredCount = block.querySelector(".table-count").textContent;
    const filtered = download(block);
    rows()[0].cells[column("reference")].setAttribute("data-value", '=cmd|"a,b"');
    const hostile = download(block);
    out.downloads = downloads.slice(0, 1);
    out.csvType = blobs[first].type;
    const texts = await Promise.all(blobs.map((blob) => blob.text()));
    out.csv = texts[first];
    out.csvFiltered = texts[filtered];
    out.csvHostile = texts[hostile];
    out.everyCsv = {};
    for (const [id, index] of Object.entries(every)) {
      out.everyCsv[id] = texts[index];
    }
  } catch (error) {
    out.error = String((error && error.stack) || error);
  }
  document.getElementById("results").textContent = JSON.stringify(out);
})();
</script>
"""


class _Results(HTMLParser):
    """The text of ``<pre id="results">`` in a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self._inside = False

    def handle_starttag(self, tag: str, attrs: Sequence[tuple[str, str | None]]) -> None:
        self._inside = tag == "pre" and dict(attrs).get("id") == "results"

    def handle_endtag(self, tag: str) -> None:
        self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.text += data


def _tables(demo: DemoResult) -> dict[str, Table]:
    """Every table model of the demo's report, by element id, as the report drew them."""
    pathways = nw.bundled_pathways()
    summary = demo.summary
    views = site_views(summary, [pathways[pid] for pid in summary.pathway_ids])
    return {table.id: table for view in views for table in view.tables}


def test_tables_sort_filter_and_download_csv_in_chromium(demo: DemoResult, tmp_path: Path) -> None:
    """Sorting (numbers, dates, both ways), filtering and the CSV download, run by Chromium."""
    browser = _chromium()
    assert demo.html is not None
    site = next(s for s in demo.summary.sites if s.site == "london")
    cases = [c for group in site.open_by_stage for c in group.cases]
    treated = [c.reference for c in cases if c.stage == "treatment"]
    assert 0 < len(treated) < len(cases), "the demo's London needs cases in and out of treatment"
    probe = _PROBE.replace("__TABLE__", json.dumps("open-cases-london")).replace(
        "__WORD__", json.dumps("Treatment")
    )
    page = tmp_path / "probe.html"
    page.write_text(
        demo.html.read_text(encoding="utf-8").replace("</body>", probe + "</body>"),
        encoding="utf-8",
    )
    done = _run_chromium(
        browser, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parser = _Results()
    parser.feed(done.stdout)
    parser.close()
    assert parser.text, "the probe wrote no results: " + done.stderr[-2000:]
    out = json.loads(parser.text)
    assert "error" not in out, out.get("error")

    total = len(cases)
    assert out["toolsHidden"] is False  # the script shows the tools it works
    assert out["initialCount"] == f"{total} of {total} rows"
    assert out["headerIsButton"] is True
    assert out["keyboardFocus"] is True  # a button: reached by Tab, pressed by Enter or Space

    # Sorting: numerically both ways (never as text: 9 before 10), then by date.
    days = [c.days_in_stage for c in cases]
    assert [int(v) for v in out["daysAscending"]] == sorted(days)
    assert [int(v) for v in out["daysDescending"]] == sorted(days, reverse=True)
    assert (out["ariaFirst"], out["ariaSecond"]) == ("ascending", "descending")
    dates = [c.entered_on.isoformat() for c in cases]
    assert out["datesAscending"] == sorted(dates)
    assert out["ariaOthers"] == ["in_stage_since"]

    # Filtering: only the rows in treatment stay visible, counted.
    assert sorted(out["visible"]) == sorted(treated)
    assert out["filteredCount"] == f"{len(treated)} of {total} rows"

    # The CSV: the file name, every row, raw values and titles, the same as the model's.
    models = _tables(demo)
    model = models["open-cases-london"]
    assert out["downloads"] == ["london-open-cases.csv"]
    assert out["csvType"].startswith("text/csv")
    assert out["csv"] == model.to_csv()
    lines = out["csv"].split("\r\n")
    assert lines[0] == "reference,stage,stage_title,in_stage_since,days,working_days,paused"
    assert len(lines) == total + 2  # the header, a line per case, and the final line end
    # Every table's CSV, made by the page's script, is its model's, byte for byte.
    assert set(out["everyCsv"]) == set(models)
    for table_id, table in models.items():
        assert out["everyCsv"][table_id] == table.to_csv(), table_id
    # Filtered out or not, every row is exported (in the order drawn).
    assert sorted(out["csvFiltered"].split("\r\n")) == sorted(lines)
    # A value with a formula start, a comma and quotes: defused, then quoted (RFC 4180).
    hostile = out["csvHostile"].split("\r\n")[1]
    assert hostile.startswith('"\'=cmd|""a,b"""' + ",")


#: Appended to a trial report: reads the trial section, sorts its time-to-permanence table.
_TRIAL_PROBE = """
<pre id="results"></pre>
<script>
(async function () {
  const out = {};
  const blobs = [];
  URL.createObjectURL = function (blob) { blobs.push(blob); return "blob:captured"; };
  URL.revokeObjectURL = function () {};
  HTMLAnchorElement.prototype.click = function () {};
  try {
    const section = document.getElementById("trial-best-glasgow");
    out.section = section !== null;
    const svg = section.querySelector("svg.km-chart");
    out.svgWidth = svg ? svg.getBoundingClientRect().width : 0;
    out.curves = Array.from(section.querySelectorAll("path.km-curve")).map((p) => p.dataset.arm);
    out.curveLengths = Array.from(section.querySelectorAll("path.km-curve")).map(
      (p) => p.getTotalLength());
    out.tables = Array.from(section.querySelectorAll("table.data")).map((t) => t.id);
    const table = document.getElementById("trial-best-permanence-glasgow");
    const block = table.closest(".table-block");
    out.toolsHidden = block.querySelector(".table-tools").hidden;
    const headers = Array.from(table.tHead.rows[0].cells);
    const column = (key) => headers.findIndex((th) => th.dataset.key === key);
    const arms = () => Array.from(table.tBodies[0].rows).map((row) => row.dataset.arm);
    const sortBy = (key) => headers[column(key)].querySelector("button.sort").click();
    out.initial = arms();
    sortBy("median_days");
    out.ascending = arms();
    out.aria = headers[column("median_days")].getAttribute("aria-sort");
    sortBy("median_days");
    out.descending = arms();
    block.querySelector(".table-csv").click();
    out.csv = await blobs[0].text();
  } catch (error) {
    out.error = String((error && error.stack) || error);
  }
  document.getElementById("results").textContent = JSON.stringify(out);
})();
</script>
"""


def test_trial_section_draws_curves_and_sorts_in_chromium(tmp_path: Path) -> None:
    """The trial section in Chromium: a curve per arm in the inline SVG, its tables sort."""
    from test_report_trial import NOW, _build_trial

    from nim_workflow._report import build_report
    from nim_workflow._report._trial import read_trials, trial_view

    browser = _chromium()
    with nw.Engine("sqlite://", clock=lambda: NOW) as engine:
        engine.migrate()
        _build_trial(engine)
        html = build_report(engine)
        (data,) = read_trials(engine, at=NOW)["glasgow"]
    model = {t.id: t for t in trial_view(data).tables}["trial-best-permanence-glasgow"]
    page = tmp_path / "trial.html"
    page.write_text(html.replace("</body>", _TRIAL_PROBE + "</body>"), encoding="utf-8")
    done = _run_chromium(
        browser, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    parser = _Results()
    parser.feed(done.stdout)
    parser.close()
    assert parser.text, "the probe wrote no results: " + done.stderr[-2000:]
    out = json.loads(parser.text)
    assert "error" not in out, out.get("error")
    assert out["section"] is True
    assert out["svgWidth"] > 300
    assert out["curves"] == ["New Orleans Intervention Model", "Services as usual"]
    assert all(length > 100 for length in out["curveLengths"])
    assert out["tables"] == [
        "trial-best-enrolment-glasgow",
        "trial-best-visits-glasgow",
        "trial-best-delivery-glasgow",
        "trial-best-moves-glasgow",
        "trial-best-permanence-glasgow",
        "trial-best-at-risk-glasgow",
    ]
    assert out["toolsHidden"] is False
    # Medians: nim 365 days, comparator 90: sorted as numbers both ways.
    assert out["initial"] == ["nim", "comparator"]
    assert out["ascending"] == ["comparator", "nim"]
    assert out["aria"] == "ascending"
    assert out["descending"] == ["nim", "comparator"]
    assert out["csv"] == model.to_csv()
