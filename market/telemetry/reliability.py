"""Provider reliability: delivered / promised GPU-seconds over the last 30 days.

Promised = delivered + lost to faults, both from the metered usage records
(the evidence billing uses). A provider with no metered usage yet scores 1:
nothing promised has been missed. The telemetry part may replace the
computation with a finer one; callers only use `provider_reliability`.
"""

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from django.db.models import Sum

from core import clock
from market.models import UsageRecord

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
