"""Reads for telemetry, health and metering pages and APIs."""

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncMinute

from accounts.models import Organisation
from market.models import (
    Lease,
    Node,
    NodeHealthEvent,
    TelemetryMinute,
    TelemetrySample,
    UsageRecord,
)
from market.telemetry import storage


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
    """Per-minute mean utilisation (%) and node power (W): from the per-minute
    rollups (storage.py), and from the raw samples only for the minutes not
    rolled up yet (the last few, on a live chart). Sums and counts, so each
    minute's means are those of its raw samples exactly."""
    rolled = storage.rolled_until() or since
    rows: list[tuple[dt.datetime, int, float, float]] = []
    if rolled > since:
        rows += (
            TelemetryMinute.objects.filter(
                node=node, minute__gte=since, minute__lt=min(until, rolled)
            )
            .values("minute")
            .annotate(n=Sum("samples"), util=Sum("utilisation_sum"), power=Sum("power_w_sum"))
            .values_list("minute", "n", "util", "power")
            .order_by("minute")
        )
    if rolled < until:
        rows += (
            TelemetrySample.objects.filter(node=node, ts__gte=max(since, rolled), ts__lt=until)
            .annotate(minute=TruncMinute("ts"))
            .values("minute")
            .annotate(n=Count("*"), util=Sum("utilisation"), power=Sum("power_w"))
            .values_list("minute", "n", "util", "power")
            .order_by("minute")
        )
    return [
        {"minute": minute, "util": util / n, "power": power / n * node.gpu_count}
        for minute, n, util, power in rows
    ]


def node_health_history(*, node: Node, limit: int = 50) -> QuerySet[NodeHealthEvent]:
    return NodeHealthEvent.objects.filter(node=node).order_by("-at", "-pk")[:limit]


def leases_for_organisation(*, organisation: Organisation) -> QuerySet[Lease]:
    return Lease.objects.filter(Q(buyer=organisation) | Q(provider=organisation))


def nodes_for_provider(*, organisation: Organisation) -> QuerySet[Node]:
    return Node.objects.filter(site__provider=organisation).select_related("site", "gpu_model")
