"""Verifying the audit log: every entry, every chain, the Merkle tree, the checkpoints, the state.

One pass over the entries in the order written recomputes each entry's hash and walks each chain;
the sequenced entries rebuild the Merkle tree, which must match the log head and be a consistent
extension of every signed checkpoint (RFC 9162 consistency proof against the newest one, the
tree root at every checkpoint's size). A deep verify also replays each case's chain (stage
continuity, version count) and compares the state digests the entries recorded with the rows as
they are now, and replays each trial family's chain (status, arm, allocation, children, visits
held) against the family's rows. Every problem says what is wrong, where, and since when;
nothing here raises for a problem found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection

from nim_workflow import _audit, _merkle
from nim_workflow._checkpoint import Checkpoint, key_id, signature_valid
from nim_workflow._store._schema import (
    GENESIS_HASH,
    audit_chains,
    cases,
    families,
    family_children,
    visits,
)
from nim_workflow._values import AuditReport

#: Stands in for a missing entry's leaf: any root over it differs from the signed one.
_MISSING = bytes(32)


@dataclass(slots=True)
class _Chain:
    length: int = 0
    hash: str = GENESIS_HASH
    last_seq: int | None = None
    unsequenced: bool = False
    state: Mapping[str, str] | None = None
    state_where: str = ""
    opened: bool = False
    version: int = 0
    stage: str | None = None
    last_where: str = ""


@dataclass(slots=True)
class _Findings:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.problems.append(text)


def _where(row: Mapping[str, Any]) -> str:
    seq = row["seq"]
    place = f"seq {seq}" if seq is not None else f"unsequenced entry {row['id']}"
    at = _audit.instant(row["at"])
    return (
        f"{place} ({row['stream']} {row['reference']} #{row['position']}, {row['action']} at {at})"
    )


def _changed(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    names = [
        _audit.STATE_LABELS.get(name, name)
        for name in _audit.STATE_TABLES
        if before.get(name) != after.get(name)
    ]
    return ", ".join(names) or "rows"


def verify(
    conn: Connection,
    *,
    deep: bool = False,
    checkpoints: Sequence[Checkpoint] = (),
    checkpoint_problems: Iterable[str] = (),
    public_key: Ed25519PublicKey | None = None,
) -> AuditReport:
    """Check the whole log; see the module docstring."""
    found = _Findings()
    found.problems.extend(checkpoint_problems)
    chains: dict[tuple[str, str], _Chain] = {}
    families_seen: dict[str, _FamilyChain] = {}
    leaves: dict[int, bytes] = {}
    checked = 0
    for row in _audit.all_entries(conn):
        checked += 1
        where = _where(row)
        if _audit.entry_hash(row) != row["hash"]:
            found.add(f"{where}: its contents do not match its hash: the entry was edited")
        key = (row["stream"], row["reference"])
        chain = chains.setdefault(key, _Chain())
        if row["position"] != chain.length + 1:
            found.add(
                f"{where}: is entry {row['position']} of its chain where entry "
                f"{chain.length + 1} was expected: entries were removed or reordered"
                + (f" after {chain.last_where}" if chain.last_where else "")
            )
        elif row["prev_hash"] != chain.hash:
            found.add(
                f"{where}: does not follow the chain's entry before it (prev_hash differs): "
                "an entry before it was replaced"
            )
        chain.length, chain.hash, chain.last_where = row["position"], row["hash"], where
        _check_sequencing(found, chain, row, where, leaves)
        if deep and row["stream"] == "case":
            _replay(found, chain, row, where)
        elif deep and row["stream"] == "family":
            _replay_family(families_seen, row, where)
    head = _audit.log_head(conn)
    # The sequenced leaves in seq order, and their root, built once for the head and checkpoints.
    ordered = [leaves.get(n, _MISSING) for n in range(1, max(leaves, default=0) + 1)]
    root = _merkle.root(ordered)
    size = _check_log(found, head, leaves, root)
    _check_chain_heads(found, conn, chains)
    if checkpoints:
        _check_checkpoints(found, head.log_id, checkpoints, ordered, root, public_key)
    if deep:
        _check_state(found, conn, chains)
        _check_families(found, conn, families_seen)
    if head.legacy is not None and not head.legacy.get("ok", True):
        text = "before per-case chains (migration 0004) " + str(head.legacy.get("summary", ""))
        if head.legacy.get("defect_only"):
            found.notes.append(text)
        else:
            found.add(text)
    return AuditReport(
        ok=not found.problems,
        checked=checked,
        problems=tuple(found.problems),
        notes=tuple(found.notes),
        sequenced=size,
        checkpoints=len(checkpoints),
        deep=deep,
    )


def _check_sequencing(
    found: _Findings,
    chain: _Chain,
    row: Mapping[str, Any],
    where: str,
    leaves: dict[int, bytes],
) -> None:
    seq = row["seq"]
    if seq is None:
        chain.unsequenced = True
        return
    if chain.unsequenced:
        found.add(f"{where}: sequenced although an earlier entry of its chain is not")
    if chain.last_seq is not None and seq <= chain.last_seq:
        found.add(
            f"{where}: sequenced before the chain's earlier entry seq {chain.last_seq}: "
            "the log was reordered"
        )
    chain.last_seq = seq
    if seq in leaves:
        found.add(f"{where}: seq {seq} is given to two entries")
    leaves[seq] = _audit.leaf(row["hash"])


def _ranges(numbers: Sequence[int]) -> str:
    spans: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(spans)


def _check_log(
    found: _Findings, head: _audit.LogHead, leaves: Mapping[int, bytes], root: bytes
) -> int:
    """The sequenced log must be gapless and match its head row; returns its size."""
    size = max(leaves, default=0)
    missing = [n for n in range(1, size + 1) if n not in leaves]
    if missing:
        found.add(
            f"the log is missing seq {_ranges(missing)}: entries were deleted "
            f"(the log runs to seq {size})"
        )
    if head.size != size:
        found.add(
            f"the log head says the log holds {head.size} entries but it holds {size}: "
            + (
                "entries were removed from its end, or the head was rewritten"
                if head.size > size
                else "entries were added behind the sequencer's back"
            )
        )
    if not missing and head.size == size and root.hex() != head.root_hash:
        found.add(
            "the log head's Merkle root does not match the entries: an entry or the head "
            "was rewritten"
        )
    try:
        frontier = _merkle.Frontier.from_json(head.size, head.frontier)
        frontier_ok = frontier.root().hex() == head.root_hash
    except ValueError:
        frontier_ok = False
    if not frontier_ok:
        found.add("the log head's compact range does not match its root: the head was edited")
    return size


def _check_chain_heads(
    found: _Findings, conn: Connection, chains: Mapping[tuple[str, str], _Chain]
) -> None:
    recorded = {
        (row.stream, row.reference): (row.length, row.head_hash)
        for row in conn.execute(sa.select(audit_chains))
    }
    for key, chain in chains.items():
        head = recorded.get(key)
        if head is None:
            found.add(f"{key[0]} {key[1]}: has entries but no chain head row")
        elif head != (chain.length, chain.hash):
            found.add(
                f"{key[0]} {key[1]}: the chain head says {head[0]} entries, the log has "
                f"{chain.length}: entries were removed from its end (last kept: "
                f"{chain.last_where}), or the head was rewritten"
            )
    for key in recorded.keys() - chains.keys():
        found.add(f"{key[0]} {key[1]}: its chain head names entries the log does not hold")


def _check_checkpoints(
    found: _Findings,
    log_id: str,
    checkpoints: Sequence[Checkpoint],
    ordered: Sequence[bytes],
    root: bytes,
    public_key: Ed25519PublicKey | None,
) -> None:
    size = len(ordered)
    given_key = key_id(public_key) if public_key is not None else None
    usable: list[Checkpoint] = []
    for cp in checkpoints:
        name = f"checkpoint of {cp.size} entries signed {_audit.instant(cp.signed_at)}"
        if public_key is None:
            found.add(f"{name}: no public key given to check its signature")
            continue
        if not signature_valid(cp, public_key):
            hint = (
                f"it names key {cp.key_id}, the public key given is {given_key}: wrong public key"
                if cp.key_id != given_key
                else "the checkpoint was edited after it was signed"
            )
            found.add(f"{name}: its signature does not verify ({hint})")
            continue
        if cp.log_id != log_id:
            found.add(
                f"{name}: belongs to another database's log ({cp.log_id}; this log is {log_id})"
            )
            continue
        usable.append(cp)
    usable.sort(key=lambda c: (c.size, c.signed_at))
    wanted = {cp.size for cp in usable if cp.size <= size}
    roots: dict[int, str] = {0: _merkle.EMPTY_ROOT.hex()} if 0 in wanted else {}
    frontier = _merkle.Frontier()
    for n, leaf in enumerate(ordered, start=1):
        frontier.append(leaf)
        if n in wanted:
            roots[n] = frontier.root().hex()
    good: Checkpoint | None = None
    for cp in usable:
        name = f"checkpoint of {cp.size} entries signed {_audit.instant(cp.signed_at)}"
        if cp.size > size:
            found.add(
                f"{name}: the log now holds only {size} entries: entries signed for were "
                "removed since then"
            )
            continue
        if roots.get(cp.size) != cp.root_hash:
            since = (
                f"the checkpoint of {good.size} signed {_audit.instant(good.signed_at)} still "
                f"matches, so an entry between seq {good.size + 1} and seq {cp.size} was changed"
                if good is not None
                else f"an entry at or before seq {cp.size} was changed"
            )
            found.add(f"{name}: the log is not a consistent extension of it ({since})")
            continue
        good = cp
    if good is not None and good.size < size:
        proof = _merkle.consistency_proof(ordered, good.size)
        if not _merkle.verify_consistency(
            good.size, size, bytes.fromhex(good.root_hash), root, proof
        ):  # pragma: no cover - the roots were compared above; this is the RFC's own proof
            found.add("the consistency proof from the newest checkpoint does not verify")


def _state_of(value: Any) -> Mapping[str, str] | None:
    """A recorded state digest, or an empty one if an edit left it malformed (its hash says so)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    return {}


