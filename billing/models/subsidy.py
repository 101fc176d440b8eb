"""Compute vouchers (算力券): programmes, vouchers, applications, redemptions, flags.

Balances and budgets live in the ledger (billing.subsidy.redemption explains the
accounts); these rows hold the configuration, the states and the evidence.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Organisation
from billing.models.invoices import InvoiceLine
from billing.models.ledger import LedgerTransaction
from core import limits
from core.models import StatusEvent
from market.models import UsageRecord


class SubsidyProgramme(models.Model):
    """A subsidy programme of an authority: a budget and the rules it pays by.

    A programme is configured, not coded: rates, caps, eligibility and the
    settlement mode are fields. Statuses: active → closed (no new vouchers;
    vouchers already issued run to their own expiry).

    Funding: *reserved* — issuing a voucher reserves its face value from the
    budget (the programme can never commit more than its budget); *pool* —
    vouchers are entitlements and every redemption draws the shared budget
    first come, first served until it is gone.
    Settlement: *deduct* — the voucher pays at invoice time, the buyer pays
    the rest; *reimburse* — the buyer pays in full and the subsidy becomes
    payable to the buyer after the authority's review.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        CLOSED = "closed", _("closed")

    class Funding(models.TextChoices):
        RESERVED = "reserved", _("reserved at issue")
        POOL = "pool", _("shared pool")

    class SettlementMode(models.TextChoices):
        DEDUCT = "deduct", _("deduct at invoice")
        REIMBURSE = "reimburse", _("reimburse after review")

    class Beneficiary(models.TextChoices):
        BUYERS = "buyers", _("buyers (demand side)")
        PROVIDERS = "providers", _("providers (supply side)")

    authority = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="programmes")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    currency = models.CharField(max_length=3, default="CNY")
    budget_amount = models.BigIntegerField(_("total budget (minor units)"))
    funding = models.CharField(max_length=10, choices=Funding.choices, default=Funding.RESERVED)
    rate_bp = models.PositiveIntegerField(_("base rate (basis points)"))
    domestic_rate_bp = models.PositiveIntegerField(
        _("rate for domestic accelerators (basis points)"), null=True, blank=True
    )
    sme_rate_bp = models.PositiveIntegerField(
        _("rate for start-ups / SMEs (basis points)"), null=True, blank=True
    )
    cap_per_enterprise_amount = models.BigIntegerField(
        _("cap per enterprise for the programme"), null=True, blank=True
    )
    cap_per_enterprise_year_amount = models.BigIntegerField(
        _("cap per enterprise per calendar year"), null=True, blank=True
    )
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    regions = models.JSONField(default=list, blank=True, help_text=_("empty = any province"))
    hubs = models.JSONField(default=list, blank=True, help_text=_("empty = any hub"))
    eligible_providers = models.ManyToManyField(
        Organisation, blank=True, related_name="eligible_in_programmes"
    )
    gpu_vendors = models.JSONField(default=list, blank=True, help_text=_("empty = any vendor"))
    domestic_only = models.BooleanField(default=False)
    min_green_share = models.DecimalField(max_digits=4, decimal_places=3, default=0)
    buyer_must_be_verified = models.BooleanField(default=True)
    forbid_affiliated = models.BooleanField(
        _("buyer and provider must not be affiliated"), default=True
    )
    max_contract_days = models.PositiveIntegerField(null=True, blank=True)
    one_claim_per_contract = models.BooleanField(default=False)
    settlement_mode = models.CharField(
        max_length=10, choices=SettlementMode.choices, default=SettlementMode.DEDUCT
    )
    beneficiary = models.CharField(
        max_length=10, choices=Beneficiary.choices, default=Beneficiary.BUYERS
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-valid_from", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(budget_amount__gt=0), name="programme_budget_positive"
            ),
            models.CheckConstraint(
                condition=Q(budget_amount__lte=limits.MAX_AMOUNT), name="programme_budget_bounded"
            ),
            models.CheckConstraint(
                condition=Q(rate_bp__gt=0, rate_bp__lte=10_000), name="programme_rate_0_100"
            ),
            *(
                models.CheckConstraint(
                    condition=Q(**{f"{field}__isnull": True})
                    | Q(**{f"{field}__gt": 0, f"{field}__lte": upper}),
                    name=f"programme_{field}_bounded",
                )
                for field, upper in (
                    ("domestic_rate_bp", limits.MAX_BASIS_POINTS),
                    ("sme_rate_bp", limits.MAX_BASIS_POINTS),
                    ("cap_per_enterprise_amount", limits.MAX_AMOUNT),
                    ("cap_per_enterprise_year_amount", limits.MAX_AMOUNT),
                    ("max_contract_days", limits.MAX_CONTRACT_DAYS),
                )
            ),
            models.CheckConstraint(
                condition=Q(valid_until__gt=models.F("valid_from")), name="programme_window_ordered"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def reference(self) -> str:
        return f"programme:{self.pk}"


class Voucher(models.Model):
    """A grant of a programme to one holder (a buyer, or a provider in a
    supply-side programme). The balance is the voucher's ledger account.

    Statuses: issued → active (on its valid_from) → exhausted (balance 0);
    exhausted → active (a claw-back restores balance); issued/active/
    exhausted → expired (valid_until passed) / revoked (by the authority).
    Expiry and revocation return the unused balance to the programme.
    """

    class Status(models.TextChoices):
        ISSUED = "issued", _("issued")
        ACTIVE = "active", _("active")
        EXHAUSTED = "exhausted", _("exhausted")
        EXPIRED = "expired", _("expired")
        REVOKED = "revoked", _("revoked")

    programme = models.ForeignKey(
        SubsidyProgramme, on_delete=models.PROTECT, related_name="vouchers"
    )
    holder = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="vouchers")
    face_amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="CNY")
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ISSUED)
    application = models.OneToOneField(
        "VoucherApplication",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="voucher",
    )
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["valid_until", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(face_amount__gt=0), name="voucher_face_positive"),
            models.CheckConstraint(
                condition=Q(face_amount__lte=limits.MAX_AMOUNT), name="voucher_face_bounded"
            ),
            models.CheckConstraint(
                condition=Q(valid_until__gt=models.F("valid_from")), name="voucher_window_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"Voucher {self.pk} ({self.programme})"

    @property
    def reference(self) -> str:
        return f"voucher:{self.pk}"


class VoucherEvent(StatusEvent):
    voucher = models.ForeignKey(Voucher, on_delete=models.CASCADE, related_name="events")


class VoucherApplication(models.Model):
    """A buyer asks a programme for a voucher.

    Statuses: pending → approved (a voucher of the approved amount is issued)
    / rejected (with a reason); pending → withdrawn by the buyer.
    """

    class Status(models.TextChoices):
        PENDING = "pending", pgettext_lazy("application status", "pending")
        APPROVED = "approved", _("approved")
        REJECTED = "rejected", _("rejected")
        WITHDRAWN = "withdrawn", _("withdrawn")

    programme = models.ForeignKey(
        SubsidyProgramme, on_delete=models.PROTECT, related_name="applications"
    )
    applicant = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="voucher_applications"
    )
    purpose = models.TextField()
    expected_gpu_hours = models.PositiveIntegerField()
    requested_amount = models.BigIntegerField()
    approved_amount = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decision_reason = models.CharField(max_length=300, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(requested_amount__gt=0), name="application_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(requested_amount__lte=limits.MAX_AMOUNT),
                name="application_amount_bounded",
            ),
            models.CheckConstraint(
                condition=Q(approved_amount__isnull=True)
                | Q(approved_amount__gt=0, approved_amount__lte=models.F("requested_amount")),
                name="application_approved_within_request",
            ),
            models.CheckConstraint(
                condition=Q(
                    expected_gpu_hours__gte=1, expected_gpu_hours__lte=limits.MAX_GPU_HOURS
                ),
                name="application_gpu_hours_bounded",
            ),
        ]


