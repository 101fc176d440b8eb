from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from core.models import StatusEvent
from core.units import gpu_hours
from market.models import Lease, UsageRecord


class Invoice(models.Model):
    """One invoice per buyer per billing period.

    Statuses: draft → open → paid; draft/open → void. A closed period stays
    closed: usage metered late goes on the next period's invoice.
    Invariants (checked by tests): voucher + card paid + outstanding = total;
    Σ provider nets + Σ fees + rounding = total.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        OPEN = "open", _("open")
        PAID = "paid", _("paid")
        VOID = "void", _("void")

    number = models.CharField(max_length=32, unique=True)
    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="invoices")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    currency = models.CharField(max_length=3, default="CNY")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    gross_amount = models.BigIntegerField(default=0)  # Σ usage lines
    credit_amount = models.BigIntegerField(default=0)  # SLA credit notes applied (≥ 0)
    total_amount = models.BigIntegerField(default=0)  # gross − credits
    voucher_amount = models.BigIntegerField(default=0)  # paid by compute vouchers
    buyer_amount = models.BigIntegerField(default=0)  # total − voucher: the buyer's share
    paid_amount = models.BigIntegerField(default=0)  # paid so far (balance and card)
    prepaid_amount = models.BigIntegerField(default=0)  # of which from the prepaid balance
    platform_fee_amount = models.BigIntegerField(default=0)  # charged to providers
    provider_net_amount = models.BigIntegerField(default=0)  # Σ provider nets (credits included)
    rounding_amount = models.BigIntegerField(
        default=0
    )  # total − nets − fees, to the rounding account
    # Settle now: an interim invoice of what was metered so far in an open
    # period (billing.interim); the period's later invoice starts at its end.
    on_demand = models.BooleanField(default=False)
    # The buyer's Idempotency-Key of the settle-now request that issued it.
    idempotency_key = models.CharField(max_length=80, null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-period_start", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["buyer", "period_start", "currency"], name="invoice_one_per_period"
            ),
            models.UniqueConstraint(
                fields=["buyer", "idempotency_key"], name="invoice_idempotency_key_unique"
            ),
            models.CheckConstraint(
                condition=Q(voucher_amount__gte=0, paid_amount__gte=0), name="invoice_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def outstanding_amount(self) -> int:
        return self.buyer_amount - self.paid_amount

    @property
    def card_amount(self) -> int:
        """What the card paid (the rest of paid_amount came from the prepaid balance)."""
        return self.paid_amount - self.prepaid_amount

    @property
    def transfer_group(self) -> str:
        """Stripe Connect groups the buyer's charge and the providers' transfers by invoice."""
        return f"invoice-{self.number}"


class InvoiceLine(models.Model):
    """One line per lease per billing period (usage), or an SLA credit note.

    A usage line sums its usage records (the evidence, `usage_records`) and is
    priced once: amount = Σ GPU-seconds × price / 3600, rounded by core.money's
    one rule; the fee and every voucher share are computed from that rounded
    amount (billing.invoices explains the remainder rule). Usage metered late
    for a period already invoiced comes as its own line on the next invoice,
    its window in the earlier period (`is_adjustment`).
    """

    class Kind(models.TextChoices):
        USAGE = "usage", _("usage")
        SLA_CREDIT = "sla_credit", _("SLA credit")

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.USAGE)
    # The evidence: the usage records of the lease in the line's window (each
    # record on at most one line, held by InvoiceLineUsage's unique key).
    usage_records = models.ManyToManyField(
        UsageRecord, through="billing.InvoiceLineUsage", related_name="invoice_lines", blank=True
    )
    lease = models.ForeignKey(
        Lease, null=True, blank=True, on_delete=models.PROTECT, related_name="invoice_lines"
    )
    sla_credit = models.ForeignKey(
        "billing.SlaCredit",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoice_lines",
    )
    provider = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="invoice_lines_sold"
    )
    description = models.CharField(max_length=300)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    gpu_model_name = models.CharField(max_length=120, blank=True)
    gpu_seconds = models.BigIntegerField(default=0)  # delivered, billed
    gpu_seconds_lost = models.BigIntegerField(default=0)  # lost to faults, never billed
    pflops_hours = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    energy_wh = models.BigIntegerField(default=0)
    carbon_g = models.BigIntegerField(default=0)
    price_amount = models.BigIntegerField()  # per GPU-hour, the lease's agreed price
    amount = (
        models.BigIntegerField()
    )  # GPU-seconds × price / 3600, half-even (core.money); negative for credits
    voucher_amount = models.BigIntegerField(default=0)
    fee_amount = models.BigIntegerField(default=0)
    provider_net_amount = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["pk"]

    @property
    def buyer_amount(self) -> int:
        return self.amount - self.voucher_amount

    @property
    def is_adjustment(self) -> bool:
        """Late usage of an earlier period, billed on this invoice."""
        return bool(
            self.kind == self.Kind.USAGE
            and self.window_start
            and self.window_start < self.invoice.period_start
        )

    @property
    def label(self) -> str:
        """The line's text in the reader's language (the stored `description`
        was written once, in the language of whoever built the invoice)."""
        if self.kind == self.Kind.SLA_CREDIT and self.sla_credit is not None:
            credit = self.sla_credit
            hours = Decimal(credit.gpu_seconds_lost) / 3600
            return gettext(
                "SLA credit from %(provider)s: %(hours)s GPU-hours lost on %(invoice)s × %(multiple)s"
            ) % {
                "provider": self.provider.legal_name,
                "hours": f"{hours:.4f}",
                "invoice": credit.source_invoice.number,
                "multiple": credit.multiple,
            }
        if self.lease is None:
            return self.description
        lease = self.lease
        text = gettext("%(gpu)s × %(count)s · %(site)s · lease %(lease)s") % {
            "gpu": self.gpu_model_name,
            "count": lease.gpu_count,
            "site": str(lease.node.site),
            "lease": lease.pk,
        }
        grace = getattr(self, "grace_seconds", 0) or 0
        if grace:
            text += " · " + gettext(
                "%(seconds)s GPU-seconds of agent start-up grace: not billed, not a fault"
            ) % {"seconds": grace}
        if self.is_adjustment and self.window_start:
            local = timezone.localtime(self.window_start)
            text = gettext("Late usage of %(period)s: %(line)s") % {
                "period": f"{local:%Y-%m-%d}",
                "line": text,
            }
        return text

    @property
    def gpu_hours(self) -> Decimal:
        return gpu_hours(self.gpu_seconds, places="0.0001")

    @property
    def energy_kwh(self) -> Decimal:
        return (Decimal(self.energy_wh) / 1000).quantize(Decimal("0.001"))

    @property
    def carbon_kg(self) -> Decimal:
        return (Decimal(self.carbon_g) / 1000).quantize(Decimal("0.001"))


class InvoiceLineUsage(models.Model):
    """A usage record as evidence of one invoice line: each record is on at
    most one line (the unique key), a line holds the records it sums. Lines of
    a draft are rebuilt, so the links go with them."""

    line = models.ForeignKey(InvoiceLine, on_delete=models.CASCADE, related_name="usage_links")
    usage_record = models.OneToOneField(
        UsageRecord, on_delete=models.PROTECT, related_name="invoice_link"
    )

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"usage {self.usage_record_id} on line {self.line_id}"


class InvoiceEvent(StatusEvent):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="events")


class SlaCredit(models.Model):
    """What a provider owes a buyer for GPU-seconds lost to its faults in one
    invoice's period: `multiple` × the lost time's price, capped at the
    buyer's spend with that provider in that period. It is applied as credit
    note lines on the buyer's next invoices (charged to the provider's
    payable) until credit lines on non-void invoices add up to `amount`."""

    buyer = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    provider = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    source_invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, related_name="sla_credits_earned"
    )
    currency = models.CharField(max_length=3, default="CNY")
    gpu_seconds_lost = models.BigIntegerField()
    multiple = models.PositiveSmallIntegerField()
    uncapped_amount = models.BigIntegerField()
    amount = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_invoice", "provider"], name="sla_credit_one_per_invoice_provider"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="sla_credit_positive"),
        ]
