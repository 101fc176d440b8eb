"""The matching engine's in-memory book: the open orders and offers of a
round, loaded in a few bulk reads, and the GPUs already held per node.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter

from django.db import connection, transaction
from django.db.models import Q, Sum

from core import clock
from core.postgres import pg_array, pg_json, pg_values
from market.models import GPUModel, Lease, Node, Offer, Order
from market.telemetry import provider_reliability

OPEN_STATUSES = (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)


HOLDING_STATUSES = (Lease.Status.PENDING, Lease.Status.ACTIVE)
# book_cutoff's walk fetches this many offers a round trip (512 GPUs are ~100 offers)
CUTOFF_FETCH = 256


def acceptable_model_ids(
    *,
    accepted_ids: Collection[int] = (),
    min_tflops: Decimal | None = None,
    min_memory_gb: int | None = None,
    domestic_only: bool = False,
    models: Iterable[GPUModel] | None = None,
) -> frozenset[int]:
    """GPU models an order can run on: the accepted list (all models if empty),
    narrowed by the TFLOPS / memory floors and the domestic-only flag."""
    result = set()
    for model in models if models is not None else GPUModel.objects.all():
        if accepted_ids and model.pk not in accepted_ids:
            continue
        if min_tflops is not None and model.dense_tflops < min_tflops:
            continue
        if min_memory_gb is not None and model.memory_gb < min_memory_gb:
            continue
        if domestic_only and not model.domestic:
            continue
        result.add(model.pk)
    return frozenset(result)


@dataclass(slots=True, eq=False)
class BookNode:
    id: int
    free: int


@dataclass(slots=True, eq=False)
class BookOffer:
    id: int
    provider_id: int
    site_id: int
    gpu_model_id: int
    price: int
    currency: str
    available: int
    available_from: dt.datetime
    available_until: dt.datetime
    min_hours: int
    max_hours: int
    green: Decimal
    region: str
    hub: str
    nodes: list[BookNode]
    key: tuple = ()
    rank: int = 0  # place in the book, best first
    verified: bool = False  # every node it can use passed its self-test (market.verification)
    interruptible: bool = False  # pre-empted with notice (market/matching/preempt.py)
    resale_of: int | None = None  # a buyer's resale of this lease's rest (market/resale.py)

    def free(self) -> int:
        return min(self.available, sum(node.free for node in self.nodes))


@dataclass(slots=True, eq=False)
class BookOrder:
    id: int
    buyer_id: int
    need: int
    hours: int
    max_price: int
    currency: str
    models: frozenset[int]
    regions: frozenset[str]
    hubs: frozenset[str]
    min_green: Decimal
    gang: bool
    start_by: dt.datetime | None
    ends_at: dt.datetime | None = None  # failover: the window ends where the failed lease's did
    previous_lease_id: int | None = None
    duration: dt.timedelta = dt.timedelta(0)
    verified_only: bool = False
    interruptible: bool = False  # accepts interruptible offers
    start_at: dt.datetime | None = None  # a forward block: its leases start then, not before

    def __post_init__(self) -> None:
        self.duration = dt.timedelta(hours=self.hours)


@dataclass(slots=True)
class Fill:
    order: BookOrder
    offer: BookOffer
    node_id: int
    gpus: int
    starts_at: dt.datetime
    ends_at: dt.datetime


@dataclass
class RoundResult:
    orders_considered: int = 0
    orders_touched: int = 0
    leases_created: int = 0
    gpus_allocated: int = 0
    conflicts: int = 0
    lease_ids: list[int] = field(default_factory=list)
    # Wall seconds of a round's phases: snapshot (orders and book loaded), plan
    # (in memory), write (locks, re-check, inserts and updates, commit).
    phases: dict[str, float] = field(default_factory=dict)


class Book:
    """Offers sorted best first, and one such list per set of acceptable GPU
    models, cut at the highest bid among the orders sharing the set (orders
    share a few hundred sets at most, so each list is built once per round,
    not once per order). Nodes are shared between the offers that can use
    them, so in-memory allocation respects node free capacity exactly as the
    commit does. Exhausted offers are dropped from a list lazily."""

    def __init__(self, offers: list[BookOffer], *, dark: list[BookOffer] | None = None) -> None:
        # live offers none of whose nodes can take a lease now (offline, draining):
        # not for matching; the quote names them, with their reasons
        self.dark = dark or []
        self.offers = sorted(offers, key=attrgetter("key"))
        for rank, offer in enumerate(self.offers):
            offer.rank = rank
        self._by_model: dict[int, list[BookOffer]] = defaultdict(list)
        for offer in self.offers:
            self._by_model[offer.gpu_model_id].append(offer)
        self._prices = {m: [o.price for o in lst] for m, lst in self._by_model.items()}
        self._merged: dict[frozenset[int], list[BookOffer]] = {}
        self._dead: dict[frozenset[int], int] = defaultdict(int)
        self._caps: dict[frozenset[int], int] = {}

    def expect(self, orders: Iterable[BookOrder]) -> None:
        """Announce the orders to plan: a candidate list then stops at the
        highest bid among the orders sharing its model set."""
        for order in orders:
            cap = self._caps.get(order.models)
            if cap is None or order.max_price > cap:
                self._caps[order.models] = order.max_price

    def candidates(self, order: BookOrder) -> list[BookOffer]:
        models = order.models
        merged = self._merged.get(models)
        if merged is None:
            cap = max(self._caps.get(models, 0), order.max_price)
            merged = []
            for model in models:
                if model in self._by_model:
                    end = bisect.bisect_right(self._prices[model], cap)
                    merged.extend(self._by_model[model][:end])  # exhausted ones: dropped lazily
            if len(models) > 1:  # back into book order
                merged.sort(key=attrgetter("rank"))
            self._merged[models] = merged
            self._dead[models] = 0
        return merged

    def note_skipped(self, order: BookOrder, dead: int) -> None:
        """The order's scan passed `dead` exhausted offers: compact its list if they pile up."""
        models = order.models
        self._dead[models] += dead
        lst = self._merged[models]
        if self._dead[models] * 4 > len(lst):
            self._merged[models] = [o for o in lst if o.available > 0]
            self._dead[models] = 0


