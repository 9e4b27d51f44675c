"""Merkle tree hashing, inclusion and consistency proofs in the RFC 6962 / RFC 9162 layout
(Certificate Transparency).

This is the project's core, so it is written here rather than taken from a library: the few
Python CT libraries either pull in the whole CT client stack or are unmaintained, and the
algorithms are short and fully specified.

* leaf hash  ``MTH({d}) = SHA-256(0x00 || d)``                        (RFC 9162 §2.1.1)
* node hash  ``SHA-256(0x01 || left || right)``                        (RFC 9162 §2.1.1)
* tree of n > 1 leaves splits at ``k`` = the largest power of two < n   (RFC 9162 §2.1.1)
* inclusion proof generation / verification                            (RFC 9162 §2.1.3)
* consistency proof generation / verification                          (RFC 9162 §2.1.4)

All hashes are 32-byte ``bytes``. Proof generation takes a ``mth(start, end)`` callable giving the
Merkle Tree Hash of leaves ``[start, end)``, so a store can serve it from cached interior nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

HASH_LEN = 32
EMPTY_ROOT = sha256(b"").digest()


class ProofError(ValueError):
    """A proof does not verify (wrong shape or wrong hashes)."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right).digest()


def largest_pow2_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of a list of *leaf hashes* (reference implementation, O(n))."""
    if not leaves:
        return EMPTY_ROOT
    f = Frontier()
    for h in leaves:
        f.append(h)
    return f.root()


class Frontier:
    """The right edge of an append-only tree: the roots of its perfect subtrees, left to right
    (the "compact range" of RFC 9162 / Trillian). Appending is amortised one node hash per leaf;
    the root of the current tree is O(log n).

    ``append`` returns the interior nodes it completed as ``(level, index, hash)`` where the node
    covers leaves ``[index * 2**level, (index + 1) * 2**level)`` — only when ``want_nodes_from``
    is set and ``level >= want_nodes_from``.
    """

    __slots__ = ("size", "stack")

    def __init__(self, size: int = 0, stack: list[bytes] | None = None):
        self.size = size
        self.stack = list(stack or [])
        if len(self.stack) != bin(size).count("1"):
            raise ValueError(f"frontier of size {size} must hold {bin(size).count('1')} hashes, not {len(self.stack)}")

    def append(self, h: bytes, want_nodes_from: int | None = None) -> list[tuple[int, int, bytes]] | None:
        stack = self.stack
        stack.append(h)
        self.size += 1
        s = self.size
        level = 0
        made = None
        while not s & 1:
            r = stack.pop()
            stack[-1] = sha256(b"\x01" + stack[-1] + r).digest()
            s >>= 1
            level += 1
            if want_nodes_from is not None and level >= want_nodes_from:
                if made is None:
                    made = []
                made.append((level, s - 1, stack[-1]))
        return made

    def root(self) -> bytes:
        """Merkle Tree Hash of the current tree (SHA-256 of empty string when empty)."""
        stack = self.stack
        if not stack:
            return EMPTY_ROOT
        r = stack[-1]
        for h in reversed(stack[:-1]):
            r = sha256(b"\x01" + h + r).digest()
        return r

    def to_bytes(self) -> bytes:
        return b"".join(self.stack)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> Frontier:
        if len(blob) % HASH_LEN:
            raise ValueError("frontier blob length is not a multiple of 32")
        return cls(size, [blob[i : i + HASH_LEN] for i in range(0, len(blob), HASH_LEN)])

    def copy(self) -> Frontier:
        return Frontier(self.size, self.stack)


# ---------------------------------------------------------------------------------------------
# Proof generation (RFC 9162 §2.1.3.1 and §2.1.4.1)

MTH = Callable[[int, int], bytes]


def inclusion_path(index: int, size: int, mth: MTH) -> list[bytes]:
    """Audit path PATH(m, D[n]) for leaf ``index`` in the tree of the first ``size`` leaves.

    Raises ``ValueError`` when ``index`` is not in ``[0, size)``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} not in tree of size {size}")
    path: list[bytes] = []
    start, end, m = 0, size, index
    # Iterative form of PATH(m, D[start:end]); siblings are collected top-down then reversed.
    while end - start > 1:
        k = largest_pow2_below(end - start)
        if m < k:
            path.append(mth(start + k, end))
            end = start + k
        else:
            path.append(mth(start, start + k))
            start += k
            m -= k
    path.reverse()
    return path


def consistency_path(old_size: int, new_size: int, mth: MTH) -> list[bytes]:
    """PROOF(m, D[n]) that the tree of ``old_size`` leaves is a prefix of the one of ``new_size``.

    Raises ``ValueError`` unless ``0 < old_size <= new_size``.
    """
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    out: list[bytes] = []

    def sub(m: int, start: int, end: int, b: bool) -> None:
        n = end - start
        if m == n:
            if not b:
                out.append(mth(start, end))
            return
        k = largest_pow2_below(n)
        if m <= k:
            sub(m, start, start + k, b)
            out.append(mth(start + k, end))
        else:
            sub(m - k, start + k, end, False)
            out.append(mth(start, start + k))

    sub(old_size, 0, new_size, True)
    return out


# ---------------------------------------------------------------------------------------------
# Proof verification (RFC 9162 §2.1.3.2 and §2.1.4.2)


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """Recompute the root from a leaf hash and its audit path; raises :class:`ProofError` when the
    path has the wrong shape for ``(index, size)``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} not in tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if len(p) != HASH_LEN:
            raise ProofError("proof hash is not 32 bytes")
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`ProofError` unless ``leaf`` is at ``index`` in the tree with ``root``."""
    if root_from_inclusion(index, size, leaf, path) != root:
        raise ProofError("inclusion proof does not lead to the signed root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]) -> None:
    """Raise :class:`ProofError` unless the tree ``(old_size, old_root)`` is a prefix of
    ``(new_size, new_root)`` according to ``path`` (RFC 9162 §2.1.4.2)."""
    if old_size < 0 or old_size > new_size:
        raise ProofError(f"bad sizes {old_size} -> {new_size}")
    if any(len(p) != HASH_LEN for p in path):
        raise ProofError("proof hash is not 32 bytes")
    if old_size == new_size:
        if path or old_root != new_root:
            raise ProofError("equal sizes need an empty proof and equal roots")
        return
    if old_size == 0:
        if path:
            raise ProofError("consistency from the empty tree needs an empty proof")
        return
    if not path:
        raise ProofError("empty consistency proof")
    path = list(path)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = sha256(b"\x01" + c + fr).digest()
            sr = sha256(b"\x01" + c + sr).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")
