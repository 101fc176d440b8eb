"""One line per lease per period, priced once: a lease metered in 5-minute
windows from real telemetry, with a node outage, bills and subsidises to the fen."""

import datetime as dt

import pytest
import time_machine

from accounts.models import Organisation
from billing.models import InvoiceLine, Redemption, SlaCredit
from billing.selectors import invoice_line_usage_records
from billing.settlement import invoice_invariants_hold, invoice_settle
from core.money import amount_for_gpu_seconds
from market.models import TelemetrySample, UsageRecord
from market.telemetry.metering import leases_meter
from tests.billing.conftest import SHANGHAI
from tests.billing.subsidy.factories import programme, spread_organisation, voucher
from tests.factories import LeaseFactory, NodeFactory, OfferFactory, OrderFactory, SiteFactory

NOV = dt.datetime(2026, 11, 1, tzinfo=SHANGHAI)
DEC = dt.datetime(2026, 12, 1, tzinfo=SHANGHAI)
START = NOV + dt.timedelta(days=9)  # 10 November, 00:00
OUTAGE = (START + dt.timedelta(hours=30), START + dt.timedelta(hours=31))
PRICE = 2_000  # ¥20.00 per GPU-hour


def _telemetry(node, *, start: dt.datetime, end: dt.datetime) -> None:
    """The agent's report every minute, except while the node is down."""
    samples, t = [], start
    while t < end:
        if not OUTAGE[0] <= t < OUTAGE[1]:
            samples.append(
                TelemetrySample(
                    node=node,
                    seq=len(samples),
                    gpu_index=0,
                    ts=t,
                    utilisation=92.0,
                    memory_used_mib=60_000,
                    power_w=650.0,
                    temperature_c=66.0,
                )
            )
        t += dt.timedelta(minutes=1)
    TelemetrySample.objects.bulk_create(samples)


@pytest.mark.django_db
def test_72_gpu_hours_at_20_yuan_with_an_outage_hour_bill_1440_and_subsidise_432(settings):
    # given: a 1-GPU lease of 73 hours at ¥20.00 whose node is silent for one
    # hour, metered from its agent's telemetry, and a 30 % programme voucher
    settings.TELEMETRY_INTERVAL_SECONDS = 60.0
    settings.SLA_CREDIT_MULTIPLE = 5
    with time_machine.travel(DEC + dt.timedelta(hours=1), tick=False):
        authority = spread_organisation(Organisation.Kind.AUTHORITY)
        buyer = spread_organisation(Organisation.Kind.BUYER)
        provider = spread_organisation(Organisation.Kind.PROVIDER)
        node = NodeFactory(site=SiteFactory(provider=provider), gpu_count=1)
        lease = LeaseFactory(
            offer=OfferFactory(node=node, price_amount=PRICE, gpus_available=0),
            order=OrderFactory(buyer=buyer, gpu_count=1, gpus_filled=1, status="filled"),
            gpu_count=1,
            price_amount=PRICE,
            starts_at=START,
            ends_at=START + dt.timedelta(hours=73),
            status="completed",
        )
        _telemetry(node, start=START, end=lease.ends_at)
        leases_meter(now=DEC)
        voucher(programme(authority, rate_bp=3_000), buyer, 100_000)

        # when: November is settled
        invoice = invoice_settle(buyer=buyer, period_start=NOV, period_end=DEC)

    # then: 876 five-minute usage records, the outage hour lost, not billed
    records = UsageRecord.objects.filter(lease=lease)
    assert records.count() == 73 * 12
    assert sum(r.gpu_seconds_delivered for r in records) == 72 * 3600
    assert sum(r.gpu_seconds_lost for r in records) == 3600
    # priced window by window the amount would drift (300 s → 166.67 → 167 fen each)
    per_window = sum(
        amount_for_gpu_seconds(gpu_seconds=r.gpu_seconds_delivered, price_amount=PRICE)
        for r in records
    )
    assert per_window != 144_000
    # one line for the lease, holding every record as its evidence, priced once
    line = invoice.lines.get()
    assert line.kind == InvoiceLine.Kind.USAGE and line.lease_id == lease.pk
    assert (line.gpu_seconds, line.gpu_seconds_lost) == (72 * 3600, 3600)
    assert str(line.gpu_hours) == "72.0000"
    assert (line.price_amount, line.amount) == (PRICE, 144_000)  # ¥1,440.00
    assert list(invoice_line_usage_records(line=line)) == list(records.order_by("window_start"))
    # the voucher pays 30 % of the rounded line, exactly ¥432.00, for every record
    assert (line.voucher_amount, line.buyer_amount) == (43_200, 100_800)
    redemption = Redemption.objects.get(invoice_line=line)
    assert (redemption.amount, redemption.usage_records.count()) == (43_200, 876)
    # fee and net from the rounded line; the invoice adds up
    assert (line.fee_amount, line.provider_net_amount) == (7_200, 136_800)
    assert (invoice.status, invoice.total_amount, invoice.voucher_amount) == (
        "open",
        144_000,
        43_200,
    )
    assert invoice.buyer_amount == 100_800 and invoice_invariants_hold(invoice)
    # the fault hour earns the buyer the SLA credit (5 × ¥20.00) as it always has
    assert SlaCredit.objects.get(source_invoice=invoice).amount == 10_000
