"""Invoices fit for bookkeeping (issue 12): a draft previews its voucher share,
the page follows the payment without reload, the buyer's legal name and credit
code are on it, each line's usage records are listed and downloadable, and the
invoice is a real PDF in both languages."""

import csv
import datetime as dt
import io

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import translation
from pypdf import PdfReader

from billing.invoices import invoice_draft_refresh
from billing.ledger import ledger_is_balanced
from billing.models import Invoice, LedgerTransaction, Redemption
from billing.settlement import invoice_issue, invoice_mark_paid
from billing.subsidy.accounts import voucher_balance
from tests.billing.conftest import make_lease
from tests.billing.subsidy.factories import programme, spread_organisation, voucher
from tests.factories import OrganisationFactory, UsageRecordFactory, member_of

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 20, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai
H = dt.timedelta(hours=1)
FIVE = dt.timedelta(minutes=5)


@pytest.fixture
def draft(buyer_org):
    """May's draft: one lease of 2 GPUs at ¥36.00, 37 five-minute records
    (600 GPU-seconds each, one of them 5 short) = 22,195 GPU-seconds = ¥221.95;
    a 30 % voucher of ¥10,000.00."""
    provider = spread_organisation("provider", legal_name="Gansu Green Compute Co.")
    lease = make_lease(
        buyer=buyer_org,
        provider=provider,
        price_amount=3_600,
        gpu_count=2,
        starts_at=NOW - 4 * H,
        hours=6,
    )
    for i in range(37):
        start = NOW - 4 * H + i * FIVE
        UsageRecordFactory(
            lease=lease,
            window_start=start,
            window_end=start + FIVE,
            gpu_seconds_delivered=595 if i == 7 else 600,
            energy_wh="123.456",
        )
    with time_machine.travel(NOW, tick=False):  # the voucher covers May
        authority = spread_organisation("authority")
        voucher(programme(authority, name="Gansu compute vouchers"), buyer_org, 1_000_000)
        return Invoice.objects.get(pk=invoice_draft_refresh(buyer=buyer_org))


def _client(organisation) -> Client:
    client = Client()
    client.force_login(member_of(organisation))
    return client


@time_machine.travel(NOW, tick=False)
def test_a_draft_previews_its_voucher_share_and_writes_nothing(draft, buyer_org):
    # given
    assert (draft.status, draft.gross_amount) == ("draft", 22_195)
    transactions_before = LedgerTransaction.objects.count()

    # when
    page = _client(buyer_org).get(reverse("billing-invoice", args=[draft.pk])).content.decode()

    # then: 30 % of ¥221.95 = ¥66.585 → ¥66.58 (half-even), the buyer's share ¥155.37
    assert "Compute vouchers (preview: applied when the invoice is issued)" in page
    assert "-¥66.58" in page and "¥155.37" in page
    assert "−¥0.00" not in page and "-¥0.00" not in page
    # nothing redeemed, drawn or posted
    assert not Redemption.objects.exists()
    assert LedgerTransaction.objects.count() == transactions_before
    draft.refresh_from_db()
    assert (draft.voucher_amount, draft.buyer_amount) == (0, 22_195)
    assert voucher_balance(voucher=buyer_org.vouchers.get()) == 1_000_000

    # and issuing it pays exactly what the preview showed
    issued = invoice_issue(invoice=draft)
    assert (issued.voucher_amount, issued.buyer_amount) == (6_658, 15_537)
    assert ledger_is_balanced()


