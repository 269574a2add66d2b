"""The corpus of invalid pathway files: each is refused with exactly the problems it announces.

Every file under ``tests/pathways/invalid/`` opens with one comment line per expected problem,
``# expect: <line>: <field>: <part of the message>``, in file order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nim_workflow._errors import PathwayError
from nim_workflow._pathway._loader import load_pathway

INVALID = Path(__file__).parent / "pathways" / "invalid"
CORPUS = sorted(INVALID.glob("*.yaml"))
_EXPECT = re.compile(r"# expect: (\d+): (\S+): (.+)")


def _expected(path: Path) -> list[tuple[int, str, str]]:
    expected = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _EXPECT.fullmatch(line)
        if match is None:
            break
        expected.append((int(match.group(1)), match.group(2), match.group(3)))
    return expected


def test_the_corpus_is_large_enough() -> None:
    """The corpus holds at least thirty invalid files, each announcing what it expects."""
    assert len(CORPUS) >= 30
    assert all(_expected(path) for path in CORPUS)


@pytest.mark.parametrize("path", CORPUS, ids=[path.stem for path in CORPUS])
def test_invalid_file_reports_exactly_the_expected_problems(path: Path) -> None:
    """Loading the file raises PathwayError whose problems are exactly the announced ones."""
    with pytest.raises(PathwayError) as caught:
        load_pathway(path)
    found = [(p.file, p.line, p.field, p.message) for p in caught.value.problems]
    expected = _expected(path)
    assert len(found) == len(expected), "\n".join(str(p) for p in caught.value.problems)
    for (file, line, field, message), (want_line, want_field, want_text) in zip(
        found, expected, strict=True
    ):
        assert file == str(path)
        assert (line, field) == (want_line, want_field), message
        assert want_text in message
