from market.models.capacity import Node, NodeSelfTest, Offer, OfferEvent, Site
from market.models.catalogue import GPUModel
from market.models.index import PriceIndexSnapshot
from market.models.telemetry import (
    NodeHealthCursor,
    NodeHealthEvent,
    ProviderReliability,
    TelemetryMinute,
    TelemetryRollupCursor,
    TelemetrySample,
    TelemetryTick,
    UsageRecord,
)
from market.models.trading import Lease, LeaseEvent, Order, OrderEvent

__all__ = [
    "GPUModel",
    "Lease",
    "LeaseEvent",
    "Node",
    "NodeHealthEvent",
    "NodeHealthCursor",
    "NodeSelfTest",
    "Offer",
    "OfferEvent",
    "Order",
    "OrderEvent",
    "ProviderReliability",
    "PriceIndexSnapshot",
    "Site",
    "TelemetryMinute",
    "TelemetryRollupCursor",
    "TelemetrySample",
    "TelemetryTick",
    "UsageRecord",
]
