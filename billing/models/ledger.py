from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation


class LedgerAccount(models.Model):
    """An account of the double-entry ledger, per organisation and purpose.

    Postings are signed: debit positive, credit negative. `balance` caches
    Σ postings.amount (debit-positive); it changes only inside
    billing.ledger.transaction_post, with F() under row locks, and a test
    checks it against the postings. Accounts that must never go negative in
    their normal direction (a voucher balance, a programme budget) set
    `floor_zero` and the database refuses the posting that would cross zero.
    """

    class Purpose(models.TextChoices):
        # debit-normal (assets / receivables)
        BUYER_RECEIVABLE = "buyer_receivable", _("buyer receivable")
        STRIPE_CLEARING = "stripe_clearing", _("Stripe clearing")
        BANK = "bank", _("platform bank")
        SUBSIDY_RECEIVABLE = "subsidy_receivable", _("subsidy receivable from the authority")
        # credit-normal (liabilities / revenue / budgets)
        BUYER_CREDIT = "buyer_credit", _("buyer prepaid balance")
        PROVIDER_PAYABLE = "provider_payable", _("provider payable")
        PLATFORM_FEE = "platform_fee", _("platform fee revenue")
        PROGRAMME_BUDGET = "programme_budget", _("programme budget left")
        PROGRAMME_COMMITTED = "programme_committed", _("programme budget committed to vouchers")
        VOUCHER_BALANCE = "voucher_balance", _("voucher balance")
        SUBSIDY_PAYABLE = "subsidy_payable", _("subsidy payable to buyers")
        ROUNDING = "rounding", _("rounding")

    CREDIT_NORMAL = frozenset(
        {
            Purpose.BUYER_CREDIT,
            Purpose.PROVIDER_PAYABLE,
            Purpose.PLATFORM_FEE,
            Purpose.PROGRAMME_BUDGET,
            Purpose.PROGRAMME_COMMITTED,
            Purpose.VOUCHER_BALANCE,
            Purpose.SUBSIDY_PAYABLE,
            Purpose.ROUNDING,
        }
    )

    organisation = models.ForeignKey(
        Organisation,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="ledger_accounts",
    )
    purpose = models.CharField(max_length=24, choices=Purpose.choices)
    # Narrows an account below the organisation, e.g. "programme:7" or "voucher:42".
    reference = models.CharField(max_length=64, blank=True, default="")
    currency = models.CharField(max_length=3, default="CNY")
    floor_zero = models.BooleanField(default=False)
    balance = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "purpose", "reference", "currency"],
                name="ledger_account_unique",
                nulls_distinct=False,
            ),
            # Credit-normal accounts hold negative debit-positive balances;
            # a floored one may not pass zero in its normal direction.
            models.CheckConstraint(
                condition=Q(floor_zero=False) | Q(balance__lte=0), name="ledger_account_floor_zero"
            ),
        ]

    def __str__(self) -> str:
        owner = self.organisation or "platform"
        ref = f" {self.reference}" if self.reference else ""
        return f"{owner} · {self.purpose}{ref} ({self.currency})"

    @property
    def normal_balance(self) -> int:
        """The balance as an accountant reads it (credit-normal accounts flipped)."""
        return -self.balance if self.purpose in self.CREDIT_NORMAL else self.balance


class LedgerTransaction(models.Model):
    """A balanced set of postings. Never updated or deleted (database
    triggers refuse it); a correction is a new transaction that `reverses`
    the old one. `business_key` makes posting the same thing twice a no-op."""

    business_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=40)
    memo = models.CharField(max_length=300, blank=True)
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} {self.business_key}"


class Posting(models.Model):
    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="postings"
    )
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="postings")
    amount = models.BigIntegerField(help_text="minor units; debit positive, credit negative")
    currency = models.CharField(max_length=3)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="posting_not_zero")]
