"""The runnable examples under ``examples/`` and the docs' code: each runs as a reader runs it.

Each example runs in a subprocess with this interpreter, exactly as a reader would run it: on a
database URL given in the test's own temporary directory (or a fresh PostgreSQL database), or
with no argument, twice in a row, in a fresh working directory with ``TMPDIR`` pointing at a
fresh folder of the test's own. The second run must print what the first printed (temporary
paths aside) and each run must leave both folders as it found them: empty.

The Python code blocks of README.md, docs/embedding.md and docs/pathway-authoring.md's small
pathway run the same way, each page's blocks in order as one program, twice.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"
EXAMPLE_FILES = ("host_case_system.py", "weekly_digest.py", "site_closures_custom_pathway.py")


def run_script(
    script: Path, *args: str, cwd: Path, tmpdir: Path, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``args`` in ``cwd``, ``TMPDIR`` set to ``tmpdir``; check its status."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        timeout=120,
        check=False,
    )
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def run_example(name: str, *args: str, cwd: Path) -> str:
    """Run ``examples/<name>`` with ``args`` once; fail with its output unless it exits 0."""
    return run_script(EXAMPLES / name, *args, cwd=cwd, tmpdir=cwd).stdout


def listing(folder: Path) -> list[str]:
    """Everything under ``folder``, as sorted relative paths."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def run_twice(script: Path, tmp_path: Path, files: dict[str, str] | None = None) -> str:
    """Run ``script`` twice in a fresh working directory holding only ``files``; return its output.

    Both runs must exit 0 and print the same (the temporary folder's path aside), and after
    each the working directory must hold exactly ``files`` again and ``TMPDIR`` nothing.
    """
    cwd, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    for name, text in (files or {}).items():
        (cwd / name).write_text(text, encoding="utf-8")
    before, examples_before = listing(cwd), listing(EXAMPLES)
    outputs = []
    for run in (1, 2):
        output = run_script(script, cwd=cwd, tmpdir=tmpdir).stdout
        assert listing(cwd) == before, f"run {run} left files in its working directory"
        assert listing(tmpdir) == [], f"run {run} left files in its temporary folder"
        assert listing(EXAMPLES) == examples_before, f"run {run} left files in examples/"
        # The only thing allowed to differ: the name tempfile gave the run's own folder.
        outputs.append(re.sub(re.escape(str(tmpdir)) + r"/[^/\s]+", "<tmp>", output))
    assert outputs[0] == outputs[1], "the second run printed something else"
    return outputs[0]


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
    """Without an argument the host example runs on a temporary SQLite file it then removes."""
    output = run_twice(EXAMPLES / "host_case_system.py", tmp_path)
    assert output.startswith("database: sqlite:///<tmp>/casesystem.db\n")
    assert_host_example(output)


def test_host_case_system_on_postgres(tmp_path: Path, fresh_pg_url: str) -> None:
    """The host example behaves the same on PostgreSQL."""
    output = run_example("host_case_system.py", fresh_pg_url, cwd=tmp_path)
    assert output.startswith("database: postgresql")
    assert_host_example(output)


def test_weekly_digest(tmp_path: Path) -> None:
    """The digest lists each site's overdue deadlines before this week's, with explanations."""
    output = run_twice(EXAMPLES / "weekly_digest.py", tmp_path)
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


def assert_site_closures_example(output: str) -> None:
    """The custom pathway adds its deadline, and the site's closure moves a due date a day."""
    assert "loaded nim-uk-england-croydon version 1 from custom-pathway.yaml" in output
    assert "CRO-2026-0001 referral_decision: due Tue 17 Mar 2026" in output
    assert "skipped 2026-03-06: site closure" in output
    assert "STN-2026-0001 referral_decision: due Mon 16 Mar 2026" in output
    assert "moved the referral decision 1 day later, to Tue 17 Mar" in output
    assert "CRO-2026-0001 professionals_meeting: due Tue 19 May 2026" in output
    assert "rule: professionals_meeting: 11 weeks" in output


