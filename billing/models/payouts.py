from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Organisation
from billing.models.invoices import Invoice


class PayoutMethod(models.TextChoices):
    STRIPE_CONNECT = "stripe_connect", _("Stripe Connect transfer")
    BANK_TRANSFER = "bank_transfer", _("bank transfer (batch file)")


class PayoutAccount(models.Model):
    """Where a provider is paid. Bank fields are those a Chinese bank's batch
    payment (批量转账) file asks for."""

    provider = models.OneToOneField(
        Organisation, on_delete=models.CASCADE, related_name="payout_account"
    )
    method = models.CharField(
        max_length=16, choices=PayoutMethod.choices, default=PayoutMethod.BANK_TRANSFER
    )
    stripe_account_id = models.CharField(max_length=64, blank=True)
    account_number = models.CharField(_("account number (收款账号)"), max_length=40, blank=True)
    account_name = models.CharField(_("account name (收款户名)"), max_length=200, blank=True)
    bank_name = models.CharField(_("bank branch (开户行)"), max_length=200, blank=True)
    bank_code = models.CharField(_("CNAPS bank code (联行号)"), max_length=12, blank=True)
    province = models.CharField(_("province"), max_length=32, blank=True)
    city = models.CharField(_("city"), max_length=32, blank=True)

    def __str__(self) -> str:
        return f"{self.provider} · {self.method}"


class PayoutRun(models.Model):
    """One scheduled (or manual) payout of provider payables. `key` makes a
    run idempotent: executing the same run twice pays nothing new.

    Statuses: created → completed."""

    class Status(models.TextChoices):
        CREATED = "created", _("created")
        COMPLETED = "completed", _("completed")

    key = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.CREATED)
    bank_batch_csv = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.key


class Payout(models.Model):
    """What one provider receives in one run.

    Statuses: pending → sent → paid; pending/sent → failed."""

    class Status(models.TextChoices):
        PENDING = "pending", pgettext_lazy("payout status", "pending")
        SENT = "sent", _("sent")
        PAID = "paid", _("paid")
        FAILED = "failed", pgettext_lazy("payment status", "failed")

    run = models.ForeignKey(PayoutRun, on_delete=models.PROTECT, related_name="payouts")
    provider = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="payouts")
    method = models.CharField(max_length=16, choices=PayoutMethod.choices)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="CNY")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    reference = models.CharField(max_length=64, unique=True)  # our 业务参考号 / idempotency root
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["run", "provider"], name="payout_one_per_run_provider"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_positive"),
        ]


class PayoutLine(models.Model):
    """A provider's share of one paid invoice (Σ its nets there, credit notes
    included). Unique per (invoice, provider): a share is paid out once."""

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="lines")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payout_lines")
    provider = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()  # may be negative (a credit note netted here)
    transferred_amount = models.BigIntegerField(default=0)  # what the Connect transfer carried
    stripe_transfer_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "provider"], name="payout_line_once"),
        ]
