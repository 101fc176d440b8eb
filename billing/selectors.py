"""Reads of billing, always scoped to the caller's organisation."""

from django.db.models import Count, Prefetch, Q, QuerySet, Sum

from accounts.models import Organisation
from accounts.selectors import organisation_for_user
from billing.models import Invoice, InvoiceLine, Payout, PayoutMethod, PayoutRun
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
                queryset=InvoiceLine.objects.select_related("provider")
                .prefetch_related("subsidy_refusals__programme")
                .annotate(usage_record_count=Count("usage_links")),
            ),
            "events",
            "payments",
        )
        .first()
    )


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
