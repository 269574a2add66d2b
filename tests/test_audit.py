"""The audit log can be proven, on SQLite and on PostgreSQL.

Every tamper test builds real activity, signs a checkpoint, then changes the database behind the
engine's back with raw SQL, as someone with write access could (including recomputing every
unkeyed hash with the library's own functions), and checks that ``verify_audit(deep=True,
checkpoints=..., public_key=...)`` names what changed. The database is restored from a snapshot
between variants, and the untouched log must verify again each time.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engine_helpers import CO, COORD, SW, TM, Clock, open_at, tables_of

import nim_workflow as nw
from nim_workflow import _audit, _merkle

AUDIT = "nimwf_audit_events"
CHAINS = "nimwf_audit_chains"
LOG = "nimwf_audit_log"
ADMIN = nw.Actor("admin-1", roles={"administrator"})
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

#: Tables the snapshot restores, parents before children.
TABLES = (
    "nimwf_cases",
    "nimwf_stage_intervals",
    "nimwf_pauses",
    "nimwf_deadlines",
    "nimwf_alarms",
    "nimwf_staff",
    AUDIT,
    CHAINS,
    LOG,
)


@pytest.fixture
def clock() -> Clock:
    """The engine's injected clock."""
    return Clock()


@pytest.fixture
def engine(db_url: str, clock: Clock) -> Iterator[nw.Engine]:
    """A migrated engine that signs checkpoints, with every kind of audit entry written."""
    eng = nw.Engine(db_url, clock=clock, signing_key=KEY)
    eng.migrate()
    make_activity(eng, clock)
    yield eng
    eng.close()


def make_activity(engine: nw.Engine, clock: Clock) -> None:
    """Open, record, move, deny, pause, resume, extend, fire alarms, change the roster."""
    engine.add_staff("admin-1", roles={"administrator"}, sites={"*"}, actor=ADMIN)
    engine.add_staff("sw-017", roles={"social_worker"}, sites={"london"}, actor=ADMIN)
    open_at(engine, "AUD-1", "referral")
    clock.advance(days=1)
    engine.fire("AUD-1", "accept_referral", actor=TM)
    clock.advance(days=1)
    with pytest.raises(nw.PermissionDenied):
        engine.fire("AUD-1", "offer_treatment", actor=SW)
    engine.pause("AUD-1", actor=COORD, reason="adjourned")
    clock.advance(days=2)
    engine.resume("AUD-1", actor=COORD)
    engine.extend_deadline("AUD-1", "assessment", actor=TM, reason="interpreter needed")
    engine.open_case(
        "AUD-2",
        pathway="nim-uk-england",
        site="london",
        actor=SW,
        facts={"proceedings_issued_on": "2026-02-27"},
    )
    # AUD-2 opened Fri 6 March: referral decision due Fri 20 March, reminded Tue 17 March.
    clock.advance(days=12)
    assert [e.kind for e in engine.process_due()] == ["reminder"]
    clock.advance(days=18)
    assert engine.process_due(), "the deadline processor should have fired the breach"
    engine.record("AUD-2", {"consent_recorded": True}, actor=SW)
    engine.fire("AUD-2", "decline_referral", actor=TM, reason="not eligible")
    with pytest.raises(nw.TransitionNotAllowed):
        engine.fire("AUD-2", "accept_referral", actor=TM)
    engine.remove_staff("sw-017", actor=ADMIN, reason="left the team")
    open_at(engine, "AUD-3", "court", pathway="nim-us-louisiana")
    engine.fire("AUD-3", "record_decision", actor=CO, facts={"decision": "adoption"})


# -- raw access, as an attacker has it -------------------------------------------------------------


def table(engine: nw.Engine, name: str) -> sa.Table:
    """The reflected table."""
    return tables_of(engine.sqlalchemy_engine).tables[name]


def rows(engine: nw.Engine, name: str = AUDIT) -> list[dict[str, Any]]:
    """Every row of a table, as stored, in key order."""
    tab = table(engine, name)
    with engine.sqlalchemy_engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(tab).order_by(*tab.primary_key))]


