"""The RFC 9162 Merkle tree hash, frontier and proofs agree with the RFC and refuse forgeries.

Every result is checked against an independent oracle written here straight from the RFC's
recursive definitions on list slices (using ``hashlib`` directly, not the module's hash helpers),
and against the RFC 6962 test vectors used by Certificate Transparency implementations.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nim_workflow import _merkle as merkle

# --- The oracle: RFC 9162 §2.1 transcribed literally ------------------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two strictly less than n (n > 1), found the slow, obvious way."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def oracle_leaf(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return _sha(b"\x00" + data)


def oracle_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves."""
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return d[0]
    k = _k(n)
    return _sha(b"\x01" + oracle_mth(d[:k]) + oracle_mth(d[k:]))


def oracle_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of §2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*oracle_path(m, d[:k]), oracle_mth(d[k:])]
    return [*oracle_path(m - k, d[k:]), oracle_mth(d[:k])]


def oracle_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of §2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [oracle_mth(d)]
    k = _k(n)
    if m <= k:
        return [*oracle_subproof(m, d[:k], b), oracle_mth(d[k:])]
    return [*oracle_subproof(m - k, d[k:], False), oracle_mth(d[:k])]


def oracle_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of §2.1.4.1 (0 < m <= n)."""
    return oracle_subproof(m, d, True)


def oracle_path_length(m: int, n: int) -> int:
    """len(PATH(m, D[n])), by the same recursion without hashing."""
    if n == 1:
        return 0
    k = _k(n)
    return 1 + (oracle_path_length(m, k) if m < k else oracle_path_length(m - k, n - k))


def oracle_proof_length(m: int, n: int, b: bool = True) -> int:
    """len(SUBPROOF(m, D[n], b)), by the same recursion without hashing."""
    if m == n:
        return 0 if b else 1
    k = _k(n)
    return 1 + (
        oracle_proof_length(m, k, b) if m <= k else oracle_proof_length(m - k, n - k, False)
    )


# --- Fixtures of data --------------------------------------------------------------------------


def make_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct leaf hashes; a different salt gives a wholly different tree of the same size."""
    return [oracle_leaf(salt + i.to_bytes(4, "big")) for i in range(n)]


LEAVES = make_leaves(200)
OTHER = make_leaves(200, salt=b"other")
PROOF_MAX = 64  # every proof over trees up to this size is generated and attacked
BYTEWISE_MAX = 20  # up to this size every byte of every proof element is flipped

# The RFC 6962 test vectors (certificate-transparency merkle_tree_test.cc, and the Go ports).
KAT_DATA = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
KAT_LEAVES = [oracle_leaf(x) for x in KAT_DATA]
KAT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
KAT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
KAT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def flip(h: bytes, i: int, bit: int = 1) -> bytes:
    """h with one bit of byte i changed."""
    return h[:i] + bytes([h[i] ^ bit]) + h[i + 1 :]


def tampered(proof: list[bytes], bytewise: bool) -> Iterator[list[bytes]]:
    """Every proof one edit away: a byte flipped, an element dropped, an element added."""
    for j, element in enumerate(proof):
        positions = range(len(element)) if bytewise else (0, j % 32, 31)
        for i in positions:
            yield [*proof[:j], flip(element, i), *proof[j + 1 :]]
        yield proof[:j] + proof[j + 1 :]
    extras = [b"\x00" * 32, oracle_leaf(b"extra"), *proof[:1], *proof[-1:]]
    for extra in extras:
        for j in range(len(proof) + 1):
            yield [*proof[:j], extra, *proof[j:]]


# --- Hashes and roots --------------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    """EMPTY_ROOT is SHA-256 of the empty string."""
    assert _sha(b"") == merkle.EMPTY_ROOT
    assert merkle.EMPTY_ROOT.hex() == KAT_ROOTS[0]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    """leaf_hash prefixes 0x00 and node_hash 0x01, so a leaf never hashes like a node."""
    left, right = _sha(b"l"), _sha(b"r")
    assert merkle.leaf_hash(b"abc") == _sha(b"\x00abc")
    assert merkle.node_hash(left, right) == _sha(b"\x01" + left + right)
    assert merkle.leaf_hash(left + right) != merkle.node_hash(left, right)
    assert merkle.node_hash(left, right) != merkle.node_hash(right, left)


