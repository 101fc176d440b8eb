"""What the verifier remembers between runs (a JSON file): the exchange's
public key (pinned the first time) and every tree head it accepted.

A new head is accepted only if it is consistent with the heads seen before:
the nearest smaller one is proved to be its prefix and it is proved to be the
prefix of the nearest larger one (a consistency proof each, checked offline);
two heads of one size must have one root. Consistency is transitive, so the
heads seen always describe one growing log."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trail_verify.heads import HeadError, TreeHead
from trail_verify.merkle import ProofError, verify_consistency

ConsistencyFetcher = Callable[[int, int], list[bytes]]


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        data: dict[str, Any] = {}
        if path.exists():
            data = json.loads(path.read_text())
        self.server: str | None = data.get("server")
        self.public_key: str | None = data.get("public_key")
        self.heads = [TreeHead.from_json(h) for h in data.get("heads", [])]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "server": self.server,
            "public_key": self.public_key,
            "heads": [h.to_json() for h in sorted(self.heads, key=lambda h: h.tree_size)],
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    @property
    def largest(self) -> TreeHead | None:
        return max(self.heads, key=lambda h: h.tree_size, default=None)

    def check_consistent(self, head: TreeHead, fetch: ConsistencyFetcher) -> list[str]:
        """Raise HeadError unless `head` agrees with every head seen; returns what was proved."""
        proved = []
        for seen in self.heads:
            if seen.tree_size == head.tree_size and seen.root_hash != head.root_hash:
                raise HeadError(
                    f"two different roots for size {head.tree_size}: "
                    f"{seen.root_hash[:16]}… seen before, {head.root_hash[:16]}… now"
                )
        smaller = [h for h in self.heads if h.tree_size < head.tree_size]
        larger = [h for h in self.heads if h.tree_size > head.tree_size]
        pairs = []
        if smaller:
            pairs.append((max(smaller, key=lambda h: h.tree_size), head))
        if larger:
            pairs.append((head, min(larger, key=lambda h: h.tree_size)))
        for old, new in pairs:
            if old.tree_size == 0:
                continue
            try:
                verify_consistency(
                    size1=old.tree_size,
                    size2=new.tree_size,
                    root1=old.root,
                    root2=new.root,
                    proof=fetch(old.tree_size, new.tree_size),
                )
            except ProofError as exc:
                raise HeadError(
                    f"history was rewritten: the log at {new.short()} does not extend "
                    f"the log at {old.short()} ({exc})"
                ) from exc
            proved.append(f"size {old.tree_size} is a prefix of size {new.tree_size}")
        return proved

    def remember(self, head: TreeHead) -> None:
        if all(h != head for h in self.heads):
            self.heads.append(head)
