"""The matching engine's in-memory side: a snapshot of the book and the
orders, and the plan that pairs them (no writes). See market/matching.py for
the rules."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Sum

from market.models import GPUModel, Lease, Node, Offer, Order
from market.reliability import provider_reliability

OPEN_STATUSES = (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)
HOLDING_STATUSES = (Lease.Status.PENDING, Lease.Status.ACTIVE)


# --- compatibility -------------------------------------------------------------


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


# --- PostgreSQL plumbing -------------------------------------------------------------
#
# Django's psycopg cursors bind parameters client side and load timestamptz
# through a Python subclass of psycopg's loader: both cost more than the
# matching itself at tens of thousands of values. Arrays therefore travel as
# one text literal each, and bulk reads use psycopg's built-in loaders.


def _array(values: Iterable) -> str:
    """A PostgreSQL array literal (cast it in SQL: `%s::bigint[]`) of ints,
    datetimes, strings or None."""
    values = list(values)
    if None not in values and values:
        if all(type(v) is int for v in values):
            return "{" + ",".join(map(str, values)) + "}"
        if all(type(v) is dt.datetime for v in values):
            return "{" + ",".join(map(dt.datetime.isoformat, values)) + "}"

    def item(value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, dt.datetime):
            return value.isoformat()
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(map(item, values)) + "}"


def _values(queryset, *fields: str) -> list[tuple]:
    """`queryset.values_list(*fields)` as plain tuples. On PostgreSQL, read
    with psycopg's own (C) loaders, without Django's per-value converters:
    JSON fields come back as text then (see `_json`)."""
    queryset = queryset.values_list(*fields)
    if connection.vendor != "postgresql":
        return list(queryset)
    from psycopg.types.datetime import TimestamptzLoader

    try:
        sql, params = queryset.query.sql_with_params()
    except EmptyResultSet:  # e.g. `id__in=[]`
        return []
    with connection.cursor() as cursor:
        cursor.cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
        cursor.execute(sql, params)
        return cursor.fetchall()


def _json(value):
    if value == "[]":
        return []
    return json.loads(value) if isinstance(value, str) else value


# --- the in-memory book ----------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Node:
    id: int
    free: int


@dataclass(slots=True, eq=False)
class _Offer:
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
    nodes: list[_Node]
    key: tuple = ()

    def free(self) -> int:
        return min(self.available, sum(node.free for node in self.nodes))


@dataclass(slots=True, eq=False)
class _Order:
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

    def __post_init__(self) -> None:
        self.duration = dt.timedelta(hours=self.hours)


@dataclass(slots=True)
class _Fill:
    order: _Order
    offer: _Offer
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


class _Book:
    """Offers sorted best first, and one such list per set of acceptable GPU
    models, cut at the highest bid among the orders sharing the set (orders
    share a few hundred sets at most, so each list is built once per round,
    not once per order). Nodes are shared between the offers that can use
    them, so in-memory allocation respects node free capacity exactly as the
    commit does. Exhausted offers are dropped from a list lazily."""

    def __init__(self, offers: list[_Offer]) -> None:
        self.offers = sorted(offers, key=attrgetter("key"))
        self._prices = [offer.price for offer in self.offers]
        self._merged: dict[frozenset[int], list[_Offer]] = {}
        self._dead: dict[frozenset[int], int] = defaultdict(int)
        self._caps: dict[frozenset[int], int] = {}

    def expect(self, orders: Iterable[_Order]) -> None:
        """Announce the orders to plan: a candidate list then stops at the
        highest bid among the orders sharing its model set."""
        for order in orders:
            cap = self._caps.get(order.models)
            if cap is None or order.max_price > cap:
                self._caps[order.models] = order.max_price

    def candidates(self, order: _Order) -> list[_Offer]:
        models = order.models
        merged = self._merged.get(models)
        if merged is None:
            cap = max(self._caps.get(models, 0), order.max_price)
            end = bisect.bisect_right(self._prices, cap)
            merged = self._merged[models] = [
                offer
                for offer in itertools.islice(self.offers, end)
                if offer.gpu_model_id in models and offer.available > 0
            ]
            self._dead[models] = 0
        return merged

    def note_skipped(self, order: _Order, dead: int) -> None:
        """The order's scan passed `dead` exhausted offers: compact its list if they pile up."""
        models = order.models
        self._dead[models] += dead
        lst = self._merged[models]
        if self._dead[models] * 4 > len(lst):
            self._merged[models] = [o for o in lst if o.available > 0]
            self._dead[models] = 0