@pytest.mark.parametrize("n", range(131))
def test_root_matches_the_rfc_definition(n: int) -> None:
    """root() equals the RFC's recursive MTH for every tree size 0..130."""
    assert merkle.root(LEAVES[:n]) == oracle_mth(LEAVES[:n])


@pytest.mark.parametrize("seed", range(4))
def test_root_matches_the_rfc_definition_for_larger_random_trees(seed: int) -> None:
    """root() equals the RFC's MTH for random sizes up to a few thousand leaves."""
    rng = random.Random(seed)
    n = rng.randrange(131, 5000)
    leaves = [rng.randbytes(32) for _ in range(n)]
    assert merkle.root(leaves) == oracle_mth(leaves)


def test_root_accepts_any_sequence_and_leaves_it_unchanged() -> None:
    """root() reads a tuple as well as a list and does not modify its argument."""
    leaves = tuple(LEAVES[:13])
    assert merkle.root(leaves) == oracle_mth(leaves)
    assert leaves == tuple(LEAVES[:13])


@pytest.mark.parametrize(("size", "expected"), sorted(KAT_ROOTS.items()))
def test_root_known_answers(size: int, expected: str) -> None:
    """root() reproduces the RFC 6962 test-vector roots for sizes 0..8."""
    assert oracle_mth(KAT_LEAVES[:size]).hex() == expected  # the vector itself is right
    assert merkle.root(KAT_LEAVES[:size]).hex() == expected


# --- The frontier ------------------------------------------------------------------------------


def test_frontier_root_matches_the_rfc_definition_after_every_append() -> None:
    """Frontier.root() equals the RFC's MTH after each of 130 appends, and at size 0."""
    frontier = merkle.Frontier()
    assert frontier.size == 0
    assert frontier.root() == merkle.EMPTY_ROOT
    for n in range(1, 131):
        frontier.append(LEAVES[n - 1])
        assert frontier.size == n
        assert frontier.root() == oracle_mth(LEAVES[:n])


@pytest.mark.parametrize("seed", range(3))
def test_frontier_root_matches_the_rfc_definition_for_larger_random_trees(seed: int) -> None:
    """Frontier.root() equals the RFC's MTH after thousands of random appends."""
    rng = random.Random(100 + seed)
    leaves = [rng.randbytes(32) for _ in range(rng.randrange(131, 5000))]
    frontier = merkle.Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert frontier.size == len(leaves)
    assert frontier.root() == oracle_mth(leaves)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 13, 64, 100])
def test_frontier_hashes_are_the_right_edge_perfect_subtree_roots(n: int) -> None:
    """Frontier.hashes holds one perfect-subtree root per set bit of the size, largest first."""
    frontier = merkle.Frontier()
    for leaf in LEAVES[:n]:
        frontier.append(leaf)
    expected, start = [], 0
    for bit in reversed(range(n.bit_length())):
        if n >> bit & 1:
            expected.append(oracle_mth(LEAVES[start : start + (1 << bit)]))
            start += 1 << bit
    assert frontier.hashes == tuple(expected)
    assert len(frontier.hashes) == n.bit_count()


@pytest.mark.parametrize("n", [0, 1, 5, 8, 63, 100])
def test_frontier_survives_a_json_round_trip(n: int) -> None:
    """A frontier rebuilt from to_json() has the same root and grows identically afterwards."""
    frontier = merkle.Frontier()
    for leaf in LEAVES[:n]:
        frontier.append(leaf)
    stored = json.dumps({"size": frontier.size, "frontier": frontier.to_json()})
    loaded = json.loads(stored)
    rebuilt = merkle.Frontier.from_json(loaded["size"], loaded["frontier"])
    assert all(isinstance(h, str) and len(h) == 64 for h in loaded["frontier"])
    assert rebuilt.size == n
    assert rebuilt.hashes == frontier.hashes
    assert rebuilt.root() == oracle_mth(LEAVES[:n])
    for m in range(n, n + 40):
        rebuilt.append(LEAVES[m])
        assert rebuilt.root() == oracle_mth(LEAVES[: m + 1])


