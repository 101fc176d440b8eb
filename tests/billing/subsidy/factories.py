"""Builders for the voucher tests: programmes, and invoices whose lines are
backed by usage records (¥36.00 per GPU-hour, so one GPU-second is one fen)."""

import datetime as dt
import itertools
from decimal import Decimal

from django.utils import timezone

from accounts.models import Organisation
from billing.models import Invoice, InvoiceLine, InvoiceLineUsage, SubsidyProgramme
from billing.subsidy.services import programme_create
from core.money import amount_for_gpu_seconds
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
    SiteFactory,
    UsageRecordFactory,
    gpu,
    make_credit_code,
)

PRICE_PER_GPU_HOUR = 3_600  # ¥36.00: one GPU-second costs one fen
_numbers = itertools.count(1)
_seeds = itertools.count(100_001)


def spread_organisation(kind: str, **kwargs) -> Organisation:
    """An organisation whose credit code shares no prefix with the others'
    (the sequential factory codes would all look affiliated)."""
    seed = next(_seeds) * 1_000 + 7  # the first six digits of the organisation code differ
    return OrganisationFactory(kind=kind, credit_code=make_credit_code(seed), **kwargs)


def programme(authority: Organisation, **overrides) -> SubsidyProgramme:
    now = timezone.now()
    fields = {
        "name": "Compute voucher programme",
        "budget_amount": 100_000_000,  # ¥1,000,000.00
        "rate_bp": 3_000,
        "valid_from": now - dt.timedelta(days=60),
        "valid_until": now + dt.timedelta(days=300),
    }
    fields.update(overrides)
    providers = fields.pop("eligible_providers", None)
    return programme_create(authority=authority, eligible_providers=providers, **fields)


def site_for(provider: Organisation, *, region="甘肃", hub="gansu", green="0.800"):
    return SiteFactory(provider=provider, region=region, hub=hub, green_share=Decimal(green))


def usage_line_spec(
    *, provider: Organisation, site=None, gpu_slug="nvidia-h800-sxm", amount: int, **usage
):
    return {"provider": provider, "site": site, "gpu_slug": gpu_slug, "amount": amount, **usage}


def invoice_with_lines(buyer: Organisation, specs: list[dict], *, start=None) -> Invoice:
    """An open invoice for `buyer` with one usage line per spec."""
    start = start or timezone.now() - dt.timedelta(days=3)
    invoice = Invoice.objects.create(
        number=f"INV-T-{next(_numbers):05d}",
        buyer=buyer,
        period_start=start,
        period_end=start + dt.timedelta(days=1),
        status=Invoice.Status.OPEN,
    )
    gross = 0
    for spec in specs:
        provider = spec["provider"]
        site = spec.get("site") or site_for(provider)
        node = NodeFactory(site=site, gpu_model=gpu(spec["gpu_slug"]))
        offer = OfferFactory(node=node, price_amount=PRICE_PER_GPU_HOUR)
        lease = LeaseFactory(
            offer=offer,
            order=OrderFactory(buyer=buyer),
            starts_at=spec.get("lease_start", start),
            ends_at=spec.get("lease_end", start + dt.timedelta(days=1)),
            price_amount=spec.get("price_amount", PRICE_PER_GPU_HOUR),
        )
        gpu_seconds = spec["amount"] * PRICE_PER_GPU_HOUR // lease.price_amount
        usage = UsageRecordFactory(
            lease=lease,
            window_start=spec.get("window_start", start),
            window_end=spec.get("window_start", start) + dt.timedelta(hours=1),
            gpu_seconds_delivered=gpu_seconds,
            gpu_seconds_lost=spec.get("gpu_seconds_lost", 0),
            avg_utilisation=Decimal(spec.get("utilisation", "85.00")),
        )
        amount = amount_for_gpu_seconds(gpu_seconds=gpu_seconds, price_amount=lease.price_amount)
        line = InvoiceLine.objects.create(
            invoice=invoice,
            lease=lease,
            provider=provider,
            description=f"{lease} usage",
            window_start=usage.window_start,
            window_end=usage.window_end,
            gpu_seconds=gpu_seconds,
            gpu_seconds_lost=usage.gpu_seconds_lost,
            price_amount=lease.price_amount,
            amount=amount,
        )
        InvoiceLineUsage.objects.create(line=line, usage_record=usage)
        gross += amount
    Invoice.objects.filter(pk=invoice.pk).update(
        gross_amount=gross, total_amount=gross, buyer_amount=gross
    )
    invoice.refresh_from_db()
    return invoice


def voucher(prog: SubsidyProgramme, holder: Organisation, face_amount: int, **kwargs):
    """A voucher valid since 30 days ago (so it covers the fixture usage)."""
    from billing.subsidy.services import voucher_issue

    kwargs.setdefault("valid_from", timezone.now() - dt.timedelta(days=30))
    return voucher_issue(programme=prog, holder=holder, face_amount=face_amount, **kwargs)
