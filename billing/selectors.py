"""Reads of billing, always scoped to the caller's organisation."""

from django.db.models import QuerySet

from accounts.models import Organisation
from billing.models import Invoice, Payout


def invoice_list(*, buyer: Organisation) -> QuerySet[Invoice]:
    return Invoice.objects.filter(buyer=buyer).exclude(status=Invoice.Status.VOID)


def invoice_get(*, buyer: Organisation, pk: int) -> Invoice | None:
    return (
        Invoice.objects.filter(buyer=buyer, pk=pk)
        .select_related("buyer")
        .prefetch_related("lines__provider", "events", "payments")
        .first()
    )


def payout_list(*, provider: Organisation) -> QuerySet[Payout]:
    return (
        Payout.objects.filter(provider=provider)
        .select_related("run")
        .prefetch_related("lines__invoice")
    )


def provider_invoice_lines(*, provider: Organisation):
    """The provider's lines on issued invoices (its sales and credit notes)."""
    from billing.models import InvoiceLine

    return (
        InvoiceLine.objects.filter(provider=provider)
        .exclude(invoice__status__in=[Invoice.Status.DRAFT, Invoice.Status.VOID])
        .select_related("invoice")
        .order_by("-invoice__period_start", "pk")
    )
