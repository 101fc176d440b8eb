"""Settle now: an interim invoice of what is metered so far, issued once; the
period's invoice continues from it; no usage record is billed twice."""

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from billing.invoices import period_bounds
from billing.models import Invoice, InvoiceLine
from billing.settlement import invoice_settle
from market.models import UsageRecord
from tests.billing.conftest import make_lease
from tests.billing.subsidy.factories import programme, spread_organisation, voucher
from tests.factories import UsageRecordFactory, member_of

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
H = dt.timedelta(hours=1)


def _usage(lease, start, end):
    return UsageRecordFactory(
        lease=lease,
        window_start=start,
        window_end=end,
        gpu_seconds_delivered=lease.gpu_count * int((end - start).total_seconds()),
    )


@pytest.fixture
def lease(buyer_org):
    provider = spread_organisation("provider")  # not affiliated with the buyer
    # 2 GPUs at ¥36.00 per GPU-hour: one fen per GPU-second
    return make_lease(
        buyer=buyer_org,
        provider=provider,
        price_amount=3_600,
        gpu_count=2,
        starts_at=NOW - 3 * H,
        hours=6,
    )


def _settle(buyer) -> object:
    client = APIClient()
    client.force_authenticate(member_of(buyer))
    return client.post("/api/v1/invoices/settle-now/")


@time_machine.travel(NOW, tick=False)
def test_settling_now_issues_an_interim_invoice_and_the_period_invoice_continues_from_it(
    lease, buyer_org
):
    # given: three hours metered so far, the third hour partly (to 11:40)
    _usage(lease, NOW - 3 * H, NOW - 2 * H)
    _usage(lease, NOW - 2 * H, NOW - H)
    last = _usage(lease, NOW - H, NOW - dt.timedelta(minutes=20))
    # with a 30 % voucher
    voucher(programme(spread_organisation("authority")), buyer_org, 1_000_000)

    # when
    response = _settle(buyer_org)

    # then: 2 GPUs × 9,600 s = 19,200 fen, 30 % of it from the voucher, issued
    assert response.status_code == 201, response.content
    interim = Invoice.objects.get(pk=response.json()["id"])
    assert (interim.status, interim.on_demand) == ("open", True)
    assert (interim.gross_amount, interim.voucher_amount, interim.buyer_amount) == (
        19_200,
        5_760,
        13_440,
    )
    assert interim.period_end == last.window_end
    assert interim.lines.count() == 3

    # asking again with nothing new metered issues nothing
    again = _settle(buyer_org)
    assert again.status_code == 409
    assert Invoice.objects.exclude(status="draft").count() == 1

    # when: the rest of the lease is metered and the month closes
    _usage(lease, NOW - dt.timedelta(minutes=20), NOW + 3 * H)
    start, end = period_bounds(at=NOW)
    closing = invoice_settle(buyer=buyer_org, period_start=interim.period_end, period_end=end)

    # then: the period's invoice starts where the interim one ended, billing only the rest
    assert closing.period_start == interim.period_end
    assert closing.gross_amount == 2 * 12_000
    assert interim.gross_amount + closing.gross_amount == 2 * 6 * 3_600
    # every usage record on exactly one invoice line
    assert InvoiceLine.objects.filter(usage_record__isnull=False).count() == 4
    assert not UsageRecord.objects.filter(invoice_line__isnull=True).exists()
    assert start < interim.period_start or start == interim.period_start


@time_machine.travel(NOW, tick=False)
def test_settling_now_with_nothing_metered_is_a_409(buyer_org):
    response = _settle(buyer_org)

    assert response.status_code == 409
    assert not Invoice.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_a_record_already_on_the_draft_is_moved_to_the_interim_invoice_not_copied(lease, buyer_org):
    from billing.invoices import invoice_draft_refresh

    _usage(lease, NOW - 3 * H, NOW - 2 * H)
    invoice_draft_refresh(buyer=buyer_org)  # the page's draft holds the record
    assert InvoiceLine.objects.count() == 1

    response = _settle(buyer_org)

    assert response.status_code == 201
    line = InvoiceLine.objects.get()  # one line still, on the issued interim invoice
    assert line.invoice.status == "open"
    assert line.amount == 7_200
