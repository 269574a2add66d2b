"""Migration 0004 moves an old single-chain log into per-case chains, and says what it found.

A log written before the migration is re-verified the old way first: a clean one carries on
seamlessly, one broken only by the old defect (a non-text reason hashed as a number, stored as
text) is noted plainly, and one edited before the migration stays a problem for good.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from engine_helpers import Clock, open_at

import nim_workflow as nw
from nim_workflow._store import _migrate

MIGRATION = Path(nw.__file__).parent / "_store/migrations/versions/0004_audit_chains_and_log.py"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("migration_0004", MIGRATION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def old_log(db_url: str, *, defect: bool = False, edited: bool = False) -> None:
    """A database at revision 0003 holding three events the first release wrote."""
    legacy = _migration()
    bind = sa.create_engine(db_url)
    with bind.begin() as conn:
        _migrate.upgrade(conn, "0003")
    prev = "0" * 64
    rows: list[dict[str, Any]] = []
    for seq in (1, 2, 3):
        row = {
            "seq": seq,
            "reference": "OLD-1",
            "at": dt.datetime(2026, 1, seq, 9, tzinfo=dt.UTC),
            "actor_id": "tm-1",
            "roles": ["team_manager"],
            "action": "denied",
            "trigger": None,
            "from_stage": None,
            "to_stage": None,
            "reason": "42" if seq == 2 else "why",
            "detail": {"action": "fire"},
            "prev_hash": prev,
        }
        hashed = {**row, "reason": 42} if defect and seq == 2 else row
        row["hash"] = legacy._legacy_hash(hashed)
        if edited and seq == 2:
            row["reason"] = "a different story"
        prev = row["hash"]
        rows.append(row)
    with bind.begin() as conn:
        conn.execute(legacy._legacy_events.insert(), rows)
        conn.execute(
            sa.text("UPDATE nimwf_audit_head SET last_seq = 3, last_hash = :h WHERE id = 1"),
            {"h": prev},
        )
    bind.dispose()


def test_a_clean_old_log_carries_on_in_the_new_chains(db_url: str) -> None:
    """Old events become positions 1-3 of their case's chain and seqs 1-3; new ones follow."""
    old_log(db_url)
    with nw.Engine(db_url, clock=Clock()) as engine:
        engine.migrate()
        report = engine.verify_audit(deep=True)
        assert report.ok, report.problems
        assert report.notes == ()
        moved = engine.audit("OLD-1")
        assert [(e.seq, e.position, e.reason) for e in moved] == [
            (1, 1, "why"),
            (2, 2, "42"),
            (3, 3, "why"),
        ]
        open_at(engine, "NEW-1", "assessment")
        assert [e.seq for e in engine.audit()] == list(range(1, len(engine.audit()) + 1))
        assert engine.verify_audit(deep=True).ok


def test_the_old_defect_is_noted_plainly(db_url: str) -> None:
    """A chain broken only by the non-text reason defect verifies, with a note naming the seq."""
    old_log(db_url, defect=True)
    with nw.Engine(db_url, clock=Clock()) as engine:
        engine.migrate()
        report = engine.verify_audit()
        assert report.ok, report.problems
        (note,) = report.notes
        assert "already broken" in note
        assert "seq 2" in note
        assert "old defect" in note


def test_an_old_log_edited_before_the_migration_stays_a_problem(db_url: str) -> None:
    """An event edited before the migration is reported after it, every time."""
    old_log(db_url, edited=True)
    with nw.Engine(db_url, clock=Clock()) as engine:
        engine.migrate()
        report = engine.verify_audit()
        assert not report.ok
        assert any("already broken" in p and "seq 2 was edited" in p for p in report.problems)


def test_the_migration_warns_when_the_old_log_was_broken(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Upgrading a broken old log logs a warning saying so."""
    old_log(db_url, edited=True)
    with nw.Engine(db_url, clock=Clock()) as engine, caplog.at_level("WARNING", "nim_workflow"):
        engine.migrate()
    assert any("already broken" in r.getMessage() for r in caplog.records)


def test_db_upgrade_says_when_the_old_log_was_broken(db_url: str) -> None:
    """`nim-workflow db upgrade` repeats the migration's verdict where the operator reads it."""
    from click.testing import CliRunner

    from nim_workflow._cli import main

    old_log(db_url, edited=True)
    result = CliRunner().invoke(main, ["--db", db_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "warning: audit log before migration 0004" in result.output
    assert "seq 2 was edited" in result.output
    assert "database ready" in result.output
