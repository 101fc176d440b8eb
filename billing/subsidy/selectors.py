"""Reads for the subsidy side: budgets, vouchers, applications, redemptions,
flags, and the aggregates behind the authority's dashboard."""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Case, Count, Exists, OuterRef, QuerySet, Sum, When
from django.utils import timezone

from accounts.models import Organisation, OrganisationRelationship, SmeDeclaration
from billing.models import (
    FraudFlag,
    Invoice,
    LedgerAccount,
    Posting,
    Redemption,
    Reimbursement,
    SubsidyClaim,
    SubsidyProgramme,
    SubsidyRefusal,
    Voucher,
    VoucherApplication,
)
from billing.subsidy.accounts import programme_accounts
from market import index
from market.models import GPUModel

LIVE = (Redemption.Status.APPLIED, Redemption.Status.HELD)
CLAIM_PAID_KIND = "subsidy_claim_paid"  # the ledger kind of billing.subsidy.claims' payment


@dataclass(frozen=True)
class Budget:
    """A programme's budget in four buckets that always add up to its total:

        total = left + committed + spent + paid_out

    left: not committed, not spent; committed: reserved by vouchers (reserved
    funding), not yet redeemed; spent: redeemed (net of claw-backs) and not
    yet paid by the authority — what it owes on claims; paid_out: what the
    authority has paid on claims. A claim payment moves spent to paid_out; a
    claw-back after payment leaves spent below zero by what the authority
    overpaid (to net against its next claim). Pool vouchers' unspent
    balances are entitlements outside the budget.
    """

    total: int
    left: int
    committed: int
    spent: int
    paid_out: int
    pool_entitlements: int

    @property
    def holds(self) -> bool:
        return self.total == self.left + self.committed + self.spent + self.paid_out


