from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from billing.models.payments import Payment
from core import limits


class FundingTerms(models.Model):
    """How a buyer funds its usage: a prepaid balance (the ledger's
    `buyer_credit` account, topped up by card) and a credit limit set by
    staff. A buyer `held` to its terms (it chose so, or staff granted it
    credit) is stopped at zero (billing/prepaid.py): when what is available
    reaches zero, new orders are refused (`stop_orders`), and under
    `stop_leases` running leases end too once `grace_minutes` have passed. A
    buyer not held (no terms, or a top-up alone) pays its invoices by card
    after use, its prepaid balance first.

    `exhausted_at` is when available first reached zero (cleared when it is
    above zero again); `auto_top_up_armed` allows one automatic top-up per
    crossing of `auto_top_up_below_amount`."""

    class AtZero(models.TextChoices):
        STOP_ORDERS = "stop_orders", _("stop new orders")
        STOP_LEASES = "stop_leases", _("stop new orders and end running leases after the grace")

    buyer = models.OneToOneField(
        Organisation, on_delete=models.PROTECT, related_name="funding_terms"
    )
    currency = models.CharField(max_length=3, default="CNY")
    credit_limit_amount = models.BigIntegerField(default=0)
    held = models.BooleanField(default=False)
    at_zero = models.CharField(max_length=12, choices=AtZero.choices, default=AtZero.STOP_ORDERS)
    grace_minutes = models.PositiveIntegerField(default=60)
    # Alert when available falls to or below each amount (minor units), once per crossing.
    alert_thresholds = models.JSONField(default=list, blank=True)
    auto_top_up = models.BooleanField(default=False)
    auto_top_up_amount = models.BigIntegerField(default=0)
    auto_top_up_below_amount = models.BigIntegerField(default=0)
    auto_top_up_payment_method = models.CharField(max_length=64, blank=True)
    auto_top_up_armed = models.BooleanField(default=True)
    exhausted_at = models.DateTimeField(null=True, blank=True)
    leases_stopped_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "funding terms"
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    credit_limit_amount__gte=0,
                    credit_limit_amount__lte=limits.MAX_AMOUNT,
                    auto_top_up_amount__gte=0,
                    auto_top_up_amount__lte=limits.MAX_AMOUNT,
                    auto_top_up_below_amount__gte=0,
                    auto_top_up_below_amount__lte=limits.MAX_AMOUNT,
                ),
                name="funding_terms_amounts_bounded",
            ),
            models.CheckConstraint(
                condition=Q(grace_minutes__lte=limits.MAX_FUNDING_GRACE_MINUTES),
                name="funding_terms_grace_bounded",
            ),
            models.CheckConstraint(
                condition=Q(auto_top_up=False) | Q(auto_top_up_amount__gt=0),
                name="funding_terms_auto_top_up_has_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.buyer} funding terms"


class TopUp(models.Model):
    """Money a buyer prepays by card (a Stripe PaymentIntent), credited to its
    balance once, when Stripe's event says the intent succeeded. The
    idempotency key is stored before Stripe is called. Statuses move forward
    only, as a Payment's do."""

    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="top_ups")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="CNY")
    automatic = models.BooleanField(default=False)
    idempotency_key = models.CharField(max_length=120, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    client_secret = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=32, choices=Payment.Status.choices, default=Payment.Status.CREATED
    )
    credited_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0, amount__lte=limits.MAX_AMOUNT), name="top_up_bounded"
            )
        ]

    def __str__(self) -> str:
        return f"top-up {self.pk} of {self.buyer} ({self.status})"


class FundingAlert(models.Model):
    """A notice that a buyer's available funds fell to or below one of its
    thresholds (0: funds exhausted). One open alert per threshold: it is
    written, shown and e-mailed once, and cleared when available rises above
    the threshold again, so the next crossing alerts again."""

    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="funding_alerts")
    threshold_amount = models.BigIntegerField()
    available_amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="CNY")
    emailed_to = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "threshold_amount"],
                condition=Q(cleared_at__isnull=True),
                name="funding_alert_one_open_per_threshold",
            )
        ]

    def __str__(self) -> str:
        return f"{self.buyer} at or below {self.threshold_amount}"
