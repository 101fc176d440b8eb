"""Voucher redemption at invoice settlement, and the authority's review of it.

`invoice_redeem_vouchers` is the seam settlement calls once the invoice's
lines are final. For each eligible usage line (one lease in one period),
each voucher (oldest expiry first) pays

    min(rate × eligible amount − what its programme already paid on the line,
        voucher balance, programme budget left (pool funding),
        enterprise cap left (programme and calendar year),
        what is left of the line)

and every payment is one ledger transaction (business key per line and
voucher) and one Redemption row naming the usage records it pays for. The
eligible amount is the line's rounded amount when the voucher and its
programme are valid over all of the line's usage, else the eligible records'
GPU-seconds priced once (billing.invoices states the rule). Only metered usage
counts: fault time is never billed, so it is never subsidised. Rates are
applied once per line with core.money.apply_basis_points (half-even, to the fen).
"""

from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q, Sum

from accounts.models import Organisation
from billing.ledger import Leg, account_get, transaction_post, transaction_reverse
from billing.models import (
    Invoice,
    InvoiceLine,
    LedgerAccount,
    Redemption,
    SubsidyProgramme,
    SubsidyRefusal,
    Voucher,
    VoucherEvent,
)
from billing.subsidy.accounts import (
    beneficiary_account,
    programme_accounts,
    settlement_clearing,
    voucher_account,
)
from billing.subsidy.rules import (
    line_contract,
    line_rate_bp,
    line_refusal,
    one_claim_conflict,
    resold_gpu_seconds,
    usage_year,
)
from billing.subsidy.services import voucher_return_balance
from core import clock
from core.errors import ApplicationError, Conflict
from core.money import amount_for_gpu_seconds, apply_basis_points
from core.transitions import status_record, transition_or_conflict
from market.models import UsageRecord

RS = Redemption.Status
VS = Voucher.Status
Mode = SubsidyProgramme.SettlementMode
Funding = SubsidyProgramme.Funding
BUYERS = SubsidyProgramme.Beneficiary.BUYERS
LIVE = (RS.APPLIED, RS.HELD)
Reason = SubsidyRefusal.Reason


@dataclass
class _Settlement:
    """What this settlement knows, read under the locks and kept up to date."""

    balances: dict[int, int] = field(default_factory=dict)  # voucher → balance
    pool_left: dict[int, int] = field(default_factory=dict)  # programme → budget left
    cap_used: dict[tuple, int] = field(default_factory=dict)  # (programme, org[, year]) → used
    by_programme: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))
    by_side: dict[tuple, int] = field(default_factory=lambda: defaultdict(int))
    deducted: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # line → new


def _cap_used(state: _Settlement, programme: SubsidyProgramme, org_id: int, year=None) -> int:
    key = (programme.pk, org_id, year)
    if key not in state.cap_used:
        rows = Redemption.objects.filter(
            programme=programme, beneficiary_id=org_id, status__in=LIVE
        )
        if year is not None:
            rows = rows.filter(year=year)
        state.cap_used[key] = rows.aggregate(total=Sum("amount"))["total"] or 0
    return state.cap_used[key]


def _eligible(voucher: Voucher, line: InvoiceLine) -> tuple[list[UsageRecord], int]:
    """The line's usage records within the voucher's and its programme's
    validity, and the amount they are worth (the line's own rounded amount
    when that is all of them)."""
    programme = voucher.programme
    start = max(voucher.valid_from, programme.valid_from)
    end = min(voucher.valid_until, programme.valid_until)
    records = list(line.usage_records.all())
    eligible = [r for r in records if start <= r.window_start < end]
    if len(eligible) == len(records):
        return eligible, line.amount
    seconds = sum(r.gpu_seconds_delivered for r in eligible)
    return eligible, amount_for_gpu_seconds(gpu_seconds=seconds, price_amount=line.price_amount)


