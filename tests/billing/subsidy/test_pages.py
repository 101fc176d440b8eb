"""The authority's and the buyer's pages render, and only for them."""

import pytest
from django.utils import timezone

from billing.models import VoucherApplication
from billing.subsidy.claim_report import claim_csv
from billing.subsidy.redemption import invoice_redeem_vouchers
from tests.billing.subsidy.factories import invoice_with_lines, programme, usage_line_spec, voucher

pytestmark = pytest.mark.django_db


@pytest.fixture
def settled(authority_org, buyer_org, provider_org):
    prog = programme(authority_org, name="Qingyang vouchers")
    voucher(prog, buyer_org, 1_000_000)
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=100_000)]
    )
    invoice_redeem_vouchers(invoice=invoice)
    return prog, invoice


def test_the_authority_dashboard_and_programme_page_render_with_a_chart(client, authority, settled):
    prog, _invoice = settled
    client.force_login(authority)

    dashboard = client.get("/subsidy/")
    page = client.get(f"/subsidy/programmes/{prog.pk}/")

    assert dashboard.status_code == 200 and "Qingyang vouchers" in dashboard.content.decode()
    body = page.content.decode()
    assert page.status_code == 200
    assert "<svg" in body and "¥300.00" in body


def test_the_claim_page_and_csv_download(client, authority, settled):
    prog, invoice = settled
    client.force_login(authority)
    local = timezone.localtime(invoice.lines.get().window_start)

    page = client.get(f"/subsidy/programmes/{prog.pk}/claims/{local.year}/{local.month}/")
    csv = client.get(f"/subsidy/programmes/{prog.pk}/claims/{local.year}/{local.month}.csv")

    assert page.status_code == 200 and "¥300.00" in page.content.decode()
    assert csv.content.decode() == claim_csv(programme=prog, year=local.year, month=local.month)


def test_a_buyer_cannot_open_the_authority_pages(client, buyer, settled):
    prog, _invoice = settled
    client.force_login(buyer)

    assert client.get("/subsidy/").status_code == 404
    assert client.get(f"/subsidy/programmes/{prog.pk}/").status_code == 404


def test_a_buyer_applies_and_sees_vouchers_and_invoice_splits(client, buyer, settled):
    prog, invoice = settled
    client.force_login(buyer)

    response = client.post(
        "/vouchers/",
        {
            "programme": prog.pk,
            "purpose": "Inference for a legal assistant",
            "expected_gpu_hours": 300,
            "requested_amount": "12345.67",
        },
    )
    splits = client.get("/vouchers/invoices/")

    assert response.status_code == 302
    assert VoucherApplication.objects.get().requested_amount == 1_234_567
    page = client.get("/vouchers/").content.decode()
    assert "¥9,700.00" in page  # the voucher's balance after paying ¥300.00
    assert invoice.number in splits.content.decode() and "¥700.00" in splits.content.decode()
