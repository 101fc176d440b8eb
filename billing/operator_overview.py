"""What the operator (Django staff) checks first: work waiting for people and
the ledger's health. Lives in billing because billing is the layer that may
read every other app (accounts, market). Pure reads, one query per card."""

from dataclasses import dataclass

from django.db.models import Count, F, Sum

from accounts.models import Organisation
from billing.ledger import ledger_is_balanced
from billing.models import FraudFlag, Invoice
from core.outbox import OutboxBacklog, outbox_backlog
from market.models import Node, Order

OPEN_ORDER_STATES = (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)


@dataclass(frozen=True)
class Overview:
    organisations_unverified: int
    nodes_degraded: int
    nodes_offline: int
    orders_open: int
    invoices_open: int
    outstanding: list[tuple[str, int]]  # (currency, Σ buyer share − paid) of open invoices
    flags_open: int
    ledger_balanced: bool
    outbox: OutboxBacklog  # tasks written but not yet run to the end


def operator_overview() -> Overview:
    nodes = dict(
        Node.objects.filter(state__in=[Node.State.DEGRADED, Node.State.OFFLINE])
        .values_list("state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    invoices = list(
        Invoice.objects.filter(status=Invoice.Status.OPEN)
        .values("currency")
        .annotate(n=Count("pk"), outstanding=Sum(F("buyer_amount") - F("paid_amount")))
        .order_by("currency")
    )
    return Overview(
        organisations_unverified=Organisation.objects.filter(verified=False).count(),
        nodes_degraded=nodes.get(Node.State.DEGRADED, 0),
        nodes_offline=nodes.get(Node.State.OFFLINE, 0),
        orders_open=Order.objects.filter(status__in=OPEN_ORDER_STATES).count(),
        invoices_open=sum(row["n"] for row in invoices),
        outstanding=[(row["currency"], row["outstanding"]) for row in invoices],
        flags_open=FraudFlag.objects.filter(status=FraudFlag.Status.OPEN).count(),
        ledger_balanced=ledger_is_balanced(),
        outbox=outbox_backlog(),
    )