def test_frontier_from_hashes_continues_a_tree() -> None:
    """Frontier(size, hashes) built from another's state continues that tree's roots."""
    original = merkle.Frontier()
    for leaf in LEAVES[:11]:
        original.append(leaf)
    copy = merkle.Frontier(original.size, original.hashes)
    copy.append(LEAVES[11])
    assert copy.root() == oracle_mth(LEAVES[:12])
    assert original.root() == oracle_mth(LEAVES[:11])  # the copy shares no state


@pytest.mark.parametrize(
    ("size", "count"), [(0, 1), (1, 0), (1, 2), (2, 2), (3, 1), (7, 2), (8, 2), (12, 3)]
)
def test_frontier_refuses_a_hash_count_that_does_not_fit_the_size(size: int, count: int) -> None:
    """Frontier() raises ValueError unless there is exactly one hash per set bit of the size."""
    with pytest.raises(ValueError, match="hashes"):
        merkle.Frontier(size, LEAVES[:count])


@pytest.mark.parametrize(
    ("size", "hashes"),
    [
        (-1, []),
        (1, [b"\x00" * 31]),
        (1, [b"\x00" * 33]),
        (3, [LEAVES[0], "a" * 32]),
    ],
)
def test_frontier_refuses_a_malformed_state(size: int, hashes: list[bytes]) -> None:
    """Frontier() raises ValueError on a negative size or a hash that is not 32 bytes."""
    with pytest.raises(ValueError, match="frontier"):
        merkle.Frontier(size, hashes)


@pytest.mark.parametrize(
    ("size", "data", "match"),
    [
        (1, ["zz" * 32], "hex"),
        (1, ["00" * 31], "32-byte"),
        (1, ["00" * 32, "00" * 32], "has 1 hashes, not 2"),
        (2, "00" * 32, "not a string"),
        (1, [b"\x00" * 32], "hex string"),
    ],
)
def test_frontier_from_json_refuses_malformed_data(size: int, data: list[str], match: str) -> None:
    """Frontier.from_json raises ValueError on bad hex, wrong lengths, counts or types."""
    with pytest.raises(ValueError, match=match):
        merkle.Frontier.from_json(size, data)


@pytest.mark.parametrize("leaf", [b"", b"\x00" * 31, b"\x00" * 33, "0" * 32])
def test_frontier_append_refuses_something_that_is_not_a_leaf_hash(leaf: bytes) -> None:
    """Frontier.append raises ValueError, and changes nothing, unless given a 32-byte hash."""
    frontier = merkle.Frontier()
    frontier.append(LEAVES[0])
    with pytest.raises(ValueError, match="leaf"):
        frontier.append(leaf)
    assert frontier.size == 1
    assert frontier.root() == LEAVES[0]


# --- Consistency proofs ------------------------------------------------------------------------


def test_consistency_proofs_match_the_rfc_definition() -> None:
    """consistency_proof equals the RFC's PROOF(m, D[n]) for all 0 < m < n <= 64."""
    for n in range(1, PROOF_MAX + 1):
        for m in range(1, n):
            proof = merkle.consistency_proof(LEAVES[:n], m)
            assert proof == oracle_proof(m, LEAVES[:n]), (m, n)
            assert len(proof) == oracle_proof_length(m, n), (m, n)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 64])
def test_consistency_proof_is_empty_from_nothing_or_to_the_same_size(n: int) -> None:
    """consistency_proof is empty when the old size is 0 or the whole tree."""
    assert merkle.consistency_proof(LEAVES[:n], 0) == []
    assert merkle.consistency_proof(LEAVES[:n], n) == []


@pytest.mark.parametrize(("n", "old_size"), [(0, 1), (5, 6), (5, -1), (0, -1)])
def test_consistency_proof_refuses_an_old_size_out_of_range(n: int, old_size: int) -> None:
    """consistency_proof raises ValueError when the old size is negative or past the tree."""
    with pytest.raises(ValueError, match="old size"):
        merkle.consistency_proof(LEAVES[:n], old_size)


