"""The Merkle tree hash of RFC 9162 §2.1 (the same as RFC 6962's) for an append-only audit log.

Its one job is the tree arithmetic over leaf *hashes* (:func:`leaf_hash` of each entry): the root
of a list of leaves, a compact :class:`Frontier` that keeps an append-only log's root current
without rereading its leaves, and the inclusion (§2.1.3) and consistency (§2.1.4) proofs with
their verification. It is pure: no clock, no database, no engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256
# The one-byte prefixes are the RFC's second-preimage defence: a leaf can never be passed off as an
# interior node (or the reverse), since the two are hashed in different domains.
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HASH_SIZE = 32

EMPTY_ROOT: bytes = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Return the hash of one log entry: SHA-256(0x00 || data)."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the hash of an interior node: SHA-256(0x01 || left || right)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """Return the RFC's split point k: the largest power of two strictly less than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _fold(stack: Sequence[bytes]) -> bytes:
    """Return the root of a compact range: its perfect subtrees, largest (leftmost) first."""
    # MTH(D[n]) = HASH(MTH(D[0:k]) || MTH(D[k:n])) with D[0:k] the largest perfect subtree, so
    # folding from the right reproduces the RFC's recursive split exactly.
    h = stack[-1]
    for i in range(len(stack) - 2, -1, -1):
        h = _sha256(_NODE_PREFIX + stack[i] + h).digest()
    return h