def book_cutoff(
    *,
    now: dt.datetime,
    model_ids: Collection[int] | None = None,
    max_price: int | None = None,
    gpus: int | None = None,
    offers: int | None = None,
) -> int | None:
    """The price at which the cheapest live offers (of `model_ids`, up to
    `max_price`) first hold `gpus` GPUs between them - or, with `offers`, first
    number that many - or None when all of them together fall short: every
    offer up to that price is the cheapest part of the book (a prefix in book
    order, ties at the price included). One walk in price order that stops
    there, not a read of the book: a server-side cursor, fetched
    CUTOFF_FETCH rows at a time, which PostgreSQL plans for its first rows
    (the partial index by price) - a running-sum window over the same rows
    sorted every live offer of the models first (24 ms against 8 ms at
    100,000 offers)."""
    threshold = offers if offers is not None else (gpus or 0)
    walked = 0
    prices = (
        live_offers(now=now, model_ids=model_ids, max_price=max_price)
        .order_by("price_amount", "id")
        .values_list("price_amount", "gpus_available")
    )
    # in a transaction: outside one the cursor is WITH HOLD, and PostgreSQL
    # would materialise every remaining row at the implicit commit
    with transaction.atomic(savepoint=False):
        for price, gpus_available in prices.iterator(chunk_size=CUTOFF_FETCH):
            walked += 1 if offers is not None else gpus_available
            if walked >= threshold:
                return price
    return None


def live_offers(
    *,
    now: dt.datetime,
    model_ids: Collection[int] | None = None,
    max_price: int | None = None,
):
    """The live offers a book is read from (those none of whose nodes can take
    a lease now included: the book keeps them apart, as dark)."""
    offers = Offer.objects.filter(
        status=Offer.Status.ACTIVE, gpus_available__gt=0, available_until__gt=now
    )
    if model_ids is not None:
        offers = offers.filter(gpu_model_id__in=list(model_ids))
    if max_price is not None:
        offers = offers.filter(price_amount__lte=max_price)
    return offers


