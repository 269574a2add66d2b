"""The audit log's pure parts, driven directly: encodings, digests, and verify's wording.

``tests/test_audit.py`` proves the log end to end through the engine; these tests pin the pieces
an auditor reads or recomputes (the canonical bytes and hashes, the state digests, the text of
``verify_audit``'s problems about ranges, tables and checkpoints) with no database. Every expected
value is written out by hand or recomputed with ``hashlib`` from the documented form.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engine_helpers import new_engine, open_at
from sqlalchemy.dialects import postgresql

import nim_workflow as nw
from nim_workflow import _audit, _checkpoint, _merkle, _verify
from nim_workflow._store import _schema

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
T1 = dt.datetime(2026, 3, 6, 9, 30, 0, 1, tzinfo=dt.UTC)
T2 = dt.datetime(2026, 3, 7, 9, 30, 0, 1, tzinfo=dt.UTC)
T1_TEXT = "2026-03-06T09:30:00.000001+00:00"
T2_TEXT = "2026-03-07T09:30:00.000001+00:00"
PREV = "0" * 64
ADMIN = nw.Actor("admin-1", roles={"administrator"})


def sha(data: bytes) -> bytes:
    """SHA-256 digest."""
    return hashlib.sha256(data).digest()


# RFC 9162: a leaf is SHA-256(0x00 || entry hash), a node SHA-256(0x01 || left || right).
ENTRY_HASHES = [bytes([n]) * 32 for n in (1, 2, 3)]
LEAVES = [sha(b"\x00" + h) for h in ENTRY_HASHES]
ROOT_1 = LEAVES[0]
ROOT_2 = sha(b"\x01" + LEAVES[0] + LEAVES[1])
ROOT_3 = sha(b"\x01" + ROOT_2 + LEAVES[2])
EMPTY_ROOT_HEX = hashlib.sha256(b"").hexdigest()
BAD_ROOT = "00" * 32


def key_id_of(key: Ed25519PrivateKey) -> str:
    """The documented key id: the first 8 bytes of SHA-256 of the raw public key, hex."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8].hex()


def signed(
    size: int,
    root: bytes | str,
    signed_at: dt.datetime = T1,
    *,
    key: Ed25519PrivateKey = KEY,
    log_id: str = "site-a",
) -> _checkpoint.Checkpoint:
    """A checkpoint of ``size`` entries of log ``log_id`` with Merkle root ``root``."""
    root_hex = root if isinstance(root, str) else root.hex()
    return _checkpoint.sign(key, log_id=log_id, size=size, root_hash=root_hex, signed_at=signed_at)


def check(
    checkpoints: list[_checkpoint.Checkpoint],
    *,
    leaves: list[bytes] = LEAVES,
    root: bytes = ROOT_3,
    keyed: bool = True,
) -> list[str]:
    """The problems ``_check_checkpoints`` finds for a log ``site-a`` of ``leaves``."""
    found = _verify._Findings()
    public_key = KEY.public_key() if keyed else None
    _verify._check_checkpoints(found, "site-a", checkpoints, leaves, root, public_key)
    return found.problems


# -- _verify._ranges -------------------------------------------------------------------------------


def test_ranges_single_number() -> None:
    """One missing seq is named alone."""
    assert _verify._ranges([4]) == "4"


def test_ranges_one_run_is_a_span() -> None:
    """Consecutive seqs fold into one "a-b" span."""
    assert _verify._ranges([3, 4, 5]) == "3-5"
    assert _verify._ranges([8, 9]) == "8-9"


def test_ranges_mixed_runs_and_singletons() -> None:
    """Runs become spans, lone numbers stay alone, all joined by ", " in order."""
    assert _verify._ranges([1, 3, 4, 5, 7, 9, 10]) == "1, 3-5, 7, 9-10"
    assert _verify._ranges([2, 4]) == "2, 4"


def test_missing_seqs_problem_names_ranges() -> None:
    """A gapless check names the missing seqs as ranges and where the log runs to."""
    leaves = {n: _merkle.leaf_hash(bytes([n]) * 32) for n in (1, 4, 5, 7)}
    head = _audit.LogHead("site-a", 7, "11" * 32, (), None)
    found = _verify._Findings()
    size = _verify._check_log(found, head, leaves, EMPTY_ROOT_HEX.encode())
    assert size == 7
    assert found.problems[0] == (
        "the log is missing seq 2-3, 6: entries were deleted (the log runs to seq 7)"
    )


# -- _verify._changed ------------------------------------------------------------------------------


def test_changed_names_tables_in_order() -> None:
    """Changed tables are named by their labels, in the digests' table order, ", "-joined."""
    before = {"case": "1", "intervals": "2", "pauses": "3", "deadlines": "4", "alarms": "5"}
    after = {"alarms": "x", "case": "y", "intervals": "2", "pauses": "3", "deadlines": "z"}
    assert _verify._changed(before, after) == "case row, deadlines, alarms"
    assert _verify._changed({"intervals": "a"}, {"intervals": "b"}) == "stage intervals"


def test_changed_falls_back_to_rows() -> None:
    """When no known table differs the problem says "rows"."""
    assert _verify._changed({"case": "1"}, {"case": "1"}) == "rows"
    assert _verify._changed({"other": "1"}, {"other": "2"}) == "rows"


def test_changed_unlabelled_table_named_by_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A digested table with no label is named by its key rather than dropped or broken."""
    monkeypatch.setattr(_audit, "STATE_LABELS", {"case": "case row"})
    before = {"case": "1", "pauses": "2"}
    after = {"case": "9", "pauses": "8"}
    assert _verify._changed(before, after) == "case row, pauses"


def test_every_state_table_has_a_label() -> None:
    """Each digested table has the label verify's problems use for it."""
    assert dict(_audit.STATE_LABELS) == {
        "case": "case row",
        "intervals": "stage intervals",
        "pauses": "pauses",
        "deadlines": "deadlines",
        "alarms": "alarms",
    }
    assert list(_audit.STATE_TABLES) == ["case", "intervals", "pauses", "deadlines", "alarms"]


# -- _verify._check_checkpoints --------------------------------------------------------------------


def test_matching_checkpoints_raise_no_problem() -> None:
    """Checkpoints whose roots match the log at their sizes pass, in any given order."""
    assert check([signed(3, ROOT_3, T2), signed(1, ROOT_1), signed(2, ROOT_2)]) == []


def test_no_public_key_every_checkpoint_reported() -> None:
    """Without a public key each checkpoint is named as unchecked, and none stops the rest."""
    problems = check([signed(3, ROOT_3), signed(1, ROOT_1, T2)], keyed=False)
    assert problems == [
        f"checkpoint of 3 entries signed {T1_TEXT}: no public key given to check its signature",
        f"checkpoint of 1 entries signed {T2_TEXT}: no public key given to check its signature",
    ]


def test_unusable_checkpoints_reported_in_order_and_rest_checked() -> None:
    """Edited, wrong-key and other-log checkpoints are each named why; later ones still checked."""
    edited = dataclasses.replace(signed(2, ROOT_2), root_hash=BAD_ROOT)
    problems = check(
        [
            edited,
            signed(3, ROOT_3, key=OTHER_KEY),
            signed(3, ROOT_3, log_id="site-b"),
            signed(5, BAD_ROOT),
        ]
    )
    assert problems == [
        f"checkpoint of 2 entries signed {T1_TEXT}: its signature does not verify "
        "(the checkpoint was edited after it was signed)",
        f"checkpoint of 3 entries signed {T1_TEXT}: its signature does not verify "
        f"(it names key {key_id_of(OTHER_KEY)}, the public key given is {key_id_of(KEY)}: "
        "wrong public key)",
        f"checkpoint of 3 entries signed {T1_TEXT}: belongs to another database's log "
        "(site-b; this log is site-a)",
        f"checkpoint of 5 entries signed {T1_TEXT}: the log now holds only 3 entries: "
        "entries signed for were removed since then",
    ]