def _range_root(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """Return MTH(leaves[start:end]) without copying the slice or recursing (end > start)."""
    # The stack is the compact range of the leaves seen so far; merging on each carry of the
    # count keeps it at most log2(n) deep, so the whole pass is n - 1 node hashes.
    stack: list[bytes] = []
    push = stack.append
    pop = stack.pop
    sha256 = _sha256
    prefix = _NODE_PREFIX
    for count in range(end - start):
        h = leaves[start + count]
        while count & 1:
            h = sha256(prefix + pop() + h).digest()
            count >>= 1
        push(h)
    return _fold(stack)


def root(leaves: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash of the leaf hashes ``leaves``; ``EMPTY_ROOT`` when empty."""
    if not leaves:
        return EMPTY_ROOT
    return _range_root(leaves, 0, len(leaves))


def _check_hash(value: bytes, what: str) -> bytes:
    """Return ``value`` as ``bytes`` if it is a SHA-256 digest; raise ``ValueError`` otherwise."""
    if not isinstance(value, bytes | bytearray) or len(value) != _HASH_SIZE:
        raise ValueError(f"{what} must be a {_HASH_SIZE}-byte SHA-256 hash")
    return bytes(value)


class Frontier:
    """The compact range of an append-only Merkle tree: its right-edge perfect subtrees' roots.

    A tree of ``size`` leaves splits uniquely into perfect subtrees, one per set bit of ``size``,
    largest first; their roots (at most log2(size) hashes) are all that later appends and the
    current root depend on. A log can therefore persist just ``size`` and these hashes, and keep
    its root current in O(log n) work per append without rereading any leaf.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Start from a tree of ``size`` leaves whose compact range is ``hashes``, largest first."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"frontier size must be a non-negative integer, not {size!r}")
        if len(hashes) != size.bit_count():
            # One hash per set bit: anything else cannot be the frontier of a tree of this size,
            # and accepting it would silently give every later root the wrong shape.
            raise ValueError(
                f"a frontier of size {size} has {size.bit_count()} hashes, not {len(hashes)}"
            )
        self._size = size
        self._hashes = [_check_hash(h, "frontier hash") for h in hashes]

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The roots of the right-edge perfect subtrees, largest (leftmost) first."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Append one leaf, given as its leaf hash (:func:`leaf_hash` of the entry)."""
        # The fast path skips the copy: appends are the log's hot loop.
        h = leaf if type(leaf) is bytes and len(leaf) == _HASH_SIZE else _check_hash(leaf, "leaf")
        hashes = self._hashes
        # Each trailing set bit of the old size is a perfect subtree the same height as the carry
        # being built, so they merge exactly as binary addition carries.
        count = self._size
        while count & 1:
            h = _sha256(_NODE_PREFIX + hashes.pop() + h).digest()
            count >>= 1
        hashes.append(h)
        self._size += 1

    def root(self) -> bytes:
        """Return the Merkle Tree Hash of the leaves appended so far (``EMPTY_ROOT`` when none)."""
        if not self._hashes:
            return EMPTY_ROOT
        return _fold(self._hashes)

    def to_json(self) -> list[str]:
        """Return the hashes as lowercase hex strings, for storing beside :attr:`size`."""
        return [h.hex() for h in self._hashes]

    @classmethod
    def from_json(cls, size: int, data: Sequence[str]) -> Frontier:
        """Rebuild a frontier from :attr:`size` and :meth:`to_json`; ``ValueError`` if malformed."""
        if isinstance(data, str):
            # A lone string is a sequence of characters: refuse it rather than read it as hashes.
            raise ValueError("frontier data must be a list of hex strings, not a string")
        hashes: list[bytes] = []
        for item in data:
            if not isinstance(item, str):
                raise ValueError(f"frontier hash must be a hex string, not {item!r}")
            hashes.append(bytes.fromhex(item))
        return cls(size, hashes)

    def __repr__(self) -> str:
        """Show the size and root, enough to compare two frontiers by eye."""
        return f"Frontier(size={self._size}, root={self.root().hex()})"


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Return PATH(index, D[n]) of RFC 9162 §2.1.3.1 over the leaf hashes ``leaves``.

    The audit path is ordered from the leaf upwards, as :func:`verify_inclusion` expects. Raises
    ``ValueError`` unless ``0 <= index < len(leaves)``.
    """
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is not in a tree of {n} leaves")
    # Walking down the RFC's recursion from the root yields the path top-down; the sibling
    # subtrees hashed along the way are disjoint, so the whole proof costs O(n), not O(n log n).
    path: list[bytes] = []
    start, end = 0, n
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index - start < k:
            path.append(_range_root(leaves, start + k, end))
            end = start + k
        else:
            path.append(_range_root(leaves, start, start + k))
            start += k
    path.reverse()
    return path


def verify_inclusion(
    index: int, size: int, leaf: bytes, root: bytes, proof: Sequence[bytes]
) -> bool:
    """Return whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree ``(size, root)``.

    This is the algorithm of RFC 9162 §2.1.3.2. It returns ``False``, never raises, on any
    mismatch: an index out of range, a wrong hash, or a proof of the wrong length. ``size`` is
    trusted, not proved: some proofs also verify against a smaller size with the same root, so
    take the size and root from the same signed checkpoint.
    """
    if index < 0 or index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            # More path than the tree is tall: a padded proof must not verify.
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A left child equal to the last node of its level has no right sibling: the RFC
            # promotes it unchanged through the levels where it has no pair.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[n]) of RFC 9162 §2.1.4.1 over the leaf hashes ``leaves``.

    Empty when ``old_size`` is 0 or ``len(leaves)`` (nothing to prove). Raises ``ValueError``
    unless ``0 <= old_size <= len(leaves)``.
    """
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} is not between 0 and the tree's size {n}")
    if old_size in (0, n):
        return []
    # SUBPROOF appends one hash per level after recursing, so walking down collects the proof in
    # reverse; ``whole`` is the RFC's flag b: true while the old tree is still a whole left
    # subtree whose root the verifier already has.
    proof: list[bytes] = []
    start, end, m, whole = 0, n, old_size, True
    while m != end - start:
        k = _largest_power_of_two_below(end - start)
        if m <= k:
            proof.append(_range_root(leaves, start + k, end))
            end = start + k
        else:
            proof.append(_range_root(leaves, start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        proof.append(_range_root(leaves, start, end))
    proof.reverse()
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Return whether ``proof`` shows the tree ``(old_size, old_root)`` is a prefix of the new one.

    This is the algorithm of RFC 9162 §2.1.4.2. Equal sizes need an empty proof and equal roots;
    an old size of 0 needs an empty proof (every tree extends the empty one). It returns
    ``False``, never raises, on any mismatch, including a proof of the wrong length. The sizes
    are trusted, not proved (a proof from 4 to 8 leaves also verifies from 4 to 5 with the same
    roots), so take each size and root from the same signed checkpoint.
    """
    if old_size < 0 or new_size < old_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect left subtree of the new one, so the proof omits its root,
        # which the verifier already holds.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
