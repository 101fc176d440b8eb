import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from billing.models import Invoice
from market.leases import leases_advance
from market.models import Lease
from tests.factories import LeaseFactory, OfferFactory, UsageRecordFactory


@pytest.mark.django_db
def test_a_completed_lease_shows_on_the_buyers_draft_invoice_right_away(
    django_capture_on_commit_callbacks,
):
    # given: a 2-GPU lease at ¥20.00/GPU-hour that ended an hour ago, metered in full
    with time_machine.travel(dt.datetime(2026, 11, 18, 12, 0, tzinfo=dt.UTC), tick=False):
        start = timezone.now() - dt.timedelta(hours=3)
        offer = OfferFactory(price_amount=2_000, gpus_available=6)  # 2 of 8 GPUs leased
        lease = LeaseFactory(
            offer=offer,
            gpu_count=2,
            price_amount=2_000,
            starts_at=start,
            ends_at=start + dt.timedelta(hours=2),
        )
        UsageRecordFactory(lease=lease)

        # when: the lifecycle beat notices the end (billing's task runs after its commit)
        with django_capture_on_commit_callbacks(execute=True):
            activated, completed = leases_advance()

    # then: completed, and billing has already refreshed the buyer's draft
    assert (activated, completed) == (0, 1)
    assert Lease.objects.get(pk=lease.pk).status == Lease.Status.COMPLETED
    invoice = Invoice.objects.get(buyer=lease.buyer)
    assert invoice.status == Invoice.Status.DRAFT
    offer.refresh_from_db()
    assert offer.gpus_available == 8
    line = invoice.lines.get()
    assert (line.gpu_seconds, line.amount) == (14_400, 8_000)  # 2 × 2 h × ¥20.00