def _room_and_limit(
    state: _Settlement,
    *,
    voucher: Voucher,
    line: InvoiceLine,
    beneficiary: Organisation,
    rate_bp: int,
    eligible_amount: int,
) -> tuple[int, str]:
    """The min of the rule, and which limit set it (a SubsidyRefusal reason,
    "" for the rate itself or the rest of the line)."""
    programme = voucher.programme
    side = programme.beneficiary
    limits = [
        (
            apply_basis_points(amount=eligible_amount, basis_points=rate_bp)
            - state.by_programme[(line.pk, programme.pk)],
            "",
        ),
        (state.balances[voucher.pk], Reason.VOUCHER_BALANCE),
        (line.amount - state.by_side[(line.pk, side)], ""),
    ]
    if programme.funding == Funding.POOL:
        limits.append((state.pool_left[programme.pk], Reason.BUDGET_EXHAUSTED))
    if programme.cap_per_enterprise_amount is not None:
        used = _cap_used(state, programme, beneficiary.pk)
        limits.append((programme.cap_per_enterprise_amount - used, Reason.CAP_REACHED))
    if programme.cap_per_enterprise_year_amount is not None:
        used = _cap_used(state, programme, beneficiary.pk, usage_year(line))
        limits.append((programme.cap_per_enterprise_year_amount - used, Reason.CAP_REACHED))
    amount, limit = min(limits, key=lambda pair: pair[0])
    return max(0, amount), limit


def _legs(*, voucher: Voucher, beneficiary: Organisation, amount: int) -> list[Leg]:
    programme = voucher.programme
    accounts = programme_accounts(programme=programme)
    legs = [Leg(voucher_account(voucher=voucher), amount)]
    if programme.funding == Funding.POOL:
        legs += [Leg(accounts.entitlements, -amount), Leg(accounts.left, amount)]
    legs += [
        Leg(accounts.pledge, -amount),
        Leg(accounts.spent, amount),
        Leg(beneficiary_account(programme=programme, beneficiary=beneficiary), -amount),
    ]
    return legs


def _redeem(
    state: _Settlement,
    *,
    voucher: Voucher,
    line: InvoiceLine,
    beneficiary,
    rate_bp: int,
    amount: int,
    records: list[UsageRecord],
) -> Redemption:
    programme = voucher.programme
    ledger_txn, _created = transaction_post(
        business_key=f"redemption:line:{line.pk}:voucher:{voucher.pk}",
        kind="voucher_redemption",
        legs=_legs(voucher=voucher, beneficiary=beneficiary, amount=amount),
        memo=f"Voucher {voucher.pk} pays {amount} of invoice line {line.pk} "
        f"({len(records)} usage records; {programme.settlement_mode})",
    )
    redemption = Redemption.objects.create(
        voucher=voucher,
        programme=programme,
        beneficiary=beneficiary,
        invoice_line=line,
        amount=amount,
        rate_bp=rate_bp,
        settlement_mode=programme.settlement_mode,
        year=usage_year(line),
        contract_key=line_contract(line).key,
        ledger_transaction=ledger_txn,
    )
    redemption.usage_records.add(*records)
    status_record(redemption, new=RS.APPLIED, reason="settled")
    state.balances[voucher.pk] -= amount
    if programme.funding == Funding.POOL:
        state.pool_left[programme.pk] -= amount
    for key in list(state.cap_used):
        if key[:2] == (programme.pk, beneficiary.pk) and key[2] in (None, redemption.year):
            state.cap_used[key] += amount
    state.by_programme[(line.pk, programme.pk)] += amount
    state.by_side[(line.pk, programme.beneficiary)] += amount
    if programme.beneficiary == BUYERS and programme.settlement_mode == Mode.DEDUCT:
        state.deducted[line.pk] += amount
    return redemption


def _lock(invoice: Invoice, lines: list[InvoiceLine]) -> list[Voucher]:
    """Lock the programmes, then the vouchers, that could pay (pk order)."""
    now = clock.now()
    provider_ids = {line.provider_id for line in lines}
    candidates = Voucher.objects.filter(
        Q(holder=invoice.buyer, programme__beneficiary=BUYERS)
        | Q(
            holder_id__in=provider_ids,
            programme__beneficiary=SubsidyProgramme.Beneficiary.PROVIDERS,
        ),
        status__in=(VS.ISSUED, VS.ACTIVE),
        valid_until__gt=now,  # an expired voucher pays nothing, even before the beat expires it
        currency=invoice.currency,
    )
    programme_ids = sorted(set(candidates.values_list("programme_id", flat=True)))
    list(SubsidyProgramme.objects.select_for_update().filter(pk__in=programme_ids).order_by("pk"))
    locked = Voucher.objects.select_for_update().filter(
        pk__in=list(candidates.values_list("pk", flat=True)), status__in=(VS.ISSUED, VS.ACTIVE)
    )
    list(locked.order_by("pk").values_list("pk"))
    return list(
        Voucher.objects.filter(pk__in=[v.pk for v in locked])
        .select_related("programme", "holder")
        .prefetch_related("programme__eligible_providers")
        .order_by("valid_until", "pk")
    )


