"""The subsidy trail, entered here: an append-only RFC 6962 Merkle log of the
evidence behind every fen, with signed tree heads, that an authority verifies
with `exchange-verify` (the `trail_verify` package, no Django in it).

leaves.py says what a leaf holds (the canonical JSON of a usage record,
invoice line, card payment, redemption or redemption status change); log.py
appends what is not logged yet and recomputes logged leaves to find rewritten
or deleted records; tree.py is RFC 6962's MTH / PATH / PROOF; heads.py signs
tree heads (Ed25519); proofs.py answers for leaves and proofs; claims.py seals
a claim with its tree head and builds the claim's audit report.
Outside this package, import only the names listed in `__all__`."""

from billing.trail.claims import claim_audit_report, claim_seal, head_json
from billing.trail.heads import (
    head_message,
    key_id,
    public_key_bytes,
    timestamp_ms,
    tree_head_latest,
    tree_head_sign,
)
from billing.trail.log import Mismatch, trail_append_pending, trail_check, trail_size
from billing.trail.proofs import Inclusion, consistency_proof, inclusion_proof, leaf_find

__all__ = [
    "Inclusion",
    "Mismatch",
    "claim_audit_report",
    "claim_seal",
    "consistency_proof",
    "head_json",
    "head_message",
    "inclusion_proof",
    "key_id",
    "leaf_find",
    "public_key_bytes",
    "timestamp_ms",
    "trail_append_pending",
    "trail_check",
    "trail_size",
    "tree_head_latest",
    "tree_head_sign",
]
