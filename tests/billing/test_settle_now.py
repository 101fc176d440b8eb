"""Settle now (issue 17): an interim invoice of what is metered so far, issued
once, vouchers as at close; the period's invoice continues from it and no
usage record is ever on two invoices."""

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from billing.invoices import invoice_draft_refresh, period_bounds
from billing.ledger import ledger_is_balanced
from billing.models import Invoice, InvoiceLine, InvoiceLineUsage, Redemption
from billing.tasks import invoice_settle_buyer
from market.catalogue import gpu_models_load
from market.models import UsageRecord
from tests.billing.conftest import make_lease, stripe_event_deliver
from tests.billing.subsidy.factories import programme, spread_organisation, voucher
from tests.factories import UsageRecordFactory, UserFactory, member_of

NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def _usage(lease, start, end, gpu_seconds=None):
    return UsageRecordFactory(
        lease=lease,
        window_start=start,
        window_end=end,
        gpu_seconds_delivered=(
            gpu_seconds
            if gpu_seconds is not None
            else lease.gpu_count * int((end - start).total_seconds())
        ),
    )


def _lease(buyer, *, starts_at, hours):
    """2 GPUs at ¥36.00 per GPU-hour (one fen per GPU-second) from a provider not
    affiliated with the buyer."""
    return make_lease(
        buyer=buyer,
        provider=spread_organisation("provider"),
        price_amount=3_600,
        gpu_count=2,
        starts_at=starts_at,
        hours=hours,
    )


@pytest.fixture
def lease(buyer_org):
    return _lease(buyer_org, starts_at=NOW - 3 * H, hours=6)


def _settle(buyer, key: str | None = None):
    client = APIClient()
    client.force_authenticate(member_of(buyer))
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post("/api/v1/invoices/settle-now/", **headers)


def _issued(buyer):
    return Invoice.objects.filter(buyer=buyer).exclude(status__in=["draft", "void"])


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_settling_now_issues_an_interim_invoice_with_the_voucher_share_and_the_period_continues(
    lease, buyer_org
):
    # given: 3 records metered so far (11:40 the last), 19,205 GPU-seconds = ¥192.05
    _usage(lease, NOW - 3 * H, NOW - 2 * H)  # 7,200
    _usage(lease, NOW - 2 * H, NOW - H)  # 7,200
    last = _usage(lease, NOW - H, NOW - 20 * M, gpu_seconds=4_805)
    # and a 30 % voucher of ¥10,000.00
    v = voucher(programme(spread_organisation("authority")), buyer_org, 1_000_000)

    # when the buyer settles now
    response = _settle(buyer_org)

    # then: one interim invoice, issued, 30 % of ¥192.05 = ¥57.615 → ¥57.62 (half-even)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["on_demand"]) == ("open", True)
    assert (body["gross_amount"], body["voucher_amount"], body["buyer_amount"]) == (
        19_205,
        5_762,
        13_443,
    )
    assert body["outstanding_amount"] == 13_443
    interim = Invoice.objects.get(pk=body["id"])
    assert (interim.period_start, interim.period_end) == (
        period_bounds(at=NOW)[0],
        last.window_end,
    )
    line = interim.lines.get()
    assert (line.gpu_seconds, line.amount, line.voucher_amount) == (19_205, 19_205, 5_762)
    assert Redemption.objects.get(voucher=v).amount == 5_762
    assert ledger_is_balanced()

    # asking again with nothing new metered issues nothing
    again = _settle(buyer_org)
    assert again.status_code == 409
    assert "Nothing metered is left to settle" in again.json()["detail"]
    assert _issued(buyer_org).count() == 1

    # when: the rest of the lease is metered (3 h 20 min) and the month closes by its task
    for start in (NOW - 20 * M, NOW + 40 * M, NOW + 100 * M, NOW + 160 * M):
        _usage(lease, start, min(start + H, NOW + 3 * H))
    start, end = period_bounds(at=NOW)
    invoice_draft_refresh(buyer=buyer_org)  # the page's draft of the rest of May
    closing_pk = invoice_settle_buyer(buyer_org.pk, start.isoformat(), end.isoformat())

    # then: May's invoice starts where the interim one ended and bills only the rest
    closing = Invoice.objects.get(pk=closing_pk)
    assert (closing.status, closing.on_demand) == ("open", False)
    assert (closing.period_start, closing.period_end) == (interim.period_end, end)
    assert closing.gross_amount == 2 * 12_000  # 3 h 20 min of 2 GPUs
    assert closing.voucher_amount == 7_200  # 30 % of ¥240.00
    assert interim.gross_amount + closing.gross_amount == 19_205 + 24_000
    # every usage record on exactly one line of an issued invoice
    assert InvoiceLineUsage.objects.count() == UsageRecord.objects.count() == 7
    assert not UsageRecord.objects.filter(invoice_link__isnull=True).exists()
    assert set(InvoiceLine.objects.values_list("invoice__status", flat=True)) == {"open"}
    assert ledger_is_balanced()


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_the_same_idempotency_key_returns_the_first_interim_invoice(lease, buyer_org):
    _usage(lease, NOW - 3 * H, NOW - 2 * H)
    first = _settle(buyer_org, key="settle-2026-05-20")
    # more usage is metered before the retry arrives
    _usage(lease, NOW - 2 * H, NOW - H)

    retry = _settle(buyer_org, key="settle-2026-05-20")

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["gross_amount"] == 7_200
    assert _issued(buyer_org).count() == 1
    # a new key settles what was metered since
    assert _settle(buyer_org, key="settle-2026-05-20b").json()["gross_amount"] == 7_200


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_settling_now_with_nothing_metered_is_a_409_and_writes_nothing(buyer_org):
    response = _settle(buyer_org)

    assert response.status_code == 409
    assert response.json()["errors"] == {
        "usage": ["Nothing new was metered since the last invoice."]
    }
    assert not Invoice.objects.exists()


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_a_record_on_the_draft_moves_to_the_interim_invoice_and_is_never_billed_twice(
    lease, buyer_org
):
    # given: the page's draft holds the first hour
    _usage(lease, NOW - 3 * H, NOW - 2 * H)
    invoice_draft_refresh(buyer=buyer_org)
    assert InvoiceLine.objects.get().invoice.status == "draft"

    # when
    response = _settle(buyer_org)

    # then: one line still, on the issued interim invoice
    assert response.status_code == 201
    line = InvoiceLine.objects.get()
    assert (line.invoice.status, line.amount) == ("open", 7_200)
    # the next refresh builds a new draft from the interim's end, without that record
    _usage(lease, NOW - 2 * H, NOW - H)
    draft = Invoice.objects.get(pk=invoice_draft_refresh(buyer=buyer_org))
    assert (draft.status, draft.period_start, draft.gross_amount) == ("draft", NOW - 2 * H, 7_200)
    assert InvoiceLineUsage.objects.count() == UsageRecord.objects.count() == 2


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_the_buyer_settles_now_from_its_invoices_page(lease, buyer_org):
    _usage(lease, NOW - 3 * H, NOW - 2 * H)
    voucher(programme(spread_organisation("authority")), buyer_org, 1_000_000)
    client = Client()
    client.force_login(member_of(buyer_org))
    assert "Settle now" in client.get(reverse("billing-invoices")).content.decode()

    response = client.post(reverse("billing-invoice-settle-now"), follow=True)

    invoice = _issued(buyer_org).get()
    page = response.content.decode()
    assert f"Interim invoice {invoice.number} issued." in page
    assert "¥72.00" in page and "-¥21.60" in page and "¥50.40" in page  # gross, voucher, share
    assert "Pay ¥50.40" in page


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_staff_issue_a_buyers_invoice_now_from_the_operator_page(lease, buyer_org):
    _usage(lease, NOW - 3 * H, NOW - 2 * H)
    staff = UserFactory(is_staff=True)
    client = Client()
    client.force_login(staff)
    overview = client.get(reverse("operator-overview")).content.decode()
    assert buyer_org.legal_name in overview and "Issue invoice now" in overview

    response = client.post(
        reverse("operator-buyer-settle-now", kwargs={"pk": buyer_org.pk}), follow=True
    )

    invoice = _issued(buyer_org).get()
    assert invoice.on_demand and invoice.gross_amount == 7_200
    assert invoice.events.get(to_status="open").actor == staff
    assert (
        f"Invoice {invoice.number} issued to {buyer_org.legal_name}: ¥72.00 for the buyer to pay."
        in response.content.decode()
    )
    assert "Every metered usage record is on an issued invoice." in response.content.decode()
    # a buyer's member cannot use the staff button
    buyer_client = Client()
    buyer_client.force_login(member_of(buyer_org))
    refused = buyer_client.post(reverse("operator-buyer-settle-now", kwargs={"pk": buyer_org.pk}))
    assert refused.status_code == 403