def execute(engine: nw.Engine, statement: Any) -> int:
    """Run one raw statement outside the engine; its row count."""
    with engine.sqlalchemy_engine.begin() as conn:
        return int(conn.execute(statement).rowcount)


def update(engine: nw.Engine, name: str, key: dict[str, Any], values: dict[str, Any]) -> None:
    """A raw UPDATE of exactly one row."""
    tab = table(engine, name)
    condition = sa.and_(*(tab.c[k] == v for k, v in key.items()))
    assert execute(engine, tab.update().where(condition).values(**values)) == 1


def delete(engine: nw.Engine, name: str, **key: Any) -> None:
    """A raw DELETE of the rows matching ``key``."""
    tab = table(engine, name)
    assert execute(engine, tab.delete().where(*(tab.c[k] == v for k, v in key.items()))) >= 1


class Snapshot:
    """Every library table's rows, to put back exactly after each tamper."""

    def __init__(self, engine: nw.Engine) -> None:
        self.engine = engine
        self.saved = {name: rows(engine, name) for name in TABLES}

    def restore(self) -> None:
        """Delete everything and insert the saved rows again."""
        with self.engine.sqlalchemy_engine.begin() as conn:
            for name in reversed(TABLES):
                conn.execute(table(self.engine, name).delete())
            for name in TABLES:
                if self.saved[name]:
                    conn.execute(table(self.engine, name).insert(), self.saved[name])


def altered(value: Any) -> Any:
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1000
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(seconds=1)
    if isinstance(value, dt.date):
        return value + dt.timedelta(days=1)
    if isinstance(value, list):
        return [*value, "intruder"]
    if isinstance(value, dict):
        return {**value, "tampered": True}
    if value is None:
        return "x"
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1] != "0" else "1")
    raise AssertionError(f"no tamper for {value!r}")


def rehash_everything(engine: nw.Engine) -> None:
    """What an attacker who knows the format does after an edit: recompute every unkeyed hash.

    Each chain is rebuilt in position order, entries renumbered gaplessly in their old seq
    order, and the log head recomputed, so every chain, seq and Merkle root is self-consistent.
    Only what lives outside the database (a signed checkpoint) or the case rows can still tell.
    """
    entries = rows(engine)
    entries.sort(key=lambda r: (r["seq"] is None, r["seq"] or 0, r["id"]))
    heads: dict[tuple[str, str], tuple[int, str]] = {}
    frontier = _merkle.Frontier()
    tab = table(engine, AUDIT)
    with engine.sqlalchemy_engine.begin() as conn:
        for entry in sorted(entries, key=lambda r: r["id"]):
            key = (entry["stream"], entry["reference"])
            position, prev = heads.get(key, (0, _audit.GENESIS_HASH))
            fields = {**entry, "position": position + 1, "prev_hash": prev}
            digest = _audit.entry_hash(fields)
            heads[key] = (position + 1, digest)
            entry.update(position=position + 1, prev_hash=prev, hash=digest)
        for seq, entry in enumerate(e for e in entries if e["seq"] is not None):
            entry["seq"] = seq + 1
            frontier.append(_audit.leaf(entry["hash"]))
        conn.execute(tab.delete())
        conn.execute(tab.insert(), entries)
        chains = table(engine, CHAINS)
        conn.execute(chains.delete())
        conn.execute(
            chains.insert(),
            [
                {"stream": s, "reference": r, "length": n, "head_hash": h}
                for (s, r), (n, h) in heads.items()
            ],
        )
        conn.execute(
            table(engine, LOG)
            .update()
            .values(
                size=frontier.size,
                frontier=frontier.to_json(),
                root_hash=frontier.root().hex(),
            )
        )


def verify(engine: nw.Engine, checkpoints: Path) -> nw.AuditReport:
    """The strongest verification: deep, against the signed checkpoints."""
    return engine.verify_audit(deep=True, checkpoints=checkpoints, public_key=KEY.public_key())