def book_load(
    *,
    now: dt.datetime,
    model_ids: Collection[int] | None = None,
    max_price: int | None = None,
    exclude_node_ids: Collection[int] = frozenset(),
) -> Book:
    offers = live_offers(now=now, model_ids=model_ids, max_price=max_price)
    rows = pg_values(
        offers,
        "id",
        "provider_id",
        "site_id",
        "node_id",
        "gpu_model_id",
        "price_amount",
        "currency",
        "gpus_available",
        "available_from",
        "available_until",
        "min_hours",
        "max_hours",
        "site__green_share",
        "site__region",
        "site__hub",
        "created_at",
        "interruptible",
        "resale_of_id",
    )
    # the offers' own nodes, and every node of a site whose pooled offers (no
    # node: the site's GPUs of the model) are read; a resale needs neither
    sold = [row for row in rows if row[17] is None]
    node_ids = {row[3] for row in sold if row[3] is not None}
    pool_site_ids = {row[2] for row in sold if row[3] is None}
    node_rows = pg_values(
        # a node announced for maintenance (drain_at) takes no new lease
        Node.objects.filter(Q(id__in=node_ids) | Q(site_id__in=pool_site_ids))
        .filter(state=Node.State.ONLINE, drain_at__isnull=True)
        .exclude(id__in=exclude_node_ids)
        # a pool's nodes in name order: offer_take packs the fullest first, ties by this
        .order_by("site_id", "name"),
        "id",
        "site_id",
        "gpu_model_id",
        "gpu_count",
        "verified",
    )
    held = held_gpus([n[0] for n in node_rows])
    nodes: dict[int, BookNode] = {}
    pools: dict[tuple[int, int], list[BookNode]] = defaultdict(list)
    verified = {row[0] for row in node_rows if row[4]}
    for node_id, site_id, model_id, count, _verified in node_rows:
        node = nodes[node_id] = BookNode(id=node_id, free=max(0, count - held.get(node_id, 0)))
        pools[(site_id, model_id)].append(node)
    reliability = provider_reliability({row[1] for row in rows}, now=now)
    book_offers, dark = [], []
    for row in rows:
        (oid, provider, site, node_id, model) = row[:5]
        available = row[7]
        if row[17] is not None:
            # a resale sells GPUs its seller's lease holds: the node's own
            # capacity is not what limits it, the offer's GPUs are
            offer_nodes = [BookNode(id=node_id, free=available)]
        elif node_id is None:
            offer_nodes = pools.get((site, model), [])
        else:
            offer_nodes = [nodes[node_id]] if node_id in nodes else []
        offer = _book_offer(row, nodes=offer_nodes, reliability=reliability[provider])
        if not offer_nodes:
            dark.append(offer)
            continue
        offer.verified = all(node.id in verified for node in offer_nodes)
        book_offers.append(offer)
    return Book(book_offers, dark=dark)


def _book_offer(row: tuple, *, nodes: list[BookNode], reliability: Decimal) -> BookOffer:
    """One row of book_load's offer query as a BookOffer (verified: set by the caller)."""
    (oid, provider, site, _node, model, price, currency, available, start, until) = row[:10]
    green = row[12]
    return BookOffer(
        id=oid,
        provider_id=provider,
        site_id=site,
        gpu_model_id=model,
        price=price,
        currency=currency,
        available=available,
        available_from=start,
        available_until=until,
        min_hours=row[10],
        max_hours=row[11],
        green=green,
        region=row[13],
        hub=row[14],
        nodes=nodes,
        key=(price, -green, -reliability, row[15], oid),
        verified=False,
        interruptible=row[16],
        resale_of=row[17],
    )