def test_consistency_proofs_verify() -> None:
    """Every proof for 0 <= m <= n <= 64 verifies against the two true roots."""
    for n in range(PROOF_MAX + 1):
        new_root = oracle_mth(LEAVES[:n])
        for m in range(n + 1):
            proof = merkle.consistency_proof(LEAVES[:n], m)
            old_root = oracle_mth(LEAVES[:m])
            assert merkle.verify_consistency(m, n, old_root, new_root, proof), (m, n)


def test_consistency_proofs_one_edit_away_fail() -> None:
    """Flipping a byte of, dropping or adding any proof element makes verification fail."""
    for n in range(1, PROOF_MAX + 1):
        new_root = oracle_mth(LEAVES[:n])
        for m in range(1, n + 1):
            old_root = oracle_mth(LEAVES[:m])
            proof = merkle.consistency_proof(LEAVES[:n], m)
            for bad in tampered(proof, bytewise=n <= BYTEWISE_MAX):
                assert not merkle.verify_consistency(m, n, old_root, new_root, bad), (m, n, bad)


def test_consistency_proofs_fail_against_the_wrong_roots() -> None:
    """Swapped roots, or either root taken from a different tree, make verification fail."""
    for n in range(1, PROOF_MAX + 1):
        new_root, other_new = oracle_mth(LEAVES[:n]), oracle_mth(OTHER[:n])
        for m in range(1, n + 1):
            old_root, other_old = oracle_mth(LEAVES[:m]), oracle_mth(OTHER[:m])
            proof = merkle.consistency_proof(LEAVES[:n], m)
            verify = merkle.verify_consistency
            assert not verify(m, n, other_old, new_root, proof), (m, n)
            assert not verify(m, n, old_root, other_new, proof), (m, n)
            if m < n:  # at m == n the empty proof rightly accepts any tree against itself
                assert not verify(m, n, new_root, old_root, proof), (m, n)
                assert not verify(m, n, other_old, other_new, proof), (m, n)


def test_consistency_proof_of_another_tree_fails() -> None:
    """A proof generated over a different tree does not verify this tree's roots."""
    for n in range(2, PROOF_MAX + 1):
        for m in range(1, n):
            proof = merkle.consistency_proof(OTHER[:n], m)
            old_root, new_root = oracle_mth(LEAVES[:m]), oracle_mth(LEAVES[:n])
            assert not merkle.verify_consistency(m, n, old_root, new_root, proof), (m, n)


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_n", "new_n", "proof", "expected"),
    [
        (0, 0, 0, 0, [], True),
        (0, 5, 0, 5, [], True),
        (0, 5, 0, 5, [b"\x00" * 32], False),
        (5, 5, 5, 5, [], True),
        (5, 5, 5, 6, [], False),
        (5, 5, 5, 5, [b"\x00" * 32], False),
        (6, 5, 5, 5, [], False),
        (-1, 5, 0, 5, [], False),
        (3, 5, 3, 5, [], False),
    ],
)
def test_consistency_edge_cases(
    old_size: int, new_size: int, old_n: int, new_n: int, proof: list[bytes], expected: bool
) -> None:
    """Equal sizes need no proof and equal roots, size 0 needs no proof, bad sizes fail."""
    old_root, new_root = oracle_mth(LEAVES[:old_n]), oracle_mth(LEAVES[:new_n])
    assert merkle.verify_consistency(old_size, new_size, old_root, new_root, proof) is expected


@pytest.mark.parametrize(("m", "n", "expected"), KAT_CONSISTENCY)
def test_consistency_known_answers(m: int, n: int, expected: list[str]) -> None:
    """consistency_proof reproduces, and verify_consistency accepts, the RFC 6962 vectors."""
    assert [h.hex() for h in oracle_proof(m, KAT_LEAVES[:n])] == expected  # the vector is right
    proof = merkle.consistency_proof(KAT_LEAVES[:n], m)
    assert [h.hex() for h in proof] == expected
    old_root, new_root = bytes.fromhex(KAT_ROOTS[m]), bytes.fromhex(KAT_ROOTS[n])
    assert merkle.verify_consistency(m, n, old_root, new_root, [bytes.fromhex(h) for h in expected])


