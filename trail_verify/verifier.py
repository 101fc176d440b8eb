"""The verifier's moves, each checked offline before anything is believed:
accept a signed tree head, prove a leaf is in a tree, recompute a whole tree."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trail_verify.client import TrailClient
from trail_verify.heads import HeadError, TreeHead, key_id, verify_signature
from trail_verify.merkle import ProofError, leaf_hash, root_of, verify_inclusion
from trail_verify.state import State

PAGE = 1000


class VerificationFailed(Exception):
    """Something the exchange showed does not hold."""


@dataclass(frozen=True)
class Leaf:
    index: int
    kind: str
    record_id: int
    body: dict[str, Any]
    hash: str


class Verifier:
    def __init__(self, client: TrailClient, state: State, *, public_key: str | None = None):
        self.client = client
        self.state = state
        self.notes: list[str] = []
        self._pin(public_key)

    def _pin(self, given: str | None) -> None:
        if given:
            given = given.lower()
            if self.state.public_key and self.state.public_key != given:
                raise VerificationFailed(
                    "the public key given differs from the one pinned in the state file"
                )
            self.state.public_key = given
        if not self.state.public_key:
            published = self.client.public_key()["public_key"].lower()
            self.state.public_key = published
            self.notes.append(
                f"pinned the exchange's published key {key_id(bytes.fromhex(published))} "
                "(trust on first use: compare it with the key the exchange gave you on paper)"
            )

    @property
    def public_key(self) -> bytes:
        assert self.state.public_key
        return bytes.fromhex(self.state.public_key)

    def accept_head(self, data: dict[str, Any]) -> tuple[TreeHead, list[str]]:
        """A head is accepted if signed by the pinned key and consistent with every
        head seen before; it is then remembered."""
        try:
            head = TreeHead.from_json(data)
            verify_signature(head, self.public_key)
            proved = self.state.check_consistent(head, self.client.consistency)
        except HeadError as exc:
            raise VerificationFailed(str(exc)) from exc
        self.state.remember(head)
        return head, proved

    def leaf(
        self,
        head: TreeHead,
        *,
        kind: str | None = None,
        record_id: int | None = None,
        index: int | None = None,
    ) -> Leaf:
        """The leaf, proved to be in the tree of `head` (its hash recomputed from its body)."""
        answer = self.client.inclusion(
            tree_size=head.tree_size, kind=kind, record_id=record_id, index=index
        )
        leaf = answer["leaf"]
        body_bytes = leaf["leaf"].encode()
        digest = leaf_hash(body_bytes)
        what = f"{leaf['kind']} {leaf['record_id']} (leaf {leaf['index']})"
        if digest.hex() != leaf["leaf_hash"]:
            raise VerificationFailed(f"{what}: its hash is not the hash of its contents")
        try:
            verify_inclusion(
                index=int(leaf["index"]),
                size=head.tree_size,
                leaf_hash_=digest,
                proof=[bytes.fromhex(p) for p in answer["proof"]],
                root=head.root,
            )
        except ProofError as exc:
            raise VerificationFailed(f"{what}: not in the signed tree ({exc})") from exc
        body = json.loads(body_bytes)
        if (kind and body.get("kind") != kind) or (record_id and body.get("id") != record_id):
            raise VerificationFailed(f"{what}: the leaf is about another record")
        return Leaf(int(leaf["index"]), leaf["kind"], int(leaf["record_id"]), body, digest.hex())

    def replay(self, head: TreeHead) -> list[Leaf]:
        """Download every leaf of `head`'s tree and recompute its root: the whole
        log, proved at once (no proof needed: every hash is recomputed here)."""
        leaves: list[Leaf] = []
        while len(leaves) < head.tree_size:
            start = len(leaves)
            page = self.client.leaves(start, min(start + PAGE, head.tree_size))
            if not page:
                raise VerificationFailed(f"the exchange stopped at leaf {start}")
            for offset, leaf in enumerate(page):
                if leaf["index"] != start + offset:
                    raise VerificationFailed(f"leaf {start + offset} is missing")
                body = leaf["leaf"].encode()
                leaves.append(
                    Leaf(
                        leaf["index"],
                        leaf["kind"],
                        leaf["record_id"],
                        json.loads(body),
                        leaf_hash(body).hex(),
                    )
                )
        root = root_of([bytes.fromhex(leaf.hash) for leaf in leaves])
        if root != head.root:
            raise VerificationFailed(
                f"the {head.tree_size} leaves served hash to {root.hex()[:16]}…, "
                f"not to the signed root {head.root_hash[:16]}…"
            )
        return leaves