def orders_load(queryset, *, models: list[GPUModel]) -> list[BookOrder]:
    rows = pg_values(
        queryset,
        "id",
        "buyer_id",
        "gpu_count",
        "gpus_filled",
        "hours",
        "max_price_amount",
        "currency",
        "min_tflops",
        "min_memory_gb",
        "domestic_only",
        "regions",
        "hubs",
        "min_green_share",
        "gang",
        "start_by",
        "verified_only",
        "interruptible",
        "start_at",
    )
    accepted: dict[int, set[int]] = defaultdict(set)
    through = Order.accepted_models.through
    for order_id, model_id in pg_values(
        through.objects.filter(order__in=queryset), "order_id", "gpumodel_id"
    ):
        accepted[order_id].add(model_id)
    cache: dict[tuple, frozenset[int]] = {}
    result = []
    for row in rows:
        pk, buyer, count, filled, hours, price, currency, tflops, memory, domestic = row[:10]
        spec = (frozenset(accepted.get(pk, ())), tflops, memory, domestic)
        if spec not in cache:
            cache[spec] = acceptable_model_ids(
                accepted_ids=spec[0],
                min_tflops=tflops,
                min_memory_gb=memory,
                domestic_only=domestic,
                models=models,
            )
        result.append(
            BookOrder(
                id=pk,
                buyer_id=buyer,
                need=count - filled,
                hours=hours,
                max_price=price,
                currency=currency,
                models=cache[spec],
                regions=frozenset(pg_json(row[10]) or ()),
                hubs=frozenset(pg_json(row[11]) or ()),
                min_green=row[12],
                gang=row[13],
                start_by=row[14],
                verified_only=row[15],
                interruptible=row[16],
                start_at=row[17],
            )
        )
    return result


def held_gpus(node_ids: Collection[int], *, since: dt.datetime | None = None) -> dict[int, int]:
    """GPUs held by pending/active leases on each node: every live lease counts
    for as long as it lives (a lease due to start later holds its GPUs from now).
    A lease bought from a resale holds nothing: its seller's lease holds the GPUs.

    A node with a pre-empted lease (`preempt_at`) is counted by time instead:
    the most GPUs its live leases hold at any moment from `since` on, each
    within its own window. The pre-empted lease ends where its pre-empting
    lease starts, so the two never count at once - yet a lease starting now
    still sees the pre-empted one until its notice runs out."""
    if not node_ids:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT node_id, SUM(gpu_count) FROM {Lease._meta.db_table} "  # noqa: S608
                "WHERE node_id = ANY(%s::bigint[]) AND status = ANY(%s::text[]) "
                "AND resold_from_id IS NULL GROUP BY node_id",
                [pg_array(node_ids), pg_array(HOLDING_STATUSES)],
            )
            held = dict(cursor.fetchall())
    else:
        held = dict(
            Lease.objects.filter(
                node_id__in=list(node_ids), status__in=HOLDING_STATUSES, resold_from__isnull=True
            )
            .values("node_id")
            .annotate(held=Sum("gpu_count"))
            .values_list("node_id", "held")
        )
    live = Lease.objects.filter(status__in=HOLDING_STATUSES, resold_from__isnull=True)
    # few leases are under notice at a time (a partial index holds just them)
    timed = held.keys() & set(
        live.filter(preempt_at__isnull=False).values_list("node_id", flat=True)
    )
    if timed:
        windows: dict[int, list[tuple[dt.datetime, dt.datetime, int]]] = defaultdict(list)
        for node_id, starts, ends, gpus in live.filter(node_id__in=timed).values_list(
            "node_id", "starts_at", "ends_at", "gpu_count"
        ):
            windows[node_id].append((starts, ends, gpus))
        for node_id, spans in windows.items():
            held[node_id] = _peak(spans, since=since or clock.now())
    return held


def _peak(spans: list[tuple[dt.datetime, dt.datetime, int]], *, since: dt.datetime) -> int:
    """The most GPUs held at once from `since` on by leases with these windows."""
    moments = [since, *(start for start, _end, _gpus in spans if start > since)]
    return max(sum(g for start, end, g in spans if start <= at < end) for at in moments)
