"""The double-entry ledger.

Every movement of money is one `transaction_post`: postings that sum to
zero per currency, written all together or not at all, under a business key
that makes a repeat a no-op. Postings are never changed; `transaction_reverse`
writes the mirror image. The database enforces both rules too (triggers in
migration billing/0002), so no code path can get around them.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from accounts.models import Organisation
from billing.models import LedgerAccount, LedgerTransaction, Posting
from core.errors import ApplicationError


class UnbalancedTransaction(ApplicationError):
    pass


class InsufficientBalance(ApplicationError):
    pass


@dataclass(frozen=True)
class Leg:
    """One side of a posting: debit positive, credit negative."""

    account: LedgerAccount
    amount: int


def account_get(
    *,
    purpose: str,
    organisation: Organisation | None = None,
    reference: str = "",
    currency: str = "CNY",
    floor_zero: bool = False,
) -> LedgerAccount:
    """The account for (organisation, purpose, reference, currency), created on first use."""
    try:
        account, _created = LedgerAccount.objects.get_or_create(
            organisation=organisation,
            purpose=purpose,
            reference=reference,
            currency=currency,
            defaults={"floor_zero": floor_zero},
        )
    except IntegrityError:  # created concurrently by another transaction
        account = LedgerAccount.objects.get(
            organisation=organisation, purpose=purpose, reference=reference, currency=currency
        )
    return account


def _check_balanced(legs: list[Leg]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if leg.amount == 0:
            raise UnbalancedTransaction("A posting of zero says nothing; leave it out.")
        totals[leg.account.currency] += leg.amount
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedTransaction(f"Postings do not balance: {unbalanced}")


def transaction_post(
    *,
    business_key: str,
    kind: str,
    legs: list[Leg],
    memo: str = "",
    reverses: LedgerTransaction | None = None,
) -> tuple[LedgerTransaction, bool]:
    """Post `legs` as one balanced transaction; (transaction, created).

    The same business key twice returns the first transaction and writes
    nothing. Cached balances move with F() under row locks taken in primary
    key order, so two postings to the same accounts never deadlock; a floored
    account that would cross zero raises InsufficientBalance and nothing is
    written.
    """
    legs = [leg for leg in legs if leg.amount != 0] if len(legs) > 2 else legs
    _check_balanced(legs)
    existing = LedgerTransaction.objects.filter(business_key=business_key).first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            ledger_txn = LedgerTransaction.objects.create(
                business_key=business_key, kind=kind, memo=memo[:300], reverses=reverses
            )
            Posting.objects.bulk_create(
                Posting(
                    transaction=ledger_txn,
                    account=leg.account,
                    amount=leg.amount,
                    currency=leg.account.currency,
                )
                for leg in legs
            )
            _apply_balances(legs)
    except IntegrityError as exc:
        existing = LedgerTransaction.objects.filter(business_key=business_key).first()
        if existing:  # the same key won a race with us
            return existing, False
        raise InsufficientBalance(f"Posting {kind} would overdraw an account.") from exc
    return ledger_txn, True


def _apply_balances(legs: list[Leg]) -> None:
    per_account: dict[int, int] = defaultdict(int)
    for leg in legs:
        per_account[leg.account.pk] += leg.amount
    # Lock in primary-key order: concurrent postings queue instead of deadlocking.
    list(
        LedgerAccount.objects.select_for_update()
        .filter(pk__in=per_account)
        .order_by("pk")
        .values_list("pk")
    )
    for account_pk in sorted(per_account):
        LedgerAccount.objects.filter(pk=account_pk).update(
            balance=F("balance") + per_account[account_pk]
        )


def transaction_reverse(
    *, original: LedgerTransaction, business_key: str, memo: str = ""
) -> LedgerTransaction:
    """Write the mirror image of `original` (a correction never edits it)."""
    legs = [
        Leg(account=posting.account, amount=-posting.amount)
        for posting in original.postings.select_related("account")
    ]
    reversal, _created = transaction_post(
        business_key=business_key,
        kind=f"reversal:{original.kind}",
        legs=legs,
        memo=memo,
        reverses=original,
    )
    return reversal


def account_balance_from_postings(account: LedgerAccount) -> int:
    """Σ postings — the truth the cached `balance` must equal."""
    return account.postings.aggregate(total=Sum("amount"))["total"] or 0


def ledger_is_balanced() -> bool:
    """Every currency's postings sum to zero across the whole ledger."""
    totals = Posting.objects.values("currency").annotate(total=Sum("amount"))
    return all(row["total"] == 0 for row in totals)
