"""Reads for the market's API and pages: the catalogue, the public offer
search, and each organisation's own sites, nodes, offers, orders and leases.

Other organisations' objects are never in these querysets, so views answer
404 for them."""

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import (
    BooleanField,
    Case,
    Count,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, NullIf

from accounts.models import Organisation
from core import clock, limits
from core.cache import cached
from core.money import round_minor
from market.matching import (
    HOLDING_STATUSES,
    Quote,
    acceptable_model_ids,
    on_book,
    order_quote,
    order_quote_explain,
)
from market.models import GPUModel, Lease, LeaseEvent, Node, Offer, Order, Site
from market.models.capacity import BOARD_CACHE

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
_SCORE = DecimalField(max_digits=5, decimal_places=4)


def gpu_models() -> QuerySet[GPUModel]:
    return GPUModel.objects.all()


def _dense_tflops():
    return Coalesce("gpu_model__bf16_tflops", "gpu_model__fp16_tflops")


def _models_matching(
    *,
    gpu_model: str | None,
    vendor: str | None,
    domestic: bool | None,
    min_memory_gb: int | None,
    min_tflops: Decimal | None,
) -> list[int] | None:
    """Ids of the catalogue's models passing the search's model filters, or
    None when there is no such filter."""
    if not (gpu_model or vendor or domestic is not None or min_memory_gb or min_tflops):
        return None
    models = GPUModel.objects.annotate(dense=Coalesce("bf16_tflops", "fp16_tflops"))
    if gpu_model:
        models = models.filter(slug=gpu_model)
    if vendor:
        models = models.filter(vendor__iexact=vendor)
    if domestic is not None:
        models = models.filter(domestic=domestic)
    if min_memory_gb:
        models = models.filter(memory_gb__gte=min_memory_gb)
    if min_tflops:
        models = models.filter(dense__gte=min_tflops)
    return list(models.values_list("pk", flat=True).order_by())


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
    PFLOPS-hour of dense BF16) and the provider's `reliability`. To page
    through it, wrap it in `OfferResults` (what the API and the board do)."""
    offers = _offers_filtered(
        gpu_model=gpu_model,
        vendor=vendor,
        domestic=domestic,
        min_memory_gb=min_memory_gb,
        min_tflops=min_tflops,
        region=region,
        hub=hub,
        min_green_share=min_green_share,
        max_price=max_price,
        min_gpus=min_gpus,
        now=now or clock.now(),
    )
    return _offers_annotated(offers).order_by(*OFFER_SORTS.get(sort, OFFER_SORTS["price"]))


def _offers_filtered(
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
    now: dt.datetime,
) -> QuerySet[Offer]:
    offers = Offer.objects.filter(
        status=Offer.Status.ACTIVE, gpus_available__gt=0, available_until__gt=now
    )
    models = _models_matching(
        gpu_model=gpu_model,
        vendor=vendor,
        domestic=domestic,
        min_memory_gb=min_memory_gb,
        min_tflops=min_tflops,
    )
    if models is not None:
        # Ids from the (small) catalogue, not a join: the planner then knows
        # how many offers match and can walk the price index to the page.
        offers = offers.filter(gpu_model_id__in=models)
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
    return offers


def _offers_annotated(offers: QuerySet[Offer]) -> QuerySet[Offer]:
    offers = offers.select_related("gpu_model", "site", "provider").annotate(
        dense_tflops=_dense_tflops()
    )
    offers = offers.annotate(
        price_per_pflops_hour=ExpressionWrapper(
            Cast("price_amount", _EXACT)
            * Value(Decimal(1000), output_field=_EXACT)
            / NullIf(F("dense_tflops"), Value(0)),
            output_field=_EXACT,
        )
    )
    offers = offers.annotate(verified=offer_verified())
    # Stored scores (telemetry.provider_reliability_refresh), one join: never
    # an aggregate over usage records per search.
    return offers.annotate(
        reliability=Coalesce(
            F("provider__reliability__score"),
            Value(Decimal(1), output_field=_SCORE),
            output_field=_SCORE,
        )
    )


# The first key of a sort, and the lookup keeping the rows up to a given value of it.
_SORT_BOUNDS = {
    "price": ("price_amount", "lte"),
    "-price": ("-price_amount", "gte"),
    "green": ("-site__green_share", "gte"),
}


class OfferResults:
    """The search as a lazy sequence for a paginator (Django's and DRF's):
    `count()` and slices, each one query or two.

    A slice ending at row k first reads the k-th value of the sort's first key
    alone (price: from the `offer_active_by_price` index, a page's worth of
    entries), then sorts only the offers up to that value - ties included - and
    not every live offer: at 100,000 offers the full sort was most of a search."""

    def __init__(self, **filters) -> None:
        self.sort = filters.pop("sort", "price")
        if self.sort not in OFFER_SORTS:
            self.sort = "price"
        # The count's cache key: the filters, not the clock (offers whose
        # window closes drop out of a cached count within its timeout).
        self._key = hashlib.sha256(repr(sorted(filters.items())).encode()).hexdigest()
        filters.setdefault("now", clock.now())
        self.filtered = _offers_filtered(**filters)
        self._count: int | None = None

    def count(self) -> int:
        """Cached until the book changes (BOARD_CACHE): counting every live
        offer was the other half of a search's time."""
        if self._count is None:
            self._count = cached(BOARD_CACHE, f"count:{self._key}", self.filtered.count, timeout=60)
        return self._count

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self[index : index + 1][0]
        start, stop = index.start or 0, index.stop
        rows = self.filtered
        bound = _SORT_BOUNDS.get(self.sort)
        if bound and stop:
            key, lookup = bound
            field = key.lstrip("-")
            edge = list(rows.order_by(key).values_list(field, flat=True)[stop - 1 : stop])
            if edge:
                rows = rows.filter(**{f"{field}__{lookup}": edge[0]})
        return list(_offers_annotated(rows).order_by(*OFFER_SORTS[self.sort])[start:stop])


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
            ended_reason=Subquery(
                LeaseEvent.objects.filter(lease=OuterRef("pk"), to_status__in=ENDED_STATUSES)
                .order_by("-pk")
                .values("reason")[:1]
            ),
            next_lease_id=Subquery(
                Lease.objects.filter(previous_lease=OuterRef("pk")).values("pk")[:1]
            ),
        )
    )


