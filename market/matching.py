"""The matching engine: buyers' orders meet providers' offers.

Rules (DESIGN.md, "Matching"):
- price-time priority: orders are served highest bid first, then oldest; each
  takes the cheapest compatible offers first. Ties between offers at one
  price: greener site, then more reliable provider, then older offer.
- pay-as-ask: a lease carries the offer's price, never more than the bid.
- heterogeneous substitution: an order accepts a set of GPU models, or any
  model above a TFLOPS / memory floor (optionally domestic only).
- partial fills unless the order is `gang`; a gang order fills all its GPUs
  at one site in one go, or waits.

Capacity has two levels. An offer sells at most `gpus_available` GPUs; a node
never holds more GPUs in pending/active leases than it has, whichever offers
(a node offer, a site pool offer, several offers at different prices) those
leases came from. Node occupancy is not a stored counter: it is the sum of
the node's pending/active leases, so any lease transition (ours, or failure
and migration in the telemetry part) frees capacity without extra
bookkeeping.

Concurrency: a round plans in memory from one snapshot, then commits in one
transaction that locks the rows it will change - nodes, then orders, then
offers, each in primary-key order (one global order, so no deadlock between
matchers) - re-reads their counters under the locks and applies only what
still fits. Every lease insert on a node happens while its node row is
locked, so the occupancy read after taking the lock sees every lease a
concurrent matcher committed. Two rounds at once therefore never allocate a
GPU twice; the loser of a race simply gets less and the next round retries.

Cost (bench/matching.py, bench/matching_profile.py): a round of 10,000 orders
x 5,000 offers is dominated by the database, so on PostgreSQL every lock, read
and write is one statement with array parameters (no model instances, no
placeholder per value): the leases and their events are one INSERT, the order
counters, status moves and their events one UPDATE + INSERT. What remains is
mostly PostgreSQL's own work: index maintenance and the deferred foreign-key
checks of the new rows at commit.

Priority among waiting orders is fixed by the rules (bid, then age), and so
is the offer order (ask, then greener, more reliable, older): with prices in
integer minor units, ties are rare and no further tie-break changed the
outcome measurably (bench/matching_variants.py), so none is added.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter

from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from market.models import GPUModel, Lease, LeaseEvent, Node, Offer, Order, OrderEvent
from market.reliability import provider_reliability

logger = logging.getLogger(__name__)

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


def _lock(model, ids: Iterable[int], fields: list[str]) -> dict[int, tuple]:
    """Lock rows (FOR NO KEY UPDATE, primary-key order) and read `fields` under the lock."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    if connection.vendor == "postgresql":
        # one array parameter, not thousands of placeholders: psycopg parses every %s
        qn = connection.ops.quote_name
        columns = ", ".join(qn(model._meta.get_field(f).column) for f in ["id", *fields])
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM {qn(model._meta.db_table)} "  # noqa: S608 - model metadata
                "WHERE id = ANY(%s::bigint[]) ORDER BY id FOR NO KEY UPDATE",
                [_array(ids)],
            )
            return {row[0]: row[1:] for row in cursor.fetchall()}
    rows = (
        model.objects.select_for_update(no_key=True)
        .filter(id__in=ids)
        .order_by("id")
        .values_list("id", *fields)
    )
    return {row[0]: row[1:] for row in rows}


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


def _bulk_add(model, column: str, deltas: dict[int, int]) -> None:
    """`column += delta` for many rows in one statement (PostgreSQL) or one
    prepared statement (SQLite); rows are already locked by the caller."""
    if not deltas:
        return
    table = model._meta.db_table
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {qn(table)} AS t SET {qn(column)} = t.{qn(column)} + v.d "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, d) WHERE t.id = v.id",
                [_array(deltas), _array(deltas.values())],
            )
        else:
            cursor.executemany(
                f"UPDATE {qn(table)} SET {qn(column)} = {qn(column)} + %s WHERE id = %s",  # noqa: S608
                [(d, pk) for pk, d in deltas.items()],
            )


