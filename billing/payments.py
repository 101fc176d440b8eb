"""Card payments of invoices through Stripe, and Stripe's events.

Money moves only when Stripe says so in an event (a verified webhook, or the
reconciliation task that fetches events a webhook missed): the API answer
to our own call updates the payment's status, never the ledger. Every event
id is recorded once; processing happens in a task after commit, under a row
lock, and a payment's status only moves forward.
"""

import datetime as dt
import logging
import time
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Organisation
from billing import settlement
from billing.gateways import stripe as gateway
from billing.models import Invoice, Payment, Refund, StripeEvent
from core.errors import ApplicationError, Conflict

logger = logging.getLogger(__name__)

PI = Payment.Status
RECONCILE_WINDOW_SECONDS = 3 * 24 * 3600
PAYMENT_INTENT_EVENTS = {
    "payment_intent.succeeded": PI.SUCCEEDED,
    "payment_intent.processing": PI.PROCESSING,
    "payment_intent.requires_action": PI.REQUIRES_ACTION,
    "payment_intent.payment_failed": PI.FAILED,
    "payment_intent.canceled": PI.CANCELED,
}


# --- customers and payment intents ----------------------------------------------------


def customer_ensure(*, organisation: Organisation) -> str:
    """The buyer's Stripe customer, created once (the key is the organisation)."""
    if organisation.stripe_customer_id:
        return organisation.stripe_customer_id
    customer_id = gateway.customer_create(
        name=organisation.legal_name,
        reference=str(organisation.pk),
        idempotency_key=f"customer-organisation-{organisation.pk}",
    )
    Organisation.objects.filter(pk=organisation.pk, stripe_customer_id="").update(
        stripe_customer_id=customer_id
    )
    organisation.refresh_from_db(fields=["stripe_customer_id"])
    return organisation.stripe_customer_id


def _payment_attempt(*, invoice: Invoice) -> Payment:
    """Reuse the open attempt for this amount, or store a new one (and its
    idempotency key) before anything is sent to Stripe."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status != Invoice.Status.OPEN or invoice.outstanding_amount <= 0:
            raise Conflict(
                _("Invoice %(number)s has nothing to pay.") % {"number": invoice.number},
                errors={"status": [invoice.status]},
            )
        current = invoice.payments.exclude(status__in=Payment.FINAL).order_by("-attempt").first()
        if current and current.amount == invoice.outstanding_amount:
            return current
        attempt = (
            invoice.payments.order_by("-attempt").values_list("attempt", flat=True).first() or 0
        ) + 1
        return Payment.objects.create(
            invoice=invoice,
            attempt=attempt,
            idempotency_key=f"invoice-{invoice.pk}-pay-{attempt}",
            amount=invoice.outstanding_amount,
            currency=invoice.currency,
        )


def invoice_pay_start(*, invoice: Invoice, payment_method: str | None = None) -> Payment:
    """Start (or resume) a card payment of the invoice's outstanding buyer share.

    Returns the Payment with the PaymentIntent's id, status and client secret
    (for Stripe's payment element). With `payment_method` the intent is
    confirmed at once (test-mode card form, `pm_card_visa` in tests).
    """
    payment = _payment_attempt(invoice=invoice)
    if payment.stripe_payment_intent_id and payment.status != PI.CREATED:
        return payment
    customer = customer_ensure(organisation=invoice.buyer)
    try:
        intent = gateway.payment_intent_create(
            amount=payment.amount,
            currency=payment.currency,
            customer=customer,
            idempotency_key=payment.idempotency_key,
            transfer_group=invoice.transfer_group,
            metadata={"invoice": str(invoice.pk), "invoice_number": invoice.number},
            payment_method=payment_method,
        )
    except gateway.GatewayError as exc:
        logger.warning("payment intent failed", extra={"invoice": invoice.pk, "error": str(exc)})
        if not exc.retryable:
            _payment_advance(payment=payment, status=PI.FAILED)
        raise ApplicationError(
            _("The card payment could not be started: %(error)s") % {"error": exc},
            errors={"payment_method": [str(exc)]},
        ) from exc
    Payment.objects.filter(pk=payment.pk, stripe_payment_intent_id__isnull=True).update(
        stripe_payment_intent_id=intent["id"], client_secret=intent.get("client_secret") or ""
    )
    payment.refresh_from_db()
    _payment_advance(payment=payment, status=_status_from_intent(intent))
    payment.refresh_from_db()
    return payment


def _status_from_intent(intent: dict[str, Any]) -> str:
    status = intent.get("status") or PI.CREATED
    if status == "requires_payment_method" and intent.get("last_payment_error"):
        return PI.FAILED
    if status == "requires_capture":
        return PI.PROCESSING
    return status if status in PI.values else PI.CREATED


def _payment_advance(*, payment: Payment, status: str) -> bool:
    """Move a payment's status forward only (a late `processing` never
    downgrades `succeeded`)."""
    lower = [s for s, rank in Payment.RANK.items() if rank < Payment.RANK[status]]
    return bool(Payment.objects.filter(pk=payment.pk, status__in=lower).update(status=status))


# --- refunds -------------------------------------------------------------------------


def payment_refund(*, payment: Payment, amount: int, reason: str = "") -> Refund:
    """Refund up to what was captured and not yet refunded on this payment."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        refundable = payment.captured_amount - payment.refunded_amount
        if amount <= 0 or amount > refundable:
            raise ApplicationError(
                _("At most %(refundable)s can be refunded.") % {"refundable": refundable},
                errors={"amount": [_("exceeds what was captured and not refunded")]},
            )
        number = payment.refunds.count() + 1
        refund = Refund.objects.create(
            payment=payment,
            amount=amount,
            reason=reason[:200],
            idempotency_key=f"payment-{payment.pk}-refund-{number}",
        )
        # Reserve the amount now so two refunds at once cannot exceed the capture.
        Payment.objects.filter(pk=payment.pk).update(refunded_amount=F("refunded_amount") + amount)
    try:
        result = gateway.refund_create(
            payment_intent_id=payment.stripe_payment_intent_id,
            amount=amount,
            idempotency_key=refund.idempotency_key,
        )
    except gateway.GatewayError as exc:
        if not exc.retryable:  # Stripe said no: free the reservation
            _release_failed_refund(refund)
        raise ApplicationError(
            _("The refund failed: %(error)s") % {"error": exc}, errors={"amount": [str(exc)]}
        ) from exc
    with transaction.atomic():
        Refund.objects.filter(pk=refund.pk).update(
            stripe_refund_id=result["id"], status=result.get("status", "succeeded")
        )
        settlement.invoice_record_refund(
            invoice=payment.invoice, amount=amount, business_key=f"stripe:refund:{result['id']}"
        )
    refund.refresh_from_db()
    return refund


