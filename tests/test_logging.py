"""Structured logs: every action is logged through the host's logger, never with fact values."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest

import nim_workflow as nw

TM = nw.Actor("tm-1", roles={"team_manager"})
AT = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)


class RecordingLogger:
    """A stand-in for a host's structlog logger that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, event: str, **kw: Any) -> None:
        self.calls.append((level, event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._log("exception", event, **kw)


def test_actions_are_logged_with_reference_actor_and_outcome(tmp_path: Path) -> None:
    """Opening, recording, firing and a denial each produce one structured log event."""
    log = RecordingLogger()
    engine = nw.Engine(f"sqlite:///{tmp_path / 'log.db'}", logger=log)
    engine.migrate()
    engine.open_case("L-1", pathway="nim-uk-england", site="london", actor=TM, at=AT)
    engine.record("L-1", {"proceedings_issued_on": dt.date(2026, 2, 27)}, actor=TM, at=AT)
    with pytest.raises(nw.RequirementsNotMet):
        engine.fire("L-1", "accept_referral", actor=TM, at=AT)
    engine.fire("L-1", "accept_referral", actor=TM, at=AT, facts={"consent_recorded": True})
    events = [(level, event) for level, event, _ in log.calls]
    assert events == [
        ("info", "nimwf.opened"),
        ("info", "nimwf.fact_recorded"),
        ("warning", "nimwf.denied"),
        ("info", "nimwf.transition"),
    ]
    for _, _, fields in log.calls:
        assert fields["reference"] == "L-1"
        assert fields["actor_id"] == "tm-1"
        assert "outcome" in fields
    engine.close()


def test_fact_values_never_reach_the_logs(tmp_path: Path) -> None:
    """Logs name the facts that changed, never their values."""
    log = RecordingLogger()
    engine = nw.Engine(f"sqlite:///{tmp_path / 'log.db'}", logger=log)
    engine.migrate()
    engine.open_case("L-2", pathway="nim-uk-england", site="london", actor=TM, at=AT)
    engine.record(
        "L-2",
        {"entered_care_on": "2026-02-19", "proceedings_issued_on": dt.date(2026, 2, 23)},
        actor=TM,
        at=AT,
    )
    text = repr(log.calls)
    assert "2026-02-19" not in text
    assert "2026-02-23" not in text
    assert "entered_care_on" in text
    engine.close()


def test_the_library_configures_no_logging(tmp_path: Path) -> None:
    """Importing and using the engine adds no handler beyond a NullHandler and no root config."""
    root_handlers = list(logging.getLogger().handlers)
    engine = nw.Engine(f"sqlite:///{tmp_path / 'log.db'}")
    engine.migrate()
    engine.open_case("L-3", pathway="nim-uk-england", site="london", actor=TM, at=AT)
    assert logging.getLogger().handlers == root_handlers
    handlers = logging.getLogger("nim_workflow").handlers
    assert all(isinstance(h, logging.NullHandler) for h in handlers)
    engine.close()
