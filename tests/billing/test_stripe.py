"""Card payments against localstripe, through the real stripe SDK and signed webhooks."""

import hashlib
import hmac
import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from billing.ledger import account_get, ledger_is_balanced
from billing.models import Invoice, LedgerAccount, LedgerTransaction, Payment, StripeEvent
from billing.payments import payment_refund, stripe_events_reconcile
from core.errors import ApplicationError
from tests.billing.conftest import WEBHOOK_SECRET, open_invoice

P = LedgerAccount.Purpose
WEBHOOK = "/api/v1/stripe/webhook/"


def _deliver(client, body: bytes, headers: dict[str, str]):
    return client.post(
        WEBHOOK,
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=headers["Stripe-Signature"],
    )


def _sign(body: bytes, *, timestamp: int, secret: str = WEBHOOK_SECRET) -> str:
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _pay(buyer_client, invoice):
    response = buyer_client.post(
        f"/api/v1/invoices/{invoice.pk}/pay/", {"payment_method": "pm_card_visa"}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org):
    """An open ¥200.00 invoice paid with pm_card_visa, and the signed
    payment_intent.succeeded delivery localstripe made for it (not yet
    passed to the exchange): (invoice, body, headers)."""
    invoice = open_invoice(buyer=buyer_org)
    paid = _pay(buyer_client, invoice)
    body, headers = localstripe.relay.wait_for(
        "payment_intent.succeeded", object_id=paid["payment_intent"]
    )
    return invoice, body, headers


@pytest.mark.django_db
@pytest.mark.integration
def test_paying_with_pm_card_visa_marks_the_invoice_paid_through_the_signed_webhook(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    # given an open invoice of ¥200.00
    invoice = open_invoice(buyer=buyer_org)
    assert invoice.buyer_amount == 20_000

    # when the buyer pays by card
    paid = _pay(buyer_client, invoice)

    # then Stripe has a customer and a succeeded intent, but money waits for the webhook
    buyer_org.refresh_from_db()
    assert buyer_org.stripe_customer_id.startswith("cus_")
    assert paid["status"] == "succeeded" and paid["amount"] == 20_000
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    assert Payment.objects.get().idempotency_key == f"invoice-{invoice.pk}-pay-1"

    # when localstripe's signed payment_intent.succeeded arrives
    body, headers = localstripe.relay.wait_for(
        "payment_intent.succeeded", object_id=paid["payment_intent"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = _deliver(Client(), body, headers)

    # then
    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert (invoice.paid_amount, invoice.outstanding_amount) == (20_000, 0)
    assert account_get(purpose=P.STRIPE_CLEARING).normal_balance == 20_000
    assert account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org).normal_balance == 0
    assert StripeEvent.objects.get().processed_at is not None
    assert ledger_is_balanced()


@pytest.mark.django_db
@pytest.mark.integration
def test_a_tampered_webhook_is_refused_and_changes_nothing(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)
    tampered = body.replace(b'"amount": 20000', b'"amount": 99999')
    assert tampered != body

    with django_capture_on_commit_callbacks(execute=True):
        response = _deliver(Client(), tampered, headers)

    assert response.status_code == 400
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.OPEN, 0)
    assert not StripeEvent.objects.exists()
    assert not LedgerTransaction.objects.filter(kind="invoice_payment").exists()


@pytest.mark.django_db
def test_a_webhook_signed_more_than_300_seconds_ago_is_refused(settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    body = json.dumps({"id": "evt_old", "type": "payment_intent.succeeded"}).encode()

    old = _sign(body, timestamp=int(time.time()) - 301)
    fresh = _sign(body, timestamp=int(time.time()) - 5)
    unsigned = Client().post(WEBHOOK, data=body, content_type="application/json")

    refused = Client().post(
        WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=old
    )
    assert refused.status_code == 400
    assert unsigned.status_code == 400
    assert not StripeEvent.objects.exists()
    accepted = Client().post(
        WEBHOOK, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=fresh
    )
    assert accepted.status_code == 200


@pytest.mark.django_db
@pytest.mark.integration
def test_the_same_event_delivered_three_times_posts_once(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)

    with django_capture_on_commit_callbacks(execute=True):
        answers = [_deliver(Client(), body, headers).json() for _ in range(3)]

    assert [a["duplicate"] for a in answers] == [False, True, True]
    assert StripeEvent.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind="invoice_payment").count() == 1
    invoice.refresh_from_db()
    assert invoice.paid_amount == 20_000


@pytest.mark.postgres
@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_the_same_event_delivered_three_times_concurrently_gives_one_ledger_transaction(
    catalogue, localstripe, buyer_org, buyer_client
):
    # given a real signed delivery
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)
    barrier = threading.Barrier(3)
    statuses = []

    def deliver():
        try:
            barrier.wait()
            statuses.append(_deliver(Client(), body, headers).status_code)
        finally:
            connection.close()

    # when three deliveries race
    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then
    assert statuses == [200, 200, 200]
    assert StripeEvent.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind="invoice_payment").count() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.PAID, 20_000)
    assert ledger_is_balanced()


