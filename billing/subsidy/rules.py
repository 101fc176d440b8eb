"""Which invoice lines a programme pays for, and at what rate.

Pure reads: settlement (billing.subsidy.redemption) and the fraud rules call these.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Max, Min, Q
from django.utils import timezone

from accounts.models import Membership, Organisation
from accounts.selectors import declared_affiliation
from billing.models import (
    FrameworkAgreement,
    InvoiceLine,
    Redemption,
    SubsidyProgramme,
    SubsidyRefusal,
)
from market.models import Lease, UsageRecord


def affiliation_signals(*, a: Organisation, b: Organisation) -> str:
    """Why `a` and `b` *might* be related parties, for the fraud review ('' when
    nothing suggests it): a declared or staff-verified affiliation, credit
    codes sharing the configured prefix (the registration authority, region
    and leading digits of the organisation code: firms registered in the same
    district share it), or a member with the same e-mail address in both.
    Only a declared affiliation refuses a subsidy (`line_ineligibility`)."""
    declared = declared_affiliation(a=a, b=b)
    if declared:
        return declared
    length = settings.VOUCHER_AFFILIATION_PREFIX_LENGTH
    if a.credit_code[:length] == b.credit_code[:length]:
        return f"credit codes share the prefix {a.credit_code[:length]}"
    emails_a = {
        email.lower()
        for email in Membership.objects.filter(organisation=a).values_list("user__email", flat=True)
        if email
    }
    if not emails_a:
        return ""
    for email in Membership.objects.filter(organisation=b).values_list("user__email", flat=True):
        if email and email.lower() in emails_a:
            return f"the same person ({email}) belongs to both"
    return ""


def organisations_affiliated(*, a: Organisation, b: Organisation) -> bool:
    """Affiliated by declared ownership or a staff-verified link."""
    return bool(declared_affiliation(a=a, b=b))


def line_ineligibility(
    *, programme: SubsidyProgramme, line: InvoiceLine, beneficiary: Organisation
) -> str:
    """Why `programme` does not pay for `line` ('' when it does)."""
    return line_refusal(programme=programme, line=line, beneficiary=beneficiary)[1]


def line_refusal(
    *, programme: SubsidyProgramme, line: InvoiceLine, beneficiary: Organisation
) -> tuple[str, str]:
    """The rule by which `programme` pays nothing for `line`, as (reason code
    of SubsidyRefusal.Reason, what it found); ("", "") when it pays."""
    R = SubsidyRefusal.Reason
    lease = line.lease
    if line.kind != InvoiceLine.Kind.USAGE or lease is None or line.amount <= 0:
        return R.NOT_ELIGIBLE, "not metered usage"
    if programme.currency != line.invoice.currency:
        return R.NOT_ELIGIBLE, "currency"
    assert line.window_start is not None and line.window_end is not None  # usage lines have them
    if line.window_end <= programme.valid_from or line.window_start >= programme.valid_until:
        return R.NOT_ELIGIBLE, "usage outside the programme's validity"
    site = lease.node.site
    gpu_model = lease.node.gpu_model
    buyer = line.invoice.buyer
    checks = [
        (programme.regions and site.region not in programme.regions, "region"),
        (programme.hubs and site.hub not in programme.hubs, "hub"),
        (programme.gpu_vendors and gpu_model.vendor not in programme.gpu_vendors, "GPU vendor"),
        (programme.domestic_only and not gpu_model.domestic, "not a domestic accelerator"),
        (site.green_share < programme.min_green_share, "green share below the minimum"),
        (programme.buyer_must_be_verified and not beneficiary.verified, "not verified"),
        (
            programme.max_contract_days is not None
            and line_contract(line).term.total_seconds() > programme.max_contract_days * 86_400,
            "contract term too long",
        ),
    ]
    for failed, reason in checks:
        if failed:
            return R.NOT_ELIGIBLE, reason
    # The computing centre whose GPUs ran the work is the supplier a programme
    # lists; a resold block's seller (the line's provider then) is a reseller,
    # and an affiliation with either refuses.
    supplier = site.provider
    provider_ids = {p.pk for p in programme.eligible_providers.all()}
    if provider_ids and supplier.pk not in provider_ids:
        return R.NOT_LISTED, f"{supplier.legal_name} is not on the programme's list"
    if programme.forbid_affiliated:
        for party in {supplier, line.provider}:
            evidence = declared_affiliation(a=buyer, b=party)
            if evidence:
                return R.AFFILIATED, evidence
    return "", ""


def resold_gpu_seconds(*, line: InvoiceLine, records: Sequence[UsageRecord]) -> int:
    """Of the GPU-seconds a block's `records` delivered, those its holder
    resold: another buyer used them and is billed (and subsidised) for them,
    so the seller's line is not subsidised for them too. Per window, the
    delivered seconds times the share of the block's GPU-time the resales
    took in it."""
    lease = line.lease
    if lease is None:
        return 0
    resales = list(
        Lease.objects.filter(resold_from=lease).values_list("gpu_count", "starts_at", "ends_at")
    )
    if not resales:
        return 0
    resold = 0
    for record in records:
        start, end = record.window_start, record.window_end
        reserved = lease.gpu_count * int((end - start).total_seconds())
        taken = sum(
            gpus * max(0, int((min(ends, end) - max(starts, start)).total_seconds()))
            for gpus, starts, ends in resales
        )
        if reserved > 0:
            resold += record.gpu_seconds_delivered * min(taken, reserved) // reserved
    return resold


@dataclass(frozen=True)
class Contract:
    """What a programme means by a contract: the order the usage was bought
    under, or the framework agreement covering that order, with its term."""

    key: str  # "order:N" or "framework:N"
    term: dt.timedelta


def line_contract(line: InvoiceLine) -> Contract:
    assert line.lease is not None  # only usage lines have a contract
    order_id = line.lease.order_id
    agreement = FrameworkAgreement.objects.filter(orders=order_id).order_by("pk").first()
    if agreement is not None:
        return Contract(f"framework:{agreement.pk}", agreement.term_end - agreement.term_start)
    span = Lease.objects.filter(order_id=order_id).aggregate(
        start=Min("starts_at"), end=Max("ends_at")
    )
    return Contract(f"order:{order_id}", span["end"] - span["start"])


def one_claim_conflict(*, programme: SubsidyProgramme, line: InvoiceLine, voucher_id: int) -> bool:
    """'One claim per contract': a contract (an order, or a framework agreement
    over several orders — every lease of it) already subsidised through
    another voucher of this programme is not subsidised through a second one."""
    if not programme.one_claim_per_contract or line.lease_id is None:
        return False
    return (
        Redemption.objects.filter(programme=programme, contract_key=line_contract(line).key)
        .exclude(Q(voucher_id=voucher_id) | Q(status=Redemption.Status.CLAWED_BACK))
        .exists()
    )


def line_rate_bp(
    *, programme: SubsidyProgramme, line: InvoiceLine, beneficiary: Organisation
) -> int:
    """The best rate the line qualifies for: base, domestic accelerator, SME."""
    rates = [programme.rate_bp]
    if programme.domestic_rate_bp and line.lease and line.lease.node.gpu_model.domestic:
        rates.append(programme.domestic_rate_bp)
    if programme.sme_rate_bp and beneficiary.is_sme:
        rates.append(programme.sme_rate_bp)
    return max(rates)


def usage_year(line: InvoiceLine) -> int:
    """The calendar year (local time) of the usage, for the per-year cap (a
    line lies in one billing period, so in one year)."""
    assert line.window_start is not None  # only usage lines are subsidised
    return timezone.localtime(line.window_start).year
