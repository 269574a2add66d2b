"""README.md's commands for coordinators run as copied, after the demo, on the real clock.

The shell blocks replayed are the fenced ``sh`` blocks that follow the marker line
``<!-- replayed by tests/test_readme.py -->``; every ``sh`` block after the quick start must carry
it, so a new command cannot slip in untested. The demo runs once, as ``make demo`` runs it (the
installed ``nim-workflow demo``, here from this interpreter's environment), in a temporary folder
that is then the working directory of every command, in order, each through ``bash`` with the
environment the README has set so far. Each must exit 0 and print something. The overdue counts
the demo's summary printed must be what ``nim-workflow overdue --json`` lists straight after:
the demo ends today and the command line reads the real clock.

``. .venv/bin/activate`` is the one line not run as written (the temporary folder has no
``.venv``): it is done as activate does it, with this environment's ``bin`` folder put first on
``PATH``.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = "<!-- replayed by tests/test_readme.py -->"
DEMO_DB = "sqlite:///nim-workflow-demo.db"
BIN = Path(sys.executable).parent
ACTIVATE = ". .venv/bin/activate"
EXPORT = re.compile(r"^export\s+([A-Za-z_][A-Za-z0-9_]*)=")
#: The variables the commands read: none may leak in from the environment running the tests.
OWN_VARIABLES = ("NIM_WORKFLOW_DB", "NIM_WORKFLOW_ACTOR", "NIM_WORKFLOW_SIGNING_KEY")


@dataclass(frozen=True)
class Block:
    """One fenced block of README.md: its language, its lines and whether it is replayed."""

    language: str
    lines: tuple[str, ...]
    replayed: bool


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``, in order, marked if the line before it is the marker."""
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```") and line.strip() != "```":
            language = line.strip().removeprefix("```")
            previous = lines[index - 1].strip() if index else ""
            end = lines.index("```", index + 1)
            found.append(Block(language, tuple(lines[index + 1 : end]), previous == MARKER))
            index = end + 1
        else:
            index += 1
    return found


def replayed_commands() -> list[str]:
    """The command lines of README.md's replayed blocks, in order, blank lines left out."""
    return [
        line
        for block in blocks(README.read_text(encoding="utf-8"))
        if block.replayed
        for line in block.lines
        if line.strip()
    ]


def run(command: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One shell line through bash, as a reader's terminal runs it."""
    return subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
        check=False,
    )


def test_every_shell_block_after_the_quick_start_is_replayed() -> None:
    """The quick start aside, every sh block is marked; the first sets the demo's database."""
    found = [block for block in blocks(README.read_text(encoding="utf-8")) if block.language]
    assert found[0].language == "sh"  # make demo, make test
    assert not found[0].replayed
    shell = [block for block in found[1:] if block.language in ("sh", "bash", "console")]
    assert len(shell) >= 3
    assert all(block.replayed for block in shell)
    assert all(block.language == "sh" for block in found if block.replayed)
    commands = replayed_commands()
    assert commands[0].split("#")[0].strip() == ACTIVATE
    assert commands[1].split("#")[0].strip() == f"export NIM_WORKFLOW_DB={DEMO_DB}"


@pytest.mark.slow
def test_readme_commands_run_as_copied_after_the_demo(tmp_path: Path) -> None:
    """The demo, then every replayed README command in order: each exits 0 and says something."""
    assert (BIN / "nim-workflow").is_file(), "the nim-workflow script is not installed"
    env = {key: value for key, value in os.environ.items() if key not in OWN_VARIABLES}
    # A reader's shell has no virtualenv on PATH until they activate one.
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if Path(part) != BIN
    )

    before = dt.datetime.now(dt.UTC).date()
    demo = run(f"{BIN / 'nim-workflow'} demo", cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    # The demo's world ends today: its summary is as of today, as the command line's clock is.
    as_of = re.search(r"^Coordinator's summary as of (\d{4}-\d{2}-\d{2}) ", demo.stdout, re.M)
    assert as_of is not None, demo.stdout
    assert before <= dt.date.fromisoformat(as_of.group(1)) <= dt.datetime.now(dt.UTC).date()
    assert (tmp_path / "nim-workflow-demo.db").is_file()
    # Straight after, on the real clock, the command line lists what the demo counted overdue.
    listed = run(f"{BIN / 'nim-workflow'} --db {DEMO_DB} overdue --json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    by_site = collections.Counter(row["site"] for row in json.loads(listed.stdout))
    assert summary_overdue(demo.stdout) == dict(by_site)
    closing = demo.stdout[demo.stdout.index("to read the demo's database") :]
    assert f"export NIM_WORKFLOW_DB={DEMO_DB}" in closing
    if shutil.which("nim-workflow", path=env["PATH"]) is None and (BIN / "activate").is_file():
        # Not on PATH: the demo says how to put it there.
        assert f". {BIN / 'activate'}" in closing
    if "NIM_WORKFLOW_ACTOR" in closing:  # pragma: no cover - no OS user to act as
        env["NIM_WORKFLOW_ACTOR"] = closing.split("export NIM_WORKFLOW_ACTOR=")[1].split()[0]

    for command in replayed_commands():
        if command.split("#")[0].strip() == ACTIVATE:
            env["PATH"] = os.pathsep.join([str(BIN), env["PATH"]])
            continue
        export = EXPORT.match(command)
        if export is not None:
            # The value as bash makes it (quotes, expansions), kept for the commands after.
            name = export.group(1)
            done = run(f'{command}\nprintf %s "${name}"', cwd=tmp_path, env=env)
            assert done.returncode == 0, (command, done.stderr)
            env[name] = done.stdout
            continue
        done = run(command, cwd=tmp_path, env=env)
        assert done.returncode == 0, (command, done.stdout + done.stderr)
        assert (done.stdout + done.stderr).strip(), (command, "printed nothing")


def summary_overdue(printed: str) -> dict[str, int]:
    """The overdue count of each site in the coordinator's summary the demo printed."""
    counts: dict[str, int] = {}
    site = None
    for line in printed.splitlines():
        heading = re.match(r"^== (\S+) \(", line)
        if heading:
            site = heading.group(1)
            continue
        overdue = re.match(r"^Overdue \((\d+)\)$", line)
        if overdue and site is not None:
            counts[site] = int(overdue.group(1))
    assert set(counts) == {"london", "glasgow", "jefferson-parish"}, printed
    return {name: count for name, count in counts.items() if count}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"```sh\na\n```\n{MARKER}\n```sh\nb\n\nc\n```\n", [("sh", ("a",), False),
                                                            ("sh", ("b", "", "c"), True)]),
        ("```python\nx = 1\n```\n", [("python", ("x = 1",), False)]),
    ],
)  # fmt: skip
def test_blocks_reads_languages_lines_and_markers(
    text: str, expected: list[tuple[str, tuple[str, ...], bool]]
) -> None:
    """The block reader itself: languages, lines kept as written, the marker seen."""
    assert [(b.language, b.lines, b.replayed) for b in blocks(text)] == expected
