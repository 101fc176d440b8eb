"""A provider's payout account, given by the provider itself, and the payouts
that wait for one.

A bank account is validated as a Chinese bank's batch payment file needs it:
收款账号 (digits, 8 to 32 of them, spaces and dashes dropped), 户名 (the
account holder: for a company's account, its legal name as registered), 开户行
(the branch) and 联行号 (the CNAPS code: exactly 12 digits). A provider without
an account is never skipped silently: its share of paid invoices stays in its
payable, and `payouts_waiting_for_an_account` shows it to the provider (its
payouts page and the API) and to the operator (overview page).
"""

import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.models import Organisation
from billing.models import PayoutAccount, PayoutMethod
from core.errors import ApplicationError

logger = logging.getLogger(__name__)

_SEPARATORS = re.compile(r"[\s-]+")


@dataclass(frozen=True, slots=True)
class BankAccount:
    account_number: str  # 收款账号
    account_name: str  # 户名
    bank_name: str  # 开户行
    bank_code: str  # 联行号 (CNAPS)
    province: str = ""
    city: str = ""


def _same_name(a: str, b: str) -> bool:
    def squeeze(text: str) -> str:
        return "".join(text.split()).replace("（", "(").replace("）", ")").casefold()

    return squeeze(a) == squeeze(b)


def bank_account_problems(*, provider: Organisation, bank: BankAccount) -> dict[str, list[str]]:
    """Field errors of a bank account for `provider` (empty when valid)."""
    errors: dict[str, list[str]] = {}
    number = _SEPARATORS.sub("", bank.account_number)
    if not re.fullmatch(r"\d{8,32}", number):
        errors["account_number"] = ["An account number (收款账号) is 8 to 32 digits."]
    if not bank.account_name.strip():
        errors["account_name"] = ["Give the account holder's name (户名)."]
    elif not _same_name(bank.account_name, provider.legal_name):
        errors["account_name"] = [
            f"The account holder (户名) must be the organisation itself: {provider.legal_name}."
        ]
    if not bank.bank_name.strip():
        errors["bank_name"] = ["Give the bank branch (开户行)."]
    if not re.fullmatch(r"\d{12}", bank.bank_code.strip()):
        errors["bank_code"] = ["A CNAPS bank code (联行号) is exactly 12 digits."]
    return errors


def payout_account_set_bank(*, provider: Organisation, bank: BankAccount) -> PayoutAccount:
    """The provider gives (or replaces) the bank account it is paid to; the
    next payout run pays what waited for it."""
    errors = bank_account_problems(provider=provider, bank=bank)
    if errors:
        raise ApplicationError("The bank account is not valid.", errors=errors)
    with transaction.atomic():
        account, _created = PayoutAccount.objects.select_for_update().get_or_create(
            provider=provider
        )
        account.method = PayoutMethod.BANK_TRANSFER
        account.account_number = _SEPARATORS.sub("", bank.account_number)
        account.account_name = bank.account_name.strip()
        account.bank_name = bank.bank_name.strip()
        account.bank_code = bank.bank_code.strip()
        account.province = bank.province.strip()
        account.city = bank.city.strip()
        account.save()
    return account


@dataclass(frozen=True, slots=True)
class Waiting:
    provider_id: int
    provider_name: str
    amount: int
    invoices: int
    currency: str


def payouts_waiting_for_an_account(
    *, provider: Organisation | None = None, currency: str | None = None
) -> list[Waiting]:
    """Shares of paid invoices that no payout run can pay because their
    provider has no payout account (one provider, or all)."""
    from billing.payouts import unclaimed_shares

    currency = currency or settings.DEFAULT_CURRENCY
    with_account = set(PayoutAccount.objects.values_list("provider_id", flat=True))
    shares = unclaimed_shares(currency)
    ids = [pk for pk in shares if pk not in with_account]
    if provider is not None:
        ids = [pk for pk in ids if pk == provider.pk]
    names = dict(Organisation.objects.filter(pk__in=ids).values_list("pk", "legal_name"))
    waiting = [
        Waiting(
            provider_id=pk,
            provider_name=names.get(pk, ""),
            amount=sum(net for _invoice, net in shares[pk]),
            invoices=len(shares[pk]),
            currency=currency,
        )
        for pk in sorted(ids)
    ]
    return [w for w in waiting if w.amount > 0]
