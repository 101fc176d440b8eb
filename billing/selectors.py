"""Reads of billing, always scoped to the caller's organisation."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from accounts.selectors import organisation_for_user
from billing.models import Invoice, InvoiceLine, Payout, PayoutMethod, PayoutRun
from billing.subsidy import invoice_voucher_preview
from market.models import UsageRecord


def invoice_list(*, buyer: Organisation) -> QuerySet[Invoice]:
    return Invoice.objects.filter(buyer=buyer).exclude(status=Invoice.Status.VOID)


def invoice_get(*, buyer: Organisation, pk: int) -> Invoice | None:
    return (
        Invoice.objects.filter(buyer=buyer, pk=pk)
        .select_related("buyer")
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=InvoiceLine.objects.select_related(
                    "provider", "lease__node__site", "sla_credit__source_invoice"
                )
                .prefetch_related("subsidy_refusals__programme")
                .annotate(
                    usage_record_count=Count("usage_links"),
                    grace_seconds=Sum("usage_links__usage_record__gpu_seconds_grace"),
                ),
            ),
            "events",
            "payments",
        )
        .first()
    )


@dataclass(frozen=True)
class InvoiceShares:
    voucher_amount: int
    buyer_amount: int
    preview: bool  # a draft's shares as they would be if it were issued now


def invoice_shares(*, invoice: Invoice) -> InvoiceShares:
    """The voucher share and the buyer's share to show: an issued invoice's
    own, a draft's previewed (billing.subsidy.invoice_voucher_preview). Each
    of the invoice's prefetched lines gets `voucher_shown` and `buyer_shown`."""
    preview = invoice_voucher_preview(invoice=invoice)
    for line in invoice.lines.all():
        line.voucher_shown = preview.by_line.get(line.pk, 0)  # type: ignore[attr-defined]
        line.buyer_shown = line.amount - line.voucher_shown  # type: ignore[attr-defined]
    return InvoiceShares(
        voucher_amount=preview.total,
        buyer_amount=invoice.total_amount - preview.total,
        preview=invoice.status == Invoice.Status.DRAFT,
    )


def invoice_status_get(*, buyer: Organisation, pk: int) -> Invoice | None:
    """Just the invoice row: what the page's payment-status poll reads."""
    return Invoice.objects.filter(buyer=buyer, pk=pk).first()


# Why an invoice's status changed, as the services record it (`reason`).
_REASONS = {
    "built": _("draft built from the usage metered so far"),
    "issued": _("invoice issued"),
    "nothing to pay": _("nothing left to pay after vouchers"),
}


@dataclass(frozen=True)
class InvoiceHistoryRow:
    at: dt.datetime
    from_status: str  # the status's label in the reader's language, "" for the first
    to_status: str
    reason: str
    actor: str


def invoice_history(*, invoice: Invoice) -> list[InvoiceHistoryRow]:
    """The invoice's status events, oldest first, in the reader's language."""
    labels = dict(Invoice.Status.choices)
    rows = []
    for event in invoice.events.select_related("actor").order_by("at", "pk"):
        reason = event.reason
        if reason in _REASONS:
            reason = str(_REASONS[reason])
        elif reason.startswith("stripe:payment_intent:"):
            reason = str(_("card payment confirmed by Stripe"))
        elif reason.startswith("stripe:"):
            reason = str(_("confirmed by Stripe"))
        rows.append(
            InvoiceHistoryRow(
                at=event.at,
                from_status=str(labels.get(event.from_status, event.from_status)),
                to_status=str(labels.get(event.to_status, event.to_status)),
                reason=reason,
                actor=event.actor.get_username() if event.actor else "",
            )
        )
    return rows


def buyers_with_uninvoiced_usage(*, limit: int = 50) -> list[dict]:
    """Buyers with metered usage on no issued invoice (on a draft or on none),
    most GPU-seconds first: whom staff may settle now (operator page)."""
    rows = (
        UsageRecord.objects.exclude(
            invoice_link__line__invoice__status__in=[Invoice.Status.OPEN, Invoice.Status.PAID]
        )
        .values("lease__buyer_id", "lease__buyer__legal_name", "lease__buyer__credit_code")
        .annotate(records=Count("pk"), gpu_seconds=Sum("gpu_seconds_delivered"))
        .order_by("-gpu_seconds", "lease__buyer_id")[:limit]
    )
    return [
        {
            "buyer_id": row["lease__buyer_id"],
            "legal_name": row["lease__buyer__legal_name"],
            "credit_code": row["lease__buyer__credit_code"],
            "records": row["records"],
            "gpu_hours": round(row["gpu_seconds"] / 3600, 2),
        }
        for row in rows
    ]


def invoice_line_usage_records(*, line: InvoiceLine) -> QuerySet[UsageRecord]:
    """The usage records behind a line (its evidence), in window order: what
    a drill-down lists and a CSV of the line exports."""
    return UsageRecord.objects.filter(invoice_link__line=line).order_by("window_start", "pk")


def invoice_line_for_buyer(*, buyer: Organisation, pk: int) -> InvoiceLine | None:
    """One line of the buyer's own invoices (another buyer's is None)."""
    return (
        InvoiceLine.objects.filter(invoice__buyer=buyer, pk=pk)
        .select_related("invoice", "provider", "lease")
        .first()
    )


def payout_list(*, provider: Organisation) -> QuerySet[Payout]:
    return (
        Payout.objects.filter(provider=provider)
        .select_related("run")
        .prefetch_related("lines__invoice")
    )


def payout_visible_to(*, user, pk: int) -> Payout | None:
    """A payout its provider's members may see, or any payout for staff."""
    rows = Payout.objects.select_related("run", "provider")
    if not user.is_staff:
        organisation = organisation_for_user(user)
        if organisation is None or not organisation.is_provider:
            return None
        rows = rows.filter(provider=organisation)
    return rows.filter(pk=pk).first()


def payout_run_list() -> QuerySet[PayoutRun]:
    """Every payout run with its payout count and total (operator's view)."""
    return PayoutRun.objects.annotate(
        payout_count=Count("payouts"),
        bank_count=Count("payouts", filter=Q(payouts__method=PayoutMethod.BANK_TRANSFER)),
        total_amount=Sum("payouts__amount"),
    ).order_by("-created_at", "-pk")


def provider_invoice_lines(*, provider: Organisation):
    """The provider's lines on issued invoices (its sales and credit notes)."""
    from billing.models import InvoiceLine

    return (
        InvoiceLine.objects.filter(provider=provider)
        .exclude(invoice__status__in=[Invoice.Status.DRAFT, Invoice.Status.VOID])
        .select_related("invoice")
        .order_by("-invoice__period_start", "pk")
    )
