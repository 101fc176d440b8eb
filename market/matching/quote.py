"""A quote: what an order would get from the book now, and why every other
live offer would not serve it. Nothing is locked or written.

The reasons mirror the engine's own test (`plan.compatible`, the model set of
`Book.candidates`, the bid); a property test holds them to it, so a quote never
says an offer is excluded for a reason the engine would not apply.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from core import limits
from market.matching.book import BookOffer, BookOrder, book_cutoff, book_load, live_offers
from market.matching.engine import plan_from_cheapest

# Why an offer is not in a quote, in the order a buyer would look at them.
MODEL = "model"  # its GPU model is not one the order accepts
CURRENCY = "currency"
PRICE = "price"  # its ask is above the order's maximum price
GREEN_SHARE = "green_share"  # its site's green-power share is below the order's minimum
REGION = "region"
HUB = "hub"
UNVERIFIED = "unverified"  # the order asks for verified capacity; a node of it is not verified
INTERRUPTIBLE = "interruptible"  # it may be pre-empted; the order does not accept that
OWN_RESALE = "own_resale"  # the buyer's own resale of a lease
HOURS = "hours"  # the order's hours are outside the offer's minimum / maximum lease
WINDOW = "window"  # its window cannot hold the lease (starts after start-by, ends too soon)
CAPACITY = "capacity"  # no free GPU on an online node of the offer
GANG_SITE = "gang_site"  # a gang order needs one site: this one cannot hold it, or costs more
NOT_NEEDED = "not_needed"  # cheaper (or greener, more reliable, older) offers cover the order

REASONS = (
    MODEL,
    CURRENCY,
    PRICE,
    GREEN_SHARE,
    REGION,
    HUB,
    UNVERIFIED,
    INTERRUPTIBLE,
    OWN_RESALE,
    HOURS,
    WINDOW,
    CAPACITY,
    GANG_SITE,
    NOT_NEEDED,
)


@dataclass(frozen=True)
class QuoteFill:
    offer_id: int
    gpu_model_id: int
    site_id: int
    gpus: int
    price_amount: int
    starts_at: dt.datetime
    ends_at: dt.datetime


@dataclass(frozen=True)
class QuoteExclusion:
    offer_id: int
    gpu_model_id: int
    site_id: int
    price_amount: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Quote:
    fills: list[QuoteFill]
    # the cheapest excluded offers, at least `explained` of them (all on a small book)
    excluded: list[QuoteExclusion]
    gpus_asked: int
    excluded_total: int  # every live offer not in the quote

    @property
    def gpus(self) -> int:
        return sum(fill.gpus for fill in self.fills)


def exclusion_reasons(order: BookOrder, offer: BookOffer, now: dt.datetime) -> list[str]:
    """Every reason the engine would not fill `order` from `offer`, whatever
    else is on the book (an empty list: it could)."""
    reasons = []
    if offer.gpu_model_id not in order.models:
        reasons.append(MODEL)
    if offer.currency != order.currency:
        reasons.append(CURRENCY)
    if offer.price > order.max_price:
        reasons.append(PRICE)
    if offer.green < order.min_green:
        reasons.append(GREEN_SHARE)
    if order.regions and offer.region not in order.regions:
        reasons.append(REGION)
    if order.hubs and offer.hub not in order.hubs:
        reasons.append(HUB)
    if order.verified_only and not offer.verified:
        reasons.append(UNVERIFIED)
    if offer.interruptible and not order.interruptible:
        reasons.append(INTERRUPTIBLE)
    if offer.resale_of is not None and offer.provider_id == order.buyer_id:
        reasons.append(OWN_RESALE)
    starts_at = offer.available_from if offer.available_from > now else now
    if order.start_at is not None and order.start_at > starts_at:
        starts_at = order.start_at
    if order.ends_at is None:
        if not offer.min_hours <= order.hours <= offer.max_hours:
            reasons.append(HOURS)
        ends_at = starts_at + order.duration
    else:
        ends_at = order.ends_at
    late = order.start_by is not None and starts_at > order.start_by
    if late or not starts_at < ends_at <= offer.available_until:
        reasons.append(WINDOW)
    return reasons


def order_quote_explain(
    *,
    model_ids: frozenset[int],
    gpu_count: int,
    hours: int,
    currency: str,
    start_by: dt.datetime,
    now: dt.datetime,
    max_price_amount: int | None = None,
    regions: Collection[str] = (),
    hubs: Collection[str] = (),
    min_green_share: Decimal = Decimal(0),
    gang: bool = False,
    verified_only: bool = False,
    interruptible: bool = False,
    start_at: dt.datetime | None = None,
    buyer_id: int = 0,
    explained: int = limits.MAX_QUOTE_EXCLUSIONS,
) -> Quote:
    """The engine's plan for one order on the live book (as an order placed now
    would be planned: from the cheapest part of the book, more when needed),
    and the cheapest `explained` live offers left out with their reasons (all
    of them on a smaller book). Without a maximum price every ask is within it."""
    order = BookOrder(
        id=0,
        buyer_id=buyer_id,
        need=gpu_count,
        hours=hours,
        max_price=max_price_amount or limits.MAX_PRICE_AMOUNT,
        currency=currency,
        models=model_ids,
        regions=frozenset(regions),
        hubs=frozenset(hubs),
        min_green=min_green_share,
        gang=gang,
        start_by=start_by,
        verified_only=verified_only,
        interruptible=interruptible,
        start_at=start_at,
    )
    fills = plan_from_cheapest([order], now=now) if model_ids else []
    taken: dict[int, QuoteFill] = {}
    for fill in fills:
        line = taken.get(fill.offer.id)
        taken[fill.offer.id] = QuoteFill(
            offer_id=fill.offer.id,
            gpu_model_id=fill.offer.gpu_model_id,
            site_id=fill.offer.site_id,
            gpus=fill.gpus + (line.gpus if line else 0),
            price_amount=fill.offer.price,
            starts_at=fill.starts_at,
            ends_at=fill.ends_at,
        )
    # The cheapest offers left out, each with its reasons: read from the cheapest
    # part of the book that holds `explained` of them whatever the quote took
    # (on 100,000 offers, reading and explaining all of them took seconds).
    cutoff = book_cutoff(now=now, offers=explained + len(taken))
    book = book_load(now=now, max_price=cutoff)
    excluded = []
    for offer in book.offers:
        if offer.id in taken:
            continue
        reasons = exclusion_reasons(order, offer, now)
        if not reasons:  # it could serve the order, yet the plan left it
            reasons = [CAPACITY] if offer.free() <= 0 else [GANG_SITE if gang else NOT_NEEDED]
        excluded.append(
            QuoteExclusion(offer.id, offer.gpu_model_id, offer.site_id, offer.price, tuple(reasons))
        )
    # Live offers the book left out: none of their nodes can take a lease now.
    for offer in book.dark:
        reasons = exclusion_reasons(order, offer, now) or [CAPACITY]
        excluded.append(
            QuoteExclusion(offer.id, offer.gpu_model_id, offer.site_id, offer.price, tuple(reasons))
        )
    excluded.sort(key=lambda e: (e.price_amount, e.offer_id))
    live = len(book.offers) + len(book.dark) if cutoff is None else live_offers(now=now).count()
    return Quote(
        fills=list(taken.values()),
        excluded=excluded,
        gpus_asked=gpu_count,
        excluded_total=live - len(taken),
    )
