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
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from engine_helpers import new_engine, open_at

import nim_workflow as nw
from nim_workflow import _audit, _checkpoint, _merkle, _verify

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
