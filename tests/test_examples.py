"""The runnable examples under ``examples/``: each runs as a script, exits 0 and says what it shows.

Each example runs in a subprocess with this interpreter, on a database in the test's own
temporary directory (or a fresh PostgreSQL database), exactly as a reader would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    """Run ``examples/<name>`` with ``args``; fail with its output unless it exits 0."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        # Examples run without a URL make their database under TMPDIR: keep it in the test's.
        env={**os.environ, "TMPDIR": str(cwd)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_host_example(output: str) -> None:
    """The host example's commit, rollback and refusal each behave as it claims."""
    assert "inside the transaction: case moves to assessment; subscriber calls so far: 0" in output
    assert "after commit: stage assessment, host notes ['panel'], subscriber calls 1" in output
    assert (
        "after rollback: stage assessment, assessment_report_filed recorded: False, "
        "host notes ['panel'], subscriber calls 0"
    ) in output
    assert "audit feed after seq 2: nothing new" in output
    assert "refused: case HOST-2026-0001: 'offer_treatment' needs facts not yet recorded" in output
    assert "audit seq 3: denied HOST-2026-0001 by tm-003" in output
    assert "audit chain ok: True (3 events checked)" in output


def test_host_case_system_on_sqlite(tmp_path: Path) -> None:
    """The host example keeps its table and the case in step on a SQLite file."""
    output = run_example("host_case_system.py", f"sqlite:///{tmp_path / 'host.db'}", cwd=tmp_path)
    assert_host_example(output)


def test_host_case_system_default_database(tmp_path: Path) -> None:
    """Without an argument the host example makes its own temporary SQLite database."""
    output = run_example("host_case_system.py", cwd=tmp_path)
    assert output.startswith("database: sqlite:///")
    assert_host_example(output)


def test_host_case_system_on_postgres(tmp_path: Path, fresh_pg_url: str) -> None:
    """The host example behaves the same on PostgreSQL."""
    output = run_example("host_case_system.py", fresh_pg_url, cwd=tmp_path)
    assert output.startswith("database: postgresql")
    assert_host_example(output)


def test_weekly_digest(tmp_path: Path) -> None:
    """The digest lists each site's overdue deadlines before this week's, with explanations."""
    output = run_example("weekly_digest.py", f"sqlite:///{tmp_path / 'digest.db'}", cwd=tmp_path)
    assert "Weekly digest, 01 June 2026 07:00 UTC" in output
    glasgow, london = output.index("== glasgow"), output.index("== london")
    assert glasgow < london
    london_part = output[london:]
    assert london_part.index("Overdue (1):") < london_part.index("Due this week")
    assert "LDN-2026-0002  assessment: was due Mon 25 May, 7 days ago" in london_part
    assert "LDN-2026-0002  lac_review (statutory clock): due Tue 02 Jun, in 1 day" in london_part
    assert "skipped 2026-05-25: Spring Bank Holiday" in london_part
    assert "pause on 2026-05-14: +3 days, 2026-06-01 -> 2026-06-04" in london_part
    assert "GLA-2026-0002  referral_decision: was due Tue 12 May" in output[glasgow:london]


@pytest.mark.parametrize("with_url", [True, False], ids=["url", "default"])
def test_site_closures_custom_pathway(tmp_path: Path, with_url: bool) -> None:
    """The custom pathway adds its deadline, and the site's closure moves a due date a day."""
    args = [f"sqlite:///{tmp_path / 'croydon.db'}"] if with_url else []
    output = run_example("site_closures_custom_pathway.py", *args, cwd=tmp_path)
    assert "loaded nim-uk-england-croydon version 1 from custom-pathway.yaml" in output
    assert "CRO-2026-0001 referral_decision: due Tue 17 Mar 2026" in output
    assert "skipped 2026-03-06: site closure" in output
    assert "STN-2026-0001 referral_decision: due Mon 16 Mar 2026" in output
    assert "moved the referral decision 1 day later, to Tue 17 Mar" in output
    assert "CRO-2026-0001 professionals_meeting: due Tue 19 May 2026" in output
    assert "rule: professionals_meeting: 11 weeks" in output


def test_custom_pathway_marks_its_added_deadline_as_an_assumption() -> None:
    """The example pathway's added duration is marked as an assumption, as every unsourced one."""
    text = (EXAMPLES / "custom-pathway.yaml").read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if "duration: 11 weeks" in line]
    assert "# assumption:" in line
