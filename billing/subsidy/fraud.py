"""Anti-fraud flags for the subsidy authority.

Computed by a beat task over recent redemptions; a flag is advice for a
person, never a block: the payment goes through and the authority may hold
or claw back the redemption it names. Each (rule, subject) is flagged once,
so the task is safe to run again and again.

Rules (thresholds in settings, VOUCHER_*):
- idle_burning: the usage a voucher paid for ran below the utilisation
  threshold on average — vouchers burnt on idle GPUs;
- self_dealing: buyer and provider are related parties (credit-code prefix,
  a shared person);
- price_above_market: the line's price per GPU-hour is more than the factor
  times the median price of recent leases of that GPU model;
- expiry_burst: more than a share of a voucher's face value was redeemed on
  usage in the last days before it expired.
"""

import datetime as dt
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Sum

from billing.models import FraudFlag, Redemption, SubsidyProgramme, Voucher
from billing.subsidy.rules import affiliation_signals
from core import clock
from core.errors import ApplicationError, Conflict
from market.models import Lease

Rule = FraudFlag.Rule
LIVE = (Redemption.Status.APPLIED, Redemption.Status.HELD)
LOOKBACK = dt.timedelta(days=35)
MARKET_WINDOW = dt.timedelta(days=30)
MIN_MARKET_SAMPLES = 3


@dataclass(frozen=True)
class Finding:
    rule: str
    subject_key: str
    programme: SubsidyProgramme
    details: dict
    voucher: Voucher | None = None
    redemption: Redemption | None = None


def _recent_redemptions(now: dt.datetime):
    return Redemption.objects.filter(
        status__in=LIVE, created_at__gte=now - LOOKBACK
    ).select_related(
        "programme",
        "voucher",
        "beneficiary",
        "invoice_line__invoice__buyer",
        "invoice_line__provider",
        "invoice_line__lease__node__gpu_model",
    )


def _idle_burning(redemptions) -> Iterator[Finding]:
    threshold = Decimal(settings.VOUCHER_IDLE_UTILISATION_PERCENT)
    for redemption in redemptions:
        for usage in redemption.usage_records.all():
            if usage.avg_utilisation < threshold:
                yield Finding(
                    rule=Rule.IDLE_BURNING,
                    subject_key=f"redemption:{redemption.pk}",
                    programme=redemption.programme,
                    voucher=redemption.voucher,
                    redemption=redemption,
                    details={
                        "usage_record": usage.pk,
                        "avg_utilisation": str(usage.avg_utilisation),
                        "threshold": str(threshold),
                        "amount": redemption.amount,
                    },
                )
                break


def _self_dealing(redemptions) -> Iterator[Finding]:
    for redemption in redemptions:
        line = redemption.invoice_line
        evidence = affiliation_signals(a=line.invoice.buyer, b=line.provider)
        if evidence:
            yield Finding(
                rule=Rule.SELF_DEALING,
                subject_key=f"redemption:{redemption.pk}",
                programme=redemption.programme,
                voucher=redemption.voucher,
                redemption=redemption,
                details={
                    "buyer": line.invoice.buyer.legal_name,
                    "provider": line.provider.legal_name,
                    "evidence": evidence,
                    "amount": redemption.amount,
                },
            )


def _market_median(gpu_model_id: int, now: dt.datetime, cache: dict) -> int | None:
    if gpu_model_id not in cache:
        prices = list(
            Lease.objects.filter(
                node__gpu_model_id=gpu_model_id, starts_at__gte=now - MARKET_WINDOW
            ).values_list("price_amount", flat=True)
        )
        cache[gpu_model_id] = (
            statistics.median(prices) if len(prices) >= MIN_MARKET_SAMPLES else None
        )
    return cache[gpu_model_id]


def _price_above_market(redemptions, now: dt.datetime) -> Iterator[Finding]:
    factor = Decimal(str(settings.VOUCHER_PRICE_MEDIAN_FACTOR))
    cache: dict = {}
    for redemption in redemptions:
        line = redemption.invoice_line
        gpu_model = line.lease.node.gpu_model
        median = _market_median(gpu_model.pk, now, cache)
        if median is not None and line.price_amount > factor * Decimal(median):
            yield Finding(
                rule=Rule.PRICE_ABOVE_MARKET,
                subject_key=f"redemption:{redemption.pk}",
                programme=redemption.programme,
                voucher=redemption.voucher,
                redemption=redemption,
                details={
                    "gpu_model": str(gpu_model),
                    "price_amount": line.price_amount,
                    "market_median_amount": str(median),
                    "factor": str(factor),
                },
            )


def _expiry_burst(redemptions) -> Iterator[Finding]:
    days = settings.VOUCHER_EXPIRY_BURST_DAYS
    share = Decimal(str(settings.VOUCHER_EXPIRY_BURST_SHARE))
    for voucher in {r.voucher for r in redemptions}:
        window_start = voucher.valid_until - dt.timedelta(days=days)
        near_expiry = (
            Redemption.objects.filter(
                voucher=voucher,
                status__in=LIVE,
                invoice_line__window_start__gte=window_start,
            ).aggregate(total=Sum("amount"))["total"]
            or 0
        )
        if near_expiry > share * voucher.face_amount:
            yield Finding(
                rule=Rule.EXPIRY_BURST,
                subject_key=f"voucher:{voucher.pk}",
                programme=voucher.programme,
                voucher=voucher,
                details={
                    "redeemed_near_expiry_amount": near_expiry,
                    "face_amount": voucher.face_amount,
                    "days_before_expiry": days,
                    "share": str(share),
                },
            )


def fraud_findings(*, now: dt.datetime | None = None) -> list[Finding]:
    now = now or clock.now()
    redemptions = list(_recent_redemptions(now).prefetch_related("usage_records"))
    return [
        *_idle_burning(redemptions),
        *_self_dealing(redemptions),
        *_price_above_market(redemptions, now),
        *_expiry_burst(redemptions),
    ]


def fraud_flags_compute(*, now: dt.datetime | None = None) -> int:
    """Raise a flag for every new finding; the number of new flags."""
    created = 0
    for finding in fraud_findings(now=now):
        _flag, was_created = FraudFlag.objects.get_or_create(
            rule=finding.rule,
            subject_key=finding.subject_key,
            defaults={
                "programme": finding.programme,
                "voucher": finding.voucher,
                "redemption": finding.redemption,
                "details": finding.details,
            },
        )
        created += was_created
    return created


def fraud_flag_review(*, flag: FraudFlag, status: str, actor=None, note: str = "") -> FraudFlag:
    """open → dismissed / confirmed, once."""
    if status not in (FraudFlag.Status.DISMISSED, FraudFlag.Status.CONFIRMED):
        raise ApplicationError("Dismiss or confirm.", errors={"status": ["Not a decision."]})
    updated = FraudFlag.objects.filter(pk=flag.pk, status=FraudFlag.Status.OPEN).update(
        status=status, reviewed_by=actor, reviewed_at=clock.now(), review_note=note[:300]
    )
    if updated != 1:
        raise Conflict("The flag was already reviewed.")
    flag.refresh_from_db()
    return flag
