"""Invoices and their settlement.

One invoice per buyer per billing period (BILLING_PERIOD, monthly by default;
`invoice_build_for_period` also makes on-demand invoices for any window).
A draft is rebuilt from scratch each time it is built; `invoice_issue` freezes
it (draft → open), asks the settlement hooks for the voucher share, records
SLA credits earned in the period and posts the issue transaction:

    Dr buyer receivable      buyer share        (total − vouchers)
    Dr subsidy receivable    voucher share
    Cr provider payable      Σ provider nets    (per provider; credit notes debit it)
    Cr platform fee revenue  Σ fees
    Cr rounding              total − nets − fees

Invariants: voucher + card paid + outstanding = total; Σ nets + Σ fees +
rounding = total.

Seam for vouchers (issue 6): every dotted path in settings.BILLING_SETTLEMENT_HOOKS
is called at issue, inside the issue transaction, as
`hook(*, invoice: Invoice) -> int`. It may set `voucher_amount` on the invoice's
usage lines, must post its own ledger transaction drawing the voucher balances
down against the subsidy receivable (business key e.g. f"invoice:{pk}:vouchers"),
and returns the voucher total it covered (0 ≤ Σ ≤ invoice total). Settlement
writes the sum to `invoice.voucher_amount` and debits the subsidy receivable."""

import datetime as dt
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from accounts.models import Organisation
from accounts.webhooks import webhook_emit
from billing.invoices import (
    P,
    S,
    buyers_to_close,
    buyers_with_unbilled_usage,
    invoice_build_for_period,
    period_bounds,
    period_to_close,
    settle_window_for,
)
from billing.ledger import Leg, account_get, transaction_post, transaction_reverse
from billing.models import Invoice, InvoiceEvent, InvoiceLine, SlaCredit
from billing.prepaid import invoice_pay_from_balance
from billing.subsidy import invoice_redeem_vouchers
from core import clock
from core.errors import ApplicationError, Conflict
from core.money import amount_for_gpu_seconds
from core.transitions import transition


def _extra_hooks() -> list:
    return [import_string(path) for path in settings.BILLING_SETTLEMENT_HOOKS]


def _apply_hooks(invoice: Invoice) -> int:
    voucher_total = invoice_redeem_vouchers(invoice=invoice)
    voucher_total += sum(int(hook(invoice=invoice)) for hook in _extra_hooks())
    if not 0 <= voucher_total <= invoice.total_amount:
        raise ApplicationError(
            f"Settlement hooks returned a voucher share of {voucher_total} "
            f"for a total of {invoice.total_amount}."
        )
    return voucher_total


def _sla_credits_earned(invoice: Invoice) -> list[SlaCredit]:
    """Credits owed by providers for time lost in this invoice's usage."""
    multiple = settings.SLA_CREDIT_MULTIPLE
    lost: dict[int, int] = defaultdict(int)
    uncapped: dict[int, int] = defaultdict(int)
    spend: dict[int, int] = defaultdict(int)
    for line in invoice.lines.filter(kind=InvoiceLine.Kind.USAGE):
        spend[line.provider_id] += line.amount
        if line.gpu_seconds_lost:
            lost[line.provider_id] += line.gpu_seconds_lost
            uncapped[line.provider_id] += amount_for_gpu_seconds(
                gpu_seconds=line.gpu_seconds_lost * multiple, price_amount=line.price_amount
            )
    credits = []
    for provider_id, seconds in lost.items():
        amount = min(uncapped[provider_id], spend[provider_id])
        if multiple and amount > 0:
            credit, _created = SlaCredit.objects.get_or_create(
                source_invoice=invoice,
                provider_id=provider_id,
                defaults={
                    "buyer": invoice.buyer,
                    "currency": invoice.currency,
                    "gpu_seconds_lost": seconds,
                    "multiple": multiple,
                    "uncapped_amount": uncapped[provider_id],
                    "amount": amount,
                },
            )
            credits.append(credit)
    return credits


