"""Reads of billing, always scoped to the caller's organisation."""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Avg, Count, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation
from accounts.selectors import organisation_for_user
from billing.models import (
    FundingAlert,
    FundingTerms,
    Invoice,
    InvoiceLine,
    LedgerAccount,
    Payout,
    PayoutMethod,
    PayoutRun,
    TopUp,
    Voucher,
)
from billing.subsidy import invoice_voucher_preview
from core.money import SECONDS_PER_HOUR, amount_for_gpu_seconds, round_minor
from core.scheduled_tasks import scheduled_tasks
from market.models import Lease, Node, Order, TelemetrySample, UsageRecord
from market.telemetry import provider_reliability


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


# Home pages ----------------------------------------------------------------------------
# What each role asks first, read in a bounded number of queries (one per card), for
# billing/web/home.py. Billing is the layer that may read market and accounts alike.

HOME_UTILISATION_WINDOW = dt.timedelta(minutes=5)  # "live": the mean of the last minutes
HOME_PAYOUT_TASK = "billing.payout_run_scheduled"
HOME_RELIABILITY_WINDOW = dt.timedelta(days=30)  # the window market.telemetry scores over


def _month_start(now: dt.datetime) -> dt.datetime:
    local = timezone.localtime(now)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _live_utilisation(node_ids: list[int], *, now: dt.datetime) -> dict[int, float]:
    """Mean GPU utilisation (%) of each node over the last few minutes."""
    rows = (
        TelemetrySample.objects.filter(
            node_id__in=node_ids, ts__gte=now - HOME_UTILISATION_WINDOW, ts__lte=now
        )
        .values("node_id")
        .annotate(util=Avg("utilisation"))
        .order_by()
    )
    return {row["node_id"]: row["util"] for row in rows}


@dataclass(frozen=True)
class MonthSpend:
    gpu_seconds: int
    gross_amount: int  # metered so far at the leases' prices (rounded once per lease)
    voucher_amount: int  # vouchers on this month's invoices
    currency: str

    @property
    def own_amount(self) -> int:
        return self.gross_amount - self.voucher_amount


@dataclass(frozen=True)
class BuyerHome:
    leases: list[tuple[Lease, float | None]]  # active leases with live utilisation (%)
    month: MonthSpend
    vouchers: list[tuple[Voucher, int]]  # usable vouchers with their balance
    orders: list[Order]  # open orders (gpus_filled of gpu_count)
    model_ids: set[int]  # GPU models it ordered or leased: its price board


def buyer_home(*, buyer: Organisation, now: dt.datetime, currency: str) -> BuyerHome:
    from billing.subsidy import selectors as subsidy_selectors

    leases = list(
        Lease.objects.filter(buyer=buyer, status=Lease.Status.ACTIVE)
        .select_related("node__gpu_model", "node__site")
        .order_by("ends_at", "pk")[:8]
    )
    live = _live_utilisation([lease.node_id for lease in leases], now=now)
    since = _month_start(now)
    per_lease = (
        UsageRecord.objects.filter(lease__buyer=buyer, window_start__gte=since)
        .values("lease_id", "lease__price_amount")
        .annotate(seconds=Sum("gpu_seconds_delivered"))
        .order_by()
    )
    seconds = gross = 0
    for row in per_lease:
        seconds += row["seconds"] or 0
        gross += amount_for_gpu_seconds(
            gpu_seconds=row["seconds"] or 0, price_amount=row["lease__price_amount"]
        )
    vouchers_used = (
        Invoice.objects.filter(buyer=buyer, period_start__gte=since, currency=currency)
        .exclude(status=Invoice.Status.VOID)
        .aggregate(total=Sum("voucher_amount"))["total"]
        or 0
    )
    usable = list(
        Voucher.objects.filter(
            holder=buyer,
            status__in=[Voucher.Status.ISSUED, Voucher.Status.ACTIVE],
            valid_until__gt=now,
        )
        .select_related("programme")
        .order_by("valid_until", "pk")[:6]
    )
    balances = subsidy_selectors.voucher_balances(vouchers=usable)
    orders = list(
        Order.objects.filter(
            buyer=buyer, status__in=[Order.Status.OPEN, Order.Status.PARTIALLY_FILLED]
        ).order_by("-created_at")[:6]
    )
    ordered = set(
        Order.accepted_models.through.objects.filter(order__buyer=buyer).values_list(
            "gpumodel_id", flat=True
        )
    )
    leased = set(
        Lease.objects.filter(buyer=buyer).values_list("node__gpu_model_id", flat=True).distinct()
    )
    return BuyerHome(
        leases=[(lease, live.get(lease.node_id)) for lease in leases],
        month=MonthSpend(
            gpu_seconds=seconds, gross_amount=gross, voucher_amount=vouchers_used, currency=currency
        ),
        vouchers=[(voucher, balances.get(voucher.pk, 0)) for voucher in usable],
        orders=orders,
        model_ids=ordered | leased,
    )