@pytest.mark.django_db
@pytest.mark.integration
def test_a_late_processing_event_never_downgrades_a_paid_invoice(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)
    with django_capture_on_commit_callbacks(execute=True):
        _deliver(Client(), body, headers)
    # when a 'processing' event for the same intent arrives late
    event = json.loads(body)
    event.update(id="evt_late_processing", type="payment_intent.processing")
    event["data"]["object"]["status"] = "processing"
    late = json.dumps(event).encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(
            WEBHOOK,
            data=late,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=_sign(late, timestamp=int(time.time())),
        )

    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert Payment.objects.get().status == Payment.Status.SUCCEEDED


@pytest.mark.django_db
@pytest.mark.integration
def test_reconciliation_backfills_a_missed_webhook(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    invoice = open_invoice(buyer=buyer_org)
    paid = _pay(buyer_client, invoice)
    localstripe.relay.wait_for("payment_intent.succeeded", object_id=paid["payment_intent"])
    # (the webhook never reached us)

    with django_capture_on_commit_callbacks(execute=True):
        missing = stripe_events_reconcile()
    with django_capture_on_commit_callbacks(execute=True):
        again = stripe_events_reconcile()

    assert (missing, again) == (1, 0)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert StripeEvent.objects.get().source == "reconcile"


@pytest.mark.django_db
@pytest.mark.integration
def test_refunds_are_bounded_by_what_was_captured(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    invoice = open_invoice(buyer=buyer_org)
    _pay(buyer_client, invoice)
    with django_capture_on_commit_callbacks(execute=True):
        stripe_events_reconcile()
    payment = Payment.objects.get()

    refund = payment_refund(payment=payment, amount=5_000, reason="goodwill")
    with pytest.raises(ApplicationError):
        payment_refund(payment=payment, amount=15_001)

    assert refund.stripe_refund_id.startswith("re_")
    payment.refresh_from_db()
    assert (payment.captured_amount, payment.refunded_amount) == (20_000, 5_000)
    assert payment.refunds.count() == 1
    assert account_get(purpose=P.STRIPE_CLEARING).normal_balance == 15_000
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert ledger_is_balanced()


@pytest.mark.django_db
def test_another_buyers_invoice_cannot_be_paid(buyer_org, client_for):
    from accounts.models import Organisation
    from tests.factories import OrganisationFactory, member_of

    invoice = open_invoice(buyer=buyer_org)
    stranger = client_for(member_of(OrganisationFactory(kind=Organisation.Kind.BUYER)))

    response = stranger.post(f"/api/v1/invoices/{invoice.pk}/pay/", {}, format="json")

    assert response.status_code == 404
    assert not Payment.objects.exists()


@pytest.mark.django_db
def test_stripe_unreachable_before_the_customer_exists_is_a_400_not_a_500(
    settings, buyer_org, buyer_client
):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    invoice = open_invoice(buyer=buyer_org)

    response = buyer_client.post(f"/api/v1/invoices/{invoice.pk}/pay/", {}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("The card payment could not be started")
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
    # the attempt waits for a retry with the same idempotency key; nothing was charged
    assert Payment.objects.get(invoice=invoice).stripe_payment_intent_id is None
