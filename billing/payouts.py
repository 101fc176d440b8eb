"""Provider payouts: the provider payable of paid invoices goes out on a
schedule through a payout gateway (Stripe Connect or a bank batch file).

A run is keyed (`payout_run_execute(key=...)`): executing it again pays
nothing new, and an invoice share is claimed by exactly one payout line
(unique per invoice and provider), so a second run with another key finds
nothing left either. The ledger moves when a payout is prepared:

    Dr provider payable   amount
    Cr Stripe clearing    amount   (Connect: paid from the platform's Stripe balance)
    Cr platform bank      amount   (bank transfer)
"""

import logging
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Sum

from accounts.models import Organisation
from billing.gateways.payouts import GATEWAYS, bank_batch_csv
from billing.ledger import Leg, account_get, transaction_post
from billing.models import (
    Invoice,
    InvoiceLine,
    LedgerAccount,
    Payout,
    PayoutAccount,
    PayoutLine,
    PayoutMethod,
    PayoutRun,
)
from core import clock

P = LedgerAccount.Purpose
logger = logging.getLogger(__name__)


def unclaimed_shares(currency: str) -> dict[int, list[tuple[int, int]]]:
    """provider id → [(invoice id, Σ nets)] on paid invoices not yet paid out."""
    claimed = PayoutLine.objects.filter(invoice=OuterRef("invoice"), provider=OuterRef("provider"))
    rows = (
        InvoiceLine.objects.filter(invoice__status=Invoice.Status.PAID, invoice__currency=currency)
        .exclude(Exists(claimed))
        .values("provider", "invoice")
        .annotate(net=Sum("provider_net_amount"))
        .order_by("provider", "invoice")
    )
    shares: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for row in rows:
        if row["net"] != 0:
            shares[row["provider"]].append((row["invoice"], row["net"]))
    return shares


def _prepare(run: PayoutRun, currency: str) -> None:
    with transaction.atomic():
        PayoutRun.objects.select_for_update().get(pk=run.pk)
        accounts = {a.provider_id: a for a in PayoutAccount.objects.all()}
        for provider_id, shares in unclaimed_shares(currency).items():
            total = sum(net for _invoice, net in shares)
            account = accounts.get(provider_id)
            if account is None and total > 0:
                # stays in the payable, shown as waiting (billing/payout_accounts.py)
                logger.warning(
                    "payout waits for a payout account",
                    extra={"provider": provider_id, "amount": total, "run": run.key},
                )
            if account is None or total <= 0:
                continue  # stays in the payable until it can be paid
            payout = Payout.objects.create(
                run=run,
                provider_id=provider_id,
                method=account.method,
                amount=total,
                currency=currency,
                reference=f"PO{run.pk:06d}{provider_id:06d}",
            )
            PayoutLine.objects.bulk_create(
                PayoutLine(
                    payout=payout, invoice_id=invoice_id, provider_id=provider_id, amount=net
                )
                for invoice_id, net in shares
            )
            source = P.STRIPE_CLEARING if account.method == PayoutMethod.STRIPE_CONNECT else P.BANK
            transaction_post(
                business_key=f"payout:{payout.pk}",
                kind="provider_payout",
                legs=[
                    Leg(
                        account_get(
                            purpose=P.PROVIDER_PAYABLE,
                            organisation=Organisation(pk=provider_id),
                            currency=currency,
                        ),
                        total,
                    ),
                    Leg(account_get(purpose=source, currency=currency), -total),
                ],
                memo=f"payout {payout.reference}",
            )


def payout_run_execute(*, key: str, currency: str | None = None) -> PayoutRun:
    """Prepare (claim shares, post the ledger), send through the gateways and
    write the bank batch file. Idempotent on `key`; safe to resume after a crash."""
    currency = currency or settings.DEFAULT_CURRENCY
    run, _created = PayoutRun.objects.get_or_create(key=key)
    if run.status == PayoutRun.Status.COMPLETED:
        return run
    _prepare(run, currency)
    for payout in run.payouts.filter(status=Payout.Status.PENDING).select_related(
        "provider__payout_account"
    ):
        GATEWAYS[payout.method].send(payout=payout)
    PayoutRun.objects.filter(pk=run.pk, status=PayoutRun.Status.CREATED).update(
        status=PayoutRun.Status.COMPLETED,
        completed_at=clock.now(),
        bank_batch_csv=bank_batch_csv(run=run),
    )
    run.refresh_from_db()
    return run


def payout_run_request(*, requested_by) -> str:
    """Staff start a payout run now, besides the daily one: queued through the
    outbox for a worker (`payout_run_execute`); the answer is the run's key.
    Shares already claimed by an earlier run are not paid again."""
    from core.outbox import outbox_enqueue

    key = f"payouts-now-{clock.now():%Y%m%dT%H%M%S}-{requested_by.pk}"
    with transaction.atomic():
        outbox_enqueue(task_name="billing.payout_run_execute", args=[key], key=f"payout-run:{key}")
    return key


def payout_mark_paid(*, payout: Payout) -> bool:
    """Finance confirms the bank paid a batch-file payout: sent → paid."""
    return bool(
        Payout.objects.filter(pk=payout.pk, status=Payout.Status.SENT).update(
            status=Payout.Status.PAID
        )
    )