@dataclass(frozen=True)
class ReliabilityLoss:
    node: str
    gpu_seconds_lost: int
    reason: str  # the node's last fault, as health recorded it


@dataclass(frozen=True)
class ProviderHome:
    nodes: list[Node]  # every node, for the health grid (state)
    states: dict[str, int]  # nodes per state
    utilisation_by_hour: list[tuple[dt.datetime, float]]  # last 24 h, all its nodes
    revenue_by_day: list[tuple[dt.date, int]]  # this month, gross at the leases' prices
    reliability: Decimal  # delivered / promised GPU-seconds, 30 days
    losses: list[ReliabilityLoss]  # what lowered it, largest first
    payable_amount: int  # owed to it now (after fee and credits): the next payout
    next_payout_at: dt.datetime | None
    currency: str


def provider_home(*, provider: Organisation, now: dt.datetime, currency: str) -> ProviderHome:
    nodes = list(
        Node.objects.filter(site__provider=provider)
        .select_related("site", "gpu_model")
        .order_by("site__name", "name")
    )
    states: dict[str, int] = {}
    for node in nodes:
        states[node.state] = states.get(node.state, 0) + 1
    hours = (
        TelemetrySample.objects.filter(
            node__site__provider=provider, ts__gte=now - dt.timedelta(hours=24), ts__lte=now
        )
        .annotate(hour=TruncHour("ts"))
        .values("hour")
        .annotate(util=Avg("utilisation"))
        .order_by("hour")
    )
    days: dict[dt.date, Decimal] = {}
    for row in (
        UsageRecord.objects.filter(lease__provider=provider, window_start__gte=_month_start(now))
        .annotate(day=TruncDate("window_start", tzinfo=timezone.get_current_timezone()))
        .values("day", "lease__price_amount")
        .annotate(seconds=Sum("gpu_seconds_delivered"))
        .order_by("day")
    ):
        exact = Decimal(row["seconds"] or 0) * row["lease__price_amount"] / SECONDS_PER_HOUR
        days[row["day"]] = days.get(row["day"], Decimal(0)) + exact
    since = now - HOME_RELIABILITY_WINDOW
    lost = (
        UsageRecord.objects.filter(
            lease__provider=provider, window_end__gt=since, gpu_seconds_lost__gt=0
        )
        .values(
            "lease__node_id", "lease__node__name", "lease__node__health_cursor__last_fault_reason"
        )
        .annotate(lost=Sum("gpu_seconds_lost"))
        .order_by("-lost")[:3]
    )
    payable = LedgerAccount.objects.filter(
        purpose=LedgerAccount.Purpose.PROVIDER_PAYABLE, organisation=provider, currency=currency
    ).first()
    return ProviderHome(
        nodes=nodes,
        states=states,
        utilisation_by_hour=[(row["hour"], row["util"]) for row in hours],
        revenue_by_day=[(day, round_minor(amount)) for day, amount in sorted(days.items())],
        reliability=provider_reliability([provider.pk], now=now)[provider.pk],
        losses=[
            ReliabilityLoss(
                node=row["lease__node__name"],
                gpu_seconds_lost=row["lost"],
                reason=row["lease__node__health_cursor__last_fault_reason"] or "",
            )
            for row in lost
        ],
        payable_amount=payable.normal_balance if payable else 0,
        next_payout_at=_next_run(HOME_PAYOUT_TASK, now=now),
        currency=currency,
    )