def _replay(found: _Findings, chain: _Chain, row: Mapping[str, Any], where: str) -> None:
    """Replay one case entry: stage continuity, the case's version, and its state digests."""
    action = row["action"]
    reference = row["reference"]
    prior = _state_of(row["prior_state"])
    if prior is not None and chain.state is not None and prior != chain.state:
        found.add(
            f"case {reference}: its {_changed(chain.state, prior)} were changed outside the "
            f"engine between {chain.state_where} and {where}"
        )
    state = _state_of(row["state"])
    if state is not None:
        chain.state, chain.state_where = state, where
    if action == "opened":
        chain.opened, chain.version, chain.stage = True, 1, row["to_stage"]
        return
    if action not in _audit.CASE_ACTIONS or not chain.opened:
        return
    if row["from_stage"] is not None and row["from_stage"] != chain.stage:
        found.add(
            f"{where}: leaves stage {row['from_stage']} but the log had the case in "
            f"{chain.stage}: an entry between them is missing or was edited"
        )
    chain.version += 1
    if row["to_stage"] is not None:
        chain.stage = row["to_stage"]


def _check_state(
    found: _Findings, conn: Connection, chains: Mapping[tuple[str, str], _Chain]
) -> None:
    """Compare every case's rows now with what its chain's newest entry recorded."""
    states = _audit.all_case_states(conn)
    rows = {
        r.reference: r
        for r in conn.execute(sa.select(cases.c.reference, cases.c.version, cases.c.stage))
    }
    for reference, state in states.items():
        chain = chains.get(("case", reference))
        if chain is None or not chain.opened:
            found.add(
                f"case {reference}: has rows but the log never opened it: written outside "
                "the engine"
            )
            continue
        row = rows.get(reference)
        if row is None:
            found.add(f"case {reference}: has deadline or interval rows but no case row")
            continue
        if row.version != chain.version or row.stage != chain.stage:
            found.add(
                f"case {reference}: the case row says version {row.version} in stage "
                f"{row.stage}, the log implies version {chain.version} in stage {chain.stage} "
                f"(its newest entry: {chain.last_where})"
            )
        if chain.state is not None and dict(state) != dict(chain.state):
            found.add(
                f"case {reference}: its {_changed(chain.state, state)} differ from what the "
                f"log recorded after {chain.state_where}: changed outside the engine since then"
            )
    for (stream, reference), chain in chains.items():
        if stream == "case" and chain.opened and reference not in states:
            found.add(
                f"case {reference}: the log opened it ({chain.last_where} is its newest entry) "
                "but its rows are gone"
            )


