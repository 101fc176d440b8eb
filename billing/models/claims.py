"""A programme's claim for one month: what the authority is asked to pay,
and the record of it paying (see billing.subsidy.claims)."""

from django.conf import settings
from django.db import models
from django.db.models import Q, Sum
from django.utils.translation import gettext_lazy as _

from billing.models.ledger import LedgerTransaction
from billing.models.subsidy import Redemption, SubsidyProgramme
from core.models import StatusEvent


class SubsidyClaim(models.Model):
    """The authority's bill for one programme and month (month of the usage),
    built from the applied redemptions the claim report lists.

    Statuses: submitted → approved → paid; submitted/approved → rejected
    (with a reason). One live (not rejected) claim per programme and month;
    a rejected month may be claimed again.
    """

    class Status(models.TextChoices):
        SUBMITTED = "submitted", _("submitted")
        APPROVED = "approved", _("approved")
        PAID = "paid", _("paid")
        REJECTED = "rejected", _("rejected")

    programme = models.ForeignKey(SubsidyProgramme, on_delete=models.PROTECT, related_name="claims")
    year = models.PositiveSmallIntegerField()
    month = models.PositiveSmallIntegerField()
    currency = models.CharField(max_length=3, default="CNY")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SUBMITTED)
    deduct_amount = models.BigIntegerField(
        _("deduct mode: owed to the platform (minor units)"), default=0
    )
    reimburse_amount = models.BigIntegerField(
        _("reimburse mode: owed to the beneficiaries (minor units)"), default=0
    )
    breakdown = models.JSONField(
        default=list,
        help_text=_("per beneficiary: beneficiary_id, beneficiary, mode, amount, redemptions"),
    )
    redemptions = models.ManyToManyField(Redemption, related_name="claims")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.CharField(max_length=300, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    payment_reference = models.CharField(max_length=100, blank=True)
    paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ledger_transaction = models.OneToOneField(
        LedgerTransaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subsidy_claim",
    )
    tree_head = models.ForeignKey(
        "billing.TreeHead",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="claims",
        help_text=_("the signed head of the subsidy trail this claim was computed under"),
    )

    class Meta:
        ordering = ["-year", "-month", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["programme", "year", "month"],
                condition=~Q(status="rejected"),
                name="subsidy_claim_one_per_month",
            ),
            models.CheckConstraint(
                condition=Q(month__gte=1) & Q(month__lte=12), name="subsidy_claim_month_valid"
            ),
            models.CheckConstraint(
                condition=Q(deduct_amount__gte=0) & Q(reimburse_amount__gte=0),
                name="subsidy_claim_amounts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.programme} {self.year}-{self.month:02d} ({self.status})"

    @property
    def total_amount(self) -> int:
        return self.deduct_amount + self.reimburse_amount

    @property
    def clawed_back_amount(self) -> int:
        """What the claim lists that has since been clawed back."""
        total = self.redemptions.filter(status=Redemption.Status.CLAWED_BACK).aggregate(
            total=Sum("amount")
        )["total"]
        return total or 0

    @property
    def clawed_back_after_payment(self) -> int:
        """Paid for, then clawed back: the authority overpaid by this much
        (the ledger shows it as a credit on the programme's receivable)."""
        return self.clawed_back_amount if self.status == self.Status.PAID else 0


class SubsidyClaimEvent(StatusEvent):
    claim = models.ForeignKey(SubsidyClaim, on_delete=models.CASCADE, related_name="events")


class Reimbursement(models.Model):
    """兑付: in a reimburse-mode programme the buyer pays its invoice in full,
    then presents the paid invoice to claim the subsidy the programme owes
    it; the delivery evidence is the usage records behind the redemptions
    (and their audit-log proofs). Only presented invoices are claimed.

    Statuses: submitted (by the buyer) → rejected (by the authority, with a
    reason; the buyer may present it again after correction). Written once
    per invoice and programme.
    """

    class Status(models.TextChoices):
        SUBMITTED = "submitted", _("presented")
        REJECTED = "rejected", _("rejected")

    invoice = models.ForeignKey(
        "billing.Invoice", on_delete=models.PROTECT, related_name="reimbursements"
    )
    programme = models.ForeignKey(
        SubsidyProgramme, on_delete=models.PROTECT, related_name="reimbursements"
    )
    amount = models.BigIntegerField(_("subsidy to reimburse (minor units)"))
    usage_record_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SUBMITTED)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField()
    rejection_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-submitted_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "programme"], name="reimbursement_once_per_invoice_programme"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="reimbursement_positive"),
        ]

    def __str__(self) -> str:
        return f"兑付 {self.invoice} / {self.programme}"
