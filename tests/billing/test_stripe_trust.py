"""No forged payment and no lost payment: only the PaymentIntent Stripe itself
reports marks an invoice paid, and an event recorded is processed exactly once
even when the broker lost its task (localstripe, the real stripe SDK, signed
webhooks)."""

import json
import time

import pytest
from django.test import Client
from django.utils import timezone

from billing.gateways import stripe as gateway
from billing.ledger import ledger_is_balanced
from billing.models import Invoice, LedgerTransaction, Payment, StripeEvent
from billing.payments import _payment_attempt, stripe_events_reconcile
from core.models import OutboxMessage
from core.outbox import outbox_relay
from tests.billing.conftest import open_invoice
from tests.billing.test_stripe import WEBHOOK, _deliver, _pay, _pay_and_catch_the_webhook, _sign
from tests.core.test_outbox import LATER
from tests.support import celery_broker, unused_redis_url

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def _forge(intent: dict, *, event_id: str = "evt_forged_1") -> bytes:
    """What a buyer holding the webhook secret would send: the intent, claimed paid."""
    claimed = intent | {"status": "succeeded", "amount_received": intent["amount"]}
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {"object": claimed},
        }
    ).encode()


def _post_signed(body: bytes):
    return Client().post(
        WEBHOOK,
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=_sign(body, timestamp=int(time.time())),
    )


def _nothing_paid(invoice: Invoice) -> None:
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount, invoice.outstanding_amount) == (
        Invoice.Status.OPEN,
        0,
        20_000,
    )
    assert not LedgerTransaction.objects.filter(kind="invoice_payment").exists()
    assert ledger_is_balanced()


def test_a_signed_succeeded_event_for_a_payment_never_confirmed_with_a_card_pays_nothing(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    # given a ¥200.00 invoice whose payment the buyer started without a card
    invoice = open_invoice(buyer=buyer_org)
    started = buyer_client.post(f"/api/v1/invoices/{invoice.pk}/pay/", {}, format="json").json()
    assert started["status"] == "requires_payment_method"
    intent = gateway.payment_intent_retrieve(payment_intent_id=started["payment_intent"])

    # when the buyer signs a payment_intent.succeeded for it itself
    with django_capture_on_commit_callbacks(execute=True):
        response = _post_signed(_forge(intent))

    # then the event is taken and looked into, and nothing is paid
    assert response.status_code == 200
    assert StripeEvent.objects.get().processed_at is not None
    assert Payment.objects.get().status == Payment.Status.REQUIRES_PAYMENT_METHOD
    assert Payment.objects.get().captured_amount == 0
    _nothing_paid(invoice)


def test_a_succeeded_intent_for_one_fen_cannot_pay_a_200_yuan_payment(
    localstripe, buyer_org, django_capture_on_commit_callbacks
):
    # given a ¥200.00 payment whose intent id was never saved (a crash after Stripe's answer)
    invoice = open_invoice(buyer=buyer_org)
    payment = _payment_attempt(invoice=invoice)
    # and a real, succeeded intent of ¥0.01 naming that invoice
    cheap = gateway.payment_intent_create(
        amount=1,
        currency="CNY",
        customer=gateway.customer_create(name="x", reference="x", idempotency_key="cus-x"),
        idempotency_key="cheap-intent",
        transfer_group=invoice.transfer_group,
        metadata={"invoice": str(invoice.pk)},
        payment_method="pm_card_visa",
    )
    assert cheap["status"] == "succeeded"

    # when an event claims that intent received ¥200.00
    with django_capture_on_commit_callbacks(execute=True):
        response = _post_signed(_forge(cheap | {"amount": 20_000}))

    # then
    assert response.status_code == 200
    payment.refresh_from_db()
    assert (payment.status, payment.captured_amount, payment.stripe_payment_intent_id) == (
        Payment.Status.CREATED,
        0,
        None,
    )
    _nothing_paid(invoice)


def test_a_payment_the_state_machine_closed_is_never_marked_paid(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    # given a card payment that succeeded at Stripe, but that our side had closed
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)
    Payment.objects.update(status=Payment.Status.CANCELED)

    # when Stripe's own signed succeeded event arrives
    with django_capture_on_commit_callbacks(execute=True):
        response = _deliver(Client(), body, headers)

    # then the state machine refuses, and the invoice stays unpaid
    assert response.status_code == 200
    payment = Payment.objects.get()
    assert (payment.status, payment.captured_amount) == (Payment.Status.CANCELED, 0)
    _nothing_paid(invoice)


def test_a_webhook_answered_while_the_broker_is_down_is_processed_by_the_relay_once(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)

    # when the webhook arrives while the broker is down
    with celery_broker(unused_redis_url()), django_capture_on_commit_callbacks(execute=True):
        response = _deliver(Client(), body, headers)

    # then Stripe gets its 200, the event is stored, and nothing is applied yet
    assert response.status_code == 200 and response.json()["duplicate"] is False
    assert StripeEvent.objects.get().processed_at is None
    _nothing_paid(invoice)

    # when the broker is back and the relay runs (twice)
    outbox_relay(now=timezone.now() + LATER)
    outbox_relay(now=timezone.now() + LATER)

    # then the invoice is paid, once
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.PAID, 20_000)
    assert LedgerTransaction.objects.filter(kind="invoice_payment").count() == 1
    assert StripeEvent.objects.get().processed_at is not None
    assert OutboxMessage.objects.get().completed_at is not None
    assert ledger_is_balanced()


def test_stripes_retry_of_an_event_recorded_but_never_processed_processes_it_once(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)
    with celery_broker(unused_redis_url()), django_capture_on_commit_callbacks(execute=True):
        _deliver(Client(), body, headers)
    assert StripeEvent.objects.get().processed_at is None

    # when Stripe delivers the same event again, three times, the broker back
    with django_capture_on_commit_callbacks(execute=True):
        answers = [_deliver(Client(), body, headers).json() for _ in range(3)]

    # then the first retry processed it; nothing was paid twice
    assert [a["duplicate"] for a in answers] == [True, True, True]
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.PAID, 20_000)
    assert LedgerTransaction.objects.filter(kind="invoice_payment").count() == 1
    assert ledger_is_balanced()


def test_reconciliation_processes_an_event_recorded_but_never_processed(
    localstripe, buyer_org, buyer_client, django_capture_on_commit_callbacks
):
    # given an event recorded before the outbox existed, whose task was lost
    invoice = open_invoice(buyer=buyer_org)
    paid = _pay(buyer_client, invoice)
    body, _headers = localstripe.relay.wait_for(
        "payment_intent.succeeded", object_id=paid["payment_intent"]
    )
    event = json.loads(body)
    StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event)

    # when the reconciliation runs (twice)
    with django_capture_on_commit_callbacks(execute=True):
        missing = stripe_events_reconcile()
    with django_capture_on_commit_callbacks(execute=True):
        again = stripe_events_reconcile()

    # then nothing was missing, but the recorded event was processed, once
    assert (missing, again) == (0, 0)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount) == (Invoice.Status.PAID, 20_000)
    assert LedgerTransaction.objects.filter(kind="invoice_payment").count() == 1
    assert StripeEvent.objects.get().processed_at is not None
