"""Card payments of invoices through Stripe, and Stripe's events.

Money moves only when Stripe says so in an event (a verified webhook, or the
reconciliation task that fetches events a webhook missed): the API answer
to our own call updates the payment's status, never the ledger. Every event
id is recorded once; its processing is written to the outbox with it
(core/outbox.py) and runs in a task after commit, under a row lock, until it
has run once to the end; a payment's status only moves forward, and only the
PaymentIntent fetched from Stripe (never the event's copy) marks an invoice paid.
"""

import datetime as dt
import logging
import time
from typing import Any

from django.db import transaction
from django.db.models import CharField, Exists, F, OuterRef, Value
from django.db.models.functions import Cast, Concat
from django.utils.translation import gettext as _

from accounts.models import Organisation
from billing import prepaid, settlement
from billing.gateways import stripe as gateway
from billing.models import Invoice, Payment, Refund, StripeEvent
from core import clock
from core.errors import ApplicationError, Conflict
from core.models import OutboxMessage
from core.outbox import outbox_enqueue

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
        # A charge Stripe took whose event has not been applied yet (captured 0):
        # paying again before it lands would charge the card twice (the simulator
        # found buyers doing exactly that between the charge and its webhook).
        if invoice.payments.filter(
            status__in=(PI.SUCCEEDED, PI.PROCESSING), captured_amount=0
        ).exists():
            raise Conflict(
                _("A card payment of invoice %(number)s is being confirmed.")
                % {"number": invoice.number},
                errors={"status": [PI.PROCESSING]},
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
    try:
        # Creating the customer is a Stripe call too: unreachable, it is the same 400.
        customer = customer_ensure(organisation=invoice.buyer)
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
    _payment_advance(payment=payment, status=intent_status(intent))
    payment.refresh_from_db()
    return payment


def intent_status(intent: dict[str, Any]) -> str:
    """Our status for a PaymentIntent as Stripe has it (card payments and top-ups)."""
    status = intent.get("status") or PI.CREATED
    if status == "requires_payment_method" and intent.get("last_payment_error"):
        return PI.FAILED
    if status == "requires_capture":
        return PI.PROCESSING
    return status if status in PI.values else PI.CREATED


def _payment_advance(*, payment: Payment, status: str) -> bool:
    """Move a payment's status forward only (a late `processing` never
    downgrades `succeeded`)."""
    lower = [s for s, rank in Payment.RANK.items() if rank < Payment.RANK[Payment.Status(status)]]
    return bool(Payment.objects.filter(pk=payment.pk, status__in=lower).update(status=status))


# --- refunds -------------------------------------------------------------------------


def payment_refund(*, payment: Payment, amount: int, reason: str = "") -> Refund:
    """Refund up to what was captured and not yet refunded on this payment."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        refundable = payment.captured_amount - payment.refunded_amount
        if payment.stripe_payment_intent_id is None:
            refundable = 0  # nothing reached Stripe, so nothing was captured
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
            payment_intent_id=payment.stripe_payment_intent_id or "",
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


def stripe_event_record(
    *, event: dict[str, Any], source: str = "webhook"
) -> tuple[StripeEvent, bool]:
    """Record an event once and queue its processing through the outbox (in the
    same transaction). Returns (event, created). A repeat of an event recorded
    but not yet processed (its task lost, or the broker down) queues it again;
    a repeat of a processed one queues nothing."""
    with transaction.atomic():
        record, created = StripeEvent.objects.get_or_create(
            event_id=event["id"],
            defaults={"type": event.get("type", ""), "payload": event, "source": source},
        )
        if record.processed_at is None:
            outbox_enqueue(
                task_name="billing.stripe_event_process",
                args=[record.pk],
                key=f"stripe-event:{record.pk}",
            )
    return record, created


def stripe_event_process(*, event: StripeEvent) -> None:
    """Apply one recorded event, once (row lock + processed_at).

    The event is a notification, not the evidence: the PaymentIntent it names
    is fetched from Stripe with the secret key, and only what Stripe answers
    moves a payment or the ledger. A forged event (someone holding the webhook
    secret) can then do no more than make us look. A Stripe error that is worth
    retrying raises, and the outbox runs the task again."""
    if event.processed_at or event.type not in PAYMENT_INTENT_EVENTS:
        _event_mark_processed(event)
        return
    intent_id = str(((event.payload.get("data") or {}).get("object") or {}).get("id") or "")
    intent = _intent_from_stripe(intent_id)
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event.pk)
        if event.processed_at:
            return
        if intent is not None:
            _payment_intent_event(intent=intent, status=intent_status(intent))
        StripeEvent.objects.filter(pk=event.pk).update(processed_at=clock.now())


def _event_mark_processed(event: StripeEvent) -> None:
    StripeEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(
        processed_at=clock.now()
    )


def _intent_from_stripe(intent_id: str) -> dict[str, Any] | None:
    """The PaymentIntent as Stripe has it; None if Stripe does not know it."""
    if not intent_id.startswith("pi_"):
        return None
    try:
        return gateway.payment_intent_retrieve(payment_intent_id=intent_id)
    except gateway.GatewayError as exc:
        if exc.retryable:
            raise
        logger.warning("event for an intent Stripe does not know", extra={"intent": intent_id})
        return None


def _payment_for_intent(intent: dict[str, Any]) -> Payment | None:
    payment = Payment.objects.filter(stripe_payment_intent_id=intent["id"]).first()
    if payment is None:
        # The webhook can beat our own save of the intent id: find it by invoice.
        invoice_id = str((intent.get("metadata") or {}).get("invoice") or "")
        payment = (
            Payment.objects.filter(
                invoice_id=invoice_id,
                amount=int(intent.get("amount") or 0),
                stripe_payment_intent_id=None,
            )
            .order_by("-attempt")
            .first()
            if invoice_id.isdigit()
            else None
        )
        if payment:
            Payment.objects.filter(pk=payment.pk).update(stripe_payment_intent_id=intent["id"])
    return payment


def _intent_matches(*, intent: dict[str, Any], payment: Payment) -> bool:
    """The intent Stripe charged is the one this payment asked for: same
    invoice, amount and currency, and it received exactly that amount."""
    metadata = intent.get("metadata") or {}
    return (
        intent.get("id") == payment.stripe_payment_intent_id
        and str(metadata.get("invoice") or "") == str(payment.invoice_id)
        and intent.get("amount") == payment.amount
        # localstripe leaves out amount_received; Stripe always sends it.
        and intent.get("amount_received", intent.get("amount")) == payment.amount
        and str(intent.get("currency") or "").upper() == payment.currency.upper()
    )


def _payment_intent_event(*, intent: dict[str, Any], status: str) -> None:
    if (intent.get("metadata") or {}).get("top_up"):
        prepaid.top_up_intent_event(intent=intent, status=status)
        return
    payment = _payment_for_intent(intent)
    if payment is None:
        logger.warning("event for an unknown payment intent", extra={"intent": intent["id"]})
        return
    payment = Payment.objects.select_for_update().get(pk=payment.pk)
    if status != PI.SUCCEEDED:
        _payment_advance(payment=payment, status=status)
        return
    if payment.status in (PI.CANCELED, PI.FAILED):
        # The state machine refuses: a closed attempt never pays an invoice.
        logger.error(
            "succeeded intent of a closed payment: not applied, refund it",
            extra={"payment": payment.pk, "intent": intent["id"], "status": payment.status},
        )
        return
    if not _intent_matches(intent=intent, payment=payment):
        logger.error(
            "succeeded intent does not match its payment: not applied",
            extra={"payment": payment.pk, "intent": intent["id"]},
        )
        return
    _payment_advance(payment=payment, status=PI.SUCCEEDED)
    if payment.captured_amount == 0:
        Payment.objects.filter(pk=payment.pk, captured_amount=0).update(
            captured_amount=payment.amount
        )
        settlement.invoice_mark_paid(
            invoice=payment.invoice,
            amount=payment.amount,
            business_key=f"stripe:payment_intent:{intent['id']}:captured:{payment.amount}",
        )


def stripe_events_reconcile(*, window_seconds: int = RECONCILE_WINDOW_SECONDS) -> int:
    """Fetch recent events from Stripe and record (and so process) any that no
    webhook delivered; queue again every recorded event not yet processed.
    Returns how many were missing."""
    since = int(time.time()) - window_seconds
    known = set(
        StripeEvent.objects.filter(
            received_at__gte=clock.now() - dt.timedelta(seconds=window_seconds + 86400)
        ).values_list("event_id", flat=True)
    )
    missing = 0
    for event in gateway.events_list(created_gte=since):
        if event["id"] in known or event.get("type") not in PAYMENT_INTENT_EVENTS:
            continue
        _record, created = stripe_event_record(event=event, source="reconcile")
        missing += created
    # Events recorded but never processed with nothing waiting in the outbox
    # (recorded before the outbox existed) are queued again.
    waiting = OutboxMessage.objects.filter(
        key=Concat(Value("stripe-event:"), Cast(OuterRef("pk"), CharField())),
        completed_at__isnull=True,
    )
    for pk in (
        StripeEvent.objects.filter(processed_at__isnull=True)
        .exclude(Exists(waiting))
        .values_list("pk", flat=True)
    ):
        with transaction.atomic():
            outbox_enqueue(
                task_name="billing.stripe_event_process", args=[pk], key=f"stripe-event:{pk}"
            )
    return missing
