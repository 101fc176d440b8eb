"""Telemetry, entered here: what node agents report and what it proves.

ingest.py stores agents' batches (once per node and sequence number), health.py
turns samples and silence into node states, metering.py turns samples into
usage records (the evidence behind every invoice line), reliability.py scores
providers from those records, selectors.py reads series and totals for pages
and the API, tasks.py is what beat runs."""

from market.telemetry import selectors
from market.telemetry.health import node_state_change
from market.telemetry.ingest import (
    MAX_SAMPLES_PER_BATCH,
    IngestResult,
    node_for_token,
    node_token_expired,
    telemetry_ingest,
)
from market.telemetry.metering import lease_end
from market.telemetry.reliability import provider_reliability, provider_reliability_refresh

__all__ = [
    "MAX_SAMPLES_PER_BATCH",
    "IngestResult",
    "lease_end",
    "node_for_token",
    "node_state_change",
    "node_token_expired",
    "provider_reliability",
    "provider_reliability_refresh",
    "selectors",
    "telemetry_ingest",
]
