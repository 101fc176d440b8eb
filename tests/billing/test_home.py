"""The home page answers each role's first questions at `/` (billing/web/home.py):
the figures a person looks for, from the rows behind them."""

import datetime as dt
import html
import re

import pytest
from django.utils import timezone

from accounts.models import Organisation
from billing.models import FraudFlag, VoucherApplication
from market.models import Node, NodeHealthCursor, Order, TelemetrySample
from tests.billing.subsidy.factories import programme, voucher
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
    SiteFactory,
    UsageRecordFactory,
    gpu,
)

pytestmark = pytest.mark.django_db


def text(page: bytes) -> str:
    """What a person reads: the page without tags, spaces collapsed."""
    body = page.decode().split("<main", 1)[1]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def samples(node: Node, utilisation: list[float], *, at: dt.datetime) -> None:
    TelemetrySample.objects.bulk_create(
        TelemetrySample(
            node=node,
            seq=seq,
            gpu_index=seq,
            ts=at,
            utilisation=util,
            memory_used_mib=1,
            power_w=500,
            temperature_c=60,
        )
        for seq, util in enumerate(utilisation)
    )


def test_an_anonymous_visitor_keeps_the_marketing_page(client):
    assert "GPU capacity by the hour" in text(client.get("/").content)


def test_the_buyer_home_shows_leases_spend_vouchers_orders_and_prices(client, buyer, buyer_org):
    # given: a running lease of 2 GPUs at ¥18.00, metered for 2 GPU-hours, its GPUs at 60 and 68 %
    now = timezone.now()
    lease = LeaseFactory(
        order=OrderFactory(buyer=buyer_org),
        gpu_count=2,
        price_amount=1_800,
        offer__price_amount=1_800,
    )
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=7_200)
    samples(lease.node, [60.0, 68.0], at=now - dt.timedelta(minutes=1))
    # a voucher of ¥500.00, an order half filled, and an H800 offer at ¥17.50
    authority = OrganisationFactory(kind=Organisation.Kind.AUTHORITY)
    held = voucher(programme(authority, name="Gansu compute vouchers"), buyer_org, 50_000)
    OrderFactory(buyer=buyer_org, gpu_count=4, gpus_filled=2, status=Order.Status.PARTIALLY_FILLED)
    OfferFactory(price_amount=1_750)
    client.force_login(buyer)
    client.cookies["django_language"] = "en"

    page = text(client.get("/").content)

    assert "GPU-hours this month 2.0" in page
    assert "Spend this month (gross) ¥36.00" in page
    assert "Paid by vouchers ¥0.00" in page
    assert "Your own share ¥36.00" in page
    assert f"#{lease.pk}" in page and "2 × H800 SXM5 80GB" in page and "64%" in page
    expires = timezone.localtime(held.valid_until).strftime("%-d %b %Y")
    assert f"Gansu compute vouchers ¥500.00 {expires}" in page
    assert "2 of 4 GPUs" in page
    assert "H800 SXM5 80GB ¥17.50" in page


def test_the_provider_home_shows_gpus_node_health_revenue_reliability_and_payout(
    client, provider, provider_org
):
    # given: 3 nodes (one awaiting its agent, one degraded by an XID error)
    site = SiteFactory(provider=provider_org, name="Zhongwei 1")
    online = NodeFactory(site=site, name="zw-01")
    NodeFactory(site=site, name="zw-02", state=Node.State.AWAITING_AGENT)
    sick = NodeFactory(site=site, name="zw-03", state=Node.State.DEGRADED)
    NodeHealthCursor.objects.create(node=sick, last_fault_reason="XID 79: GPU fell off the bus")
    # 3 GPU-hours delivered at ¥20.00 today, 1 GPU-hour lost on the sick node
    lease = LeaseFactory(offer__node=online, gpu_count=2, price_amount=2_000)
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=10_800)
    UsageRecordFactory(
        lease=LeaseFactory(offer__node=sick, gpu_count=1),
        gpu_seconds_delivered=0,
        gpu_seconds_lost=3_600,
    )
    samples(online, [50.0], at=timezone.now() - dt.timedelta(hours=2))
    client.force_login(provider)
    client.cookies["django_language"] = "en"

    response = client.get("/")
    page = text(response.content)

    assert "GPUs listed 24" in page
    assert "GPUs sold now 3" in page
    assert "online 1" in page and "awaiting agent 1" in page and "degraded 1" in page
    assert "Reliability (30 days) 75.0%" in page  # 3 delivered of 4 promised GPU-hours
    assert "zw-03 1.00 GPU-hours XID 79: GPU fell off the bus" in page
    assert "Next payout ¥0.00 in the run of" in page
    body = response.content.decode()
    # the day's bar: 3 GPU-hours at ¥20.00
    assert 'id="revenue"' in body and '<desc class="value">¥60</desc>' in body
    assert body.count('class="cell ') >= 3


def test_the_authority_home_shows_its_budget_and_what_waits_for_review(
    client, authority, authority_org, buyer_org
):
    prog = programme(authority_org, name="Ningxia vouchers", budget_amount=100_000_000)
    application = VoucherApplication.objects.create(
        programme=prog,
        applicant=buyer_org,
        purpose="LLM fine-tuning",
        expected_gpu_hours=500,
        requested_amount=1_250_000,
    )
    flag = FraudFlag.objects.create(
        rule=FraudFlag.Rule.IDLE_BURNING, subject_key="voucher:9", programme=prog
    )
    client.force_login(authority)
    client.cookies["django_language"] = "en"

    response = client.get("/")
    page = text(response.content)

    assert "Ningxia vouchers · budget ¥1,000,000.00" in page
    assert "Spent by the end at this pace ¥0.00" in page
    assert "Day 61 of 360" in page
    assert "Eastern AI Lab Co., Ltd. Ningxia vouchers ¥12,500.00 Approve" in page
    body = response.content.decode()
    assert f'action="/subsidy/applications/{application.pk}/approve/"' in body
    assert 'name="amount" value="12500.00"' in body  # one click approves what was asked
    assert f'action="/subsidy/flags/{flag.pk}/review/"' in body
    assert "idle burning (low GPU utilisation)" in page


def test_the_operator_home_shows_what_needs_people(client, django_user_model):
    OrganisationFactory(verified=False)
    OrganisationFactory(verified=False)
    NodeFactory(state=Node.State.AWAITING_AGENT)
    staff = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    client.force_login(staff)
    client.cookies["django_language"] = "en"

    page = text(client.get("/").content)

    assert "Organisations to verify 2" in page
    assert "Nodes degraded / offline / awaiting agent 0 / 0 / 1" in page
    assert "Metering lag never run late: usage is not being metered" in page
    assert "Ledger balanced" in page
    assert "Tasks waiting in the outbox 0" in page
    assert "Failing scheduled tasks 0" in page


def test_the_buyer_home_reads_in_a_bounded_number_of_queries(
    client, buyer, buyer_org, django_assert_max_num_queries
):
    for _ in range(6):
        lease = LeaseFactory(
            order=OrderFactory(buyer=buyer_org, accepted_models=[gpu("nvidia-h20")])
        )
        UsageRecordFactory(lease=lease)
    client.force_login(buyer)

    with django_assert_max_num_queries(25):
        assert client.get("/").status_code == 200