def _commit(fills: list[_Fill], *, now: dt.datetime, result: RoundResult) -> list[int]:
    if not fills:
        return []
    by_order: dict[int, list[_Fill]] = defaultdict(list)
    for fill in fills:
        by_order[fill.order.id].append(fill)
    with transaction.atomic():
        nodes = _lock(Node, (f.node_id for f in fills), ["state", "gpu_count"])
        held = _held(list(nodes))
        node_free = {
            pk: (count - held.get(pk, 0)) if state == Node.State.ONLINE else 0
            for pk, (state, count) in nodes.items()
        }
        orders = _lock(Order, by_order, ["status", "gpu_count", "gpus_filled"])
        offers = _lock(
            Offer, (f.offer.id for f in fills), ["status", "gpus_available", "price_amount"]
        )
        offer_free = {
            pk: available if status == Offer.Status.ACTIVE else 0
            for pk, (status, available, _price) in offers.items()
        }
        rows: list[tuple] = []
        order_added: dict[int, int] = {}
        offer_taken: dict[int, int] = defaultdict(int)
        for order_id, order_fills in by_order.items():
            status, gpu_count, gpus_filled = orders[order_id]
            order = order_fills[0].order
            if status not in OPEN_STATUSES:
                result.conflicts += 1
                continue
            unfilled = gpu_count - gpus_filled
            accepted: list[tuple[_Fill, int]] = []
            for fill in order_fills:
                if offers[fill.offer.id][2] != fill.offer.price:
                    continue  # the provider re-priced since the snapshot: re-plan next round
                gpus = min(fill.gpus, offer_free[fill.offer.id], node_free[fill.node_id], unfilled)
                if gpus <= 0:
                    continue
                offer_free[fill.offer.id] -= gpus
                node_free[fill.node_id] -= gpus
                unfilled -= gpus
                accepted.append((fill, gpus))
            got = sum(g for _f, g in accepted)
            if got < sum(f.gpus for f in order_fills):
                result.conflicts += 1
                if order.gang:
                    for fill, gpus in accepted:  # all or nothing: give the capacity back
                        offer_free[fill.offer.id] += gpus
                        node_free[fill.node_id] += gpus
                    continue
            if not got:
                continue
            order_added[order_id] = got
            previous = order.previous_lease_id  # one-to-one: the first replacement points back
            for fill, gpus in accepted:
                offer_taken[fill.offer.id] += gpus
                rows.append(
                    (
                        order_id,
                        fill.offer.id,
                        fill.node_id,
                        order.buyer_id,
                        fill.offer.provider_id,
                        gpus,
                        fill.offer.price,
                        fill.offer.currency,
                        fill.starts_at,
                        fill.ends_at,
                        previous,
                    )
                )
                previous = None
        if not rows:
            return []
        lease_ids = _leases_insert(rows, now=now)
        _bulk_add(Offer, "gpus_available", {pk: -n for pk, n in offer_taken.items()})
        _order_progress(orders, order_added, now=now)
    result.orders_touched += len(order_added)
    result.leases_created += len(lease_ids)
    result.gpus_allocated += sum(order_added.values())
    result.lease_ids.extend(lease_ids)
    return lease_ids


_LEASE_COLUMNS = [
    ("order_id", "bigint"),
    ("offer_id", "bigint"),
    ("node_id", "bigint"),
    ("buyer_id", "bigint"),
    ("provider_id", "bigint"),
    ("gpu_count", "integer"),
    ("price_amount", "bigint"),
    ("currency", "text"),
    ("starts_at", "timestamptz"),
    ("ends_at", "timestamptz"),
    ("previous_lease_id", "bigint"),
]


