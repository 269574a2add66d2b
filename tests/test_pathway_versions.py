"""Pathway versions in the database: cases stay on the version they started with."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

import nim_workflow as nw
from nim_workflow._pathway._bundled import bundled_path

SW = nw.Actor("sw-1", roles={"social_worker"})
TM = nw.Actor("tm-1", roles={"team_manager"})
AT = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)


def _variant(tmp_path: Path, name: str, *, version: int, assessment: str) -> Path:
    """A copy of the England pathway at ``version`` with a different assessment duration."""
    text = Path(str(bundled_path("nim-uk-england"))).read_text(encoding="utf-8")
    assert re.search(r"^version: 4\b", text, flags=re.MULTILINE)
    assert "duration: 12 weeks" in text
    text = re.sub(r"^version: 4\b.*$", f"version: {version}", text, count=1, flags=re.MULTILINE)
    text = text.replace("duration: 12 weeks", f"duration: {assessment}", 1)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_changed_content_under_a_registered_version_is_refused(db_url: str, tmp_path: Path) -> None:
    """A database that knows v1 refuses a different definition that also calls itself v1."""
    with nw.Engine(db_url) as first:
        first.migrate()
        first.open_case("V-1", pathway="nim-uk-england", site="london", actor=SW, at=AT)
    edited = _variant(tmp_path, "edited.yaml", version=4, assessment="10 weeks")
    with nw.Engine(db_url, pathways=[edited]) as second:
        with pytest.raises(nw.InvalidInput, match="different content"):
            second.migrate()
        with pytest.raises(nw.InvalidInput, match="different content"):
            second.open_case("V-2", pathway="nim-uk-england", site="london", actor=SW, at=AT)
        assert [c.reference for c in second.cases()] == ["V-1"]


def test_a_running_case_stays_on_its_version_after_a_new_one_arrives(
    db_url: str, tmp_path: Path
) -> None:
    """Cases opened on v4 keep v4's rules, even in a process that was only given v5."""
    with nw.Engine(db_url) as first:
        first.migrate()
        first.open_case("OLD-1", pathway="nim-uk-england", site="london", actor=SW, at=AT)
    newer = _variant(tmp_path, "v5.yaml", version=5, assessment="10 weeks")
    with nw.Engine(db_url, pathways=[newer]) as second:
        second.migrate()
        second.open_case("NEW-1", pathway="nim-uk-england", site="london", actor=SW, at=AT)
        for reference in ("OLD-1", "NEW-1"):
            second.fire(
                reference,
                "accept_referral",
                actor=TM,
                facts={"consent_recorded": True},
                at=AT + dt.timedelta(days=1),
            )
        assert second.case("OLD-1").pathway_version == 4
        assert second.case("NEW-1").pathway_version == 5
        due = {
            c: next(d for d in second.deadlines(c) if d.name == "assessment").due_on
            for c in ("OLD-1", "NEW-1")
        }
        # Accepted Tue 3 March 2026: v4 gives 12 weeks (26 May), v5 10 weeks (12 May).
        assert due == {"OLD-1": dt.date(2026, 5, 26), "NEW-1": dt.date(2026, 5, 12)}
