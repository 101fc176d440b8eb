"""Reads for telemetry, health and metering pages and APIs."""

from django.db.models import Q, QuerySet

from accounts.models import Organisation
from market.models import UsageRecord


def usage_records_for_organisation(*, organisation: Organisation) -> QuerySet[UsageRecord]:
    """Usage records of leases the organisation bought or sold."""
    return (
        UsageRecord.objects.filter(Q(lease__buyer=organisation) | Q(lease__provider=organisation))
        .select_related("lease")
        .order_by("lease_id", "window_start")
    )
