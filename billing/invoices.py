"""Invoices: billing periods, the draft of a buyer's period (one line per lease
per period, SLA credit notes, totals) kept fresh as usage is metered, and which
buyers a period close must settle. Issuing, paying and voiding are in
billing/settlement.py.

How an amount is computed and where its remainder goes — the one rule
---------------------------------------------------------------------
1. A usage line is one lease in one billing period. Its usage records (the
   5-minute windows) are its evidence and are never priced one by one:
   amount = Σ GPU-seconds delivered × price per GPU-hour / 3600, rounded once
   by core.money (half-even, to the fen). GPU-seconds lost to faults are on
   the line (`gpu_seconds_lost`) and never in the amount.
2. Every share of a line is computed from that rounded amount, each rounded
   once by the same rule: the platform fee = amount × fee rate, a voucher's
   share = eligible amount × programme rate (capped by balance, budget, caps
   and what is left of the line).
3. The remainder of each split stays with the party that is not a rate:
   provider net = amount − fee; the buyer's share = amount − Σ voucher
   shares. So the parts of a line add up to its amount exactly, and nothing
   is rounded twice. Invoice totals are sums of line amounts, never
   recomputed from hours.
4. A voucher that covers only part of a line's usage (its validity, or the
   programme's, starts or ends inside the period) pays on the eligible
   GPU-seconds priced by (1) — the one case where a second rounding happens,
   because it prices a different quantity.
"""

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, Sum
from django.utils.translation import gettext as _

from accounts.models import Organisation
from billing.models import Invoice, InvoiceLine, InvoiceLineUsage, LedgerAccount, SlaCredit
from core import clock
from core.errors import ApplicationError, Conflict
from core.money import SECONDS_PER_HOUR, amount_for_gpu_seconds, apply_basis_points
from core.transitions import status_record
from market.models import Lease, UsageRecord

logger = logging.getLogger(__name__)


P = LedgerAccount.Purpose


S = Invoice.Status


# A closed period is settled this long after its last metering window was due.
CLOSE_MARGIN = dt.timedelta(minutes=5)