@time_machine.travel(NOW, tick=False)
def test_the_page_follows_the_payment_until_paid_then_stops_polling(draft, buyer_org):
    invoice = invoice_issue(invoice=draft)
    client = _client(buyer_org)
    status_url = reverse("billing-invoice-status", args=[invoice.pk])

    # the page polls the small status fragment while the invoice is open
    page = client.get(reverse("billing-invoice", args=[invoice.pk])).content.decode()
    assert f'hx-get="{status_url}" hx-trigger="every 2s"' in page
    assert "htmx" in page  # the script, from django-htmx's package
    fragment = client.get(status_url).content.decode()
    assert "¥155.37 outstanding" in fragment and 'hx-trigger="every 2s"' in fragment

    # when the webhook's payment lands
    invoice_mark_paid(invoice=invoice, amount=15_537, business_key="stripe:payment_intent:pi_1")

    # then the fragment says paid and carries no trigger: the poll stops
    fragment = client.get(status_url).content.decode()
    assert "Paid" in fragment or "paid" in fragment
    assert "¥155.37 paid by card on 20 May 2026, 12:00" in fragment  # the one English format
    assert "hx-trigger" not in fragment
    # another buyer's poll finds nothing
    other = OrganisationFactory(kind="buyer")
    assert _client(other).get(status_url).status_code == 404


@time_machine.travel(NOW, tick=False)
def test_the_invoice_names_the_buyer_by_legal_name_and_credit_code(draft, buyer_org):
    page = _client(buyer_org).get(reverse("billing-invoice", args=[draft.pk])).content.decode()

    assert buyer_org.legal_name in page
    assert f"Unified social credit code: {buyer_org.credit_code}" in page


@time_machine.travel(NOW, tick=False)
def test_a_line_lists_its_usage_records_and_downloads_them_as_csv(draft, buyer_org):
    line = draft.lines.get()
    client = _client(buyer_org)

    page = client.get(reverse("billing-invoice-line", args=[line.pk])).content.decode()
    assert page.count("<tr><td>20 May 2026, ") == 37  # one row per 5-minute record
    assert "20 May 2026, 08:35 – 08:40" in page  # the short window, local time
    assert "¥221.95" in page and "22195" in page

    response = client.get(reverse("billing-invoice-line-csv", args=[line.pk]))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    records = rows[1:-2]
    assert len(records) == 37
    assert records[7][:3] == ["2026-05-20 08:35:00", "2026-05-20 08:40:00", "595"]
    assert sum(int(row[2]) for row in records) == 22_195
    assert rows[-2][:3] == ["Line total", "", "22195"]
    assert rows[-1][2:4] == ["221.95", "CNY"]
    # another buyer's line is a 404, page and CSV
    other = _client(OrganisationFactory(kind="buyer"))
    assert other.get(reverse("billing-invoice-line", args=[line.pk])).status_code == 404
    assert other.get(reverse("billing-invoice-line-csv", args=[line.pk])).status_code == 404


def _pdf_text(response) -> str:
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(response.content))
    return "\n".join(page.extract_text() for page in reader.pages)


@time_machine.travel(NOW, tick=False)
def test_the_invoice_is_a_pdf_in_english_and_in_chinese(draft, buyer_org):
    invoice = invoice_issue(invoice=draft)
    client = _client(buyer_org)
    url = reverse("billing-invoice-pdf", args=[invoice.pk])

    english = _pdf_text(client.get(url))
    assert f"Invoice {invoice.number}" in english
    assert buyer_org.legal_name in english and buyer_org.credit_code in english
    for amount in ("¥221.95", "-¥66.58", "¥155.37"):
        assert amount in english

    client.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        chinese = _pdf_text(client.get(url))
    assert f"账单 {invoice.number}" in chinese
    assert "统一社会信用代码" in chinese and "算力券支付" in chinese
    for amount in ("¥221.95", "-¥66.58", "¥155.37"):
        assert amount in chinese


@time_machine.travel(NOW, tick=False)
def test_history_and_line_text_are_in_chinese_on_a_chinese_page(draft, buyer_org):
    invoice = invoice_issue(invoice=draft)
    client = _client(buyer_org)
    client.cookies["django_language"] = "zh-hans"

    page = client.get(reverse("billing-invoice", args=[invoice.pk])).content.decode()

    line = invoice.lines.get()
    assert f"· 租约 {line.lease_id}" in page
    assert "草稿 → 待支付 (账单已开具)" in page
    assert "issued" not in page
