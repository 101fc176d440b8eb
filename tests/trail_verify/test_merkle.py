"""Both Merkle implementations against RFC 6962's test vectors and each other:
the exchange's (billing.trail.tree, the RFC's recursive definitions) and the
standalone verifier's (trail_verify.merkle, RFC 9162's iterative checks)."""

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.trail.tree import Tree, consistency_proof, inclusion_path, leaf_hash, mth
from tests.trail_verify.vectors import CONSISTENCY, INCLUSION, LEAVES, ROOTS
from trail_verify import merkle

HASHES = [leaf_hash(leaf) for leaf in LEAVES]


def _h(values):
    return [bytes.fromhex(v) for v in values]


def test_leaf_and_node_hashes_are_domain_separated():
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest() == leaf_hash(b"")
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@pytest.mark.parametrize("size", sorted(ROOTS))
def test_roots_of_every_prefix_are_the_rfc_roots(size):
    assert mth(HASHES[:size]).hex() == ROOTS[size]
    assert merkle.root_of(HASHES[:size]).hex() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_are_the_rfc_paths_and_verify(index, size, path):
    assert [p.hex() for p in inclusion_path(index, HASHES[:size])] == path

    merkle.verify_inclusion(
        index=index,
        size=size,
        leaf_hash_=HASHES[index],
        proof=_h(path),
        root=bytes.fromhex(ROOTS[size]),
    )


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_consistency_proofs_are_the_rfc_proofs_and_verify(size1, size2, proof):
    assert [p.hex() for p in consistency_proof(size1, HASHES[:size2])] == proof

    merkle.verify_consistency(
        size1=size1,
        size2=size2,
        root1=bytes.fromhex(ROOTS[size1]),
        root2=bytes.fromhex(ROOTS[size2]),
        proof=_h(proof),
    )


def test_a_wrong_leaf_index_root_or_proof_is_refused():
    index, size, path = INCLUSION[1]
    root = bytes.fromhex(ROOTS[size])
    wrong = [
        {"index": index + 1},
        {"leaf_hash_": HASHES[index + 1]},
        {"root": bytes.fromhex(ROOTS[size - 1])},
        {"proof": _h(path)[:-1]},
        {"proof": [*_h(path), _h(path)[0]]},
        {"size": size - 2},
    ]
    for change in wrong:
        args = {"index": index, "size": size, "leaf_hash_": HASHES[index], "proof": _h(path)}
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(**{"root": root, **args, **change})


def test_a_rewritten_history_fails_the_consistency_proof():
    """Leaf 2 changed after the size-6 head was seen: the size-8 tree built on the
    rewritten leaves does not extend the tree that was signed at size 6."""
    rewritten = [*HASHES[:2], leaf_hash(b"rewritten"), *HASHES[3:]]
    honest_root6 = bytes.fromhex(ROOTS[6])
    forged = Tree(rewritten)

    with pytest.raises(merkle.ProofError, match="root seen at size 6"):
        merkle.verify_consistency(
            size1=6, size2=8, root1=honest_root6, root2=forged.mth(), proof=forged.proof(6)
        )


@settings(max_examples=60, deadline=None)
@given(
    leaves=st.lists(st.binary(max_size=6), min_size=1, max_size=80),
    data=st.data(),
)
def test_every_proof_of_any_tree_verifies_with_the_other_implementation(leaves, data):
    hashes = [leaf_hash(leaf) for leaf in leaves]
    size = len(hashes)
    tree = Tree(hashes)
    root = tree.mth()
    assert merkle.root_of(hashes) == root
    index = data.draw(st.integers(0, size - 1))
    merkle.verify_inclusion(
        index=index, size=size, leaf_hash_=hashes[index], proof=tree.path(index), root=root
    )
    size1 = data.draw(st.integers(0, size))
    merkle.verify_consistency(
        size1=size1, size2=size, root1=mth(hashes[:size1]), root2=root, proof=tree.proof(size1)
    )