def period_bounds(*, at: dt.datetime, period: str | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The billing period containing `at`, as aware datetimes in TIME_ZONE."""
    period = period or settings.BILLING_PERIOD
    local = at.astimezone(ZoneInfo(settings.TIME_ZONE))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day, day + dt.timedelta(days=1)
    if period == "weekly":
        start = day - dt.timedelta(days=day.weekday())
        return start, start + dt.timedelta(days=7)
    start = day.replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def _invoice_number(*, buyer: Organisation, period_start: dt.datetime, currency: str) -> str:
    local = period_start.astimezone(ZoneInfo(settings.TIME_ZONE))
    suffix = "" if currency == settings.DEFAULT_CURRENCY else f"-{currency}"
    # an invoice after an interim one may start at any second (a lease ended early)
    start = f"{local:%Y%m%d%H%M%S}" if local.second else f"{local:%Y%m%d%H%M}"
    return f"INV-{start}-{buyer.pk:05d}{suffix}"


@dataclass
class _LineDraft:
    """The usage records of one lease in one billing period, summed."""

    lease: Lease
    records: list[UsageRecord]

    @property
    def gpu_seconds(self) -> int:
        return sum(record.gpu_seconds_delivered for record in self.records)


def _group_usage(records: Iterable[UsageRecord]) -> list[_LineDraft]:
    """One group per lease per billing period of the usage (a late record of
    an earlier period makes its own adjustment line), in window order."""
    groups: dict[tuple[int, dt.datetime], _LineDraft] = {}
    for record in records:
        period_start, _end = period_bounds(at=record.window_start)
        key = (record.lease_id, period_start)
        if key not in groups:
            groups[key] = _LineDraft(lease=record.lease, records=[])
        groups[key].records.append(record)
    return sorted(groups.values(), key=lambda g: (g.records[0].window_start, g.lease.pk))


def _usage_line(group: _LineDraft, *, invoice: Invoice, fee_bps: int) -> InvoiceLine:
    """The line of one lease and period, priced once (see `line_shares`)."""
    lease, records = group.lease, group.records
    gpu_model = lease.node.gpu_model
    gpu_seconds = group.gpu_seconds
    amount = amount_for_gpu_seconds(gpu_seconds=gpu_seconds, price_amount=lease.price_amount)
    fee = apply_basis_points(amount=amount, basis_points=fee_bps)
    pflops_hours = (
        Decimal(gpu_seconds) * gpu_model.dense_tflops / 1000 / SECONDS_PER_HOUR
    ).quantize(Decimal("0.0001"))
    window_start = min(record.window_start for record in records)
    description = f"{gpu_model} × {lease.gpu_count} · {lease.node.site} · lease {lease.pk}"
    grace = sum(record.gpu_seconds_grace for record in records)
    if grace:
        description += " · " + _(
            "%(seconds)s GPU-seconds of agent start-up grace: not billed, not a fault"
        ) % {"seconds": grace}
    if window_start < invoice.period_start:
        local = window_start.astimezone(ZoneInfo(settings.TIME_ZONE))
        description = _("Late usage of %(period)s: %(line)s") % {
            "period": f"{local:%Y-%m-%d}",
            "line": description,
        }
    return InvoiceLine(
        invoice=invoice,
        kind=InvoiceLine.Kind.USAGE,
        lease=lease,
        provider=lease.provider,
        description=description[:300],
        window_start=window_start,
        window_end=max(record.window_end for record in records),
        gpu_model_name=str(gpu_model),
        gpu_seconds=gpu_seconds,
        gpu_seconds_lost=sum(record.gpu_seconds_lost for record in records),
        price_amount=lease.price_amount,
        amount=amount,
        pflops_hours=pflops_hours,
        # whole Wh / g on the line: the records' three decimals summed, then truncated
        energy_wh=int(sum((record.energy_wh for record in records), Decimal(0))),
        carbon_g=int(sum((record.carbon_g for record in records), Decimal(0))),
        fee_amount=fee,
        provider_net_amount=amount - fee,
    )


def _usage_lines_create(*, invoice: Invoice, records: Iterable[UsageRecord]) -> int:
    """Write the invoice's usage lines and link each record to its line."""
    fee_bps = settings.PLATFORM_FEE_BASIS_POINTS
    groups = _group_usage(records)
    lines = InvoiceLine.objects.bulk_create(
        [_usage_line(group, invoice=invoice, fee_bps=fee_bps) for group in groups]
    )
    InvoiceLineUsage.objects.bulk_create(
        [
            InvoiceLineUsage(line=line, usage_record=record)
            for line, group in zip(lines, groups, strict=True)
            for record in group.records
        ]
    )
    return sum(line.amount for line in lines)


def _credit_remaining(credit: SlaCredit) -> int:
    used = (
        InvoiceLine.objects.filter(sla_credit=credit)
        .exclude(invoice__status=S.VOID)
        .aggregate(total=Sum("amount"))["total"]
        or 0
    )
    return credit.amount + used  # credit lines carry negative amounts


def _credit_lines(*, invoice: Invoice, gross: int) -> list[InvoiceLine]:
    """Pending SLA credits earned on earlier invoices, oldest first, up to the gross."""
    lines = []
    room = gross
    credits = SlaCredit.objects.filter(
        buyer=invoice.buyer, currency=invoice.currency, source_invoice__status__in=[S.OPEN, S.PAID]
    ).select_related("source_invoice", "provider")
    for credit in credits.order_by("pk"):
        applied = min(_credit_remaining(credit), room)
        if applied <= 0:
            continue
        room -= applied
        hours = Decimal(credit.gpu_seconds_lost) / SECONDS_PER_HOUR
        lines.append(
            InvoiceLine(
                kind=InvoiceLine.Kind.SLA_CREDIT,
                sla_credit=credit,
                provider=credit.provider,
                description=_(
                    "SLA credit from %(provider)s: %(hours)s GPU-hours lost on %(invoice)s × %(multiple)s"
                )
                % {
                    "provider": credit.provider,
                    "hours": f"{hours:.4f}",
                    "invoice": credit.source_invoice.number,
                    "multiple": credit.multiple,
                },
                gpu_seconds_lost=credit.gpu_seconds_lost,
                price_amount=0,
                amount=-applied,
                fee_amount=0,
                provider_net_amount=-applied,
            )
        )
    return lines


def _totals(invoice: Invoice) -> None:
    lines = list(invoice.lines.all())
    invoice.gross_amount = sum(line.amount for line in lines if line.kind == "usage")
    invoice.credit_amount = -sum(line.amount for line in lines if line.kind == "sla_credit")
    invoice.total_amount = invoice.gross_amount - invoice.credit_amount
    invoice.platform_fee_amount = sum(line.fee_amount for line in lines)
    invoice.provider_net_amount = sum(line.provider_net_amount for line in lines)
    invoice.rounding_amount = (
        invoice.total_amount - invoice.provider_net_amount - invoice.platform_fee_amount
    )
    invoice.voucher_amount = 0
    invoice.buyer_amount = invoice.total_amount


def _check_period_open(
    *, buyer: Organisation, period_start: dt.datetime, period_end: dt.datetime, currency: str
) -> None:
    overlapping = (
        Invoice.objects.filter(buyer=buyer, currency=currency)
        .exclude(status__in=[S.DRAFT, S.VOID])
        .filter(period_start__lt=period_end, period_end__gt=period_start)
    )
    first = overlapping.first()
    if first is not None:
        raise Conflict(
            _("This period is closed: invoice %(number)s already covers part of it.")
            % {"number": first.number},
            errors={"period_start": [_("overlaps an issued invoice")]},
        )


def invoice_build_for_period(
    *,
    buyer: Organisation,
    period_start: dt.datetime,
    period_end: dt.datetime,
    currency: str | None = None,
    on_demand: bool = False,
    idempotency_key: str | None = None,
) -> Invoice:
    """The buyer's invoice for [period_start, period_end), as a fresh draft.

    Lines: every not-yet-invoiced usage record of the buyer's leases that
    ended by `period_end` (late records of closed periods included — a closed
    period is never reopened), then credit notes for pending SLA credits.
    An invoice already issued for this exact period is returned unchanged; one
    overlapping the period raises Conflict.
    """
    currency = currency or settings.DEFAULT_CURRENCY
    if period_end <= period_start:
        raise ApplicationError(
            _("The period must end after it starts."),
            errors={"period_end": [_("must be after period_start")]},
        )
    with transaction.atomic():
        # One builder per buyer at a time: drafts are rebuilt, credits shared.
        Organisation.objects.select_for_update().filter(pk=buyer.pk).first()
        existing = Invoice.objects.filter(
            buyer=buyer, period_start=period_start, currency=currency
        ).first()
        if existing and existing.status != S.DRAFT:
            return existing
        _check_period_open(
            buyer=buyer, period_start=period_start, period_end=period_end, currency=currency
        )
        invoice = existing or Invoice.objects.create(
            number=_invoice_number(buyer=buyer, period_start=period_start, currency=currency),
            buyer=buyer,
            period_start=period_start,
            period_end=period_end,
            currency=currency,
        )
        if not existing:
            status_record(invoice, new=S.DRAFT, reason="built")
        invoice.period_end = period_end
        invoice.on_demand = on_demand
        invoice.idempotency_key = idempotency_key or None
        invoice.lines.all().delete()
        records = (
            UsageRecord.objects.filter(
                lease__buyer=buyer,
                lease__currency=currency,
                window_end__lte=period_end,
                invoice_link__isnull=True,
            )
            .select_related("lease__node__gpu_model", "lease__node__site", "lease__provider")
            .order_by("window_start", "pk")
        )
        gross = _usage_lines_create(invoice=invoice, records=records)
        credits = _credit_lines(invoice=invoice, gross=gross)
        for line in credits:
            line.invoice = invoice
        InvoiceLine.objects.bulk_create(credits)
        _totals(invoice)
        invoice.save()
    return invoice


def buyers_with_unbilled_usage(*, until: dt.datetime, currency: str | None = None) -> list[int]:
    """Buyers with usage that ended by `until` and is on no invoice, not even
    a draft (the ones whose draft the refresh has to bring up to date)."""
    currency = currency or settings.DEFAULT_CURRENCY
    return list(
        UsageRecord.objects.filter(
            window_end__lte=until, invoice_link__isnull=True, lease__currency=currency
        )
        .order_by("lease__buyer_id")  # not Meta.ordering: DISTINCT would add window_start
        .values_list("lease__buyer_id", flat=True)
        .distinct()
    )


def period_to_close(*, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The last period that has ended and whose usage is all metered at `at`:
    the last metering window of a period ends with it and is written once it
    has been closed for METERING_GRACE_SECONDS (plus a few metering runs)."""
    metered_until = at - dt.timedelta(seconds=settings.METERING_GRACE_SECONDS) - CLOSE_MARGIN
    current_start, _end = period_bounds(at=metered_until)
    return period_bounds(at=current_start - dt.timedelta(seconds=1))


def buyers_to_close(
    *, period_start: dt.datetime, period_end: dt.datetime, currency: str | None = None
) -> list[int]:
    """Buyers to settle for a closed period: every buyer with usage ending by
    its end that no issued invoice holds (on no invoice or on a draft — a
    draft holds every record once refreshed), unless an issued invoice
    already covers the period to its end. Each buyer once."""
    currency = currency or settings.DEFAULT_CURRENCY
    covered = (
        Invoice.objects.filter(currency=currency, period_end__gte=period_end)
        .exclude(status__in=[S.DRAFT, S.VOID])
        .values("buyer_id")
    )
    return list(
        UsageRecord.objects.filter(window_end__lte=period_end, lease__currency=currency)
        .filter(Q(invoice_link__isnull=True) | Q(invoice_link__line__invoice__status=S.DRAFT))
        .exclude(lease__buyer_id__in=covered)
        .order_by("lease__buyer_id")  # not Meta.ordering: DISTINCT would add window_start
        .values_list("lease__buyer_id", flat=True)
        .distinct()
    )


def settle_window_for(
    *, buyer: Organisation, period_start: dt.datetime, period_end: dt.datetime
) -> tuple[dt.datetime, dt.datetime] | None:
    """The buyer's part of a closed period not yet covered by an issued invoice
    (an on-demand invoice may already have closed its beginning)."""
    last_end = (
        Invoice.objects.filter(buyer=buyer, period_end__gt=period_start)
        .exclude(status__in=[S.DRAFT, S.VOID])
        .aggregate(last=Max("period_end"))["last"]
    )
    start = max(period_start, last_end) if last_end else period_start
    return (start, period_end) if start < period_end else None


def invoice_draft_refresh(*, buyer: Organisation) -> int | None:
    """Rebuild the buyer's draft for the current period so its page shows
    charges so far (on lease completion and every few minutes)."""
    start, end = period_bounds(at=clock.now())
    window = settle_window_for(buyer=buyer, period_start=start, period_end=end)
    if window is None:
        return None
    existing = Invoice.objects.filter(buyer=buyer, period_start=window[0]).first()
    if existing and existing.status != S.DRAFT:
        return existing.pk
    return invoice_build_for_period(buyer=buyer, period_start=window[0], period_end=window[1]).pk


@dataclass(frozen=True, slots=True)
class DraftsRefreshed:
    refreshed: int
    failed_buyer_ids: tuple[int, ...] = ()


def invoice_drafts_refresh(*, now: dt.datetime) -> DraftsRefreshed:
    """Refresh the draft of every buyer with usage on no invoice yet. Each
    buyer on its own: one that fails is logged and returned, the others are
    refreshed all the same."""
    refreshed, failed = 0, []
    for buyer in Organisation.objects.filter(pk__in=buyers_with_unbilled_usage(until=now)):
        try:
            invoice_draft_refresh(buyer=buyer)
        except Exception:
            logger.exception("refreshing the draft of buyer %s failed", buyer.pk)
            failed.append(buyer.pk)
        else:
            refreshed += 1
    return DraftsRefreshed(refreshed=refreshed, failed_buyer_ids=tuple(failed))