def programme_budget(*, programme: SubsidyProgramme) -> Budget:
    """The budget as the ledger has it."""
    accounts = programme_accounts(programme=programme)
    vouchers = LedgerAccount.objects.filter(
        purpose=LedgerAccount.Purpose.VOUCHER_BALANCE,
        reference__in=[f"voucher:{pk}" for pk in programme.vouchers.values_list("pk", flat=True)],
    )
    voucher_total = -(vouchers.aggregate(total=Sum("balance"))["total"] or 0)
    reserved = programme.funding == SubsidyProgramme.Funding.RESERVED
    # claim payments credit the spent account (billing.subsidy.claims): what they moved is paid
    paid_out = -(
        Posting.objects.filter(account=accounts.spent, transaction__kind=CLAIM_PAID_KIND).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
    return Budget(
        total=programme.budget_amount,
        left=accounts.left.normal_balance,
        committed=voucher_total if reserved else 0,
        spent=accounts.spent.normal_balance,
        paid_out=paid_out,
        pool_entitlements=0 if reserved else voucher_total,
    )


def programmes_for(*, organisation: Organisation) -> QuerySet[SubsidyProgramme]:
    """An authority sees its own programmes; others see the active ones."""
    if organisation.is_authority:
        return SubsidyProgramme.objects.filter(authority=organisation)
    return SubsidyProgramme.objects.filter(status=SubsidyProgramme.Status.ACTIVE)


def vouchers_for(*, organisation: Organisation) -> QuerySet[Voucher]:
    if organisation.is_authority:
        rows = Voucher.objects.filter(programme__authority=organisation)
    else:
        rows = Voucher.objects.filter(holder=organisation)
    return rows.select_related("programme", "holder")


def voucher_balances(*, vouchers) -> dict[int, int]:
    """Voucher pk → balance, in one query."""
    vouchers = list(vouchers)
    by_ref = {f"voucher:{v.pk}": v.pk for v in vouchers}
    rows = LedgerAccount.objects.filter(
        purpose=LedgerAccount.Purpose.VOUCHER_BALANCE, reference__in=by_ref
    ).values_list("reference", "balance")
    balances = dict.fromkeys(by_ref.values(), 0)
    for reference, balance in rows:
        balances[by_ref[reference]] = -balance
    return balances


def applications_for(*, organisation: Organisation) -> QuerySet[VoucherApplication]:
    if organisation.is_authority:
        rows = VoucherApplication.objects.filter(programme__authority=organisation)
    else:
        rows = VoucherApplication.objects.filter(applicant=organisation)
    return rows.select_related("programme", "applicant")


def relationships_of(*, organisation: Organisation) -> QuerySet[OrganisationRelationship]:
    """The organisation's declared parent / shareholders and staff-verified links."""
    return OrganisationRelationship.objects.filter(organisation=organisation).order_by("kind", "pk")


def sme_declarations_for(*, organisation: Organisation) -> QuerySet[SmeDeclaration]:
    """A buyer's own start-up / SME declarations; for an authority, every
    declaration, the pending ones first (any authority decides them)."""
    rows = SmeDeclaration.objects.select_related("organisation")
    if organisation.is_authority:
        return rows.annotate(
            waiting=Case(When(status=SmeDeclaration.Status.PENDING, then=0), default=1)
        ).order_by("waiting", "created_at", "pk")
    return rows.filter(organisation=organisation).order_by("-created_at", "-pk")


def reimbursement_claimed() -> Exists:
    """A presentation's redemptions are in a live (not rejected) claim: the
    authority has been asked to pay it (filter or annotate Reimbursements)."""
    return Exists(
        SubsidyClaim.objects.filter(
            programme=OuterRef("programme"),
            redemptions__invoice_line__invoice=OuterRef("invoice"),
        ).exclude(status=SubsidyClaim.Status.REJECTED)
    )


def reimbursements_for_authority(*, authority: Organisation) -> QuerySet[Reimbursement]:
    """Every 兑付 presentation to the authority's programmes, whatever its status."""
    return Reimbursement.objects.filter(programme__authority=authority).select_related(
        "invoice__buyer", "programme"
    )


def reimbursements_to_review(*, authority: Organisation) -> QuerySet[Reimbursement]:
    """兑付 queue: paid invoices presented to the authority's reimburse-mode
    programmes, neither rejected nor yet in a live claim, oldest first (the
    monthly claim pays them; rejecting one keeps it out)."""
    return (
        reimbursements_for_authority(authority=authority)
        .filter(status=Reimbursement.Status.SUBMITTED)
        .exclude(reimbursement_claimed())
        .order_by("submitted_at", "pk")
    )


def redemptions_for_authority(*, authority: Organisation) -> QuerySet[Redemption]:
    return Redemption.objects.filter(programme__authority=authority).select_related(
        "voucher", "programme", "beneficiary", "invoice_line__invoice", "invoice_line__provider"
    )


def refusals_for_programme(*, programme: SubsidyProgramme) -> QuerySet[SubsidyRefusal]:
    """The rules that kept subsidy back on the programme's lines, newest first."""
    return (
        SubsidyRefusal.objects.filter(programme=programme)
        .select_related("invoice_line__invoice__buyer", "invoice_line__provider")
        .order_by("-pk")
    )


def flags_for_authority(*, authority: Organisation, status: str | None = None):
    rows = FraudFlag.objects.filter(programme__authority=authority).select_related(
        "programme", "voucher__holder", "redemption__invoice_line__provider"
    )
    return rows.filter(status=status) if status else rows


def invoices_with_split(*, buyer: Organisation) -> QuerySet[Invoice]:
    """The buyer's invoices with their lines and the redemptions on each line."""
    return Invoice.objects.filter(buyer=buyer).prefetch_related(
        "lines__redemptions__voucher__programme", "lines__provider"
    )


_BREAKDOWN_FIELDS = {
    "region": "invoice_line__lease__node__site__region",
    "hub": "invoice_line__lease__node__site__hub",
    "provider": "invoice_line__provider__legal_name",
    "gpu_vendor": "invoice_line__lease__node__gpu_model__vendor",
    "domestic": "invoice_line__lease__node__gpu_model__domestic",
}


def subsidy_breakdown(*, programme: SubsidyProgramme, by: str) -> list[dict]:
    """Subsidy paid (live redemptions) grouped by region / hub / provider /
    GPU vendor / domestic-vs-imported, largest first."""
    field = _BREAKDOWN_FIELDS[by]
    rows = (
        Redemption.objects.filter(programme=programme, status__in=LIVE)
        .values(field)
        .annotate(amount=Sum("amount"), count=Count("pk"))
        .order_by("-amount")
    )
    return [{"key": row[field], "amount": row["amount"], "count": row["count"]} for row in rows]


def spending_by_day(*, programme: SubsidyProgramme) -> list[tuple]:
    """(date, subsidy spent that day), net of claw-backs, from the redemptions."""
    from django.db.models.functions import TruncDate

    rows = (
        Redemption.objects.filter(programme=programme, status__in=LIVE)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(amount=Sum("amount"))
        .order_by("day")
    )
    return [(row["day"], row["amount"]) for row in rows]


# Home pages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BurnDown:
    """A programme's budget used day by day (redeemed, net of claw-backs, plus what
    vouchers still hold when funding is reserved) and where the pace of its days
    so far leads by the programme's end."""

    programme: SubsidyProgramme
    budget: Budget
    spent_by_day: list[tuple]  # (date, cumulative subsidy spent by the end of it)
    projected_amount: int  # spent by valid_until at the average daily pace so far
    days_elapsed: int
    days_total: int

    @property
    def used_amount(self) -> int:
        return self.budget.total - self.budget.left

    @property
    def runs_out(self) -> bool:
        return self.projected_amount > self.budget.total


def programme_burn_down(*, programme: SubsidyProgramme, now) -> BurnDown:
    from core.money import round_minor

    budget = programme_budget(programme=programme)
    running, cumulative = 0, []
    for day, amount in spending_by_day(programme=programme):
        running += amount or 0
        cumulative.append((day, running))
    start, end = programme.valid_from, programme.valid_until
    days_total = max(1, (end - start).days)
    days_elapsed = min(days_total, max(1, (now - start).days + 1))
    pace = Decimal(running) / days_elapsed
    return BurnDown(
        programme=programme,
        budget=budget,
        spent_by_day=cumulative,
        projected_amount=round_minor(pace * days_total),
        days_elapsed=days_elapsed,
        days_total=days_total,
    )


@dataclass(frozen=True)
class PriceAgainstIndex:
    """What the lines a programme subsidised paid per GPU-hour, by the price
    index's GPU class, beside the index's volume-weighted price of the same
    days: subsidised buyers paying well above the market is worth a look."""

    gpu_class: str
    gpu_hours: Decimal
    paid_per_gpu_hour: Decimal  # fen, volume-weighted over the lines
    index_per_gpu_hour: Decimal | None  # fen, over the index's days; None: no trades indexed
    subsidy_amount: int

    @property
    def premium_percent(self) -> Decimal | None:
        if not self.index_per_gpu_hour:
            return None
        return (self.paid_per_gpu_hour / self.index_per_gpu_hour - 1) * 100


INDEX_WINDOW_DAYS = 30


def prices_against_index(
    *, programme: SubsidyProgramme, now: dt.datetime
) -> list[PriceAgainstIndex]:
    """The last INDEX_WINDOW_DAYS days of subsidised usage against the index."""
    until = timezone.localdate(now)
    since = until - dt.timedelta(days=INDEX_WINDOW_DAYS - 1)
    start = dt.datetime.combine(since, dt.time.min, tzinfo=timezone.get_current_timezone())
    lines: dict[int, dict] = {}
    rows = Redemption.objects.filter(
        programme=programme,
        status__in=LIVE,
        invoice_line__window_start__gte=start,
        invoice_line__lease__isnull=False,
    ).values_list(
        "invoice_line_id",
        "invoice_line__lease__node__gpu_model_id",
        "invoice_line__gpu_seconds",
        "invoice_line__amount",
        "amount",
    )
    for line_id, model_id, seconds, amount, subsidy in rows:
        line = lines.setdefault(
            line_id, {"model": model_id, "seconds": seconds, "amount": amount, "subsidy": 0}
        )
        line["subsidy"] += subsidy
    models = GPUModel.objects.in_bulk({line["model"] for line in lines.values()})
    by_class: dict[str, list] = {}
    for line in lines.values():
        total = by_class.setdefault(index.gpu_class(models[line["model"]]), [0, 0, 0])
        total[0] += line["seconds"]
        total[1] += line["amount"]
        total[2] += line["subsidy"]
    market: dict[str, list[Decimal]] = {}
    for row in index.index_rows(since=since, until=until):
        if row.currency != programme.currency:
            continue
        sums = market.setdefault(row.gpu_class, [Decimal(0), Decimal(0)])
        sums[0] += row.vwap_gpu_hour * row.gpu_hours
        sums[1] += row.gpu_hours
    result = []
    for code, (seconds, amount, subsidy) in sorted(by_class.items()):
        if not seconds:
            continue
        hours = Decimal(seconds) / 3600
        notional, indexed_hours = market.get(code, (Decimal(0), Decimal(0)))
        result.append(
            PriceAgainstIndex(
                gpu_class=code,
                gpu_hours=hours.quantize(Decimal("0.01")),
                paid_per_gpu_hour=(amount / hours).quantize(Decimal("0.01")),
                index_per_gpu_hour=(notional / indexed_hours).quantize(Decimal("0.01"))
                if indexed_hours
                else None,
                subsidy_amount=subsidy,
            )
        )
    return result
