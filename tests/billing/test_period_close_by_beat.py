"""The month closes by itself: only beat's schedule runs, across a period end."""

import datetime as dt
from collections import Counter

import pytest
import time_machine

from accounts.models import Organisation
from billing.models import Invoice
from market.models import Lease, TelemetrySample, UsageRecord
from tests.beat import BeatClock
from tests.billing.conftest import SHANGHAI
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
)

NOV = dt.datetime(2026, 11, 1, tzinfo=SHANGHAI)
DEC = dt.datetime(2026, 12, 1, tzinfo=SHANGHAI)
START = DEC - dt.timedelta(hours=2)  # 30 November, 22:00
PRICE = 3_600  # ¥36.00 per GPU-hour: one fen per GPU-second


def _lease(buyer, *, gpus: int, starts: dt.timedelta, ends: dt.timedelta) -> Lease:
    """A lease of `gpus` of a 2-GPU node from DEC + starts to DEC + ends, its order filled."""
    node = NodeFactory(gpu_count=2)
    offer = OfferFactory(node=node, price_amount=PRICE, gpus_available=2 - gpus)
    order = OrderFactory(
        buyer=buyer, gpu_count=gpus, gpus_filled=gpus, status="filled", max_price_amount=PRICE
    )
    return LeaseFactory(
        offer=offer,
        order=order,
        gpu_count=gpus,
        price_amount=PRICE,
        starts_at=DEC + starts,
        ends_at=DEC + ends,
    )


def _agent_reports(node, *, start: dt.datetime, end: dt.datetime, every: int = 60) -> None:
    """What the node's agent would have posted: every GPU, every `every` seconds."""
    samples, t = [], start
    while t < end:
        for gpu in range(node.gpu_count):
            samples.append(
                TelemetrySample(
                    node=node,
                    seq=len(samples),
                    gpu_index=gpu,
                    ts=t,
                    utilisation=90.0,
                    memory_used_mib=40_960,
                    power_w=600.0,
                    temperature_c=65.0,
                )
            )
        t += dt.timedelta(seconds=every)
    TelemetrySample.objects.bulk_create(samples)


@pytest.mark.slow
@pytest.mark.integration  # beat's Stripe reconciliation talks to localstripe
@pytest.mark.django_db(transaction=True)
def test_beat_alone_issues_one_invoice_per_buyer_with_usage_across_a_month_end(
    settings, localstripe
):
    # given: agents reporting every minute, and four buyers whose leases end
    # before the month does or run across its end, one buyer without usage
    settings.TELEMETRY_INTERVAL_SECONDS = 60.0
    h = dt.timedelta(hours=1)
    m = dt.timedelta(minutes=1)
    with time_machine.travel(START, tick=False):
        buyers = {name: OrganisationFactory(kind=Organisation.Kind.BUYER) for name in "ABCDE"}
        leases = [
            _lease(buyers["A"], gpus=2, starts=-3 * h, ends=-1 * h),
            _lease(buyers["B"], gpus=2, starts=-150 * m, ends=-5 * m),
            _lease(buyers["C"], gpus=2, starts=-2 * h, ends=30 * m),  # across the month end
            _lease(buyers["D"], gpus=2, starts=-3 * h, ends=-90 * m),
            _lease(buyers["D"], gpus=1, starts=-3 * h, ends=-30 * m),
        ]
        for lease in leases:
            _agent_reports(lease.node, start=DEC - 4 * h, end=DEC + 2 * h)
    # GPU-seconds of November, all delivered (one fen each)
    november = {"A": 14_400, "B": 17_400, "C": 14_400, "D": 10_800 + 9_000}

    with BeatClock(start=START) as beat:
        # when: beat runs up to just before midnight
        beat.play(until=DEC - m)
        # then: the drafts hold the month's usage (the state the close used to skip)
        for name in "ABD":
            draft = Invoice.objects.get(buyer=buyers[name], status=Invoice.Status.DRAFT)
            assert draft.period_start == NOV
        assert not UsageRecord.objects.filter(
            lease__buyer=buyers["A"], invoice_link__isnull=True
        ).exists()
        # when: beat runs on past the month's end and its close
        beat.play(until=DEC + 90 * m)

    # then: every buyer with usage has exactly one issued November invoice,
    # holding every usage record of November, to the fen
    assert [failure[0] for failure in beat.failures] == []
    for name, gpu_seconds in november.items():
        invoice = Invoice.objects.exclude(status__in=["draft", "void"]).get(buyer=buyers[name])
        assert (invoice.status, invoice.period_start, invoice.period_end) == ("open", NOV, DEC)
        assert (invoice.gross_amount, invoice.total_amount) == (gpu_seconds, gpu_seconds)
        assert sum(line.gpu_seconds for line in invoice.lines.all()) == gpu_seconds
        assert (
            not UsageRecord.objects.filter(lease__buyer=buyers[name], window_end__lte=DEC)
            .exclude(invoice_link__line__invoice=invoice)
            .exists()
        )
    assert not Invoice.objects.filter(buyer=buyers["E"]).exists()
    # December's part of C's lease is metered, and on no issued invoice
    december = UsageRecord.objects.filter(lease=leases[2], window_start__gte=DEC)
    assert sum(r.gpu_seconds_delivered for r in december) == 3_600
    assert (
        not december.exclude(invoice_link__isnull=True)
        .exclude(invoice_link__line__invoice__status="draft")
        .exists()
    )
    # and the close queued exactly one settlement task per buyer with usage
    settled = Counter(args[0] for args in beat.runs_of("billing.invoice_settle_buyer"))
    assert settled == Counter({buyers[name].pk: 1 for name in "ABCD"})