class VoucherApplicationEvent(StatusEvent):
    application = models.ForeignKey(
        VoucherApplication, on_delete=models.CASCADE, related_name="events"
    )


class Redemption(models.Model):
    """What one voucher paid towards one invoice line, naming the usage
    records it pays for, with its ledger transaction.

    Statuses: applied ⇄ held (the authority reviews it; a held redemption is
    left out of claims); applied/held → clawed_back (a reversing ledger entry;
    the buyer owes the amount again).
    """

    class Status(models.TextChoices):
        APPLIED = "applied", _("applied")
        HELD = "held", _("held for review")
        CLAWED_BACK = "clawed_back", _("clawed back")

    voucher = models.ForeignKey(Voucher, on_delete=models.PROTECT, related_name="redemptions")
    programme = models.ForeignKey(
        SubsidyProgramme, on_delete=models.PROTECT, related_name="redemptions"
    )
    beneficiary = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="subsidy_redemptions"
    )
    invoice_line = models.ForeignKey(
        InvoiceLine, on_delete=models.PROTECT, related_name="redemptions"
    )
    usage_records = models.ManyToManyField(UsageRecord, related_name="redemptions")
    amount = models.BigIntegerField()
    rate_bp = models.PositiveIntegerField()
    settlement_mode = models.CharField(
        max_length=10, choices=SubsidyProgramme.SettlementMode.choices
    )
    year = models.PositiveSmallIntegerField(help_text=_("calendar year of the usage (for caps)"))
    # the contract the usage was bought under ("order:N" or "framework:N"): one claim per contract
    contract_key = models.CharField(max_length=40, blank=True, db_index=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.APPLIED)
    ledger_transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, related_name="redemption"
    )
    reversal_transaction = models.OneToOneField(
        LedgerTransaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="clawed_back_redemption",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice_line", "voucher"], name="redemption_one_per_line_voucher"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="redemption_amount_positive"),
        ]


