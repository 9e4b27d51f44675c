"""Merkle tree, inclusion and consistency proofs against a direct transcription of RFC 9162 §2.1
(recursive MTH / PATH / PROOF) for every tree size up to 70, plus known-answer vectors."""

from __future__ import annotations

from hashlib import sha256

import pytest

from zistboom.exchange_log import merkle


def ref_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = merkle.largest_pow2_below(n)
    return sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = merkle.largest_pow2_below(n)
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_mth(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = merkle.largest_pow2_below(n)
    if m <= k:
        return ref_subproof(m, leaves[:k], b) + [ref_mth(leaves[k:])]
    return ref_subproof(m - k, leaves[k:], False) + [ref_mth(leaves[:k])]


LEAVES = [merkle.leaf_hash(f"record {i}".encode()) for i in range(70)]


def mth_of(leaves):
    return lambda a, b: ref_mth(leaves[a:b])


def test_known_answers():
    # RFC 6962 hashes: empty tree and a one-leaf tree over the empty string.
    assert merkle.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert merkle.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    # Certificate Transparency's test vector (merkle_tree_test.cc): 8 leaves from the RFC 6962 test data.
    data = [bytes.fromhex(x) for x in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f"]]
    root = merkle.root_from_leaves([merkle.leaf_hash(d) for d in data])
    assert root.hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize("n", range(1, 71))
def test_roots_and_inclusion(n):
    leaves = LEAVES[:n]
    f = merkle.Frontier()
    for h in leaves:
        f.append(h)
    root = ref_mth(leaves)
    assert f.root() == root
    assert merkle.Frontier.from_bytes(n, f.to_bytes()).root() == root
    for m in range(n):
        path = merkle.inclusion_path(m, n, mth_of(leaves))
        assert path == ref_path(m, leaves)
        merkle.verify_inclusion(m, n, leaves[m], path, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(m, n, LEAVES[69] if m != 69 else LEAVES[0], path, root)
        if n > 1:
            with pytest.raises(merkle.ProofError):
                merkle.verify_inclusion((m + 1) % n, n, leaves[m], path, root)
            with pytest.raises(merkle.ProofError):
                merkle.verify_inclusion(m, n, leaves[m], path[:-1], root)


@pytest.mark.parametrize("n", range(1, 71, 3))
def test_consistency(n):
    new = LEAVES[:n]
    new_root = ref_mth(new)
    for m in range(1, n + 1):
        path = merkle.consistency_path(m, n, mth_of(new))
        assert path == ref_subproof(m, new, True)
        old_root = ref_mth(new[:m])
        merkle.verify_consistency(m, n, old_root, new_root, path)
        if m < n:
            with pytest.raises(merkle.ProofError):
                merkle.verify_consistency(m, n, LEAVES[69], new_root, path)
            with pytest.raises(merkle.ProofError):
                merkle.verify_consistency(m, n, old_root, LEAVES[69], path)
            # A forked history (leaf m-1 replaced) is not consistent.
            forked = ref_mth(new[: m - 1] + [LEAVES[69]])
            with pytest.raises(merkle.ProofError):
                merkle.verify_consistency(m, n, forked, new_root, path)


def test_frontier_reports_nodes():
    f = merkle.Frontier()
    nodes = {}
    for h in LEAVES[:64]:
        for lv, ix, hh in f.append(h, want_nodes_from=2) or []:
            nodes[(lv, ix)] = hh
    assert nodes[(6, 0)] == ref_mth(LEAVES[:64])
    assert nodes[(2, 3)] == ref_mth(LEAVES[12:16])
    assert len(nodes) == 16 + 8 + 4 + 2 + 1
