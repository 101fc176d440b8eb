"""Claims: what a programme paid in one month, for the authority to reimburse
and audit. One row per redemption (each names its usage records), grouped by
provider and enterprise; the month is the month of the usage (local time).
Held and clawed-back redemptions are left out: a claim lists only what stands.
"""

import csv
import datetime as dt
import io
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from billing.models import Redemption, Reimbursement, SubsidyProgramme
from core.money import format_major
from core.units import gpu_hours

HEADER = [
    "provider",
    "provider_credit_code",
    "enterprise",
    "enterprise_credit_code",
    "usage_records",
    "lease",
    "window_start",
    "gpu_model",
    "domestic",
    "gpu_hours",
    "gross_cny",
    "rate_percent",
    "subsidy_cny",
    "settlement_mode",
]


@dataclass(frozen=True)
class ClaimRow:
    provider: str
    provider_credit_code: str
    enterprise: str
    enterprise_credit_code: str
    usage_record_ids: tuple[int, ...]
    lease_id: int
    window_start: dt.datetime
    gpu_model: str
    domestic: bool
    gpu_seconds: int
    gross_amount: int
    rate_bp: int
    subsidy_amount: int
    settlement_mode: str

    @property
    def gpu_hours(self) -> Decimal:
        return gpu_hours(self.gpu_seconds)


def _month_bounds(year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    tz = timezone.get_current_timezone()
    start = dt.datetime(year, month, 1, tzinfo=tz)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start, end


def claim_redemptions(*, programme: SubsidyProgramme, year: int, month: int):
    """The applied redemptions of the month, in claim order (what a claim lists);
    in reimburse mode only those of invoices the buyer presented for 兑付."""
    start, end = _month_bounds(year, month)
    presented = Reimbursement.objects.filter(
        invoice=OuterRef("invoice_line__invoice"),
        programme=OuterRef("programme"),
        status=Reimbursement.Status.SUBMITTED,
    )
    return (
        Redemption.objects.filter(
            programme=programme,
            status=Redemption.Status.APPLIED,
            invoice_line__window_start__gte=start,
            invoice_line__window_start__lt=end,
        )
        .filter(~Q(settlement_mode=SubsidyProgramme.SettlementMode.REIMBURSE) | Exists(presented))
        .select_related(
            "beneficiary",
            "invoice_line__invoice__buyer",
            "invoice_line__provider",
            "invoice_line__lease__node__gpu_model",
        )
        .prefetch_related("usage_records")
        .order_by(
            "invoice_line__provider__legal_name",
            "invoice_line__invoice__buyer__legal_name",
            "invoice_line__window_start",
            "pk",
        )
    )


def claim_rows(*, programme: SubsidyProgramme, year: int, month: int) -> list[ClaimRow]:
    redemptions = claim_redemptions(programme=programme, year=year, month=month)
    rows = []
    for redemption in redemptions:
        line = redemption.invoice_line
        usage_ids = tuple(sorted(record.pk for record in redemption.usage_records.all()))
        gpu_model = line.lease.node.gpu_model
        rows.append(
            ClaimRow(
                provider=line.provider.legal_name,
                provider_credit_code=line.provider.credit_code,
                enterprise=line.invoice.buyer.legal_name,
                enterprise_credit_code=line.invoice.buyer.credit_code,
                usage_record_ids=usage_ids,
                lease_id=line.lease_id,
                window_start=timezone.localtime(line.window_start),
                gpu_model=str(gpu_model),
                domestic=gpu_model.domestic,
                gpu_seconds=line.gpu_seconds,
                gross_amount=line.amount,
                rate_bp=redemption.rate_bp,
                subsidy_amount=redemption.amount,
                settlement_mode=redemption.settlement_mode,
            )
        )
    return rows


def claim_csv(*, programme: SubsidyProgramme, year: int, month: int) -> str:
    rows = claim_rows(programme=programme, year=year, month=month)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(
            [
                row.provider,
                row.provider_credit_code,
                row.enterprise,
                row.enterprise_credit_code,
                " ".join(map(str, row.usage_record_ids)),
                row.lease_id,
                row.window_start.isoformat(),
                row.gpu_model,
                "yes" if row.domestic else "no",
                row.gpu_hours,
                format_major(row.gross_amount),
                Decimal(row.rate_bp) / 100,
                format_major(row.subsidy_amount),
                row.settlement_mode,
            ]
        )
    gross = sum(row.gross_amount for row in rows)
    subsidy = sum(row.subsidy_amount for row in rows)
    hours = sum((row.gpu_hours for row in rows), Decimal("0.00"))
    writer.writerow(
        [
            "TOTAL",
            "",
            "",
            "",
            sum(len(row.usage_record_ids) for row in rows),
            "",
            "",
            "",
            "",
            hours,
            format_major(gross),
            "",
            format_major(subsidy),
            "",
        ]
    )
    return out.getvalue()


@dataclass
class ClaimGroup:
    provider: str
    enterprise: str
    usage_records: int = 0
    gpu_seconds: int = 0
    gross_amount: int = 0
    subsidy_amount: int = 0

    @property
    def gpu_hours(self) -> Decimal:
        return gpu_hours(self.gpu_seconds)


def claim_summary(rows: list[ClaimRow]) -> list[ClaimGroup]:
    """One group per (provider, enterprise), in claim order."""
    groups: dict[tuple, ClaimGroup] = {}
    for row in rows:
        key = (row.provider, row.enterprise)
        group = groups.setdefault(key, ClaimGroup(provider=row.provider, enterprise=row.enterprise))
        group.usage_records += len(row.usage_record_ids)
        group.gpu_seconds += row.gpu_seconds
        group.gross_amount += row.gross_amount
        group.subsidy_amount += row.subsidy_amount
    return list(groups.values())


def claim_months(*, programme: SubsidyProgramme) -> list[tuple[int, int]]:
    """(year, month) of every month with usage the programme paid for, newest first."""
    months: defaultdict[tuple[int, int], int] = defaultdict(int)
    starts = Redemption.objects.filter(programme=programme).values_list(
        "invoice_line__window_start", flat=True
    )
    for start in starts:
        local = timezone.localtime(start)
        months[(local.year, local.month)] += 1
    return sorted(months, reverse=True)
