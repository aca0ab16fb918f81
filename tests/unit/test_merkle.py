"""RFC 9162 trees: every proof the stored-subtree builder makes verifies with the RFC's
algorithms against the RFC's recursive root, for every size and index; any altered hash,
index or size fails."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from consent.domain import merkle


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"entry {i}".encode()) for i in range(n)]


def store(ls: list[bytes]) -> merkle.NodeLookup:
    """Complete subtrees as the sequencer stores them: built incrementally, batch by batch."""
    nodes = {(0, i): h for i, h in enumerate(ls)}
    size = 0
    for step in (1, 3, 2, 7, 5):
        new = min(len(ls), size + step)
        for level, i in merkle.parents_to_add(size, new):
            nodes[(level, i)] = merkle.node_hash(
                nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)]
            )
        size = new
    while size < len(ls):
        new = len(ls)
        for level, i in merkle.parents_to_add(size, new):
            nodes[(level, i)] = merkle.node_hash(
                nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)]
            )
        size = new
    return lambda level, index: nodes[(level, index)]


def test_known_values() -> None:
    """RFC 6962/9162 conventions: the empty tree hashes the empty string; one leaf is its
    leaf hash; two leaves are 0x01 || l || r."""
    assert merkle.empty_root().hex() == hashlib.sha256(b"").hexdigest()
    a, b = leaves(2)
    assert merkle.root_of([a]) == a
    assert merkle.root_of([a, b]) == hashlib.sha256(b"\x01" + a + b).digest()
    assert a == hashlib.sha256(b"\x00entry 0").digest()


@given(st.integers(1, 130), st.data())
def test_every_inclusion_proof_verifies(size: int, data: st.DataObject) -> None:
    ls = leaves(size)
    node = store(ls)
    index = data.draw(st.integers(0, size - 1))
    root = merkle.root_of(ls)
    assert merkle.range_hash(0, size, node) == root
    proof = merkle.inclusion_proof(index, size, node)
    assert merkle.verify_inclusion(index, size, ls[index], proof, root)
    # anything altered fails
    other = (index + 1) % size
    if other != index:
        assert not merkle.verify_inclusion(other, size, ls[index], proof, root)
        assert not merkle.verify_inclusion(index, size, ls[other], proof, root)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof]
        bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
        assert not merkle.verify_inclusion(index, size, ls[index], bad, root)
        assert not merkle.verify_inclusion(index, size, ls[index], proof[:-1], root)
    assert not merkle.verify_inclusion(index, size, ls[index], [*proof, root], root)


@given(st.integers(1, 130), st.data())
def test_every_consistency_proof_verifies(new: int, data: st.DataObject) -> None:
    ls = leaves(new)
    node = store(ls)
    old = data.draw(st.integers(1, new))
    old_root, new_root = merkle.root_of(ls[:old]), merkle.root_of(ls)
    proof = merkle.consistency_proof(old, new, node)
    assert merkle.verify_consistency(old, new, old_root, new_root, proof)
    if old < new:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof]
        bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]
        assert not merkle.verify_consistency(old, new, old_root, new_root, bad)
        forked = merkle.root_of([*ls[: old - 1], merkle.leaf_hash(b"rewritten")])
        assert not merkle.verify_consistency(old, new, forked, new_root, proof)
        assert not merkle.verify_consistency(old, new, old_root, new_root, [])


def test_proofs_read_log_n_nodes() -> None:
    """A proof reads O(log² n) stored nodes at most, never the log."""
    size = 1_000_003
    wanted = merkle.nodes_needed(lambda node: merkle.inclusion_proof(123_457, size, node))
    assert len(wanted) <= 20 * 20
    wanted = merkle.nodes_needed(lambda node: merkle.consistency_proof(77_777, size, node))
    assert len(wanted) <= 20 * 20