def _book_load(
    *,
    now: dt.datetime,
    model_ids: Collection[int] | None = None,
    max_price: int | None = None,
    exclude_node_ids: Collection[int] = frozenset(),
) -> _Book:
    offers = Offer.objects.filter(
        status=Offer.Status.ACTIVE, gpus_available__gt=0, available_until__gt=now
    )
    if model_ids is not None:
        offers = offers.filter(gpu_model_id__in=model_ids)
    if max_price is not None:
        offers = offers.filter(price_amount__lte=max_price)
    rows = _values(
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
    )
    site_ids = {row[2] for row in rows}
    node_rows = _values(
        Node.objects.filter(site_id__in=site_ids, state=Node.State.ONLINE).exclude(
            id__in=exclude_node_ids
        ),
        "id",
        "site_id",
        "gpu_model_id",
        "gpu_count",
    )
    held = _held([n[0] for n in node_rows])
    nodes: dict[int, _Node] = {}
    pools: dict[tuple[int, int], list[_Node]] = defaultdict(list)
    for node_id, site_id, model_id, count in node_rows:
        node = nodes[node_id] = _Node(id=node_id, free=max(0, count - held.get(node_id, 0)))
        pools[(site_id, model_id)].append(node)
    reliability = provider_reliability({row[1] for row in rows}, now=now)
    book_offers = []
    for row in rows:
        (oid, provider, site, node_id, model, price, currency, available, start, until) = row[:10]
        if node_id is None:
            offer_nodes = pools.get((site, model), [])
        else:
            offer_nodes = [nodes[node_id]] if node_id in nodes else []
        if not offer_nodes:
            continue
        green = row[12]
        book_offers.append(
            _Offer(
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
                nodes=offer_nodes,
                key=(price, -green, -reliability[provider], row[15], oid),
            )
        )
    return _Book(book_offers)


# --- planning (pure, in memory) ----------------------------------------------------