# -- the trial's families ----------------------------------------------------------------------


@dataclass
class _FamilyChain:
    """A family as its own chain of entries has it: what its rows must still say."""

    opened_where: str
    status: str
    arm: str | None = None
    allocation_id: str | None = None
    randomised_on: str | None = None
    children: list[str] = field(default_factory=list)
    #: ``(visit, subject)`` -> the date it was held, as recorded.
    held: dict[tuple[str, str], str] = field(default_factory=dict)
    last_where: str = ""


def _replay_family(seen: dict[str, _FamilyChain], row: Mapping[str, Any], where: str) -> None:
    """Replay one family entry onto what the family's rows must say.

    An entry whose detail was edited fails its hash check already; replaying it reads what it
    can and never raises.
    """
    action, reference = row["action"], row["reference"]
    detail = row["detail"] if isinstance(row["detail"], Mapping) else {}
    if action == "family_opened":
        seen[reference] = _FamilyChain(
            opened_where=where,
            status=str(detail.get("status")),
            children=list(detail.get("children") or ()),
        )
    family = seen.get(reference)
    if family is None:
        return
    family.last_where = where
    if action == "child_added":
        family.children.append(str(detail.get("child")))
    elif action == "allocated":
        family.arm, family.allocation_id = detail.get("arm"), detail.get("allocation_id")
        family.randomised_on, family.status = detail.get("randomised_on"), str(detail.get("status"))
    elif action == "status_changed":
        family.status = str(detail.get("to"))
    elif action == "visit_recorded":
        for subject in detail.get("subjects") or ():
            family.held[(str(detail.get("visit")), subject)] = str(detail.get("held_on"))


