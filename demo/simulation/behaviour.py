"""What the simulated people do each step: buyers place orders (training gangs
for days, inference for hours on a diurnal rhythm, batch work on cheap green
western sites) and pay their invoices by card; providers re-price by
utilisation; the authority claims its month. All through the services the API
and the pages call."""

from __future__ import annotations

import datetime as dt
import math
import random
from decimal import Decimal

from django.db import transaction

from billing.models import Invoice, SubsidyClaim
from billing.payments import invoice_pay_start
from billing.subsidy import claims
from core.errors import ApplicationError
from demo.simulation.agents import poisson
from demo.simulation.world import (
    GPU_MIX,
    INFERENCE_MODELS,
    TRAINING_MODELS,
    WESTERN_HUBS,
    Cast,
)
from market.capacity import offer_reprice
from market.models import Offer
from market.orders import order_create

KIND_SHARE = {"training": 0.25, "inference": 0.55, "batch": 0.20}
EASTERN_HUBS = ["jingjinji", "yangtze", "greater_bay"]
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def diurnal(at: dt.datetime) -> float:
    """Inference demand by Beijing hour: low at 04:00, high around 16:00 (mean 1)."""
    hour = at.astimezone(SHANGHAI).hour + at.minute / 60
    return 1 + 0.8 * math.sin((hour - 10) / 24 * 2 * math.pi)


def orders_place(
    *, rng: random.Random, cast: Cast, now: dt.datetime, per_step: float, serial: list[int]
) -> list[tuple[int, str]]:
    """This step's new orders; returns (order id, kind) for each placed."""
    placed = []
    for kind, share in KIND_SHARE.items():
        mean = per_step * share * (diurnal(now) if kind == "inference" else 1.0)
        buyers = [b for b in cast.buyers if cast.kinds[b.pk] == kind] or cast.buyers
        for _ in range(poisson(rng, mean)):
            buyer = rng.choice(buyers)
            spec = SPECS[kind](rng, cast, now)
            serial[0] += 1
            try:
                order, _created = order_create(
                    buyer=buyer,
                    placed_by=cast.owners[buyer.pk],
                    idempotency_key=f"sim-{serial[0]}",
                    **spec,
                )
            except ApplicationError:
                continue  # refused like any bad request (e.g. bigger than any site)
            placed.append((order.pk, kind))
    return placed


def _max_price(rng: random.Random, slugs: list[str], low: float, high: float) -> int:
    return round(max(GPU_MIX[s][0] for s in slugs) * rng.uniform(low, high))


def _training(rng: random.Random, cast: Cast, now: dt.datetime) -> dict:
    slugs = rng.sample(TRAINING_MODELS, k=rng.randint(1, 3))
    return dict(
        gpu_count=rng.choices([8, 16, 32, 64, 128, 256, 512], weights=[30, 25, 20, 12, 7, 4, 2])[0],
        hours=rng.randint(24, 96),
        gang=True,
        accepted_models=[cast.models[s] for s in slugs],
        max_price_amount=_max_price(rng, slugs, 0.95, 1.35),
        start_by=now + dt.timedelta(hours=rng.uniform(2, 12)),
    )


def _inference(rng: random.Random, cast: Cast, now: dt.datetime) -> dict:
    slugs = rng.sample(INFERENCE_MODELS, k=rng.randint(1, 2))
    return dict(
        gpu_count=rng.choice([1, 2, 2, 4, 4, 8]),
        hours=rng.randint(2, 12),
        accepted_models=[cast.models[s] for s in slugs],
        hubs=EASTERN_HUBS if rng.random() < 0.4 else [],
        max_price_amount=_max_price(rng, slugs, 0.9, 1.4),
        start_by=now + dt.timedelta(minutes=rng.randint(20, 90)),
    )


def _batch(rng: random.Random, cast: Cast, now: dt.datetime) -> dict:
    return dict(
        gpu_count=rng.choice([8, 16, 16, 32]),
        hours=rng.randint(4, 24),
        min_tflops=Decimal(140),
        hubs=WESTERN_HUBS,
        min_green_share=Decimal("0.6"),
        max_price_amount=round(900 * rng.uniform(0.85, 1.3)),
        start_by=now + dt.timedelta(hours=rng.uniform(4, 24)),
    )


SPECS = {"training": _training, "inference": _inference, "batch": _batch}


def offers_reprice(*, cast: Cast) -> int:
    """Each provider moves its ask with its offer's utilisation: dearer when
    nearly sold out, cheaper when idle, within 0.6–2× its first ask."""
    changed = 0
    for offer in Offer.objects.filter(pk__in=cast.base_price, status=Offer.Status.ACTIVE).order_by(
        "pk"
    ):
        used = 1 - offer.gpus_available / offer.gpus_total
        factor = 1.06 if used >= 0.9 else 1.02 if used >= 0.7 else 0.96 if used < 0.3 else 1.0
        base = cast.base_price[offer.pk]
        price = min(max(round(offer.price_amount * factor), round(base * 0.6)), base * 2)
        if price != offer.price_amount:
            offer_reprice(offer=offer, price_amount=price, actor=cast.owners[offer.provider_id])
            changed += 1
    return changed


def invoices_pay(*, rng: random.Random, cast: Cast) -> int:
    """Buyers pay open invoices by card (localstripe's test card), most within
    a step or two; the exchange learns of it from Stripe's events."""
    started = 0
    for invoice in Invoice.objects.filter(
        status=Invoice.Status.OPEN, buyer__in=cast.buyers
    ).order_by("pk"):
        if rng.random() < 0.6:
            try:
                invoice_pay_start(invoice=invoice, payment_method="pm_card_visa")
                started += 1
            except ApplicationError:
                pass  # Stripe unreachable: the buyer tries again next step
    return started


def claims_settle(*, cast: Cast, now: dt.datetime) -> list[SubsidyClaim]:
    """The authority claims each month its vouchers paid in, approves and
    records the payment (as its finance office would at month end)."""
    done = []
    local = now.astimezone(SHANGHAI)
    for year, month in sorted({(local.year, local.month)}):
        try:
            with transaction.atomic():
                claim = claims.claim_submit(
                    programme=cast.programme, year=year, month=month, actor=None
                )
                claims.claim_approve(claim=claim)
                claims.claim_mark_paid(claim=claim, paid_at=now, reference=f"SIM-{year}{month:02d}")
        except ApplicationError:
            continue  # nothing paid by vouchers this month
        done.append(claim)
    return done
