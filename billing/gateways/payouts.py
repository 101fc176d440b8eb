"""The payout gateway interface and its two adapters.

An adapter sends one prepared Payout (its lines say which invoice shares it
carries) and reports what happened; it never touches the ledger, which was
posted when the payout was prepared. Both adapters are idempotent: sending
the same payout twice sends nothing new.
"""

import csv
import io
from typing import Protocol

from django.conf import settings
from django.db.models import F

from billing.gateways import stripe as stripe_gateway
from billing.models import Payout, PayoutLine, PayoutMethod, PayoutRun
from core import clock
from core.money import format_major

PURPOSE = "算力服务结算"  # 用途 as the bank prints it on the provider's statement


class PayoutGateway(Protocol):
    method: str

    def send(self, *, payout: Payout) -> None: ...


def _transfer_amounts(lines: list[PayoutLine]) -> dict[int, int]:
    """Connect cannot transfer a negative amount: net credit notes against the
    largest positive shares first. Σ result == Σ lines (> 0)."""
    owed = -sum(line.amount for line in lines if line.amount < 0)
    amounts = {}
    for line in sorted((x for x in lines if x.amount > 0), key=lambda x: (-x.amount, x.pk)):
        taken = min(owed, line.amount)
        owed -= taken
        amounts[line.pk] = line.amount - taken
    return amounts


class StripeConnectGateway:
    """Separate charges and transfers: one transfer per invoice share, in the
    invoice's transfer_group, keyed by the payout line."""

    method: str = PayoutMethod.STRIPE_CONNECT

    def send(self, *, payout: Payout) -> None:
        account = payout.provider.payout_account
        lines = list(payout.lines.select_related("invoice"))
        for line in lines:
            amount = _transfer_amounts(lines).get(line.pk, 0)
            if amount <= 0 or line.stripe_transfer_id:
                continue
            transfer = stripe_gateway.transfer_create(
                amount=amount,
                currency=payout.currency,
                destination=account.stripe_account_id,
                transfer_group=line.invoice.transfer_group,
                idempotency_key=f"payout-line-{line.pk}",
                metadata={"payout": payout.reference, "invoice": line.invoice.number},
            )
            PayoutLine.objects.filter(pk=line.pk, stripe_transfer_id="").update(
                stripe_transfer_id=transfer["id"], transferred_amount=amount
            )
        Payout.objects.filter(
            pk=payout.pk, status__in=[Payout.Status.PENDING, Payout.Status.SENT]
        ).update(status=Payout.Status.PAID, sent_at=F("created_at"))


class BankTransferGateway:
    """The payout goes into the run's batch file (批量转账) that finance uploads
    to the bank; it is `sent` until finance confirms the bank paid it."""

    method: str = PayoutMethod.BANK_TRANSFER

    def send(self, *, payout: Payout) -> None:
        Payout.objects.filter(pk=payout.pk, status=Payout.Status.PENDING).update(
            status=Payout.Status.SENT, sent_at=clock.now()
        )


GATEWAYS: dict[str, PayoutGateway] = {
    PayoutMethod.STRIPE_CONNECT: StripeConnectGateway(),
    PayoutMethod.BANK_TRANSFER: BankTransferGateway(),
}

BANK_BATCH_COLUMNS = [
    "序号",
    "业务参考号",
    "付款账号",
    "收款账号",
    "收款户名",
    "收款开户行",
    "联行号",
    "收款省份",
    "收款城市",
    "金额",
    "币种",
    "用途",
    "备注",
]


def bank_batch_csv(*, run: PayoutRun) -> str:
    """The run's bank payouts as a batch payment file: one row per provider,
    amounts in yuan with two decimals, our reference for de-duplication."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(BANK_BATCH_COLUMNS)
    payouts = (
        run.payouts.filter(method=PayoutMethod.BANK_TRANSFER)
        .select_related("provider__payout_account")
        .prefetch_related("lines__invoice")
        .order_by("pk")
    )
    for index, payout in enumerate(payouts, start=1):
        account = payout.provider.payout_account
        invoices = " ".join(line.invoice.number for line in payout.lines.all())
        writer.writerow(
            [
                index,
                payout.reference,
                settings.PAYOUT_BANK_ACCOUNT,
                account.account_number,
                account.account_name or payout.provider.legal_name,
                account.bank_name,
                account.bank_code,
                account.province,
                account.city,
                format_major(payout.amount),
                "人民币" if payout.currency == "CNY" else payout.currency,
                PURPOSE,
                invoices[:60],
            ]
        )
    return out.getvalue()