def _read_state(lines: list[InvoiceLine], vouchers: list[Voucher]) -> _Settlement:
    state = _Settlement()
    for voucher in vouchers:
        state.balances[voucher.pk] = voucher_account(voucher=voucher).normal_balance
        if (
            voucher.programme.funding == Funding.POOL
            and voucher.programme_id not in state.pool_left
        ):
            left = programme_accounts(programme=voucher.programme).left
            state.pool_left[voucher.programme_id] = left.normal_balance
    existing = Redemption.objects.filter(invoice_line__in=lines, status__in=LIVE).select_related(
        "programme"
    )
    for redemption in existing:
        key = (redemption.invoice_line_id, redemption.programme_id)
        state.by_programme[key] += redemption.amount
        state.by_side[(redemption.invoice_line_id, redemption.programme.beneficiary)] += (
            redemption.amount
        )
    return state


def invoice_redeem_vouchers(*, invoice: Invoice) -> int:
    """Let the vouchers pay their share of `invoice`; returns the invoice's
    voucher share (deduct mode, buyer side) — what the buyer does not pay.

    billing.settlement calls it at invoice issue inside its transaction.
    Running it again adds nothing.
    """
    if invoice.status in (Invoice.Status.PAID, Invoice.Status.VOID):
        return invoice.voucher_amount
    with transaction.atomic():
        lines = list(
            invoice.lines.filter(kind=InvoiceLine.Kind.USAGE, lease__isnull=False)
            .select_related(
                "invoice__buyer",
                "provider",
                "lease__node__site__provider",
                "lease__node__gpu_model",
            )
            .prefetch_related("usage_records")
            .order_by("pk")
        )
        vouchers = _lock(invoice, lines)
        state = _read_state(lines, vouchers)
        done = set(
            Redemption.objects.filter(invoice_line__in=lines).values_list(
                "invoice_line_id", "voucher_id"
            )
        )
        for line in lines:
            _line_redeem(state, line=line, vouchers=vouchers, done=done)
        _vouchers_mark_exhausted(state, vouchers)
        return _invoice_apply(invoice, state)


def _refuse(line: InvoiceLine, voucher: Voucher, reason: str, amount: int, detail: str) -> None:
    """Record the rule that kept `amount` of subsidy off the line (once)."""
    if amount <= 0:
        return
    SubsidyRefusal.objects.get_or_create(
        invoice_line=line,
        programme=voucher.programme,
        reason=reason,
        defaults={"voucher": voucher, "amount": amount, "detail": detail[:300]},
    )