def _next_run(name: str, *, now: dt.datetime) -> dt.datetime | None:
    """When beat runs `name` next: its interval after the last run (or from now)."""
    task = next((t for t in scheduled_tasks() if t.name == name), None)
    if task is None:
        return None
    interval = dt.timedelta(seconds=task.interval_seconds)
    last = task.status.last_success_at if task.status else None
    upcoming = (last or now) + interval
    while upcoming < now:
        upcoming += interval
    return upcoming


# --- prepaid balance and credit (billing/prepaid.py writes) ------------------------------


@dataclass(frozen=True)
class Funding:
    """What a buyer may still spend, in minor units of `currency`:
    available = balance + credit limit − outstanding − unbilled.

    `balance`: the prepaid balance (the ledger's buyer_credit account);
    `outstanding`: issued invoices not yet paid (the buyer receivable);
    `unbilled`: metered usage on no issued invoice, priced as its invoice
    line will be (one line per lease and billing period, rounded once).
    `terms` is None for a buyer who pays by card after use (no limit)."""

    currency: str
    balance: int
    credit_limit: int
    outstanding: int
    unbilled: int
    terms: FundingTerms | None

    @property
    def available(self) -> int:
        return self.balance + self.credit_limit - self.outstanding - self.unbilled

    @property
    def enforced(self) -> bool:
        """Held to available funds (stopped at zero), not paying after use."""
        return self.terms is not None and self.terms.held


def unbilled_usage_amount(*, buyer: Organisation, currency: str) -> int:
    """Metered usage of the buyer on no issued invoice (on none, on a draft or
    on a void one), priced as billing.invoices prices a line: Σ GPU-seconds of
    one lease in one billing period × its price, rounded once."""
    from billing.invoices import period_bounds

    records = (
        UsageRecord.objects.filter(lease__buyer=buyer, lease__currency=currency)
        .filter(
            Q(invoice_link__isnull=True)
            | Q(invoice_link__line__invoice__status__in=[Invoice.Status.DRAFT, Invoice.Status.VOID])
        )
        .order_by()
        .values_list("lease_id", "lease__price_amount", "window_start", "gpu_seconds_delivered")
    )
    seconds: dict[tuple[int, int, dt.datetime], int] = {}
    for lease_id, price, window_start, delivered in records.iterator(chunk_size=2000):
        key = (lease_id, price, period_bounds(at=window_start)[0])
        seconds[key] = seconds.get(key, 0) + delivered
    return sum(
        amount_for_gpu_seconds(gpu_seconds=total, price_amount=price)
        for (_lease, price, _period), total in seconds.items()
    )


def funding_get(*, buyer: Organisation, currency: str = "CNY") -> Funding:
    """The one place available funds are computed (order checks, the beat's
    sweep, the API and the pages all read it)."""
    terms = FundingTerms.objects.filter(buyer=buyer).first()
    accounts = dict(
        LedgerAccount.objects.filter(
            organisation=buyer,
            currency=currency,
            reference="",
            purpose__in=[
                LedgerAccount.Purpose.BUYER_CREDIT,
                LedgerAccount.Purpose.BUYER_RECEIVABLE,
            ],
        ).values_list("purpose", "balance")
    )
    return Funding(
        currency=currency,
        # credit-normal: the ledger holds the buyer's money as a negative balance
        balance=-accounts.get(LedgerAccount.Purpose.BUYER_CREDIT, 0),
        credit_limit=terms.credit_limit_amount if terms else 0,
        outstanding=accounts.get(LedgerAccount.Purpose.BUYER_RECEIVABLE, 0),
        unbilled=unbilled_usage_amount(buyer=buyer, currency=currency),
        terms=terms,
    )


def funding_alerts(*, buyer: Organisation, limit: int = 10) -> QuerySet[FundingAlert]:
    return FundingAlert.objects.filter(buyer=buyer)[:limit]


def top_up_list(*, buyer: Organisation) -> QuerySet[TopUp]:
    return TopUp.objects.filter(buyer=buyer)