@pytest.mark.django_db
@pytest.mark.integration
def test_the_interim_invoice_is_paid_by_card_like_a_period_invoice(
    localstripe, buyer_org, django_capture_on_commit_callbacks
):
    # given: an interim invoice of ¥72.00, ¥50.40 for the card after a 30 % voucher
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    lease = _lease(buyer_org, starts_at=now - 2 * H, hours=4)
    _usage(lease, now - 2 * H, now - H)
    voucher(programme(spread_organisation("authority")), buyer_org, 1_000_000)
    interim = _settle(buyer_org).json()
    assert (interim["status"], interim["buyer_amount"]) == ("open", 5_040)

    # when the buyer pays it with the test card and Stripe's signed webhook arrives
    client = APIClient()
    client.force_authenticate(member_of(buyer_org))
    paid = client.post(
        f"/api/v1/invoices/{interim['id']}/pay/", {"payment_method": "pm_card_visa"}, format="json"
    )
    assert paid.status_code == 201 and paid.json()["amount"] == 5_040
    stripe_event_deliver(
        localstripe, django_capture_on_commit_callbacks, object_id=paid.json()["payment_intent"]
    )

    # then
    invoice = Invoice.objects.get(pk=interim["id"])
    assert (invoice.status, invoice.paid_amount, invoice.outstanding_amount) == ("paid", 5_040, 0)
    assert ledger_is_balanced()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("keys", [(None, None), ("same-key", "same-key")])
def test_two_settle_now_requests_at_once_issue_one_invoice(keys, buyer_org):
    gpu_models_load()  # an earlier transactional test may have flushed the seeded catalogue
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    lease = _lease(buyer_org, starts_at=now - 2 * H, hours=4)
    _usage(lease, now - 2 * H, now - H)
    _usage(lease, now - H, now - 30 * M)
    voucher(programme(spread_organisation("authority")), buyer_org, 1_000_000)
    barrier = threading.Barrier(2)
    answers: list = []

    def settle(key):
        try:
            barrier.wait()
            response = _settle(buyer_org, key=key)
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=settle, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: one invoice of ¥108.00 with ¥32.40 from the voucher, the other answer
    # is the same invoice (same key) or a 409 (nothing left)
    invoice = _issued(buyer_org).get()
    assert (invoice.gross_amount, invoice.voucher_amount) == (10_800, 3_240)
    statuses = sorted(status for status, _body in answers)
    assert statuses == ([200, 201] if keys[0] else [201, 409])
    assert Redemption.objects.get().amount == 3_240
    assert InvoiceLineUsage.objects.count() == 2
    assert ledger_is_balanced()