def _leases_insert(rows: list[tuple], *, now: dt.datetime) -> list[int]:
    """Insert the leases and their `matched` events; returns the lease ids in row order."""
    pending = Lease.Status.PENDING
    if connection.vendor == "postgresql":
        # One statement from column arrays: the round writes thousands of rows,
        # and model instances or one placeholder per value would cost more than
        # the matching itself. The events are written from the inserted rows.
        qn = connection.ops.quote_name
        names = ", ".join(qn(name) for name, _type in _LEASE_COLUMNS)
        arrays = ", ".join(f"%s::{pg_type}[]" for _name, pg_type in _LEASE_COLUMNS)
        sql = (
            f"WITH inserted AS (INSERT INTO {qn(Lease._meta.db_table)} ({names}, status, created_at) "  # noqa: S608 - model metadata
            f"SELECT u.*, %s, %s FROM unnest({arrays}) AS u RETURNING id), "
            f"events AS (INSERT INTO {qn(LeaseEvent._meta.db_table)} "
            "(lease_id, from_status, to_status, reason, at) "
            "SELECT id, '', %s, 'matched', %s FROM inserted) "
            "SELECT id FROM inserted"
        )
        # parameters in textual order: the SELECT list's constants, the arrays, the events'
        params = [pending, now, *(_array(c) for c in zip(*rows, strict=True)), pending, now]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [row[0] for row in cursor.fetchall()]
    names = [name for name, _type in _LEASE_COLUMNS]
    leases = Lease.objects.bulk_create(
        [Lease(status=pending, **dict(zip(names, row, strict=True))) for row in rows]
    )
    LeaseEvent.objects.bulk_create(
        [
            LeaseEvent(lease_id=lease.pk, from_status="", to_status=pending, reason="matched")
            for lease in leases
        ]
    )
    return [lease.pk for lease in leases]


def _order_progress(orders: dict[int, tuple], added: dict[int, int], *, now: dt.datetime) -> None:
    """`gpus_filled += added`, the status move it implies and its event row, for
    every order at once. The rows are locked and their status was read under
    the lock, so the `status = old` guard of a transition always holds."""
    ids, deltas, olds, news = [], [], [], []
    for order_id, n in added.items():
        status, gpu_count, gpus_filled = orders[order_id]
        full = gpus_filled + n == gpu_count
        ids.append(order_id)
        deltas.append(n)
        olds.append(status)
        news.append(Order.Status.FILLED if full else Order.Status.PARTIALLY_FILLED)
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        sql = (
            "WITH v AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) "  # noqa: S608 - model metadata
            "AS v(id, d, was, becomes)), "
            f"moved AS (UPDATE {qn(Order._meta.db_table)} AS t "
            "SET gpus_filled = t.gpus_filled + v.d, status = v.becomes "
            "FROM v WHERE t.id = v.id AND t.status = v.was RETURNING t.id) "
            f"INSERT INTO {qn(OrderEvent._meta.db_table)} "
            "(order_id, from_status, to_status, reason, at) "
            "SELECT v.id, v.was, v.becomes, 'matched', %s FROM v "
            "WHERE v.was <> v.becomes AND v.id IN (SELECT id FROM moved)"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [_array(ids), _array(deltas), _array(olds), _array(news), now])
        return
    _bulk_add(Order, "gpus_filled", added)
    moves: dict[tuple[str, str], list[int]] = defaultdict(list)
    for order_id, old, new in zip(ids, olds, news, strict=True):
        if new != old:
            moves[(old, new)].append(order_id)
    for (old, new), move_ids in moves.items():
        Order.objects.filter(id__in=move_ids, status=old).update(status=new)
        OrderEvent.objects.bulk_create(
            OrderEvent(order_id=pk, from_status=old, to_status=new, reason="matched")
            for pk in move_ids
        )


# --- loading orders ------------------------------------------------------------------


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


