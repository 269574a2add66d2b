"""Mutated pathway files are either loaded or refused with PathwayError, never anything else.

Each example takes a valid pathway (the test one and every bundled one) and damages it the ways
hands and editors do: a line deleted, duplicated or swapped, a token replaced by another from the
same file, indentation changed, stray characters typed in.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nim_workflow._errors import PathwayError
from nim_workflow._pathway._loader import load_pathway_text
from nim_workflow._pathway._model import Pathway

TESTS = Path(__file__).parent
# The bundled files are collected when the tests run, so new ones are fuzzed as they appear.
FILES = [
    TESTS / "pathways" / "valid" / "minimal.yaml",
    *sorted((TESTS.parent / "pathways").glob("*.yaml")),
]
_TOKEN = re.compile(r"[\w*./-]+|[^\w\s]")
# Characters that mean something to YAML, plus some that its reader refuses outright.
_GARBAGE = st.text(
    alphabet=st.sampled_from([*":-{}[],&*!|>'\"%@`#?~ \t\\", "é", "\x00", "\x85", "\ufeff"]),
    min_size=1,
    max_size=4,
)


def _delete_line(lines: list[str], data: st.DataObject) -> None:
    if lines:
        del lines[data.draw(st.integers(0, len(lines) - 1))]


def _duplicate_line(lines: list[str], data: st.DataObject) -> None:
    if lines:
        index = data.draw(st.integers(0, len(lines) - 1))
        lines.insert(index, lines[index])


def _swap_lines(lines: list[str], data: st.DataObject) -> None:
    if len(lines) > 1:
        first = data.draw(st.integers(0, len(lines) - 1))
        second = data.draw(st.integers(0, len(lines) - 1))
        lines[first], lines[second] = lines[second], lines[first]


def _replace_token(lines: list[str], data: st.DataObject) -> None:
    tokens = [token for line in lines for token in _TOKEN.findall(line)]
    if not tokens:
        return
    index = data.draw(st.integers(0, len(lines) - 1))
    spans = [match.span() for match in _TOKEN.finditer(lines[index])]
    if spans:
        start, end = data.draw(st.sampled_from(spans))
        replacement = data.draw(st.sampled_from(tokens))
        lines[index] = lines[index][:start] + replacement + lines[index][end:]


def _reindent(lines: list[str], data: st.DataObject) -> None:
    if lines:
        index = data.draw(st.integers(0, len(lines) - 1))
        indent = data.draw(st.sampled_from(["", " ", "  ", "    ", "      ", "\t"]))
        lines[index] = indent + lines[index].lstrip(" ")


def _insert_garbage(lines: list[str], data: st.DataObject) -> None:
    if lines:
        index = data.draw(st.integers(0, len(lines) - 1))
        at = data.draw(st.integers(0, len(lines[index])))
        garbage = data.draw(_GARBAGE)
        lines[index] = lines[index][:at] + garbage + lines[index][at:]


MUTATIONS = [_delete_line, _duplicate_line, _swap_lines, _replace_token, _reindent, _insert_garbage]


def test_the_bundled_pathways_are_among_the_files_mutated() -> None:
    """Every pathway under pathways/ is fuzzed beside the test pathway."""
    assert FILES[0].exists()
    assert set(FILES[1:]) == set((TESTS.parent / "pathways").glob("*.yaml"))


# One test draws the file, so the whole run stays near 200 loads however many files there are.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(FILES), data=st.data())
def test_a_mutated_pathway_loads_or_raises_pathway_error(path: Path, data: st.DataObject) -> None:
    """A damaged pathway file yields a Pathway or a PathwayError, and no other exception."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for mutate in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        mutate(lines, data)
    text = "\n".join(lines) + "\n"
    result: Pathway | PathwayError
    try:
        result = load_pathway_text(text, source=path.name)
    except PathwayError as error:
        result = error
    if isinstance(result, PathwayError):
        assert result.problems
        assert all(p.file == path.name for p in result.problems)
    else:
        assert isinstance(result, Pathway)
