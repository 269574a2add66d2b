"""The HTML report as a browser renders it: headless Chromium reads the demo's report.

Chromium parses the page and dumps the DOM it built, which is checked for a timeline bar for
every case, the overdue rows and every site's section; a screenshot is kept under
``test-artifacts/`` for people to look at. Without Chromium the test is skipped, except under
CI (``CI`` set to anything but "", "0" or "false"), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path

import pytest
from ci_guard import skip_or_fail

from nim_workflow._demo import DEMO_END, DemoResult, run_demo

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
