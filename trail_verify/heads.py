"""Signed tree heads: what the exchange signs, and checking its signature."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CONTEXT = "compute-exchange/subsidy-trail/v1"


class HeadError(ValueError):
    """A tree head that is not signed by the key we trust, or contradicts one we saw."""


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    root_hash: str
    timestamp_ms: int
    key_id: str
    signature: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeHead:
        try:
            head = cls(
                tree_size=int(data["tree_size"]),
                root_hash=str(data["root_hash"]).lower(),
                timestamp_ms=int(data["timestamp_ms"]),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]).lower(),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HeadError(f"not a tree head: {exc}") from exc
        if head.tree_size < 0 or len(bytes.fromhex(head.root_hash)) != 32:
            raise HeadError("not a tree head: bad size or root hash")
        return head

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.root_hash)

    def message(self) -> bytes:
        return f"{CONTEXT}\n{self.tree_size}\n{self.root_hash}\n{self.timestamp_ms}\n".encode()

    def short(self) -> str:
        return f"size {self.tree_size}, root {self.root_hash[:16]}…"


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def verify_signature(head: TreeHead, public_key: bytes) -> None:
    """Raise HeadError unless `head` is signed by `public_key` (raw Ed25519, 32 bytes)."""
    if head.key_id != key_id(public_key):
        raise HeadError(f"the head names key {head.key_id}, we trust key {key_id(public_key)}")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            bytes.fromhex(head.signature), head.message()
        )
    except (InvalidSignature, ValueError) as exc:
        raise HeadError(f"the signature on the tree head ({head.short()}) is not valid") from exc
