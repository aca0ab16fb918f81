"""RFC 9162 Merkle trees (Certificate Transparency v2): hashing, inclusion and consistency
proofs, and their verification.

The tree over the ledger is stored as its complete subtrees: ``node(level, index)`` is the
hash of leaves ``[index * 2**level, (index + 1) * 2**level)``. Any range the proofs need is
built from O(log n) of them (``range_hash``), so a proof never costs a pass over the log.
The verifiers are the RFC's algorithms (sections 2.1.3.2 and 2.1.4.2) and need nothing but
``hashlib``: they are what an auditor runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

NodeLookup = Callable[[int, int], bytes]  # (level, index) → stored complete-subtree hash


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def empty_root() -> bytes:
    return hashlib.sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, by the RFC's recursive definition (the reference)."""
    n = len(leaves)
    if n == 0:
        return empty_root()
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


def range_hash(lo: int, hi: int, node: NodeLookup) -> bytes:
    """MTH of leaves ``[lo, hi)`` where ``lo`` is aligned to the range's split (every range
    the RFC's recursions produce is): stored complete subtrees, plus at most log n node
    hashes along the right edge."""
    n = hi - lo
    if n <= 0:
        return empty_root()
    if n & (n - 1) == 0:  # a complete subtree, stored as such
        level = n.bit_length() - 1
        return node(level, lo >> level)
    k = _split(n)
    return node_hash(range_hash(lo, lo + k, node), range_hash(lo + k, hi, node))


def inclusion_proof(index: int, size: int, node: NodeLookup) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1, leaf first."""
    if not 0 <= index < size:
        raise ValueError("index outside the tree")

    def path(m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*path(m, lo, lo + k), range_hash(lo + k, hi, node)]
        return [*path(m - k, lo + k, hi), range_hash(lo, lo + k, node)]

    return path(index, 0, size)


def consistency_proof(old_size: int, new_size: int, node: NodeLookup) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 section 2.1.4.1."""
    if not 0 < old_size <= new_size:
        raise ValueError("need 0 < old_size <= new_size")

    def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [range_hash(lo, hi, node)]
        k = _split(n)
        if m <= k:
            return [*subproof(m, lo, lo + k, complete), range_hash(lo + k, hi, node)]
        return [*subproof(m - k, lo + k, hi, False), range_hash(lo, lo + k, node)]

    return subproof(old_size, 0, new_size, True)


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root a proof leads to (raises if it is malformed)."""
    if not 0 <= index < size:
        raise ValueError("index outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    try:
        return root_from_inclusion(index, size, leaf, proof) == root
    except ValueError:
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2."""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
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
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def parents_to_add(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The complete subtrees (level ≥ 1, index) that appending leaves ``[old_size,
    new_size)`` completes, lowest level first: what the sequencer stores."""
    out = []
    level = 1
    while (new_size >> level) > 0:
        out += [(level, i) for i in range(old_size >> level, new_size >> level)]
        level += 1
    return out


def nodes_needed(fn: Callable[[NodeLookup], object]) -> set[tuple[int, int]]:
    """Which stored nodes ``fn`` reads: the proofs' shapes depend only on sizes and
    indices, so one dry run tells a store what to fetch in one query."""
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return b"\x00" * 32

    fn(record)
    return wanted