def _line_redeem(state: _Settlement, *, line: InvoiceLine, vouchers: list[Voucher], done) -> None:
    """Let each voucher pay on the line; every rule that zeroes or reduces a
    programme's share is recorded on the line (SubsidyRefusal)."""
    shortfall: dict[int, tuple[Voucher, int, str]] = {}  # programme → (voucher, target, limit)
    for voucher in vouchers:
        programme = voucher.programme
        beneficiary = line.invoice.buyer if programme.beneficiary == BUYERS else line.provider
        if voucher.holder_id != beneficiary.pk or (line.pk, voucher.pk) in done:
            continue
        records, eligible_amount = _eligible(voucher, line)
        if not records:
            continue
        rate_bp = line_rate_bp(programme=programme, line=line, beneficiary=beneficiary)
        target = apply_basis_points(amount=eligible_amount, basis_points=rate_bp)
        reason, detail = line_refusal(programme=programme, line=line, beneficiary=beneficiary)
        if not reason and one_claim_conflict(programme=programme, line=line, voucher_id=voucher.pk):
            reason = Reason.SECOND_CLAIM
            detail = f"another voucher of the programme claimed contract {line_contract(line).key}"
        if reason:
            # what the programme would have paid and has not (another of its vouchers may have)
            unpaid = target - state.by_programme[(line.pk, programme.pk)]
            _refuse(line, voucher, reason, unpaid, detail)
            continue
        resold = resold_gpu_seconds(line=line, records=records)
        if resold:
            whole = eligible_amount
            seconds = sum(r.gpu_seconds_delivered for r in records) - resold
            eligible_amount = amount_for_gpu_seconds(
                gpu_seconds=seconds, price_amount=line.price_amount
            )
            _refuse(
                line,
                voucher,
                Reason.NOT_ELIGIBLE,
                apply_basis_points(amount=whole, basis_points=rate_bp)
                - apply_basis_points(amount=eligible_amount, basis_points=rate_bp),
                f"{resold / 3600:.4f} GPU-hours resold: the buyer who used them is subsidised",
            )
            target = apply_basis_points(amount=eligible_amount, basis_points=rate_bp)
        if line.gpu_seconds_lost:
            lost = amount_for_gpu_seconds(
                gpu_seconds=line.gpu_seconds_lost, price_amount=line.price_amount
            )
            hours = f"{line.gpu_seconds_lost / 3600:.4f}"
            _refuse(
                line,
                voucher,
                Reason.FAULT_TIME,
                apply_basis_points(amount=lost, basis_points=rate_bp),
                f"{hours} GPU-hours lost to faults",
            )
        amount, limit = _room_and_limit(
            state,
            voucher=voucher,
            line=line,
            beneficiary=beneficiary,
            rate_bp=rate_bp,
            eligible_amount=eligible_amount,
        )
        if amount > 0:
            _redeem(
                state,
                voucher=voucher,
                line=line,
                beneficiary=beneficiary,
                rate_bp=rate_bp,
                amount=amount,
                records=records,
            )
        shortfall[programme.pk] = (voucher, target, limit)
    for programme_pk, (voucher, target, limit) in shortfall.items():
        short = target - state.by_programme[(line.pk, programme_pk)]
        if limit and short > 0:
            _refuse(line, voucher, limit, short, "")


def _vouchers_mark_exhausted(state: _Settlement, vouchers: list[Voucher]) -> None:
    for voucher in vouchers:
        if state.balances[voucher.pk] != 0 or voucher.status == VS.EXHAUSTED:
            continue
        if Voucher.objects.filter(pk=voucher.pk, status=voucher.status).update(status=VS.EXHAUSTED):
            VoucherEvent.objects.create(
                voucher=voucher, from_status=voucher.status, to_status=VS.EXHAUSTED
            )


def _invoice_apply(invoice: Invoice, state: _Settlement) -> int:
    for line_pk, amount in state.deducted.items():
        InvoiceLine.objects.filter(pk=line_pk).update(voucher_amount=F("voucher_amount") + amount)
    voucher_amount = invoice.lines.aggregate(total=Sum("voucher_amount"))["total"] or 0
    invoice.voucher_amount = voucher_amount
    invoice.buyer_amount = invoice.total_amount - voucher_amount
    Invoice.objects.filter(pk=invoice.pk).update(
        voucher_amount=invoice.voucher_amount, buyer_amount=invoice.buyer_amount
    )
    return voucher_amount


# --- the authority's review ---------------------------------------------------


def redemption_hold(
    *, redemption: Redemption, actor: User | None = None, reason: str = ""
) -> Redemption:
    """Hold for review: the redemption stays paid but is left out of claims."""
    with transaction.atomic():
        transition_or_conflict(redemption, old=RS.APPLIED, new=RS.HELD, actor=actor, reason=reason)
    redemption.refresh_from_db()
    return redemption


def redemption_release(
    *, redemption: Redemption, actor: User | None = None, reason: str = ""
) -> Redemption:
    with transaction.atomic():
        transition_or_conflict(redemption, old=RS.HELD, new=RS.APPLIED, actor=actor, reason=reason)
    redemption.refresh_from_db()
    return redemption


