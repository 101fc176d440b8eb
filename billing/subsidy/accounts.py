"""The ledger accounts behind a subsidy programme and its vouchers.

All balances of the subsidy side are ledger accounts; nothing is a counter
on a model row. Per programme N (owned by the authority):

| account | purpose / reference | reads as |
| --- | --- | --- |
| left | PROGRAMME_BUDGET `programme:N` (floored) | budget not yet committed nor spent |
| pledge | SUBSIDY_RECEIVABLE `programme:N:pledge` | what the authority pledged and has not yet spent (= left + reserved committed) |
| spent | SUBSIDY_RECEIVABLE `programme:N` | subsidy paid out, owed by the authority (the claims) |
| entitlements | SUBSIDY_RECEIVABLE `programme:N:entitlements` | pool-funded voucher balances, outside the budget until redeemed |

and per voucher M: VOUCHER_BALANCE `voucher:M` of the holder (floored).

Movements (debit first):
- fund:    pledge / left                                   (budget B)
- issue:   left / voucher            (reserved)            — left is floored: never commit more than B
           entitlements / voucher    (pool)
- redeem:  voucher / pledge, spent / settlement clearing  (reserved; deduct mode)
           voucher / entitlements, left / pledge, spent / settlement clearing   (pool)
           — the clearing account is the platform's SUBSIDY_RECEIVABLE that invoice
           issue debits with the voucher share (billing.settlement).
           reimburse mode credits SUBSIDY_PAYABLE of the beneficiary instead of its
           receivable; supply-side programmes credit PROVIDER_PAYABLE.
- expire / revoke: voucher / left (reserved) or voucher / entitlements (pool)
- claw back: the reversal of a redemption, then (deduct mode) settlement
           clearing / buyer receivable: the buyer owes the amount again.

Hence, always: budget = left + Σ reserved voucher balances (committed, unspent) + spent.
"""

from dataclasses import dataclass

from billing.ledger import account_get
from billing.models import LedgerAccount, SubsidyProgramme, Voucher

P = LedgerAccount.Purpose


@dataclass(frozen=True)
class ProgrammeAccounts:
    left: LedgerAccount
    pledge: LedgerAccount
    spent: LedgerAccount
    entitlements: LedgerAccount


def programme_accounts(*, programme: SubsidyProgramme) -> ProgrammeAccounts:
    ref = programme.reference

    def account(purpose: str, reference: str, *, floor_zero: bool = False) -> LedgerAccount:
        return account_get(
            purpose=purpose,
            reference=reference,
            organisation=programme.authority,
            currency=programme.currency,
            floor_zero=floor_zero,
        )

    return ProgrammeAccounts(
        left=account(P.PROGRAMME_BUDGET, ref, floor_zero=True),
        pledge=account(P.SUBSIDY_RECEIVABLE, f"{ref}:pledge"),
        spent=account(P.SUBSIDY_RECEIVABLE, ref),
        entitlements=account(P.SUBSIDY_RECEIVABLE, f"{ref}:entitlements"),
    )


def voucher_account(*, voucher: Voucher) -> LedgerAccount:
    return account_get(
        purpose=P.VOUCHER_BALANCE,
        organisation=voucher.holder,
        reference=voucher.reference,
        currency=voucher.currency,
        floor_zero=True,
    )


def beneficiary_account(*, programme: SubsidyProgramme, beneficiary) -> LedgerAccount:
    """Where a redemption's money goes: in deduct mode it settles the
    platform's subsidy receivable that invoice issue debits for the voucher
    share (billing.settlement); in reimburse mode it is payable to the buyer
    after review; a supply-side programme pays the provider."""
    if programme.settlement_mode == SubsidyProgramme.SettlementMode.REIMBURSE:
        return account_get(
            purpose=P.SUBSIDY_PAYABLE,
            organisation=beneficiary,
            reference=programme.reference,
            currency=programme.currency,
        )
    if programme.beneficiary == SubsidyProgramme.Beneficiary.PROVIDERS:
        return account_get(
            purpose=P.PROVIDER_PAYABLE, organisation=beneficiary, currency=programme.currency
        )
    return settlement_clearing(currency=programme.currency)


def settlement_clearing(*, currency: str) -> LedgerAccount:
    """The platform's subsidy receivable that billing.settlement debits with an
    invoice's voucher share at issue; redemptions credit it back to zero."""
    return account_get(purpose=P.SUBSIDY_RECEIVABLE, currency=currency)


def voucher_balance(*, voucher: Voucher) -> int:
    return voucher_account(voucher=voucher).normal_balance