def _check_families(found: _Findings, conn: Connection, seen: Mapping[str, _FamilyChain]) -> None:
    """Compare every family's rows now with what its chain recorded."""
    rows = {row.reference: row for row in conn.execute(sa.select(families))}
    children: dict[str, list[str]] = {}
    for child in conn.execute(
        sa.select(family_children.c.family, family_children.c.reference).order_by(
            family_children.c.joined_at, family_children.c.reference
        )
    ):
        children.setdefault(child.family, []).append(child.reference)
    held: dict[str, dict[tuple[str, str], str]] = {}
    for visit in conn.execute(
        sa.select(visits.c.family, visits.c.name, visits.c.subject, visits.c.held_on).where(
            visits.c.held_on.is_not(None)
        )
    ):
        held.setdefault(visit.family, {})[(visit.name, visit.subject)] = visit.held_on.isoformat()
    for reference in sorted(rows.keys() - seen.keys()):
        found.add(
            f"family {reference}: has a row but the log never opened it: written outside the engine"
        )
    for reference, family in sorted(seen.items()):
        row = rows.get(reference)
        if row is None:
            found.add(
                f"family {reference}: the log opened it ({family.opened_where}) but its row is gone"
            )
            continue
        stored = (
            row.status,
            row.arm,
            row.allocation_id,
            None if row.randomised_on is None else row.randomised_on.isoformat(),
        )
        logged = (family.status, family.arm, family.allocation_id, family.randomised_on)
        if stored != logged:
            found.add(
                f"family {reference}: its row says {_family_words(stored)}, the log says "
                f"{_family_words(logged)} (its newest entry: {family.last_where})"
            )
        stored_children = children.get(reference, [])
        if sorted(stored_children) != sorted(family.children):
            found.add(
                f"family {reference}: its children are {', '.join(stored_children) or 'none'}, "
                f"the log says {', '.join(family.children) or 'none'}: changed outside the engine"
            )
        if held.get(reference, {}) != family.held:
            found.add(
                f"family {reference}: its visits held differ from the visits the log recorded: "
                "changed outside the engine"
            )


def _family_words(values: tuple[str | None, ...]) -> str:
    status, arm, allocation_id, randomised_on = values
    return (
        f"status {status}, arm {arm or '(none)'}, allocation {allocation_id or '(none)'}, "
        f"randomised on {randomised_on or '(not yet)'}"
    )