# -- a clean log ---------------------------------------------------------------------------------


def test_log_verifies_after_activity(engine: nw.Engine, tmp_path: Path) -> None:
    """After real activity of every kind the log verifies deep, against a signed checkpoint."""
    checkpoints = tmp_path / "checkpoints.jsonl"
    signed = engine.checkpoint(out=checkpoints)
    report = verify(engine, checkpoints)
    events = engine.audit()
    assert report.ok, report.problems
    assert report.problems == ()
    assert report.notes == ()
    assert report.deep
    assert report.checkpoints == 1
    assert report.checked == len(events) == report.sequenced == signed.size
    assert {e.action for e in events} >= {
        "opened",
        "fact_recorded",
        "transition",
        "denied",
        "paused",
        "resumed",
        "extended",
        "reminder",
        "breach",
        "staff_added",
        "staff_removed",
    }
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_each_case_and_staff_member_has_its_own_chain(engine: nw.Engine) -> None:
    """Entries link to the previous entry of their own chain, numbered from 1, never across."""
    chains: dict[tuple[str, str], list[nw.AuditEvent]] = {}
    for event in engine.audit():
        chains.setdefault((event.stream, event.reference), []).append(event)
    assert set(chains) == {
        ("case", "AUD-1"),
        ("case", "AUD-2"),
        ("case", "AUD-3"),
        ("staff", "admin-1"),
        ("staff", "sw-017"),
    }
    for chain in chains.values():
        assert [e.position for e in chain] == list(range(1, len(chain) + 1))
        assert chain[0].prev_hash == _audit.GENESIS_HASH
        for before, after in itertools.pairwise(chain):
            assert after.prev_hash == before.hash


def test_changes_record_the_state_before_and_after(engine: nw.Engine) -> None:
    """Every entry that changes a case records its rows' digests; a denial records none."""
    for entry in rows(engine):
        if entry["stream"] == "staff" or entry["action"] == "denied":
            assert entry["state"] is None, entry
            assert entry["prior_state"] is None, entry
        else:
            assert set(entry["state"]) == set(_audit.STATE_TABLES), entry
            assert (entry["prior_state"] is None) == (entry["action"] == "opened"), entry


def test_checkpoint_signs_the_current_tree_head(engine: nw.Engine) -> None:
    """A checkpoint names this log, its size and Merkle root, and verifies with the public key."""
    from nim_workflow import _checkpoint

    signed = engine.checkpoint()
    (head,) = rows(engine, LOG)
    leaves = [_audit.leaf(e.hash) for e in engine.audit()]
    assert (signed.log_id, signed.size) == (head["log_id"], len(leaves))
    assert signed.root_hash == head["root_hash"] == _merkle.root(leaves).hex()
    assert _checkpoint.signature_valid(signed, KEY.public_key())
    assert not _checkpoint.signature_valid(signed, OTHER_KEY.public_key())


def test_checkpoint_needs_a_signing_key(db_url: str, clock: Clock) -> None:
    """An engine without a signing key refuses to checkpoint, and says what to pass."""
    with nw.Engine(db_url, clock=clock) as plain:
        plain.migrate()
        with pytest.raises(nw.InvalidInput, match="signing_key"):
            plain.checkpoint()


# -- the tamper matrix ---------------------------------------------------------------------------