class RedemptionEvent(StatusEvent):
    redemption = models.ForeignKey(Redemption, on_delete=models.CASCADE, related_name="events")


class FraudFlag(models.Model):
    """A computed suspicion for the authority to review. A flag never blocks
    payment; the authority may hold or claw back the redemption it names.

    Statuses: open → dismissed / confirmed.
    """

    class Rule(models.TextChoices):
        IDLE_BURNING = "idle_burning", _("idle burning (low GPU utilisation)")
        SELF_DEALING = "self_dealing", _("self-dealing (affiliated buyer and provider)")
        PRICE_ABOVE_MARKET = "price_above_market", _("price far above the market median")
        EXPIRY_BURST = "expiry_burst", _("burst of redemptions near expiry")

    class Status(models.TextChoices):
        OPEN = "open", pgettext_lazy("flag status", "open")
        DISMISSED = "dismissed", _("dismissed")
        CONFIRMED = "confirmed", _("confirmed")

    rule = models.CharField(max_length=20, choices=Rule.choices)
    subject_key = models.CharField(max_length=60, help_text=_("e.g. redemption:12, voucher:3"))
    programme = models.ForeignKey(SubsidyProgramme, on_delete=models.PROTECT, related_name="flags")
    voucher = models.ForeignKey(
        Voucher, null=True, blank=True, on_delete=models.PROTECT, related_name="flags"
    )
    redemption = models.ForeignKey(
        Redemption, null=True, blank=True, on_delete=models.PROTECT, related_name="flags"
    )
    details = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject_key"], name="fraud_flag_once_per_subject"
            ),
        ]


class SubsidyRefusal(models.Model):
    """A rule that zeroed or reduced what a programme paid on an invoice line,
    with the amount it kept from the beneficiary: the buyer sees it on its
    invoice and the authority on its programme, in both languages.

    `amount` is the subsidy not paid because of this rule: for a refusal, the
    rate × eligible amount the line would otherwise have had; for a reduction,
    that figure less what was paid. Written at settlement, once per line,
    programme and reason.
    """

    class Reason(models.TextChoices):
        NOT_LISTED = "not_listed", _("the provider is not on the programme's list")
        AFFILIATED = "affiliated", _("buyer and provider are affiliated")
        CAP_REACHED = "cap_reached", _("the enterprise's cap is reached")
        SECOND_CLAIM = "second_claim", _("a second claim on the same contract")
        BUDGET_EXHAUSTED = "budget_exhausted", _("the programme's budget is exhausted")
        VOUCHER_BALANCE = "voucher_balance", _("the voucher's balance is used up")
        FAULT_TIME = "fault_time", _("time lost to faults is neither billed nor subsidised")
        NOT_ELIGIBLE = "not_eligible", _("the usage is not eligible under the programme")

    invoice_line = models.ForeignKey(
        InvoiceLine, on_delete=models.CASCADE, related_name="subsidy_refusals"
    )
    programme = models.ForeignKey(
        SubsidyProgramme, on_delete=models.PROTECT, related_name="refusals"
    )
    voucher = models.ForeignKey(
        Voucher, null=True, blank=True, on_delete=models.PROTECT, related_name="refusals"
    )
    reason = models.CharField(max_length=20, choices=Reason.choices)
    amount = models.BigIntegerField(help_text=_("subsidy not paid because of this rule"))
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice_line", "programme", "reason"], name="refusal_once_per_line_rule"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="refusal_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} on line {self.invoice_line_id}"
