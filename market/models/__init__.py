from market.models.capacity import Node, Offer, OfferEvent, Site
from market.models.catalogue import GPUModel
from market.models.telemetry import (
    NodeHealthCursor,
    NodeHealthEvent,
    ProviderReliability,
    TelemetrySample,
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
    "Offer",
    "OfferEvent",
    "Order",
    "OrderEvent",
    "ProviderReliability",
    "Site",
    "TelemetrySample",
    "UsageRecord",
]
