"""Reads for the market's API and pages: the catalogue, the public offer
search, and each organisation's own sites, nodes, offers, orders and leases.

Other organisations' objects are never in these querysets, so views answer
404 for them."""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import (
    BooleanField,
    Case,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, NullIf

from accounts.models import Organisation
from core import clock, limits
from core.money import round_minor
from market.matching import (
    HOLDING_STATUSES,
    Quote,
    acceptable_model_ids,
    on_book,
    order_quote,
)
from market.models import GPUModel, Lease, Node, Offer, Order, Site
from market.telemetry import provider_reliability

OFFER_SORTS = {
    "price": ("price_amount", "-site__green_share", "created_at", "id"),
    "-price": ("-price_amount", "created_at", "id"),
    "price_per_pflops": ("price_per_pflops_hour", "price_amount", "id"),
    "green": ("-site__green_share", "price_amount", "id"),
    "reliability": ("-reliability", "price_amount", "id"),
}


# Prices per PFLOPS-hour are computed as NUMERIC, never bigint: a bigint
# product overflows (a price near 2^63 times 1000), which would fail the public
# search for everyone. 32 digits hold any price the column can store divided by
# the smallest TFLOPS figure the catalogue can hold (0.01).
_EXACT = DecimalField(max_digits=32, decimal_places=4)


def gpu_models() -> QuerySet[GPUModel]:
    return GPUModel.objects.all()


def _dense_tflops():
    return Coalesce("gpu_model__bf16_tflops", "gpu_model__fp16_tflops")


def offers_search(
    *,
    gpu_model: str | None = None,
    vendor: str | None = None,
    domestic: bool | None = None,
    min_memory_gb: int | None = None,
    min_tflops: Decimal | None = None,
    region: str | None = None,
    hub: str | None = None,
    min_green_share: Decimal | None = None,
    max_price: int | None = None,
    min_gpus: int | None = None,
    sort: str = "price",
    now: dt.datetime | None = None,
) -> QuerySet[Offer]:
    """Active offers with GPUs left and a window still open, filtered and
    sorted; each row carries `price_per_pflops_hour` (minor units per
    PFLOPS-hour of dense BF16) and the provider's `reliability`."""
    now = now or clock.now()
    offers = Offer.objects.filter(
        status=Offer.Status.ACTIVE, gpus_available__gt=0, available_until__gt=now
    ).select_related("gpu_model", "site", "provider")
    if gpu_model:
        offers = offers.filter(gpu_model__slug=gpu_model)
    if vendor:
        offers = offers.filter(gpu_model__vendor__iexact=vendor)
    if domestic is not None:
        offers = offers.filter(gpu_model__domestic=domestic)
    if min_memory_gb:
        offers = offers.filter(gpu_model__memory_gb__gte=min_memory_gb)
    if region:
        offers = offers.filter(site__region=region)
    if hub:
        offers = offers.filter(site__hub=hub)
    if min_green_share is not None:
        offers = offers.filter(site__green_share__gte=min_green_share)
    if max_price:
        offers = offers.filter(price_amount__lte=max_price)
    if min_gpus:
        offers = offers.filter(gpus_available__gte=min_gpus)
    offers = offers.annotate(dense_tflops=_dense_tflops())
    if min_tflops:
        offers = offers.filter(dense_tflops__gte=min_tflops)
    offers = offers.annotate(
        price_per_pflops_hour=ExpressionWrapper(
            Cast("price_amount", _EXACT)
            * Value(Decimal(1000), output_field=_EXACT)
            / NullIf(F("dense_tflops"), Value(0)),
            output_field=_EXACT,
        )
    )
    offers = offers.annotate(verified=offer_verified())
    scores = provider_reliability(set(offers.values_list("provider_id", flat=True)), now=now)
    offers = offers.annotate(
        reliability=Case(
            *(When(provider_id=pk, then=Value(score)) for pk, score in scores.items()),
            default=Value(Decimal(1)),
            output_field=DecimalField(max_digits=5, decimal_places=4),
        )
    )
    return offers.order_by(*OFFER_SORTS.get(sort, OFFER_SORTS["price"]))


def offer_verified() -> Case:
    """An offer is verified when every node it can use passed its self-test:
    its node, or each node of its model at its site (a pool offer)."""
    unverified_in_pool = Node.objects.filter(
        site_id=OuterRef("site_id"), gpu_model_id=OuterRef("gpu_model_id"), verified=False
    )
    return Case(
        When(node__isnull=False, then=F("node__verified")),
        default=~Exists(unverified_in_pool),
        output_field=BooleanField(),
    )


def sites_of(provider: Organisation) -> QuerySet[Site]:
    return Site.objects.filter(provider=provider)


def nodes_of(provider: Organisation) -> QuerySet[Node]:
    return (
        Node.objects.filter(site__provider=provider)
        .select_related("site", "gpu_model")
        .annotate(
            gpus_leased=Coalesce(
                Sum("leases__gpu_count", filter=Q(leases__status__in=HOLDING_STATUSES)), 0
            )
        )
    )


def offers_of(provider: Organisation) -> QuerySet[Offer]:
    return (
        Offer.objects.filter(provider=provider)
        .select_related("gpu_model", "site", "node")
        .annotate(verified=offer_verified())
    )


def orders_of(buyer: Organisation) -> QuerySet[Order]:
    return Order.objects.filter(buyer=buyer).prefetch_related("accepted_models")


def leases_of(organisation: Organisation) -> QuerySet[Lease]:
    """Leases the organisation bought or sold, with usage metered so far."""
    return (
        Lease.objects.filter(Q(buyer=organisation) | Q(provider=organisation))
        .select_related("node__site", "node__gpu_model", "offer")
        .annotate(
            gpu_seconds_delivered=Coalesce(Sum("usage_records__gpu_seconds_delivered"), 0),
            gpu_seconds_lost=Coalesce(Sum("usage_records__gpu_seconds_lost"), 0),
        )
    )


@dataclass(frozen=True)
class CapacitySummary:
    gpus: int
    gpus_sold: int
    gpus_idle: int


def capacity_summary(provider: Organisation) -> CapacitySummary:
    gpus = Node.objects.filter(site__provider=provider).aggregate(n=Sum("gpu_count"))["n"] or 0
    sold = (
        Lease.objects.filter(provider=provider, status__in=HOLDING_STATUSES).aggregate(
            n=Sum("gpu_count")
        )["n"]
        or 0
    )
    return CapacitySummary(gpus=gpus, gpus_sold=sold, gpus_idle=max(0, gpus - sold))


@dataclass(frozen=True)
class Estimate:
    gpus_matched: int
    gpu_hours: int
    pflops_hours: Decimal
    cost_amount: int
    max_cost_amount: int
    currency: str


def order_estimate(
    *,
    model_ids: frozenset[int],
    gpu_count: int,
    hours: int,
    max_price_amount: int,
    currency: str,
    start_by: dt.datetime,
    regions=(),
    hubs=(),
    min_green_share: Decimal = Decimal(0),
    gang: bool = False,
) -> Estimate:
    """Live estimate for the order form: what the book would give now (GPU-
    hours, normalised PFLOPS-hours, cost at the asks) and the most the order
    could cost at its bid."""
    lines = order_quote(
        model_ids=model_ids,
        gpu_count=gpu_count,
        hours=hours,
        max_price_amount=max_price_amount,
        currency=currency,
        start_by=start_by,
        regions=regions,
        hubs=hubs,
        min_green_share=min_green_share,
        gang=gang,
    )
    tflops = {m.pk: m.dense_tflops for m in GPUModel.objects.filter(pk__in=model_ids)}
    gpus = sum(line.gpus for line in lines)
    pflops_hours = sum(
        (Decimal(line.gpus * hours) * tflops[line.gpu_model_id] / 1000 for line in lines),
        Decimal(0),
    )
    return Estimate(
        gpus_matched=gpus,
        gpu_hours=gpus * hours,
        pflops_hours=pflops_hours.quantize(Decimal("0.01")),
        cost_amount=round_minor(
            Decimal(sum(line.gpus * line.price_amount for line in lines) * hours)
        ),
        max_cost_amount=gpu_count * hours * max_price_amount,
        currency=currency,
    )


# --- the public book: depth by price level, anonymised ----------------------------------


@dataclass(frozen=True)
class DepthLevel:
    price_amount: int
    price_per_pflops_hour: Decimal | None  # minor units per PFLOPS-hour of dense BF16
    gpus: int
    count: int  # orders (bids) or offers (asks) at this price


@dataclass(frozen=True)
class DepthBook:
    gpu_model: GPUModel
    currency: str
    bids: list[DepthLevel]
    asks: list[DepthLevel]


def _per_pflops(price: int, tflops: Decimal) -> Decimal | None:
    if not tflops:
        return None
    return (Decimal(price) * 1000 / tflops).quantize(Decimal("0.01"))


def _levels(sizes: dict[int, list[int]], tflops: Decimal, *, best_high: bool) -> list[DepthLevel]:
    prices = sorted(sizes, reverse=best_high)[: limits.MAX_BOOK_LEVELS]
    return [DepthLevel(p, _per_pflops(p, tflops), sum(sizes[p]), len(sizes[p])) for p in prices]


def book_depth(
    *, gpu_model: str | None = None, hub: str | None = None, now: dt.datetime | None = None
) -> list[DepthBook]:
    """The standing book per GPU model (and currency): asks are live offers'
    GPUs left, bids the unfilled GPUs of good-till orders still standing, both
    summed by price level, best first, with no organisation, order or offer
    named. With `hub`, asks at sites in that hub and bids that accept it. An
    order accepting several models stands in the book of each."""
    now = now or clock.now()
    models = {m.pk: m for m in GPUModel.objects.all()}
    wanted = {pk for pk, m in models.items() if gpu_model is None or m.slug == gpu_model}
    asks: dict[tuple[int, str], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    offers = Offer.objects.filter(
        status=Offer.Status.ACTIVE,
        gpus_available__gt=0,
        available_until__gt=now,
        gpu_model_id__in=wanted,
    )
    if hub:
        offers = offers.filter(site__hub=hub)
    for model_id, currency, price, gpus in offers.values_list(
        "gpu_model_id", "currency", "price_amount", "gpus_available"
    ):
        asks[(model_id, currency)][price].append(gpus)
    bids: dict[tuple[int, str], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    standing = Order.objects.filter(
        on_book(now),
        status__in=(Order.Status.OPEN, Order.Status.PARTIALLY_FILLED),
        time_in_force=Order.TimeInForce.GOOD_TILL,
    )
    accepted: dict[int, set[int]] = defaultdict(set)
    for order_id, model_id in Order.accepted_models.through.objects.filter(
        order__in=standing
    ).values_list("order_id", "gpumodel_id"):
        accepted[order_id].add(model_id)
    fields = [
        *("id", "currency", "max_price_amount", "gpu_count", "gpus_filled", "hubs"),
        *("min_tflops", "min_memory_gb", "domestic_only"),
    ]
    cache: dict[tuple, frozenset[int]] = {}
    for pk, currency, price, count, filled, hubs, tflops, memory, domestic in standing.values_list(
        *fields
    ):
        if hub and hubs and hub not in hubs:
            continue
        spec = (frozenset(accepted.get(pk, ())), tflops, memory, domestic)
        if spec not in cache:
            cache[spec] = acceptable_model_ids(
                accepted_ids=spec[0],
                min_tflops=tflops,
                min_memory_gb=memory,
                domestic_only=domestic,
                models=models.values(),
            )
        for model_id in cache[spec] & wanted:
            bids[(model_id, currency)][price].append(count - filled)
    books = []
    for model_id, currency in sorted(
        set(asks) | set(bids), key=lambda k: (models[k[0]].slug, k[1])
    ):
        model = models[model_id]
        tflops = model.dense_tflops
        books.append(
            DepthBook(
                gpu_model=model,
                currency=currency,
                bids=_levels(bids.get((model_id, currency), {}), tflops, best_high=True),
                asks=_levels(asks.get((model_id, currency), {}), tflops, best_high=False),
            )
        )
    return books


@dataclass(frozen=True)
class QuoteView:
    """A quote with the offers' public facts beside each line."""

    quote: Quote
    offers: dict[int, Offer]
    hours: int
    currency: str
    excluded: list  # the cheapest `limits.MAX_QUOTE_EXCLUSIONS` of quote.excluded

    @property
    def cost_amount(self) -> int:
        return sum(f.gpus * f.price_amount for f in self.quote.fills) * self.hours

    @property
    def rows(self) -> list[tuple]:
        """(fill, its offer, its cost in minor units) per line."""
        return [
            (f, self.offers[f.offer_id], f.gpus * f.price_amount * self.hours)
            for f in self.quote.fills
        ]

    @property
    def gpu_hours(self) -> int:
        return self.quote.gpus * self.hours

    @property
    def pflops_hours(self) -> Decimal:
        total = sum(
            (
                Decimal(f.gpus * self.hours) * self.offers[f.offer_id].gpu_model.dense_tflops
                for f in self.quote.fills
            ),
            Decimal(0),
        )
        return (total / 1000).quantize(Decimal("0.01"))


def quote_view(*, quote: Quote, hours: int, currency: str) -> QuoteView:
    excluded = quote.excluded[: limits.MAX_QUOTE_EXCLUSIONS]
    ids = [f.offer_id for f in quote.fills] + [e.offer_id for e in excluded]
    offers = Offer.objects.select_related("gpu_model", "site", "provider").in_bulk(ids)
    return QuoteView(quote=quote, offers=offers, hours=hours, currency=currency, excluded=excluded)
