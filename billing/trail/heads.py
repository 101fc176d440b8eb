"""Signed tree heads: the exchange's Ed25519 signature over the log's size and root.

The signed bytes are a short text any verifier rebuilds (`head_message`):

    compute-exchange/subsidy-trail/v1
    <tree size>
    <root hash, hex>
    <timestamp, milliseconds since the epoch (UTC)>

The private key is settings.TRAIL_SIGNING_KEY (32-byte seed, hex). The demo
default is public and refused in production (billing.checks); the public key
is published at /api/v1/trail/public-key/ and its key id is the first 8 bytes
of SHA-256 of the raw public key, hex.
"""

import datetime as dt
import hashlib
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.db import transaction

from billing.models import TreeHead
from billing.trail import log, tree
from core import clock

CONTEXT = "compute-exchange/subsidy-trail/v1"
# The key the demo and the tests sign with: public, so never trusted in production.
DEMO_SIGNING_KEY = hashlib.sha256(b"compute-exchange demo trail key").hexdigest()


def head_message(*, tree_size: int, root_hash: str, timestamp_ms: int) -> bytes:
    return f"{CONTEXT}\n{tree_size}\n{root_hash}\n{timestamp_ms}\n".encode()


def timestamp_ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


@lru_cache(maxsize=4)
def _private_key(seed_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))


def signing_key() -> Ed25519PrivateKey:
    return _private_key(settings.TRAIL_SIGNING_KEY)


def public_key_bytes() -> bytes:
    return signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def tree_head_sign() -> TreeHead:
    """Log what is pending, then sign the log as it stands (a new head even when
    nothing was added: its timestamp says the log was still this at that time)."""
    log.trail_append_pending()
    with transaction.atomic():
        log.lock()
        size = log.trail_size()
        root = tree.mth(log.leaf_hashes(size)).hex()
        now = clock.now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # signed in ms
        message = head_message(tree_size=size, root_hash=root, timestamp_ms=timestamp_ms(now))
        return TreeHead.objects.create(
            tree_size=size,
            root_hash=root,
            timestamp=now,
            key_id=key_id(public_key_bytes()),
            signature=signing_key().sign(message).hex(),
        )


def tree_head_latest() -> TreeHead | None:
    return TreeHead.objects.order_by("-tree_size", "-timestamp", "-pk").first()