def order_match(
    *,
    order_id: int,
    exclude_node_ids: Collection[int] = frozenset(),
    previous_lease_id: int | None = None,
    now: dt.datetime | None = None,
) -> list[Lease]:
    """Match one order's unfilled GPUs against the book now; returns the new
    leases (possibly none). Used when an order is placed and for failover.

    Failover: pass the failed node(s) in `exclude_node_ids` and the failed
    lease as `previous_lease_id`; the caller has already taken the failed
    GPUs off `gpus_filled` and put the order back to partially_filled. Then
    at most that lease's GPU count is matched, for the rest of its window
    (now → its ends_at), ignoring the order's start-by deadline, and the
    first new lease points back through `previous_lease`. Call it after your
    own transaction commits: it takes its row locks in the engine's order.
    """
    now = now or timezone.now()
    queryset = Order.objects.filter(pk=order_id, status__in=OPEN_STATUSES)
    if previous_lease_id is None:
        queryset = queryset.filter(start_by__gt=now)
    models = list(GPUModel.objects.all())
    orders = [o for o in _orders_load(queryset, models=models) if o.need > 0 and o.models]
    if not orders:
        return []
    order = orders[0]
    if previous_lease_id is not None:
        previous = Lease.objects.get(pk=previous_lease_id, order_id=order_id)
        order.need = min(order.need, previous.gpu_count)
        order.ends_at = previous.ends_at
        order.start_by = None
        order.previous_lease_id = previous_lease_id
        if order.ends_at <= now:
            return []
    book = _book_load(
        now=now,
        model_ids=order.models,
        max_price=order.max_price,
        exclude_node_ids=exclude_node_ids,
    )
    lease_ids = _commit(_plan([order], book, now), now=now, result=RoundResult())
    return list(Lease.objects.filter(id__in=lease_ids).order_by("id"))


def match_round(*, now: dt.datetime | None = None) -> RoundResult:
    """Match every open order against the whole book, in price-time priority:
    one snapshot, one in-memory pass, one committing transaction."""
    now = now or timezone.now()
    models = list(GPUModel.objects.all())
    queryset = Order.objects.filter(status__in=OPEN_STATUSES, start_by__gt=now)
    orders = [o for o in _orders_load(queryset, models=models) if o.need > 0 and o.models]
    result = RoundResult(orders_considered=len(orders))
    if not orders:
        return result
    orders.sort(key=lambda o: (-o.max_price, o.id))
    book = _book_load(now=now)
    _commit(_plan(orders, book, now), now=now, result=result)
    logger.info(
        "matching round",
        extra={
            "orders": result.orders_considered,
            "leases": result.leases_created,
            "gpus": result.gpus_allocated,
            "conflicts": result.conflicts,
        },
    )
    return result


@dataclass(frozen=True)
class QuoteLine:
    offer_id: int
    gpu_model_id: int
    gpus: int
    price_amount: int


def order_quote(
    *,
    model_ids: frozenset[int],
    gpu_count: int,
    hours: int,
    max_price_amount: int,
    currency: str,
    start_by: dt.datetime,
    regions: Collection[str] = (),
    hubs: Collection[str] = (),
    min_green_share: Decimal = Decimal(0),
    gang: bool = False,
    now: dt.datetime | None = None,
) -> list[QuoteLine]:
    """What an order like this would get if placed now: a dry run of the
    engine on the current book (nothing is locked or written)."""
    now = now or timezone.now()
    order = _Order(
        id=0,
        buyer_id=0,
        need=gpu_count,
        hours=hours,
        max_price=max_price_amount,
        currency=currency,
        models=model_ids,
        regions=frozenset(regions),
        hubs=frozenset(hubs),
        min_green=min_green_share,
        gang=gang,
        start_by=start_by,
    )
    if not model_ids or gpu_count < 1 or hours < 1:
        return []
    book = _book_load(now=now, model_ids=model_ids, max_price=max_price_amount)
    lines: dict[int, QuoteLine] = {}
    for fill in _plan([order], book, now):
        line = lines.get(fill.offer.id)
        gpus = fill.gpus + (line.gpus if line else 0)
        lines[fill.offer.id] = QuoteLine(
            fill.offer.id, fill.offer.gpu_model_id, gpus, fill.offer.price
        )
    return list(lines.values())
