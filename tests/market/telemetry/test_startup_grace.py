"""The agent's start-up grace: silence in a lease's first reporting intervals
is neither billed to the buyer nor a fault of the provider."""

import datetime as dt

import pytest

from billing.invoices import invoice_build_for_period
from billing.models import SlaCredit
from billing.settlement import invoice_issue
from market.models import UsageRecord
from tests.factories import LeaseFactory, NodeFactory, OfferFactory
from tests.market.telemetry.test_metering import HOUR, START, meter, record_ticks

pytestmark = pytest.mark.django_db

S = dt.timedelta(seconds=1)


@pytest.fixture
def lease(db):
    node = NodeFactory(gpu_count=4)
    return LeaseFactory(
        offer=OfferFactory(node=node), gpu_count=2, starts_at=START, ends_at=START + HOUR
    )


@pytest.fixture(autouse=True)
def _grace(settings):
    settings.TELEMETRY_INTERVAL_SECONDS = 5.0
    settings.AGENT_STARTUP_GRACE_INTERVALS = 2  # 10 s


def test_silence_before_the_agents_first_sample_within_the_grace_is_neither_billed_nor_lost(lease):
    # given: the agent's first sample 7 s after the 2-GPU lease starts, then every 5 s
    record_ticks(lease.node, start=START + 7 * S, end=START + HOUR + dt.timedelta(minutes=1))
    # when
    meter(START + 2 * HOUR)
    # then: 2 × 7 s are grace, the rest of the hour delivered, nothing lost
    first = UsageRecord.objects.filter(lease=lease).earliest("window_start")
    assert (first.gpu_seconds_delivered, first.gpu_seconds_grace, first.gpu_seconds_lost) == (
        586,
        14,
        0,
    )
    records = UsageRecord.objects.filter(lease=lease)
    assert sum(r.gpu_seconds_delivered for r in records) == 7_200 - 14
    assert sum(r.gpu_seconds_lost for r in records) == 0


def test_silence_beyond_the_grace_is_lost_as_before(lease):
    # given: the first sample 25 s after the start: 10 s of grace, 15 s of fault
    record_ticks(lease.node, start=START + 25 * S, end=START + HOUR + dt.timedelta(minutes=1))
    meter(START + 2 * HOUR)
    first = UsageRecord.objects.filter(lease=lease).earliest("window_start")
    assert (first.gpu_seconds_delivered, first.gpu_seconds_grace, first.gpu_seconds_lost) == (
        550,
        20,
        30,
    )


def test_a_node_reporting_before_the_lease_starts_has_no_grace_to_give(lease):
    record_ticks(lease.node, start=START - HOUR, end=START + HOUR + dt.timedelta(minutes=1))
    meter(START + 2 * HOUR)
    assert sum(r.gpu_seconds_grace for r in UsageRecord.objects.filter(lease=lease)) == 0


def test_the_invoice_line_says_the_grace_was_not_billed_and_no_sla_credit_is_earned(lease):
    # given: 2 × 7 s of grace and nothing else missing (price ¥20.00 per GPU-hour)
    record_ticks(lease.node, start=START + 7 * S, end=START + HOUR + dt.timedelta(minutes=1))
    meter(START + 2 * HOUR)
    # when
    invoice = invoice_build_for_period(
        buyer=lease.buyer, period_start=START, period_end=START + HOUR
    )
    invoice_issue(invoice=invoice)
    # then: 7,186 GPU-seconds billed, the 14 of grace not, and the line says so
    first = invoice.lines.order_by("window_start").first()
    assert "14 GPU-seconds of agent start-up grace: not billed, not a fault" in first.description
    assert sum(line.gpu_seconds for line in invoice.lines.all()) == 7_186
    assert sum(line.gpu_seconds_lost for line in invoice.lines.all()) == 0
    assert not SlaCredit.objects.exists()