def _issue_legs(invoice: Invoice) -> list[Leg]:
    currency = invoice.currency
    legs = [
        Leg(
            account_get(purpose=P.BUYER_RECEIVABLE, organisation=invoice.buyer, currency=currency),
            invoice.buyer_amount,
        ),
        Leg(account_get(purpose=P.SUBSIDY_RECEIVABLE, currency=currency), invoice.voucher_amount),
        Leg(account_get(purpose=P.PLATFORM_FEE, currency=currency), -invoice.platform_fee_amount),
        Leg(account_get(purpose=P.ROUNDING, currency=currency), -invoice.rounding_amount),
    ]
    nets = invoice.lines.values("provider").annotate(net=Sum("provider_net_amount"))
    for row in nets.order_by("provider"):
        payable = account_get(
            purpose=P.PROVIDER_PAYABLE,
            organisation=Organisation(pk=row["provider"]),
            currency=currency,
        )
        legs.append(Leg(payable, -row["net"]))
    return [leg for leg in legs if leg.amount]


def invoice_issue(*, invoice: Invoice, actor=None) -> Invoice:
    """draft → open (→ paid at once if nothing is left for the card).

    Idempotent: an invoice already issued is returned as it is.
    """
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status != S.DRAFT:
            return invoice
        invoice.voucher_amount = _apply_hooks(invoice)
        invoice.buyer_amount = invoice.total_amount - invoice.voucher_amount
        Invoice.objects.filter(pk=invoice.pk).update(
            voucher_amount=invoice.voucher_amount, buyer_amount=invoice.buyer_amount
        )
        _sla_credits_earned(invoice)
        legs = _issue_legs(invoice)
        if legs:
            transaction_post(
                business_key=f"invoice:{invoice.pk}:issue",
                kind="invoice_issue",
                legs=legs,
                memo=f"{invoice.number} issued",
            )
        invoice_pay_from_balance(invoice=invoice)  # the card pays what is left
        now = clock.now()
        transition(invoice, old=S.DRAFT, new=S.OPEN, actor=actor, reason="issued", issued_at=now)
        if invoice.buyer_amount <= 0:
            transition(invoice, old=S.OPEN, new=S.PAID, reason="nothing to pay", paid_at=now)
        elif invoice.outstanding_amount <= 0:
            transition(
                invoice, old=S.OPEN, new=S.PAID, reason="paid from the prepaid balance", paid_at=now
            )
        webhook_emit(
            organisation_id=invoice.buyer_id,
            event_type="invoice.issued",
            data={
                "invoice": invoice.pk,
                "number": invoice.number,
                "status": invoice.status,
                "currency": invoice.currency,
                "total_amount": invoice.total_amount,
                "voucher_amount": invoice.voucher_amount,
                "buyer_amount": invoice.buyer_amount,
                "outstanding_amount": invoice.outstanding_amount,
                "period_start": invoice.period_start.isoformat(),
                "period_end": invoice.period_end.isoformat(),
            },
            key=f"invoice.issued:{invoice.pk}",
        )
    return invoice


def _drafts_release(
    *, buyer: Organisation, currency: str, period_start: dt.datetime, period_end: dt.datetime
) -> None:
    """Drop the buyer's other drafts that hold usage ending by `period_end`,
    so that the invoice issued for the period takes every record of it. A
    draft is a preview (say the current period's, refreshed after the period
    ended but before it was closed): the next refresh rebuilds it."""
    held = (
        Invoice.objects.filter(buyer=buyer, currency=currency, status=S.DRAFT)
        .exclude(period_start=period_start)
        .filter(lines__usage_records__window_end__lte=period_end)
        .values("pk")
    )
    drafts = list(Invoice.objects.filter(pk__in=held))
    for draft in drafts:
        draft.lines.all().delete()
        InvoiceEvent.objects.filter(invoice=draft).delete()
        draft.delete()


def invoice_settle(
    *,
    buyer: Organisation,
    period_start: dt.datetime,
    period_end: dt.datetime,
    on_demand: bool = False,
    actor=None,
    idempotency_key: str | None = None,
) -> Invoice | None:
    """Build and issue the buyer's invoice for a closed period, all or nothing.

    The period's draft, if the refresh made one, is rebuilt and becomes the
    issued invoice; other drafts holding usage of the period give it up.
    Safe to run twice or after a crash: a committed invoice is returned as it
    is, an interrupted one left nothing behind. No usage and no credits → None.
    `on_demand`: an interim invoice (settle now, billing.interim) that ends
    before its period does.
    """
    with transaction.atomic():
        Organisation.objects.select_for_update().filter(pk=buyer.pk).first()
        _drafts_release(
            buyer=buyer,
            currency=settings.DEFAULT_CURRENCY,
            period_start=period_start,
            period_end=period_end,
        )
        invoice = invoice_build_for_period(
            buyer=buyer,
            period_start=period_start,
            period_end=period_end,
            on_demand=on_demand,
            idempotency_key=idempotency_key,
        )
        if invoice.status == S.DRAFT and not invoice.lines.exists():
            InvoiceEvent.objects.filter(invoice=invoice).delete()
            invoice.delete()
            return None
        return invoice_issue(invoice=invoice, actor=actor)


