"""Provider reliability: delivered / promised GPU-seconds over the last 30 days.

Promised = delivered + lost to faults, both from the metered usage records
(the evidence billing uses). A provider with no metered usage yet scores 1:
nothing promised has been missed. The telemetry part may replace the
computation with a finer one; callers only use `provider_reliability`.

The public offer search reads the scores stored by `provider_reliability_refresh`
(run after each metering run) with one join: aggregating 30 days of usage
records for every search of a 100,000-offer book was most of its time.
"""

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from core import clock
from core.cache import generation_bump
from market.models import ProviderReliability, UsageRecord
from market.models.capacity import BOARD_CACHE

RELIABILITY_WINDOW = dt.timedelta(days=30)
_FOUR_PLACES = Decimal("0.0001")


def provider_reliability(
    provider_ids: Iterable[int], *, now: dt.datetime | None = None
) -> dict[int, Decimal]:
    """Reliability in [0, 1] (four decimals) for each provider id given."""
    ids = set(provider_ids)
    scores = dict.fromkeys(ids, Decimal(1))
    if not ids:
        return scores
    since = (now or clock.now()) - RELIABILITY_WINDOW
    rows = (
        UsageRecord.objects.filter(lease__provider_id__in=ids, window_end__gt=since)
        .values("lease__provider_id")
        .annotate(delivered=Sum("gpu_seconds_delivered"), lost=Sum("gpu_seconds_lost"))
    )
    for row in rows:
        promised = (row["delivered"] or 0) + (row["lost"] or 0)
        if promised:
            scores[row["lease__provider_id"]] = (
                Decimal(row["delivered"]) / Decimal(promised)
            ).quantize(_FOUR_PLACES)
    return scores


def provider_reliability_refresh(*, now: dt.datetime | None = None) -> int:
    """Store every provider's score from the usage records of the last 30
    days (providers without metered usage lose their row: they score 1).
    Returns how many providers have a stored score."""
    now = now or clock.now()
    since = now - RELIABILITY_WINDOW
    ids = set(
        UsageRecord.objects.filter(window_end__gt=since)
        .values_list("lease__provider_id", flat=True)
        .distinct()
        .order_by()
    )
    scores = provider_reliability(ids, now=now)
    rows = [
        ProviderReliability(provider_id=pk, score=s, computed_at=now) for pk, s in scores.items()
    ]
    with transaction.atomic():
        ProviderReliability.objects.exclude(provider_id__in=ids).delete()
        ProviderReliability.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["provider"],
            update_fields=["score", "computed_at"],
        )
        generation_bump(BOARD_CACHE)  # searches show and sort by the scores
    return len(rows)
