from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from billing.models.invoices import Invoice


class Payment(models.Model):
    """One attempt to collect an invoice's buyer share by card (a Stripe
    PaymentIntent). The idempotency key is derived from the invoice and the
    attempt number and stored *before* Stripe is called, so a crash between
    the call and saving its answer replays the same request.

    Statuses move forward only, by rank:
    created → requires_payment_method / requires_action → processing → succeeded;
    any non-final → canceled / failed (a new attempt then gets a new key).
    """

    class Status(models.TextChoices):
        CREATED = "created", _("created")
        REQUIRES_PAYMENT_METHOD = "requires_payment_method", _("awaiting card")
        REQUIRES_CONFIRMATION = "requires_confirmation", _("awaiting confirmation")
        REQUIRES_ACTION = "requires_action", _("awaiting authentication")
        PROCESSING = "processing", _("processing")
        SUCCEEDED = "succeeded", _("succeeded")
        CANCELED = "canceled", _("canceled")
        FAILED = "failed", pgettext_lazy("payment status", "failed")

    RANK = {
        Status.CREATED: 0,
        Status.REQUIRES_PAYMENT_METHOD: 1,
        Status.REQUIRES_CONFIRMATION: 1,
        Status.REQUIRES_ACTION: 2,
        Status.PROCESSING: 3,
        Status.SUCCEEDED: 4,
        Status.CANCELED: 4,
        Status.FAILED: 4,
    }
    FINAL = frozenset({Status.SUCCEEDED, Status.CANCELED, Status.FAILED})

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    attempt = models.PositiveIntegerField()
    idempotency_key = models.CharField(max_length=120, unique=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    stripe_payment_intent_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    client_secret = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.CREATED)
    captured_amount = models.BigIntegerField(default=0)
    refunded_amount = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "attempt"], name="payment_attempt_unique"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0, refunded_amount__lte=F("captured_amount")),
                name="payment_refund_within_captured",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice} attempt {self.attempt} ({self.status})"


class Refund(models.Model):
    """Money returned to the buyer's card; never more than was captured."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    reason = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=120, unique=True)
    stripe_refund_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    status = models.CharField(max_length=20, default="pending")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_positive")]


class StripeEvent(models.Model):
    """Each Stripe event id is recorded once, whether it came by webhook or by
    the reconciliation task; `processed_at` is set by the task that applied it."""

    event_id = models.CharField(max_length=80, unique=True)
    type = models.CharField(max_length=80)
    payload = models.JSONField()
    source = models.CharField(max_length=12, default="webhook")  # webhook | reconcile
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"