def test_site_closures_custom_pathway_on_sqlite(tmp_path: Path) -> None:
    """Given a SQLite URL, the custom pathway and the closure behave as the example says."""
    url = f"sqlite:///{tmp_path / 'croydon.db'}"
    assert_site_closures_example(run_example("site_closures_custom_pathway.py", url, cwd=tmp_path))


def test_site_closures_custom_pathway_default_database(tmp_path: Path) -> None:
    """Without an argument it runs the same twice, on a temporary SQLite file it then removes."""
    assert_site_closures_example(run_twice(EXAMPLES / "site_closures_custom_pathway.py", tmp_path))


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_second_run_on_the_same_database_says_the_case_exists(tmp_path: Path, name: str) -> None:
    """Run again on a database it has filled, an example says why it stops: no traceback."""
    url = f"sqlite:///{tmp_path / 'again.db'}"
    run_script(EXAMPLES / name, url, cwd=tmp_path, tmpdir=tmp_path)
    again = run_script(EXAMPLES / name, url, cwd=tmp_path, tmpdir=tmp_path, expect=1)
    assert re.fullmatch(
        r"a case with reference '[A-Z]+-2026-0001' already exists: this example needs a "
        r"database without its cases\n",
        again.stderr,
    ), again.stderr


def test_custom_pathway_marks_its_added_deadline_as_an_assumption() -> None:
    """The example pathway's added duration is marked as an assumption, as every unsourced one."""
    text = (EXAMPLES / "custom-pathway.yaml").read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if "duration: 11 weeks" in line]
    assert "# assumption:" in line


# -- the code in the docs -------------------------------------------------------------------------


def code_blocks(page: Path, language: str) -> list[str]:
    """The fenced ``language`` code blocks of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def program(tmp_path: Path, blocks: list[str]) -> Path:
    """``blocks`` in order as one script, written beside (not in) the run's working directory."""
    assert blocks
    script = tmp_path / "blocks.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    return script


def test_readme_library_code_runs_twice(tmp_path: Path) -> None:
    """README's code for case-management systems runs as pasted, twice, and leaves nothing."""
    (block,) = code_blocks(ROOT / "README.md", "python")
    output = run_twice(program(tmp_path, [block]), tmp_path)
    assert "referral_decision" in output
    assert "rule: assessment: 12 weeks (england-and-wales calendar)" in output


def test_embedding_guide_code_runs_twice_as_one_session(tmp_path: Path) -> None:
    """docs/embedding.md's blocks, in order as the guide says, run twice and leave nothing."""
    blocks = code_blocks(DOCS / "embedding.md", "python")
    output = run_twice(program(tmp_path, blocks), tmp_path)
    # What the guide's own comments say the blocks print.
    assert "('complete_treatment', 'withdraw')" in output
    assert "('clinician', 'team_manager')" in output
    assert "('treatment_review_filed',)" in output
    assert "care_proceedings 2026-10-08 1" in output
    assert "fact 'child_name' is not declared by pathway nim-uk-england" in output
    assert "enrolled None" in output
    assert "nim ['nim-uk-england', 'nim-uk-england']" in output
    assert "baseline LDN-2026-0101 True in_window" in output
    assert "baseline LDN-2026-0102 True in_window" in output


def test_pathway_authoring_small_pathway_runs_twice(tmp_path: Path) -> None:
    """The small pathway, saved as the guide says, loads and runs, and its versions behave."""
    (pathway,) = [
        block
        for block in code_blocks(DOCS / "pathway-authoring.md", "yaml")
        if block.startswith("# A three-stage pathway")
    ]
    blocks = [
        block
        for block in code_blocks(DOCS / "pathway-authoring.md", "python")
        if "example-small.yaml" in block
    ]
    assert len(blocks) == 2  # "it loads and runs", then "Versions and the content hash"
    output = run_twice(program(tmp_path, blocks), tmp_path, {"example-small.yaml": pathway})
    assert output.splitlines()[:3] == [
        "referral_decision 2026-03-16",
        "care_review 2026-03-30",
        "1 2",
    ]
    assert "is already registered in this database with different content" in output