def invoice_mark_paid(
    *, invoice: Invoice, amount: int, business_key: str, clearing: str = P.STRIPE_CLEARING
) -> Invoice:
    """Apply `amount` captured for the invoice's buyer share (once per business key).

    Dr clearing / Cr buyer receivable; paid_amount grows; open → paid once the
    buyer share is covered. A paid or void invoice never moves back.
    """
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        _txn, created = transaction_post(
            business_key=business_key,
            kind="invoice_payment",
            legs=[
                Leg(account_get(purpose=clearing, currency=invoice.currency), amount),
                Leg(
                    account_get(
                        purpose=P.BUYER_RECEIVABLE,
                        organisation=invoice.buyer,
                        currency=invoice.currency,
                    ),
                    -amount,
                ),
            ],
            memo=f"{invoice.number} payment",
        )
        if not created:
            return invoice
        invoice.paid_amount += amount
        Invoice.objects.filter(pk=invoice.pk).update(paid_amount=invoice.paid_amount)
        if invoice.paid_amount >= invoice.buyer_amount:
            transition(invoice, old=S.OPEN, new=S.PAID, reason=business_key, paid_at=clock.now())
    return invoice


def invoice_record_refund(*, invoice: Invoice, amount: int, business_key: str) -> bool:
    """Money returned to the card: Dr buyer receivable / Cr Stripe clearing.

    The invoice's status does not move back; paid_amount is what the card
    still holds (a refund of a duplicate charge brings it back to the share)."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        _txn, created = transaction_post(
            business_key=business_key,
            kind="invoice_refund",
            legs=[
                Leg(
                    account_get(
                        purpose=P.BUYER_RECEIVABLE,
                        organisation=invoice.buyer,
                        currency=invoice.currency,
                    ),
                    amount,
                ),
                Leg(account_get(purpose=P.STRIPE_CLEARING, currency=invoice.currency), -amount),
            ],
            memo=f"{invoice.number} refund",
        )
        if created:
            Invoice.objects.filter(pk=invoice.pk).update(paid_amount=invoice.paid_amount - amount)
    return created


def invoice_void(*, invoice: Invoice, actor=None, reason: str = "") -> Invoice:
    """draft → void (its usage becomes billable again), or open → void with the
    issue transaction reversed (nothing may have been paid)."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status == S.DRAFT:
            invoice.lines.all().delete()
            transition(invoice, old=S.DRAFT, new=S.VOID, actor=actor, reason=reason)
        elif invoice.status == S.OPEN and invoice.paid_amount == 0:
            if invoice.sla_credits_earned.filter(invoice_lines__isnull=False).exists():
                raise Conflict(_("Credits earned on this invoice were already applied."))
            issue = invoice_issue_transaction(invoice=invoice)
            if issue:
                transaction_reverse(
                    original=issue, business_key=f"invoice:{invoice.pk}:void", memo=reason
                )
            invoice.sla_credits_earned.all().delete()
            transition(
                invoice,
                old=S.OPEN,
                new=S.VOID,
                actor=actor,
                reason=reason,
                voided_at=clock.now(),
            )
        else:
            raise Conflict(_("Only a draft or an unpaid open invoice can be voided."))
    return invoice


def invoice_issue_transaction(*, invoice: Invoice):
    from billing.models import LedgerTransaction

    return LedgerTransaction.objects.filter(business_key=f"invoice:{invoice.pk}:issue").first()


def invoice_invariants_hold(invoice: Invoice) -> bool:
    """The two invariants the issue asks for (tests and the admin check them)."""
    outstanding = invoice.buyer_amount - invoice.paid_amount
    return (
        invoice.voucher_amount + invoice.paid_amount + outstanding == invoice.total_amount
        and invoice.provider_net_amount + invoice.platform_fee_amount + invoice.rounding_amount
        == invoice.total_amount
    )


__all__ = [
    "buyers_to_close",
    "buyers_with_unbilled_usage",
    "invoice_build_for_period",
    "invoice_issue",
    "invoice_mark_paid",
    "invoice_record_refund",
    "invoice_settle",
    "invoice_void",
    "period_bounds",
    "period_to_close",
    "settle_window_for",
]