def redemption_claw_back(
    *, redemption: Redemption, actor: User | None = None, reason: str
) -> Redemption:
    """Reverse the redemption in the ledger: the beneficiary owes the amount
    again, the voucher gets it back (and returns it to the programme at once
    if the voucher is no longer open)."""
    if not reason.strip():
        raise ApplicationError("Say why.", errors={"reason": ["A reason is required."]})
    with transaction.atomic():
        programme = SubsidyProgramme.objects.select_for_update().get(pk=redemption.programme_id)
        voucher = Voucher.objects.select_for_update().get(pk=redemption.voucher_id)
        redemption = Redemption.objects.select_for_update().get(pk=redemption.pk)
        if redemption.status not in LIVE:
            raise Conflict("The redemption was already clawed back.")
        reversal = transaction_reverse(
            original=redemption.ledger_transaction,
            business_key=f"redemption:{redemption.pk}:claw-back",
            memo=reason[:300],
        )
        transition_or_conflict(
            redemption,
            old=LIVE,
            new=RS.CLAWED_BACK,
            actor=actor,
            reason=reason,
            reversal_transaction=reversal,
        )
        _undo_deduction(redemption, programme)
        _voucher_after_claw_back(programme, voucher, redemption)
    redemption.refresh_from_db()
    return redemption


def _undo_deduction(redemption: Redemption, programme: SubsidyProgramme) -> None:
    """Deduct mode: the buyer owes what the voucher no longer pays."""
    if programme.beneficiary != BUYERS or redemption.settlement_mode != Mode.DEDUCT:
        return
    amount = redemption.amount
    line = redemption.invoice_line
    transaction_post(
        business_key=f"redemption:{redemption.pk}:claw-back:buyer-owes",
        kind="voucher_claw_back_receivable",
        legs=[
            Leg(
                account_get(
                    purpose=LedgerAccount.Purpose.BUYER_RECEIVABLE,
                    organisation=redemption.beneficiary,
                    currency=programme.currency,
                ),
                amount,
            ),
            Leg(settlement_clearing(currency=programme.currency), -amount),
        ],
        memo=f"Redemption {redemption.pk} clawed back: invoice {line.invoice_id} owes it",
    )
    InvoiceLine.objects.filter(pk=line.pk).update(voucher_amount=F("voucher_amount") - amount)
    Invoice.objects.filter(pk=line.invoice_id).update(
        voucher_amount=F("voucher_amount") - amount, buyer_amount=F("buyer_amount") + amount
    )


def _voucher_after_claw_back(programme, voucher: Voucher, redemption: Redemption) -> None:
    if voucher.status in (VS.EXPIRED, VS.REVOKED):
        voucher_return_balance(
            programme=programme, voucher=voucher, key_suffix=f"claw-back:{redemption.pk}"
        )
    elif voucher.status == VS.EXHAUSTED and voucher.valid_until > clock.now():
        Voucher.objects.filter(pk=voucher.pk, status=VS.EXHAUSTED).update(status=VS.ACTIVE)
        VoucherEvent.objects.create(
            voucher=voucher,
            from_status=VS.EXHAUSTED,
            to_status=VS.ACTIVE,
            reason=f"redemption {redemption.pk} clawed back",
        )


# --- the preview on a draft ---------------------------------------------------


@dataclass(frozen=True)
class VoucherPreview:
    """What the vouchers would pay on a draft if it were issued now."""

    total: int
    by_line: dict[int, int]  # usage line pk → voucher share


class _PreviewDone(Exception):
    def __init__(self, preview: VoucherPreview) -> None:
        self.preview = preview


def invoice_voucher_preview(*, invoice: Invoice) -> VoucherPreview:
    """The voucher share of a draft, previewed: the settlement itself is run
    (same rules, same rounding, same locks) inside a savepoint that is rolled
    back, so nothing is written, charged or drawn from a voucher. An issued
    invoice answers with its real shares."""
    if invoice.status != Invoice.Status.DRAFT:
        return VoucherPreview(
            total=invoice.voucher_amount,
            by_line=dict(invoice.lines.values_list("pk", "voucher_amount")),
        )
    fresh = Invoice.objects.get(pk=invoice.pk)  # the settlement writes on the object
    try:
        with transaction.atomic():
            total = invoice_redeem_vouchers(invoice=fresh)
            by_line = dict(fresh.lines.values_list("pk", "voucher_amount"))
            raise _PreviewDone(VoucherPreview(total=total, by_line=by_line))
    except _PreviewDone as done:
        return done.preview