def _release_failed_refund(refund: Refund) -> bool:
    with transaction.atomic():
        changed = Refund.objects.filter(pk=refund.pk, status="pending").update(status="failed")
        if changed:
            Payment.objects.filter(pk=refund.payment_id).update(
                refunded_amount=F("refunded_amount") - refund.amount
            )
    return bool(changed)


# --- events ---------------------------------------------------------------------------


def stripe_event_record(*, event: dict[str, Any], source: str = "webhook") -> StripeEvent | None:
    """Record an event once; the first recorder queues its processing after
    commit. A repeat (same id) returns None and queues nothing."""
    from billing.tasks import stripe_event_process

    try:
        with transaction.atomic():
            record = StripeEvent.objects.create(
                event_id=event["id"], type=event.get("type", ""), payload=event, source=source
            )
            transaction.on_commit(lambda: stripe_event_process.delay(record.pk))
    except IntegrityError:
        return None
    return record


def stripe_event_process(*, event: StripeEvent) -> None:
    """Apply one recorded event, once (row lock + processed_at)."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event.pk)
        if event.processed_at:
            return
        status = PAYMENT_INTENT_EVENTS.get(event.type)
        if status:
            _payment_intent_event(intent=event.payload["data"]["object"], status=status)
        StripeEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now())


def _payment_for_intent(intent: dict[str, Any]) -> Payment | None:
    payment = Payment.objects.filter(stripe_payment_intent_id=intent["id"]).first()
    if payment is None:
        # The webhook can beat our own save of the intent id: find it by invoice.
        invoice_id = (intent.get("metadata") or {}).get("invoice")
        payment = (
            Payment.objects.filter(
                invoice_id=invoice_id, amount=intent.get("amount"), stripe_payment_intent_id=None
            )
            .order_by("-attempt")
            .first()
            if invoice_id
            else None
        )
        if payment:
            Payment.objects.filter(pk=payment.pk).update(stripe_payment_intent_id=intent["id"])
    return payment


def _payment_intent_event(*, intent: dict[str, Any], status: str) -> None:
    payment = _payment_for_intent(intent)
    if payment is None:
        logger.warning("event for an unknown payment intent", extra={"intent": intent["id"]})
        return
    payment = Payment.objects.select_for_update().get(pk=payment.pk)
    _payment_advance(payment=payment, status=status)
    if status != PI.SUCCEEDED:
        return
    received = intent.get("amount_received") or intent.get("amount") or 0
    if received > payment.captured_amount:
        Payment.objects.filter(pk=payment.pk).update(captured_amount=received)
        settlement.invoice_mark_paid(
            invoice=payment.invoice,
            amount=received - payment.captured_amount,
            business_key=f"stripe:payment_intent:{intent['id']}:captured:{received}",
        )


def stripe_events_reconcile(*, window_seconds: int = RECONCILE_WINDOW_SECONDS) -> int:
    """Fetch recent events from Stripe and record (and so process) any that no
    webhook delivered. Returns how many were missing."""
    since = int(time.time()) - window_seconds
    known = set(
        StripeEvent.objects.filter(
            received_at__gte=timezone.now() - dt.timedelta(seconds=window_seconds + 86400)
        ).values_list("event_id", flat=True)
    )
    missing = 0
    for event in gateway.events_list(created_gte=since):
        if event["id"] in known or event.get("type") not in PAYMENT_INTENT_EVENTS:
            continue
        if stripe_event_record(event=event, source="reconcile"):
            missing += 1
    return missing
