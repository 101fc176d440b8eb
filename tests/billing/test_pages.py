from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import translation

from billing.payouts import payout_run_execute
from billing.settlement import invoice_mark_paid
from tests.billing.conftest import open_invoice


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_buyer_sees_its_invoice_page_and_a_print_ready_version_in_both_languages(
    buyer, buyer_org
):
    invoice = open_invoice(buyer=buyer_org)
    client = _client(buyer)

    listing = client.get("/billing/invoices/")
    page = client.get(f"/billing/invoices/{invoice.pk}/")
    printed = client.get(f"/billing/invoices/{invoice.pk}/print/")
    with translation.override("zh-hans"):
        chinese = client.get(
            f"/billing/invoices/{invoice.pk}/print/", HTTP_ACCEPT_LANGUAGE="zh-hans"
        )

    assert invoice.number in listing.content.decode()
    assert page.status_code == printed.status_code == chinese.status_code == 200
    body = printed.content.decode()
    assert "¥200.00" in body and buyer_org.credit_code in body
    # A4 page rules, from a stylesheet file (the CSP allows no inline <style>)
    assert "css/invoice-print.css" in body
    assert "@page { size: A4" in Path(finders.find("css/invoice-print.css")).read_text()
    assert "Pay by card" in page.content.decode()
    assert '<html lang="zh-hans">' in chinese.content.decode()


@pytest.mark.django_db
def test_another_organisation_gets_404_for_an_invoice(buyer_org, provider):
    invoice = open_invoice(buyer=buyer_org)

    response = _client(provider).get(f"/billing/invoices/{invoice.pk}/")

    assert response.status_code == 404


@pytest.mark.django_db
def test_the_api_lists_invoices_and_payouts_to_their_owners(
    buyer_org, buyer_client, provider_org, provider_client, django_assert_max_num_queries
):
    from billing.models import PayoutAccount

    invoice = open_invoice(buyer=buyer_org, provider=provider_org)
    invoice_mark_paid(invoice=invoice, amount=invoice.buyer_amount, business_key="t:paid")
    PayoutAccount.objects.create(
        provider=provider_org, account_number="1", account_name="x", bank_name="b", bank_code="1"
    )
    payout_run_execute(key="run-1")

    with django_assert_max_num_queries(8):
        invoices = buyer_client.get("/api/v1/invoices/").json()
    detail = buyer_client.get(f"/api/v1/invoices/{invoice.pk}/").json()
    payouts = provider_client.get("/api/v1/payouts/").json()
    page = _client(provider_client.user).get("/billing/payouts/")

    assert [i["number"] for i in invoices["results"]] == [invoice.number]
    assert detail["lines"][0]["amount"] == 20_000
    assert detail["lines"][0]["gpu_hours"] == "10.0000"
    assert payouts["results"][0]["amount"] == 19_000
    assert payouts["results"][0]["lines"] == [
        {
            "invoice": invoice.number,
            "amount": 19_000,
            "transferred_amount": 0,
            "stripe_transfer_id": "",
        }
    ]
    assert provider_client.get("/api/v1/invoices/").status_code == 403
    assert page.status_code == 200 and "¥190.00" in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "days", "moments", "rates"),
    [
        (
            "en",
            "1 May 2026 – 1 Jun 2026",
            "1 May 2026, 00:00 – 1 Jun 2026, 00:00",
            ("base rate 30%", "domestic rate 12.5%"),
        ),
        (
            "zh-hans",
            "2026-05-01 – 2026-06-01",
            "2026-05-01 00:00 – 2026-06-01 00:00",
            ("基础比例 30%", "国产算力比例 12.5%"),
        ),
    ],
)
def test_billing_pages_show_dates_in_the_one_format_of_the_language_and_rates_in_percent(
    buyer, buyer_org, authority, authority_org, language, days, moments, rates
):
    from tests.billing.subsidy.factories import programme

    invoice = open_invoice(buyer=buyer_org)  # May 2026, Shanghai time
    scheme = programme(authority_org, rate_bp=3_000, domestic_rate_bp=1_250)
    header = {"HTTP_ACCEPT_LANGUAGE": language}

    listing = _client(buyer).get("/billing/invoices/", **header).content.decode()
    page = _client(buyer).get(f"/billing/invoices/{invoice.pk}/", **header).content.decode()
    programme_page = (
        _client(authority).get(f"/subsidy/programmes/{scheme.pk}/", **header).content.decode()
    )

    assert days in listing  # the invoice list: the period's days
    assert moments in page  # the invoice: its period to the minute
    assert all(rate in programme_page for rate in rates), programme_page
    assert " bp" not in programme_page
