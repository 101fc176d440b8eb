"""Reading the trail: leaves, inclusion proofs and consistency proofs, each
against a signed tree head's size (a proof against a size nobody signed
proves nothing to anyone)."""

import threading
from collections import OrderedDict
from dataclasses import dataclass

from billing.models import TrailLeaf, TreeHead
from billing.trail import log, tree
from core.errors import ApplicationError, NotFound

# Trees of signed sizes this process has built, newest last: a signed size's leaves
# never change (append-only), so its subtree hashes serve every later proof.
# Keyed by the signed head (size and root), so a tree is only reused for the same leaves.
_TREES: OrderedDict[tuple[int, str], tree.Tree] = OrderedDict()
_TREES_KEPT = 3
_TREES_LOCK = threading.Lock()


def _tree(head: TreeHead) -> tree.Tree:
    key = (head.tree_size, head.root_hash)
    with _TREES_LOCK:
        found = _TREES.get(key)
        if found is None:
            found = _TREES[key] = tree.Tree(log.leaf_hashes(head.tree_size))
            while len(_TREES) > _TREES_KEPT:
                _TREES.popitem(last=False)
        _TREES.move_to_end(key)
        return found


@dataclass(frozen=True)
class Inclusion:
    leaf: TrailLeaf
    head: TreeHead
    path: list[str]


def _head(tree_size: int | None) -> TreeHead:
    heads = TreeHead.objects.order_by("-tree_size", "-timestamp", "-pk")
    if tree_size is not None:
        heads = heads.filter(tree_size=tree_size)
    head = heads.first()
    if head is None:
        raise NotFound("No signed tree head of that size.")
    return head


def leaf_find(*, index: int | None = None, kind: str = "", record_id: int | None = None):
    leaves = TrailLeaf.objects.all()
    if index is not None:
        leaf = leaves.filter(index=index).first()
    elif kind and record_id is not None:
        leaf = leaves.filter(kind=kind, record_id=record_id).first()
    else:
        raise ApplicationError(
            "Name the leaf.", errors={"index": ["Give an index, or a kind and a record id."]}
        )
    if leaf is None:
        raise NotFound("That record is not in the trail (yet).")
    return leaf


def inclusion_proof(*, leaf: TrailLeaf, tree_size: int | None = None) -> Inclusion:
    """The audit path of `leaf` in the tree of a signed head (the latest by default)."""
    head = _head(tree_size)
    if leaf.index >= head.tree_size:
        raise NotFound(
            f"Leaf {leaf.index} was logged after the tree head of size {head.tree_size}."
        )
    path = _tree(head).path(leaf.index)
    return Inclusion(leaf, head, [h.hex() for h in path])


def consistency_proof(*, first: int, second: int) -> list[str]:
    """PROOF(first, D[second]) between two signed sizes."""
    if first > second:
        raise ApplicationError(
            "The sizes are out of order.", errors={"first": ["Must not exceed second."]}
        )
    if first:
        _head(first)
    return [h.hex() for h in _tree(_head(second)).proof(first)]