def test_crafted_consistency_proof_for_a_negative_old_size_fails() -> None:
    """A negative old size is refused even with a proof whose hashes would otherwise check out."""
    root2 = oracle_mth(LEAVES[:2])
    assert not merkle.verify_consistency(-1, 2, LEAVES[0], root2, [LEAVES[0], LEAVES[1]])


def test_consistency_proofs_only_verify_at_sizes_needing_their_length() -> None:
    """A proof checked against a new size whose proofs are longer or shorter fails."""
    for n in range(1, PROOF_MAX + 1):
        new_root = oracle_mth(LEAVES[:n])
        for m in range(1, n):
            old_root = oracle_mth(LEAVES[:m])
            proof = merkle.consistency_proof(LEAVES[:n], m)
            for size in range(m + 1, PROOF_MAX + 1):
                if oracle_proof_length(m, size) != len(proof):
                    assert not merkle.verify_consistency(m, size, old_root, new_root, proof)


def test_padded_consistency_proofs_fail_even_when_the_padding_hashes_to_the_roots() -> None:
    """An element past the top of the new tree is refused, not hashed into forged roots."""
    forged = oracle_leaf(b"pad")
    for n in range(2, PROOF_MAX + 1):
        for m in range(1, n):
            old_root, new_root = oracle_mth(LEAVES[:m]), oracle_mth(LEAVES[:n])
            proof = [*merkle.consistency_proof(LEAVES[:n], m), forged]
            fake_old = _sha(b"\x01" + forged + old_root)
            fake_new = _sha(b"\x01" + forged + new_root)
            assert not merkle.verify_consistency(m, n, fake_old, fake_new, proof), (m, n)
            assert not merkle.verify_consistency(m, n, old_root, fake_new, proof), (m, n)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.binary(max_size=8), min_size=1, max_size=300),
    cut=st.floats(min_value=0, max_value=1),
)
def test_a_growing_frontier_is_consistent_with_its_past(data: list[bytes], cut: float) -> None:
    """Roots a frontier reported earlier are provably consistent with its root now."""
    leaves = [merkle.leaf_hash(x) for x in data]
    m = int(cut * len(leaves))
    frontier = merkle.Frontier()
    for leaf in leaves[:m]:
        frontier.append(leaf)
    old_root = frontier.root()
    for leaf in leaves[m:]:
        frontier.append(leaf)
    proof = merkle.consistency_proof(leaves, m)
    assert frontier.root() == oracle_mth(leaves)
    assert merkle.verify_consistency(m, len(leaves), old_root, frontier.root(), proof)


# --- Inclusion proofs --------------------------------------------------------------------------


def test_inclusion_proofs_match_the_rfc_definition() -> None:
    """inclusion_proof equals the RFC's PATH(m, D[n]) for all 0 <= m < n <= 64."""
    for n in range(1, PROOF_MAX + 1):
        for m in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], m)
            assert proof == oracle_path(m, LEAVES[:n]), (m, n)
            assert len(proof) == oracle_path_length(m, n), (m, n)


@pytest.mark.parametrize(("n", "index"), [(0, 0), (1, 1), (5, 5), (5, -1)])
def test_inclusion_proof_refuses_an_index_out_of_range(n: int, index: int) -> None:
    """inclusion_proof raises ValueError unless 0 <= index < n."""
    with pytest.raises(ValueError, match="index"):
        merkle.inclusion_proof(LEAVES[:n], index)


def test_inclusion_proofs_verify() -> None:
    """Every leaf's proof in every tree up to 64 leaves verifies against the true root."""
    for n in range(1, PROOF_MAX + 1):
        tree_root = oracle_mth(LEAVES[:n])
        for m in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], m)
            assert merkle.verify_inclusion(m, n, LEAVES[m], tree_root, proof), (m, n)