def open_resales(*, lease_ids: list[int]) -> dict[int, Offer]:
    """The resale still on the book of each of these leases (market/resale.py),
    with `gpus_sold`."""
    offers = (
        Offer.objects.filter(resale_of_id__in=lease_ids)
        .exclude(status=Offer.Status.WITHDRAWN)
        .annotate(gpus_sold=F("gpus_total") - F("gpus_available"))
    )
    return {offer.resale_of_id: offer for offer in offers if offer.resale_of_id is not None}


ENDED_STATUSES = (
    Lease.Status.COMPLETED,
    Lease.Status.FAILED,
    Lease.Status.MIGRATED,
    Lease.Status.CANCELLED,
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
    verified_only: bool = False,
    interruptible: bool = False,
    start_at: dt.datetime | None = None,
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
        verified_only=verified_only,
        interruptible=interruptible,
        start_at=start_at,
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


@dataclass(frozen=True)
class BoardModel:
    gpu_model_id: int
    slug: str
    name: str
    offers: int
    gpus_available: int
    lowest_ask_amount: int
    median_ask_amount: int  # the median offer's price (the lower middle one of an even count)
    lowest_per_pflops_hour: Decimal | None  # minor units per PFLOPS-hour at the lowest ask


@dataclass(frozen=True)
class BoardHub:
    hub: str
    gpus_available: int
    green_share: Decimal  # weighted by GPUs available


@dataclass(frozen=True)
class Board:
    models: list[BoardModel]
    hubs: list[BoardHub]
    currency: str


def board_summary(*, currency: str | None = None) -> Board:
    """The public board's aggregates over the live book: per GPU model the
    lowest and median ask and the GPUs available now, and capacity by hub.
    Two grouped scans, cached until the book changes (BOARD_CACHE) or for a
    minute at most (offers whose window closes drop out)."""
    from django.conf import settings

    currency = currency or settings.DEFAULT_CURRENCY
    return cached(BOARD_CACHE, f"board:{currency}", lambda: _board(currency), timeout=60)


def _board(currency: str) -> Board:
    live = _offers_filtered(now=clock.now()).filter(currency=currency)
    catalogue = {m.pk: m for m in GPUModel.objects.all()}
    prices: dict[int, list[tuple[int, int, int]]] = {}
    for model_id, price, offers, gpus in (
        live.values("gpu_model_id", "price_amount")
        .annotate(n=Count("id"), gpus=Sum("gpus_available"))
        .values_list("gpu_model_id", "price_amount", "n", "gpus")
        .order_by("gpu_model_id", "price_amount")
    ):
        prices.setdefault(model_id, []).append((price, offers, gpus))
    models = []
    for model_id, rows in prices.items():
        model = catalogue[model_id]
        count = sum(n for _, n, _ in rows)
        middle, seen, median = (count - 1) // 2, 0, rows[0][0]
        for price, n, _ in rows:
            if seen + n > middle:
                median = price
                break
            seen += n
        tflops = model.dense_tflops
        models.append(
            BoardModel(
                gpu_model_id=model_id,
                slug=model.slug,
                name=str(model),
                offers=count,
                gpus_available=sum(g for _, _, g in rows),
                lowest_ask_amount=rows[0][0],
                median_ask_amount=median,
                lowest_per_pflops_hour=(
                    (Decimal(rows[0][0] * 1000) / tflops).quantize(Decimal("0.01"))
                    if tflops
                    else None
                ),
            )
        )
    hubs = [
        BoardHub(
            hub=row["site__hub"],
            gpus_available=row["gpus"],
            green_share=(row["green"] / row["gpus"]).quantize(Decimal("0.001")),
        )
        for row in live.values("site__hub")
        .annotate(
            gpus=Sum("gpus_available"),
            green=Sum(F("gpus_available") * F("site__green_share"), output_field=_EXACT),
        )
        .order_by("site__hub")
        if row["gpus"]
    ]
    models.sort(key=lambda m: (m.lowest_ask_amount, m.slug))
    return Board(models=models, hubs=hubs, currency=currency)


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


def order_model_ids(order: Mapping[str, Any]) -> frozenset[int]:
    """The GPU models an order's cleaned fields accept (its list and its floors)."""
    return acceptable_model_ids(
        accepted_ids={m.pk for m in order["accepted_models"]},
        min_tflops=order["min_tflops"],
        min_memory_gb=order["min_memory_gb"],
        domestic_only=order["domestic_only"],
    )


def order_quote_view(*, order: Mapping[str, Any], currency: str, now: dt.datetime) -> QuoteView:
    """What an order of this shape would get now and why the other offers
    would not serve it: the quote API and the quote page ask the same.
    `order` holds the order form's cleaned fields (accepted models and the
    model filters, size, hours, start-by, price, place and green limits)."""
    quote = order_quote_explain(
        model_ids=order_model_ids(order),
        gpu_count=order["gpu_count"],
        hours=order["hours"],
        currency=currency,
        start_by=order["start_by"],
        now=now,
        max_price_amount=order["max_price_amount"],
        regions=order["regions"],
        hubs=order["hubs"],
        min_green_share=order["min_green_share"],
        gang=order["gang"],
        verified_only=order["verified_only"],
        interruptible=order.get("interruptible", False),
        start_at=order.get("start_at"),
    )
    return quote_view(quote=quote, hours=order["hours"], currency=currency)


def quote_view(*, quote: Quote, hours: int, currency: str) -> QuoteView:
    excluded = quote.excluded[: limits.MAX_QUOTE_EXCLUSIONS]
    ids = [f.offer_id for f in quote.fills] + [e.offer_id for e in excluded]
    offers = Offer.objects.select_related("gpu_model", "site", "provider").in_bulk(ids)
    return QuoteView(quote=quote, offers=offers, hours=hours, currency=currency, excluded=excluded)