def test_wrong_log_does_not_stop_later_checkpoints() -> None:
    """A checkpoint of another log is reported and the next one is still compared."""
    problems = check([signed(3, ROOT_3, log_id="site-b"), signed(2, BAD_ROOT)])
    assert problems == [
        f"checkpoint of 3 entries signed {T1_TEXT}: belongs to another database's log "
        "(site-b; this log is site-a)",
        f"checkpoint of 2 entries signed {T1_TEXT}: the log is not a consistent extension of it "
        "(an entry at or before seq 2 was changed)",
    ]


def test_every_checkpoint_larger_than_the_log_reported() -> None:
    """Each checkpoint beyond the log's size is named, not just the first."""
    problems = check([signed(5, BAD_ROOT), signed(4, BAD_ROOT)])
    assert problems == [
        f"checkpoint of 4 entries signed {T1_TEXT}: the log now holds only 3 entries: "
        "entries signed for were removed since then",
        f"checkpoint of 5 entries signed {T1_TEXT}: the log now holds only 3 entries: "
        "entries signed for were removed since then",
    ]


def test_mismatch_names_the_newest_matching_checkpoint() -> None:
    """Checked smallest first, a mismatch names the last still-matching checkpoint and the span."""
    problems = check([signed(3, BAD_ROOT), signed(1, ROOT_1, T2)])
    assert problems == [
        f"checkpoint of 3 entries signed {T1_TEXT}: the log is not a consistent extension of it "
        f"(the checkpoint of 1 signed {T2_TEXT} still matches, so an entry between seq 2 and "
        "seq 3 was changed)",
    ]


def test_mismatch_without_earlier_match() -> None:
    """With no matching checkpoint before it, a mismatch says at or before which seq."""
    assert check([signed(2, BAD_ROOT)]) == [
        f"checkpoint of 2 entries signed {T1_TEXT}: the log is not a consistent extension of it "
        "(an entry at or before seq 2 was changed)",
    ]


def test_same_size_checkpoints_checked_in_signing_order() -> None:
    """Checkpoints of one size are checked oldest signature first, whatever order they came in."""
    problems = check([signed(2, BAD_ROOT, T2), signed(2, BAD_ROOT, T1)])
    assert problems == [
        f"checkpoint of 2 entries signed {T1_TEXT}: the log is not a consistent extension of it "
        "(an entry at or before seq 2 was changed)",
        f"checkpoint of 2 entries signed {T2_TEXT}: the log is not a consistent extension of it "
        "(an entry at or before seq 2 was changed)",
    ]


def test_size_zero_checkpoint_matches_the_empty_tree() -> None:
    """A checkpoint of 0 entries matches SHA-256 of nothing, on an empty log and a longer one."""
    assert check([signed(0, EMPTY_ROOT_HEX)]) == []
    assert check([signed(0, EMPTY_ROOT_HEX)], leaves=[], root=bytes.fromhex(EMPTY_ROOT_HEX)) == []
    assert check([signed(0, BAD_ROOT)]) == [
        f"checkpoint of 0 entries signed {T1_TEXT}: the log is not a consistent extension of it "
        "(an entry at or before seq 0 was changed)",
    ]


def test_size_zero_then_mismatch_names_it() -> None:
    """A matching empty checkpoint is the last good one before a later mismatch."""
    problems = check([signed(1, BAD_ROOT), signed(0, EMPTY_ROOT_HEX, T2)])
    assert problems == [
        f"checkpoint of 1 entries signed {T1_TEXT}: the log is not a consistent extension of it "
        f"(the checkpoint of 0 signed {T2_TEXT} still matches, so an entry between seq 1 and "
        "seq 1 was changed)",
    ]


# -- _audit: instants, canonical bytes, hashes -----------------------------------------------------


def test_instant_is_utc_with_microseconds() -> None:
    """An instant is written in UTC, ISO 8601, always with six fractional digits."""
    plus_one = dt.timezone(dt.timedelta(hours=1))
    assert _audit.instant(dt.datetime(2026, 3, 6, 10, 30, tzinfo=plus_one)) == (
        "2026-03-06T09:30:00.000000+00:00"
    )
    assert _audit.instant(T1) == T1_TEXT


def test_instant_ignores_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The log's instants are UTC whatever zone the machine writing them is set to."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert _audit.instant(T1) == T1_TEXT
    finally:
        monkeypatch.undo()
        time.tzset()