def _window(order: _Order, offer: _Offer, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    starts_at = offer.available_from if offer.available_from > now else now
    if order.ends_at is not None:
        return starts_at, order.ends_at
    return starts_at, starts_at + order.duration


def _compatible(order: _Order, offer: _Offer, now: dt.datetime) -> bool:
    if offer.currency != order.currency or offer.green < order.min_green:
        return False
    if order.regions and offer.region not in order.regions:
        return False
    if order.hubs and offer.hub not in order.hubs:
        return False
    if order.ends_at is None and not offer.min_hours <= order.hours <= offer.max_hours:
        return False
    starts_at, ends_at = _window(order, offer, now)
    if order.start_by is not None and starts_at > order.start_by:
        return False
    return starts_at < ends_at <= offer.available_until


def _take(offer: _Offer, gpus: int, sink: list[tuple[int, int]]) -> None:
    """Take `gpus` from the offer, packing onto the fullest-free nodes first
    (fewer nodes per lease set = fewer hops for the buyer's job)."""
    offer.available -= gpus
    for node in sorted(offer.nodes, key=attrgetter("free"), reverse=True):
        if gpus == 0:
            break
        n = min(node.free, gpus)
        if n:
            node.free -= n
            gpus -= n
            sink.append((node.id, n))


def _fill(order: _Order, offer: _Offer, gpus: int, now: dt.datetime, book: _Book) -> list[_Fill]:
    taken: list[tuple[int, int]] = []
    _take(offer, gpus, taken)
    starts_at, ends_at = _window(order, offer, now)
    return [_Fill(order, offer, node_id, n, starts_at, ends_at) for node_id, n in taken]


def _plan_partial(order: _Order, book: _Book, now: dt.datetime) -> list[_Fill]:
    fills: list[_Fill] = []
    need = order.need
    dead = 0
    for offer in book.candidates(order):
        if offer.price > order.max_price:
            break
        if offer.available <= 0:
            dead += 1
            continue
        if not _compatible(order, offer, now):
            continue
        gpus = min(need, offer.free())
        if gpus <= 0:
            continue
        fills.extend(_fill(order, offer, gpus, now, book))
        need -= gpus
        if need == 0:
            break
    book.note_skipped(order, dead)
    return fills


def _site_cost(offers: list[_Offer], need: int) -> int | None:
    """Cost of `need` GPUs from one site's offers taken cheapest first, or
    None if the site cannot hold them all (node capacity shared between the
    site's offers is accounted for)."""
    scratch: dict[int, int] = {}
    cost = 0
    for offer in offers:
        room = min(offer.available, sum(scratch.get(n.id, n.free) for n in offer.nodes))
        gpus = min(room, need)
        if gpus <= 0:
            continue
        left = gpus
        for node in sorted(offer.nodes, key=lambda n: scratch.get(n.id, n.free), reverse=True):
            n = min(scratch.get(node.id, node.free), left)
            scratch[node.id] = scratch.get(node.id, node.free) - n
            left -= n
        cost += gpus * offer.price
        need -= gpus
        if need == 0:
            return cost
    return None


def _plan_gang(order: _Order, book: _Book, now: dt.datetime) -> list[_Fill]:
    """The cheapest whole site (ties: greener, more reliable, older offer), or nothing.

    Offers arrive cheapest first, so a site's cost is final the first time
    its capacity covers the order; the scan stops once no site still open
    could beat the best found (all its remaining GPUs cost at least the
    current price)."""
    need = order.need
    by_site: dict[int, list[_Offer]] = defaultdict(list)
    room: dict[int, int] = defaultdict(int)
    done: set[int] = set()
    best: tuple | None = None
    for seen, offer in enumerate(book.candidates(order)):
        if offer.price > order.max_price:
            break
        if best is not None and offer.price * need > best[0][0] and seen % 32 == 0:
            bound = min(
                (
                    offers[0].price * min(room[site], need)
                    + (need - min(room[site], need)) * offer.price
                    for site, offers in by_site.items()
                    if site not in done
                ),
                default=offer.price * need,
            )
            if bound > best[0][0]:
                break
        site = offer.site_id
        if site in done or offer.available <= 0 or not _compatible(order, offer, now):
            continue
        by_site[site].append(offer)
        room[site] += offer.free()
        if room[site] < need:
            continue
        cost = _site_cost(by_site[site], need)
        if cost is None:
            continue
        done.add(site)
        rank = (cost, *by_site[site][0].key[1:])
        if best is None or rank < best[0]:
            best = (rank, by_site[site])
    if best is None:
        return []
    fills: list[_Fill] = []
    for offer in best[1]:
        gpus = min(need, offer.free())
        if gpus > 0:
            fills.extend(_fill(order, offer, gpus, now, book))
            need -= gpus
        if need == 0:
            break
    return fills


def _plan(orders: list[_Order], book: _Book, now: dt.datetime) -> list[_Fill]:
    fills: list[_Fill] = []
    book.expect(orders)
    for order in orders:
        fills.extend((_plan_gang if order.gang else _plan_partial)(order, book, now))
    return fills


# --- commit (one transaction, row locks, re-validation) ------------------------------


def _orders_load(queryset, *, models: list[GPUModel]) -> list[_Order]:
    rows = _values(
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
    )
    accepted: dict[int, set[int]] = defaultdict(set)
    through = Order.accepted_models.through
    for order_id, model_id in _values(
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
            _Order(
                id=pk,
                buyer_id=buyer,
                need=count - filled,
                hours=hours,
                max_price=price,
                currency=currency,
                models=cache[spec],
                regions=frozenset(_json(row[10]) or ()),
                hubs=frozenset(_json(row[11]) or ()),
                min_green=row[12],
                gang=row[13],
                start_by=row[14],
            )
        )
    return result


# --- public entry points --------------------------------------------------------------


def _held(node_ids: Collection[int]) -> dict[int, int]:
    """GPUs held by pending/active leases on each node."""
    if not node_ids:
        return {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT node_id, SUM(gpu_count) FROM {Lease._meta.db_table} "  # noqa: S608
                "WHERE node_id = ANY(%s::bigint[]) AND status = ANY(%s::text[]) GROUP BY node_id",
                [_array(node_ids), _array(HOLDING_STATUSES)],
            )
            return dict(cursor.fetchall())
    return dict(
        Lease.objects.filter(node_id__in=list(node_ids), status__in=HOLDING_STATUSES)
        .values("node_id")
        .annotate(held=Sum("gpu_count"))
        .values_list("node_id", "held")
    )
