"""`exchange-verify`: the subsidy authority's own check of the exchange's subsidy
trail. No Django and nothing of the exchange in it: it speaks HTTP to the
exchange, and verifies tree head signatures (Ed25519), inclusion and consistency
proofs (RFC 6962) and claims offline, keeping the tree heads it has seen."""

__version__ = "1.0"