def entry_fields() -> dict[str, Any]:
    """The fields of one entry, with everything the encoding must normalise."""
    return {
        "stream": "case",
        "reference": "R-1",
        "position": 2,
        "at": dt.datetime(2026, 3, 6, 10, 30, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "actor_id": "sw-017",
        "roles": ["team_manager", "social_worker"],
        "action": "transition",
        "trigger": "accept_referral",
        "from_stage": "referral",
        "to_stage": "assessment",
        "reason": "café",
        "detail": {"z": 1, "a": [True, None]},
        "prior_state": {"case": "c0"},
        "state": {"pauses": "p1", "case": "c1"},
        "prev_hash": PREV,
    }


#: The documented canonical form of :func:`entry_fields`, written out by hand.
CANONICAL = (
    '["nimwf-audit-2","case","R-1",2,"2026-03-06T09:30:00.000001+00:00","sw-017",'
    '["social_worker","team_manager"],"transition","accept_referral","referral","assessment",'
    '"café",{"a":[true,null],"z":1},{"case":"c0"},{"case":"c1","pauses":"p1"},'
    f'"{PREV}"]'
).encode()


def test_canonical_bytes_are_pinned() -> None:
    """The hashed bytes: format tag, fields in fixed order, compact sorted UTF-8 JSON, UTC time."""
    assert _audit.canonical(entry_fields()) == CANONICAL


def test_entry_hash_is_sha256_of_canonical() -> None:
    """An entry's hash is the hex SHA-256 of its canonical bytes."""
    assert _audit.entry_hash(entry_fields()) == hashlib.sha256(CANONICAL).hexdigest()


def test_leaf_hashes_the_entry_hash_bytes() -> None:
    """A Merkle leaf is SHA-256(0x00 || the entry hash's 32 bytes)."""
    assert _audit.leaf("ab" * 32) == sha(b"\x00" + bytes.fromhex("ab" * 32))


def test_new_entry_fields_and_hash() -> None:
    """new_entry stores sorted roles, JSON-round-tripped detail, copies of states, hash, no seq."""
    fields = entry_fields()
    entry = _audit.new_entry(
        stream="case",
        reference="R-1",
        position=2,
        prev_hash=PREV,
        at=fields["at"],
        actor_id="sw-017",
        roles=("team_manager", "social_worker"),
        action="transition",
        trigger="accept_referral",
        from_stage="referral",
        to_stage="assessment",
        reason="café",
        detail={"z": 1, "a": (True, None)},
        prior_state={"case": "c0"},
        state={"pauses": "p1", "case": "c1"},
    )
    assert entry == {
        **fields,
        "roles": ["social_worker", "team_manager"],
        "detail": {"a": [True, None], "z": 1},
        "hash": hashlib.sha256(CANONICAL).hexdigest(),
        "seq": None,
    }
    # Stored, and published, with its keys in the order the hash covers them.
    assert list(entry["detail"]) == ["a", "z"]


def test_new_entry_defaults() -> None:
    """Omitted optional fields are stored as None, and an absent detail as an empty object."""
    entry = _audit.new_entry(
        stream="staff",
        reference="sw-017",
        position=1,
        prev_hash=PREV,
        at=T1,
        actor_id="admin-1",
        roles=[],
        action="staff_added",
        detail={"on": dt.date(2026, 3, 6)},
    )
    expected = (
        f'["nimwf-audit-2","staff","sw-017",1,"{T1_TEXT}","admin-1",[],"staff_added",'
        f'null,null,null,null,{{"on":"2026-03-06"}},null,null,"{PREV}"]'
    ).encode()
    assert entry["detail"] == {"on": "2026-03-06"}
    assert [entry[k] for k in ("trigger", "from_stage", "to_stage", "reason")] == [None] * 4
    assert entry["prior_state"] is None
    assert entry["state"] is None
    assert entry["hash"] == hashlib.sha256(expected).hexdigest()
    assert (
        _audit.new_entry(
            stream="staff",
            reference="x",
            position=1,
            prev_hash=PREV,
            at=T1,
            actor_id="a",
            roles=[],
            action="staff_added",
        )["detail"]
        == {}
    )


def test_new_entry_refuses_non_text() -> None:
    """A field that must be text but is not raises TypeError naming the field and type."""
    with pytest.raises(TypeError, match=r"^audit field actor_id must be text or None, not int$"):
        _audit.new_entry(
            stream="case",
            reference="R-1",
            position=1,
            prev_hash=PREV,
            at=T1,
            actor_id=7,  # type: ignore[arg-type]
            roles=[],
            action="opened",
        )
    with pytest.raises(TypeError, match=r"^audit field roles must be text or None, not bytes$"):
        _audit.new_entry(
            stream="case",
            reference="R-1",
            position=1,
            prev_hash=PREV,
            at=T1,
            actor_id="a",
            roles=[b"x"],  # type: ignore[list-item]
            action="opened",
        )


@pytest.mark.parametrize("name", ["action", "trigger", "from_stage", "to_stage", "reason"])
def test_new_entry_names_the_field_that_is_not_text(name: str) -> None:
    """Each optional text field refuses a non-text value by name, and accepts text or None."""
    base: dict[str, Any] = {
        "stream": "case",
        "reference": "R-1",
        "position": 1,
        "prev_hash": PREV,
        "at": T1,
        "actor_id": "a",
        "roles": [],
        "action": "opened",
    }
    with pytest.raises(TypeError, match=rf"^audit field {name} must be text or None, not float$"):
        _audit.new_entry(**{**base, name: 1.5})
    assert _audit.new_entry(**{**base, name: "text"})[name] == "text"


def test_to_event_carries_every_field() -> None:
    """An entry's fields become the public event unchanged, roles as a tuple."""
    entry = {**entry_fields(), "hash": "ab" * 32, "seq": 7}
    event = _audit.to_event(entry)
    assert event == nw.AuditEvent(
        seq=7,
        reference="R-1",
        at=entry["at"],
        actor_id="sw-017",
        action="transition",
        from_stage="referral",
        to_stage="assessment",
        reason="café",
        detail={"z": 1, "a": [True, None]},
        hash="ab" * 32,
        prev_hash=PREV,
        roles=("team_manager", "social_worker"),
        trigger="accept_referral",
        stream="case",
        position=2,
    )
    assert (event.hash, event.prev_hash, event.position) == ("ab" * 32, PREV, 2)


# -- _audit: state digests -------------------------------------------------------------------------


CASE_ROW: dict[str, Any] = {
    "reference": "R-1",
    "pathway_id": "nim-uk-england",
    "pathway_version": 2,
    "site": "london",
    "stage": "referral",
    "version": 3,
    "opened_at": T1,
    "stage_entered_at": dt.datetime(2026, 3, 6, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    "closed_at": None,
    "outcome": None,
    "paused_at": None,
    "facts": {"b": 1, "a": "é"},
    "updated_at": T2,
    "worker": None,
    "not_digested": "ignored",
}
DEADLINE_ROW: dict[str, Any] = {
    "id": 4,
    "site": "london",
    "rule": "referral_decision",
    "kind": "decision",
    "stage": "referral",
    "occurrence": 1,
    "start_on": dt.date(2026, 3, 6),
    "base_due_on": dt.date(2026, 3, 20),
    "due_on": dt.date(2026, 3, 20),
    "due_at": T2,
    "status": "open",
    "settled_at": None,
    "extensions": 0,
    "adjustments": [],
    "opens_on": None,
    "basis": None,
}


def digest(body: str) -> str:
    """The documented state digest: the first 32 hex digits of SHA-256 of the JSON body."""
    return hashlib.sha256(body.encode()).hexdigest()[:32]


CASE_DIGEST = digest(
    '[["R-1","nim-uk-england",2,"london","referral",3,"2026-03-06T09:30:00.000001+00:00",'
    '"2026-03-06T09:30:00.000000+00:00",null,null,null,{"a":"é","b":1},'
    '"2026-03-07T09:30:00.000001+00:00"]]'
)
DEADLINES_DIGEST = digest(
    '[[4,"london","referral_decision","decision","referral",1,"2026-03-06","2026-03-20",'
    '"2026-03-20","2026-03-07T09:30:00.000001+00:00","open",null,0,[],null,null]]'
)
EMPTY_DIGEST = digest("[]")


def test_state_digests_pinned() -> None:
    """Each table's digest covers its pinned columns in order, compact sorted UTF-8 JSON."""
    rows = {"intervals": [], "pauses": [], "deadlines": [DEADLINE_ROW], "alarms": []}
    assert _audit.state_digests(CASE_ROW, rows) == {
        "case": CASE_DIGEST,
        "intervals": EMPTY_DIGEST,
        "pauses": EMPTY_DIGEST,
        "deadlines": DEADLINES_DIGEST,
        "alarms": EMPTY_DIGEST,
    }


def test_state_digests_only_some_tables_over_base() -> None:
    """With only and base, just the named tables are digested again, the rest kept from base."""
    base = {"case": "kept", "deadlines": "old", "alarms": "kept too"}
    rows = {"deadlines": [DEADLINE_ROW]}
    result = _audit.state_digests(CASE_ROW, rows, only=["deadlines"], base=base)
    assert result == {"case": "kept", "deadlines": DEADLINES_DIGEST, "alarms": "kept too"}
    assert base == {"case": "kept", "deadlines": "old", "alarms": "kept too"}
    assert _audit.state_digests(CASE_ROW, {}, only=["case"]) == {"case": CASE_DIGEST}


def test_state_digest_covers_the_worker_once_assigned() -> None:
    """An assigned case's worker is digested after the other columns; unassigned, it is left out."""
    case = {**CASE_ROW, "worker": "sw-017"}
    assert _audit.state_digests(case, {}, only=["case"]) == {
        "case": digest(
            '[["R-1","nim-uk-england",2,"london","referral",3,"2026-03-06T09:30:00.000001+00:00",'
            '"2026-03-06T09:30:00.000000+00:00",null,null,null,{"a":"é","b":1},'
            '"2026-03-07T09:30:00.000001+00:00","sw-017"]]'
        )
    }


def test_stored_digests_cover_the_worker(tmp_path: Path) -> None:
    """Read from the database, a case's digest is the in-memory one, with or without a worker."""
    eng = new_engine(f"sqlite:///{tmp_path / 'worker.db'}")
    cases = _schema.cases
    try:
        open_at(eng, "R-1", "referral")
        digests = []
        for worker in (None, "sw-017"):
            tamper(eng.sqlalchemy_engine, cases.update().values(worker=worker))
            with eng.sqlalchemy_engine.connect() as conn:
                row = conn.execute(sa.select(cases)).one()._asdict()
                expected = _audit.state_digests(row, {}, only=["case"])["case"]
                assert _audit.case_state(conn, "R-1")["case"] == expected
                assert _audit.all_case_states(conn)["R-1"]["case"] == expected
                digests.append(expected)
    finally:
        eng.close()
    assert digests[0] != digests[1]


def test_state_digest_refuses_unencodable_value() -> None:
    """A value with no canonical form raises TypeError naming its type."""
    case = {**CASE_ROW, "facts": {1, 2}}
    with pytest.raises(TypeError, match=r"^no canonical form for set$"):
        _audit.state_digests(case, {}, only=["case"])


def test_new_log_row_is_an_empty_log() -> None:
    """A new log head is row 1, empty, rooted at SHA-256 of nothing, with a fresh UUID4 id."""
    first, second = _audit.new_log_row(), _audit.new_log_row()
    assert {k: v for k, v in first.items() if k != "log_id"} == {
        "id": 1,
        "size": 0,
        "frontier": [],
        "root_hash": EMPTY_ROOT_HEX,
        "legacy": None,
    }
    assert uuid.UUID(first["log_id"]).version == 4
    assert first["log_id"] != second["log_id"]


# -- _verify._where, _replay, _check_state ---------------------------------------------------------


def entry_row(**changes: Any) -> dict[str, Any]:
    """A stored entry row as verify reads it."""
    row: dict[str, Any] = {
        "id": 12,
        "seq": None,
        "stream": "case",
        "reference": "R-1",
        "position": 2,
        "action": "transition",
        "at": dt.datetime(2026, 3, 6, 10, 30, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "from_stage": None,
        "to_stage": None,
        "prior_state": None,
        "state": None,
    }
    row.update(changes)
    return row


def test_where_names_seq_or_unsequenced_id() -> None:
    """A problem's place: its seq (or row id if unsequenced), chain, position, action, UTC time."""
    assert _verify._where(entry_row(seq=5)) == (f"seq 5 (case R-1 #2, transition at {T1_TEXT})")
    assert _verify._where(entry_row()) == (
        f"unsequenced entry 12 (case R-1 #2, transition at {T1_TEXT})"
    )


def test_replay_reports_a_stage_jump() -> None:
    """An entry leaving a stage other than the one the log had the case in is named."""
    chain = _verify._Chain()
    found = _verify._Findings()
    _verify._replay(found, chain, entry_row(action="opened", to_stage="referral"), "W1")
    _verify._replay(found, chain, entry_row(from_stage=None, to_stage=None), "W2")
    assert found.problems == []
    assert (chain.version, chain.stage) == (2, "referral")
    _verify._replay(found, chain, entry_row(from_stage="assessment", to_stage="court"), "W3")
    assert found.problems == [
        "W3: leaves stage assessment but the log had the case in referral: an entry between "
        "them is missing or was edited"
    ]
    assert (chain.version, chain.stage) == (3, "court")


class _Rows:
    """A connection stand-in that answers verify's read of the case rows."""

    def __init__(self, rows: list[tuple[str, int, str]]) -> None:
        self.rows = [
            type("Row", (), {"reference": r, "version": v, "stage": s})() for r, v, s in rows
        ]

    def execute(self, query: object) -> list[Any]:
        return self.rows


def opened(version: int, stage: str, where: str, state: dict[str, str] | None) -> _verify._Chain:
    """A case chain the replay left opened."""
    return _verify._Chain(
        opened=True,
        version=version,
        stage=stage,
        last_where=where,
        state=state,
        state_where=where,
    )


def test_check_state_names_each_kind_of_outside_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows never opened, rows without a case row, a moved case, edited rows, vanished rows."""
    same = {"case": "c", "deadlines": "d"}
    states = {
        "GHOST": same,
        "UNOPENED": same,
        "ORPHAN": same,
        "MOVED": same,
        "EDITED": {"case": "c", "deadlines": "x"},
    }
    monkeypatch.setattr(_audit, "all_case_states", lambda conn: states)
    chains = {
        ("case", "UNOPENED"): _verify._Chain(),
        ("case", "ORPHAN"): opened(1, "referral", "W-O", same),
        ("case", "MOVED"): opened(2, "referral", "W-M", same),
        ("case", "EDITED"): opened(1, "referral", "W-E", same),
        ("case", "GONE"): opened(1, "referral", "W-G", same),
        ("staff", "GONE-STAFF"): opened(1, "x", "W-S", None),
    }
    conn = _Rows([("MOVED", 3, "referral"), ("EDITED", 1, "referral")])
    found = _verify._Findings()
    _verify._check_state(found, conn, chains)  # type: ignore[arg-type]
    assert found.problems == [
        "case GHOST: has rows but the log never opened it: written outside the engine",
        "case UNOPENED: has rows but the log never opened it: written outside the engine",
        "case ORPHAN: has deadline or interval rows but no case row",
        "case MOVED: the case row says version 3 in stage referral, the log implies version 2 "
        "in stage referral (its newest entry: W-M)",
        "case EDITED: its deadlines differ from what the log recorded after W-E: changed "
        "outside the engine since then",
        "case GONE: the log opened it (W-G is its newest entry) but its rows are gone",
    ]


# -- reads, on a SQLite database -------------------------------------------------------------------


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[nw.Engine]:
    """Two cases and a staff member named like one of them, with their audit entries."""
    eng = new_engine(f"sqlite:///{tmp_path_factory.mktemp('audit') / 'x.db'}")
    open_at(eng, "R-1", "referral")
    open_at(eng, "R-2", "referral")
    eng.add_staff("R-1", roles={"social_worker"}, sites={"london"}, actor=ADMIN)
    yield eng
    eng.close()


def test_read_one_case_excludes_a_staff_chain_of_the_same_name(db: nw.Engine) -> None:
    """Reading a case's entries returns only its case chain, in seq order."""
    with db.sqlalchemy_engine.connect() as conn:
        everything = _audit.read(conn)
        entries = _audit.read(conn, "R-1")
    assert [(e.seq, e.stream, e.reference, e.action) for e in everything] == [
        (1, "case", "R-1", "opened"),
        (2, "case", "R-1", "fact_recorded"),
        (3, "case", "R-2", "opened"),
        (4, "case", "R-2", "fact_recorded"),
        (5, "staff", "R-1", "staff_added"),
    ]
    assert [(e.seq, e.stream, e.action) for e in entries] == [
        (1, "case", "opened"),
        (2, "case", "fact_recorded"),
    ]


def test_read_after_seq_and_limit(db: nw.Engine) -> None:
    """after_seq skips up to and including that seq; limit caps the count."""
    with db.sqlalchemy_engine.connect() as conn:
        assert [e.seq for e in _audit.read(conn, after_seq=3)] == [4, 5]
        assert [e.seq for e in _audit.read(conn, limit=2)] == [1, 2]
        assert [e.seq for e in _audit.read(conn, after_seq=1, limit=1)] == [2]
        assert [e.seq for e in _audit.read(conn, "R-2", after_seq=3)] == [4]


def test_all_case_states_of_chosen_cases(db: nw.Engine) -> None:
    """Given references, only those cases' digests are read, the same as case_state's."""
    with db.sqlalchemy_engine.connect() as conn:
        one = _audit.all_case_states(conn, ["R-2", "R-2", "NONE"])
        both = _audit.all_case_states(conn)
        assert one == {"R-2": _audit.case_state(conn, "R-2")}
        assert both == {"R-1": _audit.case_state(conn, "R-1"), "R-2": one["R-2"]}


def test_verify_is_shallow_by_default(db: nw.Engine) -> None:
    """verify without deep does not replay or compare state, and says so."""
    with db.sqlalchemy_engine.connect() as conn:
        report = _verify.verify(conn)
    assert (report.ok, report.deep, report.checked, report.sequenced) == (True, False, 5, 5)


def test_check_sequencing_reports_reorder_and_reuse() -> None:
    """A seq not after the chain's last, a seq given twice, and a seq after an unsequenced entry."""
    found = _verify._Findings()
    chain = _verify._Chain()
    leaves: dict[int, bytes] = {}
    _verify._check_sequencing(found, chain, {"seq": 5, "hash": "ab" * 32}, "W1", leaves)
    assert (found.problems, chain.last_seq) == ([], 5)
    assert leaves == {5: sha(b"\x00" + bytes.fromhex("ab" * 32))}
    _verify._check_sequencing(found, chain, {"seq": 5, "hash": "cd" * 32}, "W2", leaves)
    assert found.problems == [
        "W2: sequenced before the chain's earlier entry seq 5: the log was reordered",
        "W2: seq 5 is given to two entries",
    ]
    found, chain = _verify._Findings(), _verify._Chain()
    _verify._check_sequencing(found, chain, {"seq": None, "hash": "ab" * 32}, "U", leaves)
    assert chain.unsequenced is True
    _verify._check_sequencing(found, chain, {"seq": 9, "hash": "ab" * 32}, "W3", leaves)
    assert found.problems == ["W3: sequenced although an earlier entry of its chain is not"]


def test_check_log_head_size_mismatch_wording() -> None:
    """A head larger than the log says entries were removed; a smaller one, added behind it."""
    leaves = {n: _merkle.leaf_hash(bytes([n]) * 32) for n in (1, 2, 3)}
    for head_size, why in (
        (5, "entries were removed from its end, or the head was rewritten"),
        (2, "entries were added behind the sequencer's back"),
    ):
        found = _verify._Findings()
        head = _audit.LogHead("site-a", head_size, "11" * 32, (), None)
        assert _verify._check_log(found, head, leaves, ROOT_3) == 3
        assert found.problems[0] == (
            f"the log head says the log holds {head_size} entries but it holds 3: {why}"
        )


# -- the log written and verified on a bare SQLite database ----------------------------------------

LOG_ID = "log-1"
STAFF_AT = dt.datetime(2026, 3, 6, 9, 30, tzinfo=dt.UTC)
STAFF_AT_TEXT = "2026-03-06T09:30:00.000000+00:00"


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[sa.Engine]:
    """A SQLite database with the library's tables and an empty log named ``log-1``."""
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    _schema.metadata.create_all(eng)
    with eng.begin() as conn:
        conn.execute(_schema.audit_log.insert(), {**_audit.new_log_row(), "log_id": LOG_ID})
    yield eng
    eng.dispose()


def append(
    conn: sa.Connection,
    reference: str,
    count: int = 1,
    *,
    stream: str = "staff",
    changes: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Append entries to one chain, as a command does: decide in memory, then write.

    ``count`` staff_added entries, or one entry per item of ``changes`` (fields to set).
    """
    head = _audit.chain_head(conn, stream, reference)
    entries = []
    for change in changes or [{}] * count:
        options: dict[str, Any] = {
            "actor_id": "admin-1",
            "roles": ["administrator"],
            "action": "staff_added",
            **change,
        }
        entry = _audit.new_entry(
            stream=stream,
            reference=reference,
            position=head.length + 1,
            prev_hash=head.head_hash,
            at=STAFF_AT,
            **options,
        )
        head.advance(entry)
        entries.append(entry)
    assert _audit.write_entries(conn, entries, {(stream, reference): head}) == []
    assert head.stored == head.length
    return entries


def stored(eng: sa.Engine, table: sa.Table) -> list[dict[str, Any]]:
    """A table's rows in key order."""
    with eng.connect() as conn:
        query = sa.select(table).order_by(*table.primary_key)
        return [dict(r._mapping) for r in conn.execute(query)]


def tamper(eng: sa.Engine, statement: Any) -> None:
    """Change the database behind the library's back."""
    with eng.begin() as conn:
        assert conn.execute(statement).rowcount >= 1


def verified(eng: sa.Engine, **options: Any) -> nw.AuditReport:
    """``_verify.verify`` of the whole database."""
    with eng.connect() as conn:
        return _verify.verify(conn, **options)


def at(seq: int, position: int, reference: str = "S-1") -> str:
    """How a problem names a sequenced staff entry written by :func:`append`."""
    return f"seq {seq} (staff {reference} #{position}, staff_added at {STAFF_AT_TEXT})"


@pytest.fixture
def three(bare: sa.Engine) -> list[dict[str, Any]]:
    """Staff chain S-1 of three entries (seqs 1-3), written two then one."""
    with bare.begin() as conn:
        entries = append(conn, "S-1", 2)
    with bare.begin() as conn:
        entries += append(conn, "S-1")
    return entries


def test_write_entries_sequences_and_moves_chain_heads(bare: sa.Engine) -> None:
    """Entries get gapless seqs as written; each chain head is started, then moved."""
    with bare.begin() as conn:
        first = append(conn, "S-1", 2) + append(conn, "S-2")
    with bare.begin() as conn:
        later = append(conn, "S-1")
    entries = first + later
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    rows = stored(bare, _schema.audit_events)
    assert [(r["seq"], r["reference"], r["position"], r["hash"]) for r in rows] == [
        (e["seq"], e["reference"], e["position"], e["hash"]) for e in entries
    ]
    assert rows[2]["prev_hash"] == _schema.GENESIS_HASH
    assert rows[3]["prev_hash"] == entries[1]["hash"]
    assert stored(bare, _schema.audit_chains) == [
        {"stream": "staff", "reference": "S-1", "length": 3, "head_hash": entries[3]["hash"]},
        {"stream": "staff", "reference": "S-2", "length": 1, "head_hash": entries[2]["hash"]},
    ]
    leaves = [_audit.leaf(e["hash"]) for e in entries]
    frontier = _merkle.Frontier()
    for one in leaves:
        frontier.append(one)
    with bare.connect() as conn:
        head = _audit.log_head(conn)
        assert _audit.log_head(conn, lock=True) == head
        assert _audit.chain_head(conn, "staff", "S-1") == _audit.ChainHead(3, entries[3]["hash"], 3)
        assert _audit.chain_head(conn, "case", "S-1") == _audit.ChainHead(
            0, _schema.GENESIS_HASH, None
        )
    assert head == _audit.LogHead(
        LOG_ID, 4, _merkle.root(leaves).hex(), tuple(frontier.to_json()), None
    )
    report = verified(bare)
    assert (report.ok, report.checked, report.sequenced, report.problems) == (True, 4, 4, ())


def test_unsequenced_entries_are_integrated_before_new_ones(bare: sa.Engine) -> None:
    """Entries left unsequenced (copied in, or by an older version) get the next seqs first."""
    with bare.begin() as conn:
        [old] = append(conn, "S-0")
    events = _schema.audit_events
    tamper(bare, events.update().values(seq=None))
    tamper(bare, _schema.audit_log.update().values({**_audit.new_log_row(), "log_id": LOG_ID}))
    with bare.begin() as conn:
        assert _audit.log_head(conn).size == 0
        assert _audit.sequence(conn) == {1: 1}
        assert _audit.log_head(conn) == _audit.LogHead(
            LOG_ID, 1, _audit.leaf(old["hash"]).hex(), (_audit.leaf(old["hash"]).hex(),), None
        )
        assert _audit.sequence(conn) == {}
    tamper(bare, events.update().values(seq=None))
    tamper(bare, _schema.audit_log.update().values({**_audit.new_log_row(), "log_id": LOG_ID}))
    with bare.begin() as conn:
        [new] = append(conn, "S-1")
    assert new["seq"] == 2
    rows = stored(bare, events)
    assert [(r["seq"], r["hash"]) for r in rows] == [(1, old["hash"]), (2, new["hash"])]
    with bare.connect() as conn:
        head = _audit.log_head(conn)
    leaves = [_audit.leaf(old["hash"]), _audit.leaf(new["hash"])]
    assert (head.size, head.root_hash) == (2, _merkle.root(leaves).hex())
    report = verified(bare)
    assert (report.ok, report.checked, report.sequenced) == (True, 2, 2)


def test_write_entries_refuses_chains_moved_under_it(bare: sa.Engine) -> None:
    """A writer whose chains' heads moved since it read them writes nothing, naming them."""
    with bare.begin() as conn:
        firsts = append(conn, "S-2") + append(conn, "S-1")
    tamper(bare, _schema.audit_chains.update().values(length=7))
    entries, chains = [], {}
    for first in firsts:
        head = _audit.ChainHead(1, first["hash"], 1)
        entry = _audit.new_entry(
            stream="staff",
            reference=first["reference"],
            position=2,
            prev_hash=first["hash"],
            at=STAFF_AT,
            actor_id="admin-1",
            roles=[],
            action="staff_removed",
        )
        head.advance(entry)
        entries.append(entry)
        chains["staff", first["reference"]] = head
    with pytest.raises(_audit.ChainMoved, match=r"^S-1, S-2$"), bare.begin() as conn:
        _audit.write_entries(conn, entries, chains)
    assert len(stored(bare, _schema.audit_events)) == 2


def test_a_chain_read_but_not_written_gets_no_head(bare: sa.Engine) -> None:
    """A chain a command looked at but wrote nothing to is not started; the one written to is."""
    with bare.begin() as conn:
        head = _audit.chain_head(conn, "staff", "S-1")
        untouched = _audit.chain_head(conn, "staff", "S-9")
        entry = _audit.new_entry(
            stream="staff",
            reference="S-1",
            position=1,
            prev_hash=head.head_hash,
            at=STAFF_AT,
            actor_id="admin-1",
            roles=[],
            action="staff_added",
        )
        head.advance(entry)
        chains = {("staff", "S-9"): untouched, ("staff", "S-1"): head}
        assert _audit.write_entries(conn, [entry], chains) == []
    assert stored(bare, _schema.audit_chains) == [
        {"stream": "staff", "reference": "S-1", "length": 1, "head_hash": entry["hash"]}
    ]
    assert verified(bare).problems == ()


def test_verify_names_a_removed_middle_entry(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """An entry removed from a chain's middle: the next one is out of place after the last kept."""
    tamper(bare, _schema.audit_events.delete().where(_schema.audit_events.c.seq == 2))
    assert verified(bare).problems == (
        f"{at(3, 3)}: is entry 3 of its chain where entry 2 was expected: entries were "
        f"removed or reordered after {at(1, 1)}",
        "the log is missing seq 2: entries were deleted (the log runs to seq 3)",
    )


def test_verify_names_a_removed_first_entry(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """With a chain's first entry gone, its second is named with no entry to follow."""
    tamper(bare, _schema.audit_events.delete().where(_schema.audit_events.c.seq == 1))
    assert verified(bare).problems == (
        f"{at(2, 2)}: is entry 2 of its chain where entry 1 was expected: entries were "
        "removed or reordered",
        "the log is missing seq 1: entries were deleted (the log runs to seq 3)",
    )


def test_verify_names_a_removed_last_entry(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """With the newest entry gone, the chain head and the log head both still count it."""
    tamper(bare, _schema.audit_events.delete().where(_schema.audit_events.c.seq == 3))
    report = verified(bare)
    assert report.problems == (
        "the log head says the log holds 3 entries but it holds 2: entries were removed from "
        "its end, or the head was rewritten",
        f"staff S-1: the chain head says 3 entries, the log has 2: entries were removed from "
        f"its end (last kept: {at(2, 2)}), or the head was rewritten",
    )
    assert (report.ok, report.checked, report.sequenced) == (False, 2, 2)


def test_verify_names_a_replaced_entry(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """An entry edited and rehashed: the next one no longer follows it, and the root moved."""
    events = _schema.audit_events
    new_hash = _audit.entry_hash({**three[1], "actor_id": "intruder"})
    tamper(
        bare,
        events.update().where(events.c.seq == 2).values(actor_id="intruder", hash=new_hash),
    )
    assert verified(bare).problems == (
        f"{at(3, 3)}: does not follow the chain's entry before it (prev_hash differs): an "
        "entry before it was replaced",
        "the log head's Merkle root does not match the entries: an entry or the head was rewritten",
    )


def test_verify_names_an_edited_entry(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """An entry edited without rehashing is named as edited, and nothing else is wrong."""
    events = _schema.audit_events
    tamper(bare, events.update().where(events.c.seq == 2).values(actor_id="intruder"))
    assert verified(bare).problems == (
        f"{at(2, 2)}: its contents do not match its hash: the entry was edited",
    )


def test_verify_names_missing_and_unknown_chain_heads(
    bare: sa.Engine, three: list[dict[str, Any]]
) -> None:
    """A chain with no head row, and a head row with no chain, are each named."""
    chains = _schema.audit_chains
    tamper(bare, chains.delete())
    tamper(
        bare,
        chains.insert().values(stream="case", reference="S-1", length=1, head_hash="ab" * 32),
    )
    assert verified(bare).problems == (
        "staff S-1: has entries but no chain head row",
        "case S-1: its chain head names entries the log does not hold",
    )


def test_verify_names_a_rewritten_chain_head(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """A chain head of the right length but another hash is named with the log's count."""
    chains = _schema.audit_chains
    tamper(bare, chains.update().values(head_hash=three[1]["hash"]))
    assert verified(bare).problems == (
        f"staff S-1: the chain head says 3 entries, the log has 3: entries were removed from "
        f"its end (last kept: {at(3, 3)}), or the head was rewritten",
    )


@pytest.mark.parametrize(
    ("values", "problems"),
    [
        (
            {"root_hash": BAD_ROOT},
            (
                "the log head's Merkle root does not match the entries: an entry or the head "
                "was rewritten",
                "the log head's compact range does not match its root: the head was edited",
            ),
        ),
        (
            {"frontier": [BAD_ROOT, BAD_ROOT]},
            ("the log head's compact range does not match its root: the head was edited",),
        ),
        (
            {"frontier": [BAD_ROOT]},
            ("the log head's compact range does not match its root: the head was edited",),
        ),
    ],
)
def test_verify_names_an_edited_log_head(
    bare: sa.Engine,
    three: list[dict[str, Any]],
    values: dict[str, Any],
    problems: tuple[str, ...],
) -> None:
    """A head whose root or compact range was edited is named; a malformed range as well."""
    tamper(bare, _schema.audit_log.update().values(**values))
    assert verified(bare).problems == problems


@pytest.mark.parametrize(
    ("legacy", "problems", "notes"),
    [
        (None, (), ()),
        ({"ok": True, "summary": "all 4 entries verified"}, (), ()),
        ({"summary": "all 4 entries verified"}, (), ()),
        (
            {"ok": False, "summary": "entry 3 was edited", "defect_only": True},
            (),
            ("before per-case chains (migration 0004) entry 3 was edited",),
        ),
        (
            {"ok": False, "summary": "entry 3 was edited", "defect_only": False},
            ("before per-case chains (migration 0004) entry 3 was edited",),
            (),
        ),
        ({"ok": False}, ("before per-case chains (migration 0004) ",), ()),
    ],
)
def test_verify_reports_what_migration_0004_found(
    bare: sa.Engine,
    three: list[dict[str, Any]],
    legacy: dict[str, Any] | None,
    problems: tuple[str, ...],
    notes: tuple[str, ...],
) -> None:
    """The old log's verdict: a defect the migration only noted is a note, else a problem."""
    tamper(bare, _schema.audit_log.update().values(legacy=legacy))
    report = verified(bare)
    assert (report.ok, report.problems, report.notes) == (not problems, problems, notes)


def test_verify_report_counts(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """The report counts entries checked, entries sequenced, checkpoints given, and depth."""
    with bare.connect() as conn:
        root = _audit.log_head(conn).root_hash
    cps = [signed(3, root, log_id=LOG_ID), signed(2, BAD_ROOT, log_id=LOG_ID)]
    report = verified(bare, deep=True, checkpoints=cps, public_key=KEY.public_key())
    assert report == nw.AuditReport(
        ok=False,
        checked=3,
        problems=(
            f"checkpoint of 2 entries signed {T1_TEXT}: the log is not a consistent extension "
            "of it (an entry at or before seq 2 was changed)",
        ),
        notes=(),
        sequenced=3,
        checkpoints=2,
        deep=True,
    )
    extra = verified(bare, checkpoint_problems=["the checkpoints file is truncated"])
    assert (extra.ok, extra.problems, extra.checkpoints, extra.deep) == (
        False,
        ("the checkpoints file is truncated",),
        0,
        False,
    )


def test_verify_an_empty_log(bare: sa.Engine) -> None:
    """A log with no entries verifies: nothing checked, nothing sequenced, the empty root."""
    report = verified(bare, deep=True)
    assert report == nw.AuditReport(
        ok=True, checked=0, problems=(), notes=(), sequenced=0, checkpoints=0, deep=True
    )


def test_verify_names_a_reordered_chain(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """Two entries of a chain whose seqs were swapped: the later one is sequenced too early."""
    events = _schema.audit_events
    for old, new in ((1, 99), (2, 1), (99, 2)):
        tamper(bare, events.update().where(events.c.seq == old).values(seq=new))
    assert verified(bare).problems == (
        f"seq 1 (staff S-1 #2, staff_added at {STAFF_AT_TEXT}): sequenced before the chain's "
        "earlier entry seq 2: the log was reordered",
        "the log head's Merkle root does not match the entries: an entry or the head was rewritten",
    )


def test_verify_replays_case_chains_only_when_deep(bare: sa.Engine) -> None:
    """A stage jump in a case chain is a deep finding; a shallow verify does not replay."""
    with bare.begin() as conn:
        append(
            conn,
            "R-9",
            stream="case",
            changes=[
                {"action": "opened", "to_stage": "referral"},
                {"action": "transition", "from_stage": "court", "to_stage": "closed"},
            ],
        )
    assert verified(bare).problems == ()
    second = f"seq 2 (case R-9 #2, transition at {STAFF_AT_TEXT})"
    assert verified(bare, deep=True).problems == (
        f"{second}: leaves stage court but the log had the case in referral: an entry between "
        "them is missing or was edited",
        f"case R-9: the log opened it ({second} is its newest entry) but its rows are gone",
    )


def test_verify_against_an_older_checkpoint(bare: sa.Engine, three: list[dict[str, Any]]) -> None:
    """A log grown since its newest checkpoint is a consistent extension of it."""
    root_2 = _merkle.root([_audit.leaf(e["hash"]) for e in three[:2]]).hex()
    options = {"public_key": KEY.public_key()}
    good = verified(bare, checkpoints=[signed(2, root_2, log_id=LOG_ID)], **options)
    assert (good.ok, good.problems, good.checkpoints) == (True, (), 1)
    bad = verified(bare, checkpoints=[signed(2, root_2, log_id="log-2")], **options)
    assert bad.problems == (
        f"checkpoint of 2 entries signed {T1_TEXT}: belongs to another database's log "
        f"(log-2; this log is {LOG_ID})",
    )


def test_read_lists_entries_in_seq_order_not_written_order(
    bare: sa.Engine, three: list[dict[str, Any]]
) -> None:
    """The log's order is its seqs': entries sequenced out of the order written read by seq."""
    events = _schema.audit_events
    for old, new in ((1, 99), (3, 1), (99, 3)):
        tamper(bare, events.update().where(events.c.seq == old).values(seq=new))
    with bare.connect() as conn:
        assert [(e.seq, e.position) for e in _audit.read(conn)] == [(1, 3), (2, 2), (3, 1)]


def test_deep_verify_names_cases_in_reference_order(tmp_path: Path) -> None:
    """Cases whose rows were edited are named in reference order, whatever order they opened in."""
    eng = new_engine(f"sqlite:///{tmp_path / 'cases.db'}")
    try:
        for reference in ("R-3", "R-1", "R-2"):
            open_at(eng, reference, "referral")
        tamper(eng.sqlalchemy_engine, _schema.cases.update().values(site="elsewhere"))
        with eng.sqlalchemy_engine.connect() as conn:
            assert list(_audit.all_case_states(conn)) == ["R-1", "R-2", "R-3"]
            problems = _verify.verify(conn, deep=True).problems
    finally:
        eng.close()
    assert [p.partition(":")[0] for p in problems] == ["case R-1", "case R-2", "case R-3"]
    assert all("its case row differ from what the log recorded after seq " in p for p in problems)


# -- what is sent to PostgreSQL, seen through a stand-in connection --------------------------------


@dataclasses.dataclass
class _Dialect:
    name: str


#: Every statement is shown as PostgreSQL would receive it (SQLite drops ``FOR UPDATE``).
POSTGRESQL: sa.Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]


class _Sent:
    """A connection stand-in of a named dialect: records each statement as that dialect's SQL."""

    def __init__(
        self,
        dialect: str,
        row: Any = None,
        rowcount: int | None = None,
        rows: list[tuple[Any, ...]] | None = None,
    ) -> None:
        self.dialect = _Dialect(dialect)
        self.row = row
        self.rowcount = rowcount
        self.rows = rows or []
        self.sent: list[tuple[str, Any]] = []

    def execute(self, statement: Any, params: Any = None) -> Any:
        sql = str(statement.compile(dialect=POSTGRESQL))
        self.sent.append((sql, params))
        count = len(params) if isinstance(params, list) else 1
        return _Result(self.row, count if self.rowcount is None else self.rowcount, self.rows)


class _Result:
    def __init__(self, row: Any, count: int, rows: list[tuple[Any, ...]]) -> None:
        self.row = row
        self.rowcount = count
        self.rows = rows

    def all(self) -> list[tuple[Any, ...]]:
        return self.rows

    def scalar_one(self) -> Any:
        return self.row

    def one(self) -> Any:
        return self.row

    def first(self) -> Any:
        return self.row

    def __iter__(self) -> Iterator[tuple[int]]:
        return iter([(100 + n,) for n in range(self.rowcount)])


HEAD_ROW = types.SimpleNamespace(
    log_id=LOG_ID,
    size=1,
    root_hash="cd" * 32,
    frontier=["cd" * 32],
    legacy=None,
    length=4,
    head_hash="ef" * 32,
)


@pytest.mark.parametrize(
    ("dialect", "lock", "locks"),
    [("postgresql", True, True), ("postgresql", False, False), ("sqlite", True, False)],
)
def test_log_head_locks_the_row_only_when_asked_on_postgresql(
    dialect: str, lock: bool, locks: bool
) -> None:
    """The sequencer's read of the head takes a row lock on PostgreSQL; other reads take none."""
    conn = _Sent(dialect, HEAD_ROW)
    head = _audit.log_head(conn, lock=lock)  # type: ignore[arg-type]
    assert head == _audit.LogHead(LOG_ID, 1, "cd" * 32, ("cd" * 32,), None)
    [(sql, _)] = conn.sent
    assert sql.endswith(" FOR UPDATE") is locks


def test_log_head_takes_no_lock_by_default() -> None:
    """A plain read of the head (verify's, a checkpoint's) never locks it."""
    conn = _Sent("postgresql", HEAD_ROW)
    _audit.log_head(conn)  # type: ignore[arg-type]
    [(sql, _)] = conn.sent
    assert "FOR UPDATE" not in sql


@pytest.mark.parametrize(("dialect", "locks"), [("postgresql", True), ("sqlite", False)])
def test_chain_head_locks_the_chain_on_postgresql(dialect: str, locks: bool) -> None:
    """A writer reads its chain's head locked on PostgreSQL, naming stream and reference."""
    conn = _Sent(dialect, HEAD_ROW)
    head = _audit.chain_head(conn, "case", "R-1")  # type: ignore[arg-type]
    assert head == _audit.ChainHead(4, "ef" * 32, 4)
    [(sql, params)] = conn.sent
    assert params == {"stream": "case", "reference": "R-1"}
    assert sql.endswith(" FOR UPDATE") is locks


def test_write_entries_on_postgresql_returns_the_inserted_ids() -> None:
    """On PostgreSQL entries are inserted unsequenced and their ids come back in order."""
    conn = _Sent("postgresql")
    entries = [
        _audit.new_entry(
            stream="case",
            reference="R-1",
            position=n,
            prev_hash=PREV,
            at=T1,
            actor_id="a",
            roles=[],
            action="opened",
        )
        for n in (1, 2)
    ]
    head = _audit.ChainHead(2, entries[1]["hash"], None)
    ids = _audit.write_entries(conn, entries, {("case", "R-1"): head})  # type: ignore[arg-type]
    assert ids == [100, 101]
    insert, start = conn.sent
    assert insert[0].startswith("INSERT INTO nimwf_audit_events ")
    assert insert[0].endswith(" RETURNING nimwf_audit_events.id")
    assert insert[1] == entries
    assert [e["seq"] for e in entries] == [None, None]
    assert start[0].startswith("INSERT INTO nimwf_audit_chains ")
    assert start[1] == [
        {"stream": "case", "reference": "R-1", "length": 2, "head_hash": entries[1]["hash"]}
    ]
    assert head.stored == 2


def test_sqlite_writer_refuses_when_the_log_head_moved() -> None:
    """Should the log head move between the writer's read and its update, nothing is written."""
    head = types.SimpleNamespace(backlog=0, size=0, frontier=[])
    conn = _Sent("sqlite", head, rowcount=0)
    entry = _audit.new_entry(
        stream="case",
        reference="R-1",
        position=1,
        prev_hash=PREV,
        at=T1,
        actor_id="a",
        roles=[],
        action="opened",
    )
    chains = {("case", "R-1"): _audit.ChainHead(1, entry["hash"], None)}
    with pytest.raises(RuntimeError, match=r"^the audit log head moved under the sequencer$"):
        _audit.write_entries(conn, [entry], chains)  # type: ignore[arg-type]
    assert [sql.split(" ")[0] for sql, _ in conn.sent] == ["SELECT", "UPDATE"]


def test_postgresql_sequencer_locks_the_head_and_refuses_a_moved_one() -> None:
    """The sequencer locks the head, numbers pending entries after it, or refuses if it moved."""
    pending = [(5, "ab" * 32), (9, "cd" * 32)]
    conn = _Sent("postgresql", HEAD_ROW, rows=pending)
    assert _audit.sequence(conn) == {5: 2, 9: 3}  # type: ignore[arg-type]
    (_, limit), (head_sql, _), (_, assigned), (_, moved) = conn.sent
    assert limit == {"limit": _audit.SEQUENCE_BATCH}
    assert head_sql.endswith(" FOR UPDATE")
    assert assigned == [{"entry_id": 5, "new_seq": 2}, {"entry_id": 9, "new_seq": 3}]
    frontier = _merkle.Frontier.from_json(1, ["cd" * 32])
    frontier.append(_audit.leaf("ab" * 32))
    frontier.append(_audit.leaf("cd" * 32))
    assert moved == {
        "old_size": 1,
        "size": 3,
        "frontier": frontier.to_json(),
        "root_hash": frontier.root().hex(),
    }
    refused = _Sent("postgresql", HEAD_ROW, rowcount=0, rows=pending)
    with pytest.raises(RuntimeError, match=r"^the audit log head moved under the sequencer$"):
        _audit.sequence(refused)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wait", "granted", "sql"),
    [
        (True, True, "SELECT pg_advisory_xact_lock(%(k)s)"),
        (False, True, "SELECT pg_try_advisory_xact_lock(%(k)s)"),
        (False, False, "SELECT pg_try_advisory_xact_lock(%(k)s)"),
    ],
)
def test_sequencer_lock_on_postgresql(wait: bool, granted: bool, sql: str) -> None:
    """The sequencer role is the "nimwseq" advisory lock: waited for, or tried and maybe refused."""
    conn = _Sent("postgresql", granted)
    assert _audit.try_sequencer_lock(conn, wait=wait) is granted  # type: ignore[arg-type]
    assert conn.sent == [(sql, {"k": int.from_bytes(b"nimwseq")})]


def test_sqlite_writer_is_always_the_sequencer() -> None:
    """On SQLite the writer holds the database's write lock, so it is the sequencer already."""
    for wait in (True, False):
        conn = _Sent("sqlite", False)
        assert _audit.try_sequencer_lock(conn, wait=wait) is True  # type: ignore[arg-type]
        assert conn.sent == []