def _variants(engine: nw.Engine) -> list[tuple[str, Callable[[], None], str]]:
    """Every tamper tried: (name, the change, a regex one problem must match)."""
    entries = rows(engine)
    variants: list[tuple[str, Callable[[], None], str]] = []

    def edit(entry: dict[str, Any], column: str) -> Callable[[], None]:
        return lambda: update(engine, AUDIT, {"id": entry["id"]}, {column: altered(entry[column])})

    picks = {0, len(entries) // 2, len(entries) - 1}
    for action in ("denied", "reminder", "breach", "staff_added", "paused", "opened"):
        picks.add(next(i for i, r in enumerate(entries) if r["action"] == action))
    for index in sorted(picks):
        entry = entries[index]
        for column in entry:
            if column == "id":
                continue  # the row's storage key: not history (position and seq order it)
            where = rf"\bseq {entry['seq']}\b|{re.escape(entry['reference'])}"
            variants.append((f"edit {column} of seq {entry['seq']}", edit(entry, column), where))

    by_case = [e for e in entries if e["reference"] == "AUD-2"]
    closing = next(
        i
        for i, e in enumerate(by_case)
        if e["action"] == "transition" and e["to_stage"] == "closed"
    )
    previous = by_case[closing - 1]

    def withdraw_hidden() -> None:
        # Remove the entry that closed the case (and the refusal after it), rewind the chain.
        for entry in by_case[closing:]:
            delete(engine, AUDIT, id=entry["id"])
        update(
            engine,
            CHAINS,
            {"stream": "case", "reference": "AUD-2"},
            {"length": previous["position"], "head_hash": previous["hash"]},
        )

    def withdraw_hidden_and_rehashed() -> None:
        withdraw_hidden()
        rehash_everything(engine)

    def edit_and_rehash() -> None:
        update(engine, AUDIT, {"id": previous["id"]}, {"reason": "nothing to see"})
        rehash_everything(engine)

    def delete_middle() -> None:
        delete(engine, AUDIT, id=entries[len(entries) // 2]["id"])

    def truncate() -> None:
        for entry in entries[-3:]:
            delete(engine, AUDIT, id=entry["id"])

    def truncate_and_rehash() -> None:
        truncate()
        rehash_everything(engine)

    def swap() -> None:
        first, second = entries[3], entries[6]
        body = [c for c in first if c not in ("id", "seq")]
        # Through a free position: the chain index refuses two entries at one place.
        update(engine, AUDIT, {"id": first["id"]}, {c: second[c] for c in body} | {"position": -1})
        update(engine, AUDIT, {"id": second["id"]}, {c: first[c] for c in body})
        update(engine, AUDIT, {"id": first["id"]}, {"position": second["position"]})

    def reorder_seqs() -> None:
        first, second = entries[3], entries[6]
        update(engine, AUDIT, {"id": first["id"]}, {"seq": -1})
        update(engine, AUDIT, {"id": second["id"]}, {"seq": first["seq"]})
        update(engine, AUDIT, {"id": first["id"]}, {"seq": second["seq"]})

    def reorder_and_rehash() -> None:
        reorder_seqs()
        rehash_everything(engine)

    variants += [
        ("hide a withdrawal (delete newest, rewind head)", withdraw_hidden, r"AUD-2"),
        ("hide a withdrawal, every hash recomputed", withdraw_hidden_and_rehashed, r"AUD-2"),
        ("edit a reason, every hash recomputed", edit_and_rehash, r"checkpoint"),
        ("delete a middle entry", delete_middle, r"missing|removed"),
        ("truncate the newest three", truncate, r"head|removed"),
        ("truncate, every hash recomputed", truncate_and_rehash, r"checkpoint"),
        ("swap two entries' contents", swap, r"seq"),
        ("swap two entries' seqs", reorder_seqs, r"reordered|Merkle"),
        ("swap two entries' seqs, every hash recomputed", reorder_and_rehash, r"checkpoint"),
    ]

    (log_head,) = rows(engine, LOG)
    for column in ("size", "root_hash", "frontier", "log_id"):
        variants.append(
            (
                f"edit the log head's {column}",
                lambda column=column: update(
                    engine, LOG, {"id": 1}, {column: altered(log_head[column])}
                ),
                r"head|checkpoint",
            )
        )
    chain = rows(engine, CHAINS)[0]
    for column in ("length", "head_hash"):
        variants.append(
            (
                f"edit a chain head's {column}",
                lambda column=column: update(
                    engine,
                    CHAINS,
                    {"stream": chain["stream"], "reference": chain["reference"]},
                    {column: altered(chain[column])},
                ),
                re.escape(chain["reference"]),
            )
        )

    case = {r["reference"]: r for r in rows(engine, "nimwf_cases")}["AUD-1"]
    for column in ("stage", "facts", "version", "paused_at", "stage_entered_at", "site"):
        value = (
            dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
            if case[column] is None
            else altered(case[column])
        )
        variants.append(
            (
                f"edit case {column}",
                lambda column=column, value=value: update(
                    engine, "nimwf_cases", {"reference": "AUD-1"}, {column: value}
                ),
                r"AUD-1",
            )
        )
    deadline = next(
        r
        for r in rows(engine, "nimwf_deadlines")
        if r["reference"] == "AUD-1" and r["status"] == "open"
    )
    for column in ("due_on", "due_at", "status", "extensions", "adjustments"):
        value = "met" if column == "status" else altered(deadline[column])
        variants.append(
            (
                f"edit a deadline's {column}",
                lambda column=column, value=value: update(
                    engine, "nimwf_deadlines", {"id": deadline["id"]}, {column: value}
                ),
                r"AUD-1.*deadlines",
            )
        )

    def delete_deadline() -> None:
        delete(engine, "nimwf_alarms", deadline_id=deadline["id"])
        delete(engine, "nimwf_deadlines", id=deadline["id"])

    variants.append(("delete a deadline and its alarms", delete_deadline, r"AUD-1.*deadlines"))
    interval = next(r for r in rows(engine, "nimwf_stage_intervals") if r["reference"] == "AUD-1")
    for column in ("entered_at", "left_at", "stage"):
        variants.append(
            (
                f"edit a stage interval's {column}",
                lambda column=column: update(
                    engine,
                    "nimwf_stage_intervals",
                    {"id": interval["id"]},
                    {column: altered(interval[column])},
                ),
                r"AUD-1.*stage intervals",
            )
        )
    pause = next(r for r in rows(engine, "nimwf_pauses") if r["reference"] == "AUD-1")
    variants.append(
        (
            "edit a pause's resumed_on",
            lambda: update(
                engine,
                "nimwf_pauses",
                {"id": pause["id"]},
                {"resumed_on": altered(pause["resumed_on"])},
            ),
            r"AUD-1.*pauses",
        )
    )
    pending = next(r for r in rows(engine, "nimwf_alarms") if r["status"] == "pending")
    fired = next(r for r in rows(engine, "nimwf_alarms") if r["status"] == "fired")
    variants += [
        (
            "mark a pending alarm fired (silencing its breach)",
            lambda: update(
                engine,
                "nimwf_alarms",
                {"id": pending["id"]},
                {"status": "fired", "fired_at": dt.datetime(2026, 3, 10, tzinfo=dt.UTC)},
            ),
            re.escape(pending["reference"]) + r".*alarms",
        ),
        (
            "mark a fired alarm pending again",
            lambda: update(
                engine, "nimwf_alarms", {"id": fired["id"]}, {"status": "pending", "fired_at": None}
            ),
            re.escape(fired["reference"]) + r".*alarms",
        ),
        (
            "move an alarm's time",
            lambda: update(
                engine,
                "nimwf_alarms",
                {"id": pending["id"]},
                {"due_at": altered(pending["due_at"])},
            ),
            re.escape(pending["reference"]) + r".*alarms",
        ),
    ]
    return variants


def test_every_tamper_is_detected(engine: nw.Engine, tmp_path: Path) -> None:
    """Each edit, deletion, reorder, truncation, rehash, head and state-table edit is found."""
    checkpoints = tmp_path / "checkpoints.jsonl"
    engine.checkpoint(out=checkpoints)
    assert verify(engine, checkpoints).ok
    snapshot = Snapshot(engine)
    variants = _variants(engine)
    missed = []
    for name, tamper, expected in variants:
        tamper()
        report = verify(engine, checkpoints)
        if report.ok or not any(re.search(expected, p) for p in report.problems):
            missed.append((name, expected, report.problems))
        snapshot.restore()
        assert verify(engine, checkpoints).ok, f"restoring after {name!r} did not verify"
    assert missed == []
    assert len(variants) >= 150, len(variants)


def test_a_state_edit_is_found_even_after_later_entries(engine: nw.Engine, clock: Clock) -> None:
    """An edit to a case's rows stays visible after the engine writes to the case again."""
    update(engine, "nimwf_cases", {"reference": "AUD-1"}, {"facts": {"smuggled": True}})
    clock.advance(days=1)
    engine.record("AUD-1", {"consent_recorded": True}, actor=SW)
    report = engine.verify_audit(deep=True)
    assert not report.ok
    assert any(
        re.search(r"case AUD-1: its case row were changed outside the engine between seq \d+", p)
        for p in report.problems
    ), report.problems


def test_without_checkpoints_a_rehashed_log_is_caught_only_by_the_deep_check(
    engine: nw.Engine,
) -> None:
    """Rewritten and rehashed, the log is self-consistent: only the case rows betray it."""
    (withdrawal,) = [
        e
        for e in rows(engine)
        if e["reference"] == "AUD-2" and e["action"] == "transition" and e["to_stage"] == "closed"
    ]
    delete(engine, AUDIT, id=withdrawal["id"])
    rehash_everything(engine)
    assert engine.verify_audit().ok, "a shallow verify cannot see a consistent rewrite"
    deep = engine.verify_audit(deep=True)
    assert not deep.ok
    assert any("AUD-2" in p for p in deep.problems), deep.problems


# -- checkpoints files that are wrong ------------------------------------------------------------


def test_checkpoints_signed_by_another_key_are_reported(engine: nw.Engine, tmp_path: Path) -> None:
    """Verifying with the wrong public key says so, naming both keys."""
    checkpoints = tmp_path / "cp.jsonl"
    engine.checkpoint(out=checkpoints)
    report = engine.verify_audit(checkpoints=checkpoints, public_key=OTHER_KEY.public_key())
    assert not report.ok
    assert any("wrong public key" in p for p in report.problems), report.problems


def test_checkpoints_of_another_database_are_reported(engine: nw.Engine, tmp_path: Path) -> None:
    """A checkpoint signed for another log is reported as belonging to another database."""
    checkpoints = tmp_path / "cp.jsonl"
    with nw.Engine(f"sqlite:///{tmp_path / 'other.db'}", signing_key=KEY) as other:
        other.migrate()
        other.checkpoint(out=checkpoints)
    report = engine.verify_audit(checkpoints=checkpoints, public_key=KEY.public_key())
    assert not report.ok
    assert any("another database" in p for p in report.problems), report.problems


def test_truncated_and_edited_checkpoints_files_are_reported(
    engine: nw.Engine, tmp_path: Path, clock: Clock
) -> None:
    """A torn last line and an edited checkpoint are each reported, never raised."""
    checkpoints = tmp_path / "cp.jsonl"
    engine.checkpoint(out=checkpoints)
    clock.advance(days=1)
    engine.record("AUD-1", {"consent_recorded": True}, actor=SW)
    engine.checkpoint(out=checkpoints)
    good = checkpoints.read_text()
    checkpoints.write_text(good[: len(good) - 20])
    report = engine.verify_audit(checkpoints=checkpoints, public_key=KEY.public_key())
    assert not report.ok
    assert any("line 2" in p and "truncated" in p for p in report.problems), report.problems
    assert report.checkpoints == 1
    first, second = good.splitlines()
    checkpoints.write_text(first.replace('"size":', '"size":1') + "\n" + second + "\n")
    report = engine.verify_audit(checkpoints=checkpoints, public_key=KEY.public_key())
    assert not report.ok
    assert any("edited after it was signed" in p for p in report.problems), report.problems


def test_checkpoints_need_a_public_key(db_url: str, clock: Clock, tmp_path: Path) -> None:
    """Checking checkpoints without any public key is refused as bad input."""
    with nw.Engine(db_url, clock=clock) as plain:
        plain.migrate()
        with pytest.raises(nw.InvalidInput, match="public key"):
            plain.verify_audit(checkpoints=[])


def test_a_checkpoint_larger_than_the_log_says_entries_were_removed(
    engine: nw.Engine, tmp_path: Path
) -> None:
    """Truncating below a signed size says entries signed for are gone, and since when."""
    checkpoints = tmp_path / "cp.jsonl"
    signed = engine.checkpoint(out=checkpoints)
    newest = rows(engine)[-1]
    delete(engine, AUDIT, id=newest["id"])
    rehash_everything(engine)
    report = verify(engine, checkpoints)
    assert any(
        f"signed {_audit.instant(signed.signed_at)}" in p and "removed since then" in p
        for p in report.problems
    ), report.problems


# -- the sequenced feed --------------------------------------------------------------------------


def test_audit_after_seq_returns_exactly_the_later_events(engine: nw.Engine) -> None:
    """audit(after_seq=N) returns every event after N, in order, and nothing else."""
    everything = engine.audit()
    top = everything[-1].seq
    assert top is not None
    for after in range(top + 2):
        later = [e for e in everything if e.seq is not None and e.seq > after]
        assert engine.audit(after_seq=after) == later
        for reference in ("AUD-1", "AUD-2", "AUD-3"):
            assert engine.audit(reference, after_seq=after) == [
                e for e in later if e.reference == reference and e.stream == "case"
            ]
    assert engine.audit(after_seq=None) == everything


def test_published_events_carry_their_seq(db_url: str, clock: Clock) -> None:
    """A subscriber sees each event with the seq it holds in the log (one writer at a time)."""
    with nw.Engine(db_url, clock=clock) as eng:
        eng.migrate()
        seen: list[nw.Event] = []
        eng.subscribe(seen.append)
        open_at(eng, "SEQ-1", "assessment")
        log = eng.audit()
        assert [e.seq for e in seen] == [e.seq for e in log] == list(range(1, len(log) + 1))


def test_a_tailing_host_misses_nothing(db_url: str, clock: Clock) -> None:
    """A host tailing audit(after_seq=last seen) sees every event of two engines once, in order."""
    first = nw.Engine(db_url, clock=clock)
    first.migrate()
    second = nw.Engine(db_url, clock=clock)
    seen: list[nw.AuditEvent] = []

    def tail() -> None:
        last = seen[-1].seq if seen else 0
        seen.extend(first.audit(after_seq=last))

    try:
        tail()
        assert seen == []
        for number in range(4):
            writer = first if number % 2 else second
            reference = f"TAIL-{number}"
            open_at(writer, reference, "referral")
            tail()
            clock.advance(hours=1)
            with pytest.raises(nw.PermissionDenied):
                second.fire(reference, "accept_referral", actor=SW)
            first.fire(reference, "accept_referral", actor=TM)
            if number % 2:
                tail()
        tail()
        assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
        assert seen == first.audit()
    finally:
        first.close()
        second.close()


# -- canonical values ----------------------------------------------------------------------------


def test_non_text_values_never_reach_the_log(engine: nw.Engine) -> None:
    """A number as a reason or trigger is refused at the door; the log stays verifiable."""
    with pytest.raises(nw.InvalidInput, match="reason must be text"):
        engine.pause("AUD-1", actor=COORD, reason=42)  # type: ignore[arg-type]
    with pytest.raises(nw.InvalidInput):
        engine.fire("AUD-1", 7, actor=TM)  # type: ignore[arg-type]
    assert engine.verify_audit(deep=True).ok


def test_append_refuses_a_value_whose_stored_form_differs(engine: nw.Engine) -> None:
    """Below the door, the log itself refuses a non-text field instead of hashing it."""
    with pytest.raises(TypeError, match="reason"):
        _audit.new_entry(
            stream="case",
            reference="AUD-1",
            position=1,
            prev_hash="0" * 64,
            at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
            actor_id="x",
            roles=[],
            action="denied",
            reason=42,  # type: ignore[arg-type]
        )