def test_inclusion_proofs_one_edit_away_fail() -> None:
    """Flipping a byte of, dropping or adding any proof element makes verification fail."""
    for n in range(1, PROOF_MAX + 1):
        tree_root = oracle_mth(LEAVES[:n])
        for m in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], m)
            for bad in tampered(proof, bytewise=n <= BYTEWISE_MAX):
                assert not merkle.verify_inclusion(m, n, LEAVES[m], tree_root, bad), (m, n, bad)


def test_inclusion_proofs_fail_for_the_wrong_leaf_root_or_proof() -> None:
    """Another leaf, a root from a different tree, or another tree's proof fails to verify."""
    for n in range(1, PROOF_MAX + 1):
        tree_root, other_root = oracle_mth(LEAVES[:n]), oracle_mth(OTHER[:n])
        for m in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], m)
            verify = merkle.verify_inclusion
            assert not verify(m, n, OTHER[m], tree_root, proof), (m, n)
            assert not verify(m, n, flip(LEAVES[m], 31), tree_root, proof), (m, n)
            assert not verify(m, n, LEAVES[m], other_root, proof), (m, n)
            if n > 1:  # a one-leaf tree's root is its leaf, so only then can they swap
                assert not verify(m, n, tree_root, LEAVES[m], proof), (m, n)
                other_proof = merkle.inclusion_proof(OTHER[:n], m)
                assert not verify(m, n, LEAVES[m], tree_root, other_proof), (m, n)


@pytest.mark.parametrize(
    ("index", "size", "true_index"), [(0, 0, None), (3, 3, 2), (4, 3, 2), (-1, 2, 1), (-1, 4, 3)]
)
def test_inclusion_fails_for_an_index_outside_the_tree(
    index: int, size: int, true_index: int | None
) -> None:
    """verify_inclusion returns False, without raising, for an index not in the tree.

    The proof is a real one for another index, so only the range check can refuse it: -1 walks
    the same path as the last leaf of a perfect tree.
    """
    tree = LEAVES[:size]
    proof = [] if true_index is None else merkle.inclusion_proof(tree, true_index)
    leaf = LEAVES[0 if true_index is None else true_index]
    assert not merkle.verify_inclusion(index, size, leaf, oracle_mth(tree), proof)


def test_inclusion_proofs_only_verify_at_a_size_needing_their_length() -> None:
    """A proof checked against a size whose paths are longer or shorter fails, same root or not."""
    for n in range(1, PROOF_MAX + 1):
        tree_root = oracle_mth(LEAVES[:n])
        for m in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], m)
            for size in range(m + 1, PROOF_MAX + 1):
                if oracle_path_length(m, size) != len(proof):
                    assert not merkle.verify_inclusion(m, size, LEAVES[m], tree_root, proof)


def test_padded_inclusion_proofs_fail_even_when_the_padding_hashes_to_the_root() -> None:
    """An element past the top of the tree is refused, not hashed into a forged root."""
    forged = oracle_leaf(b"pad")
    for n in range(1, PROOF_MAX + 1):
        tree_root = oracle_mth(LEAVES[:n])
        fake_roots = (_sha(b"\x01" + forged + tree_root), _sha(b"\x01" + tree_root + forged))
        for m in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], m)
            for fake_root in fake_roots:
                assert not merkle.verify_inclusion(m, n, LEAVES[m], fake_root, [*proof, forged])


@pytest.mark.parametrize(("index", "n", "expected"), KAT_INCLUSION)
def test_inclusion_known_answers(index: int, n: int, expected: list[str]) -> None:
    """inclusion_proof reproduces, and verify_inclusion accepts, the RFC 6962 vectors."""
    assert [h.hex() for h in oracle_path(index, KAT_LEAVES[:n])] == expected  # the vector is right
    proof = merkle.inclusion_proof(KAT_LEAVES[:n], index)
    assert [h.hex() for h in proof] == expected
    tree_root = bytes.fromhex(KAT_ROOTS[n])
    path = [bytes.fromhex(h) for h in expected]
    assert merkle.verify_inclusion(index, n, KAT_LEAVES[index], tree_root, path)
