"""Reads for telemetry, health and metering pages and APIs."""

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Q, QuerySet, Sum
from django.db.models.functions import TruncMinute

from accounts.models import Organisation
from market.models import Lease, Node, NodeHealthEvent, TelemetrySample, UsageRecord


def usage_records_for_organisation(*, organisation: Organisation) -> QuerySet[UsageRecord]:
    """Usage records of leases the organisation bought or sold."""
    return (
        UsageRecord.objects.filter(Q(lease__buyer=organisation) | Q(lease__provider=organisation))
        .select_related("lease")
        .order_by("lease_id", "window_start")
    )


def lease_usage_totals(*, lease_ids: list[int]) -> dict[str, Any]:
    """GPU-hours delivered and lost, energy (kWh) and carbon (kg) metered so far."""
    totals = UsageRecord.objects.filter(lease_id__in=lease_ids).aggregate(
        delivered=Sum("gpu_seconds_delivered"),
        lost=Sum("gpu_seconds_lost"),
        energy=Sum("energy_wh"),
        carbon=Sum("carbon_g"),
    )
    return {
        "gpu_hours_delivered": Decimal(totals["delivered"] or 0) / 3600,
        "gpu_hours_lost": Decimal(totals["lost"] or 0) / 3600,
        "energy_kwh": (totals["energy"] or Decimal(0)) / 1000,
        "carbon_kg": (totals["carbon"] or Decimal(0)) / 1000,
    }


def node_series(*, node: Node, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    """Per-minute mean utilisation (%) and node power (W) from the samples."""
    rows = (
        TelemetrySample.objects.filter(node=node, ts__gte=since, ts__lt=until)
        .annotate(minute=TruncMinute("ts"))
        .values("minute")
        .annotate(util=Avg("utilisation"), power=Avg("power_w"))
        .order_by("minute")
    )
    return [
        {"minute": r["minute"], "util": r["util"], "power": r["power"] * node.gpu_count}
        for r in rows
    ]


def node_health_history(*, node: Node, limit: int = 50) -> QuerySet[NodeHealthEvent]:
    return NodeHealthEvent.objects.filter(node=node).order_by("-at", "-pk")[:limit]


def leases_for_organisation(*, organisation: Organisation) -> QuerySet[Lease]:
    return Lease.objects.filter(Q(buyer=organisation) | Q(provider=organisation))


def nodes_for_provider(*, organisation: Organisation) -> QuerySet[Node]:
    return Node.objects.filter(site__provider=organisation).select_related("site", "gpu_model")
