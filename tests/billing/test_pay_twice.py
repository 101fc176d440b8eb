"""Paying an invoice again while its first card charge awaits Stripe's event
(found by the market simulator: buyers paid twice and were charged twice)."""

import pytest

from billing.models import Invoice, Payment
from tests.billing.conftest import open_invoice


@pytest.mark.django_db
@pytest.mark.integration
def test_paying_again_before_the_first_charge_is_confirmed_charges_nothing_more(
    localstripe, buyer_org, buyer_client
):
    # given an open invoice of ¥200.00 the buyer has paid by card, Stripe's event not yet in
    invoice = open_invoice(buyer=buyer_org)
    first = buyer_client.post(
        f"/api/v1/invoices/{invoice.pk}/pay/", {"payment_method": "pm_card_visa"}, format="json"
    )
    assert first.status_code == 201 and first.json()["status"] == "succeeded"

    # when they press pay again
    again = buyer_client.post(
        f"/api/v1/invoices/{invoice.pk}/pay/", {"payment_method": "pm_card_visa"}, format="json"
    )

    # then it is refused and nothing more is charged
    assert again.status_code == 409, again.json()
    assert Payment.objects.filter(invoice=invoice).count() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.OPEN, 0)
