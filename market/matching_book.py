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
    rank: int = 0  # place in the book, best first

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
        for rank, offer in enumerate(self.offers):
            offer.rank = rank
        self._by_model: dict[int, list[_Offer]] = defaultdict(list)
        for offer in self.offers:
            self._by_model[offer.gpu_model_id].append(offer)
        self._prices = {m: [o.price for o in lst] for m, lst in self._by_model.items()}
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
    # the engine's hottest function: `_window` is inlined
    if offer.currency != order.currency or offer.green < order.min_green:
        return False
    if order.regions and offer.region not in order.regions:
        return False
    if order.hubs and offer.hub not in order.hubs:
        return False
    starts_at = offer.available_from if offer.available_from > now else now
    if order.ends_at is None:
        if not offer.min_hours <= order.hours <= offer.max_hours:
            return False
        ends_at = starts_at + order.duration
    else:
        ends_at = order.ends_at
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


def _site_take(offers: Iterable[_Offer], need: int) -> tuple[list[tuple[_Offer, int]], int]:
    """Up to `need` GPUs from one site's offers, taken in the order given, as
    (offer, GPUs) pairs, and what is still missing - a trial: nothing is
    taken, but node capacity shared between the offers is accounted for."""
    scratch: dict[int, int] = {}  # node id -> free GPUs left in this trial
    takes: list[tuple[_Offer, int]] = []
    for offer in offers:
        if need == 0:
            break
        room = min(offer.available, sum(scratch.get(n.id, n.free) for n in offer.nodes))
        gpus = min(room, need)
        if gpus <= 0:
            continue
        left = gpus
        for node in sorted(offer.nodes, key=lambda n: scratch.get(n.id, n.free), reverse=True):
            n = min(scratch.get(node.id, node.free), left)
            scratch[node.id] = scratch.get(node.id, node.free) - n
            left -= n
        takes.append((offer, gpus))
        need -= gpus
    return takes, need


def _site_cost(offers: list[_Offer], need: int) -> int | None:
    """Cost of `need` GPUs from one site's offers taken cheapest first, or
    None if the site cannot hold them all."""
    takes, missing = _site_take(offers, need)
    return None if missing else sum(offer.price * gpus for offer, gpus in takes)


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


def _plan(
    orders: list[_Order], book: _Book, now: dt.datetime, *, rebalance: bool = True
) -> list[_Fill]:
    """Orders in priority order, each from its cheapest compatible offers; then
    the round places what is left over by moving earlier fills (`_rebalance`)."""
    fills: list[_Fill] = []
    book.expect(orders)
    for order in orders:
        fills.extend((_plan_gang if order.gang else _plan_partial)(order, book, now))
    if rebalance and len(orders) > 1:
        fills = _rebalance(orders, fills, book, now)
    return fills


# --- rebalancing: more GPUs traded in the same round ---------------------------------


class _ByModels:
    """Offers in book order (best first), and one such list per set of GPU
    models asked for, built when first asked for, pruned by `compact`."""

    def __init__(self, offers: list[_Offer]) -> None:
        self.by_model: dict[int, list[_Offer]] = defaultdict(list)
        for offer in offers:
            self.by_model[offer.gpu_model_id].append(offer)
        self.sets: dict[frozenset[int], list[_Offer]] = {}
        self.compacted = 0

    def get(self, models: frozenset[int]) -> list[_Offer]:
        offers = self.sets.get(models)
        if offers is None:
            lists = [self.by_model[m] for m in models if m in self.by_model]
            offers = lists[0] if len(lists) == 1 else []
            if len(lists) > 1:
                offers = sorted(itertools.chain.from_iterable(lists), key=attrgetter("rank"))
            self.sets[models] = offers
        return offers

    def compact(self, keep, mark: int) -> None:
        """Drop the offers `keep` refuses, everywhere. Lists are replaced, not
        edited: a holder's search position in an old list stays valid."""
        self.by_model = defaultdict(
            list, {m: [o for o in lst if keep(o)] for m, lst in self.by_model.items()}
        )
        self.sets = {k: [o for o in offers if keep(o)] for k, offers in self.sets.items()}
        self.compacted = mark


@dataclass(slots=True, eq=False)
class _Move:
    """`taker` takes `offer`'s GPUs from `holder`, who moves to `to` (free capacity)."""

    cost: int  # welfare the move loses, fen x hours (negative: it gains)
    taker: _Order
    offer: _Offer
    holder: _Order
    to: _Offer


class _Rebalance:
    """More GPUs traded in the same round, never fewer for anyone.

    After the priority pass an order may be left short while an offer it can
    use is held by an earlier fill of this round whose order could as well
    run on an offer nobody took (typically a dearer one, still within its
    bid). Moving that order there lets the short one in: one more trade,
    nobody loses a GPU, everyone still pays an ask at or below its bid. This
    is how a call auction works - it maximises the volume it can execute -
    and what the DESIGN's cheapest-first rule alone cannot do: highest
    priority first, each taking the cheapest offers, strands the offers only
    the high bidders could afford and the orders only the cheap offers suit.

    1. `place`: short orders, in priority order, each making the moves that
       cost the least welfare first - the holder's extra ask x its hours,
       minus the taker's surplus.
    2. `gang`: waiting gang orders, in priority order, take a whole site if
       its free GPUs plus those its holders can give up (moving to free
       capacity elsewhere) cover the order.
    3. `exchange`: a long order moved onto a dear offer swaps with a shorter
       order of the round on a cheaper offer each can use - the same GPUs
       traded, less paid in all.

    Only fills of this round move (never a committed lease); gang orders and
    failover replacements are never moved. Cost stays bounded because free
    capacity only shrinks (a move fills a free offer and hands the freed GPUs
    straight to the taker): a holder with no free option never gains one, so
    an offer none of whose holders can move is dead for the rest of the
    round, and each offer's cheapest way to free a GPU (`_best`) is kept
    until the free offer it relies on fills up. `place` prices a bounded
    number of moves (SCAN), cheapest offers first: a large round
    (bench/matching.py) stays well inside its time, for 0.2-0.6 % of welfare
    against an unbounded search."""

    SCAN = 32  # moves priced per short order, cheapest offers first
    EXCHANGE_HOURS = 8  # moved orders shorter than this are not worth a swap search

    def __init__(self, fills: list[_Fill], book: _Book, now: dt.datetime) -> None:
        self.book = book
        self.now = now
        self.fills = fills
        self.got: dict[int, int] = defaultdict(int)
        self.holdings: dict[int, list[_Fill]] = defaultdict(list)  # offer id -> movable fills
        for fill in fills:
            self.got[fill.order.id] += fill.gpus
            if self._movable(fill.order):
                self.holdings[fill.offer.id].append(fill)
        # free GPUs per offer that has any (no other offer ever gains some)
        self.room: dict[int, int] = {}
        self.sharing: dict[int, list[_Offer]] = defaultdict(list)  # node id -> free offers
        free, held = [], []
        for offer in book.offers:  # best first
            if offer.available > 0 and (room := offer.free()) > 0:
                self.room[offer.id] = room
                free.append(offer)
                for node in offer.nodes:
                    self.sharing[node.id].append(offer)
            if offer.id in self.holdings:
                held.append(offer)
        self.open_offers = len(free)
        self.coupled = {
            offer.id for offers in self.sharing.values() if len(offers) > 1 for offer in offers
        }
        self.free = _ByModels(free)
        self.held = _ByModels(held)  # pruned of dead offers as the round goes
        self.everything = _ByModels(book.offers)
        self.moved: list[_Fill] = []
        self.richest: dict[int, list[_Fill]] = {}  # for `exchange`
        self.partners: dict[int, list[list]] = {}
        self.fits: dict[tuple[int, int], bool] = {}  # (order id, offer id) -> compatible
        self.options: dict[int, list] = {}  # holder id -> [found, candidates, position]
        self.best: dict[int, tuple[int, _Fill, _Offer]] = {}
        self.dead: set[int] = set()

    @staticmethod
    def _movable(order: _Order) -> bool:
        return not order.gang and order.previous_lease_id is None

    def short(self, order: _Order) -> int:
        return order.need - self.got[order.id]

    def option(self, holder: _Order, exclude: _Offer | None) -> _Offer | None:
        """The best offer with free GPUs the holder could move to, if any.
        Searched lazily, best first; what is found is kept (it only ever
        fills up, so the search never has to look back)."""
        state = self.options.get(holder.id)
        if state is None:
            state = self.options[holder.id] = [[], self.free.get(holder.models), 0]
        found, candidates, position = state
        room = self.room
        while found and room[found[0].id] <= 0:
            found.pop(0)
        for offer in found:
            if offer is not exclude and room[offer.id] > 0:
                return offer
        while position < len(candidates):
            offer = candidates[position]
            position += 1
            if offer.price > holder.max_price:
                position = len(candidates)
                break
            if room[offer.id] > 0 and _compatible(holder, offer, self.now):
                found.append(offer)
                if offer is not exclude:
                    state[2] = position
                    return offer
        state[2] = position
        return None

    def _best(self, offer: _Offer) -> tuple[int, _Fill, _Offer] | None:
        """The cheapest way to free one of the offer's GPUs: (extra price x
        hours of the holder, the holder's fill, where the holder goes), or
        None: no holder can move, the offer is dead for the round."""
        best = self.best.get(offer.id)
        if best is not None and best[1].gpus > 0 and self.room[best[2].id] > 0:
            return best
        best = None
        for fill in self.holdings[offer.id]:
            if fill.gpus <= 0:
                continue
            to = self.option(fill.order, offer)
            if to is not None:
                cost = (to.price - offer.price) * fill.order.hours
                if best is None or cost < best[0]:
                    best = (cost, fill, to)
        if best is None:
            self.dead.add(offer.id)
            self.best.pop(offer.id, None)
        else:
            self.best[offer.id] = best
        return best

    def moves(self, taker: _Order) -> list[_Move]:
        """The cheapest of the first few moves found on the taker's
        compatible offers, cheapest offers first."""
        if len(self.dead) > self.held.compacted * 3 // 2 + 64:
            dead = self.dead
            self.held.compact(lambda offer: offer.id not in dead, len(dead))
        found: list[_Move] = []
        dead = self.dead
        for offer in self.held.get(taker.models):
            if offer.price > taker.max_price:
                break
            if offer.id in dead or not _compatible(taker, offer, self.now):
                continue
            best = self._best(offer)
            if best is None:
                continue
            gain = (taker.max_price - offer.price) * taker.hours
            found.append(_Move(best[0] - gain, taker, offer, best[1].order, best[2]))
            if len(found) >= self.SCAN:
                break
        found.sort(key=attrgetter("cost"))
        return found

    def apply(self, move: _Move) -> int:
        """Make the move for as many GPUs as still fit; returns how many."""
        taker, offer, holder, to = move.taker, move.offer, move.holder, move.to
        held = [f for f in self.holdings[offer.id] if f.order is holder and f.gpus > 0]
        gpus = min(self.short(taker), sum(f.gpus for f in held), self.room[to.id])
        if gpus > 0:
            self._hand_over(held, gpus, taker, to)
        return max(gpus, 0)

    def _hand_over(self, held: list[_Fill], gpus: int, taker: _Order, to: _Offer) -> None:
        """`gpus` of the holder's fills (one order, one offer) go to the taker -
        the very GPUs, node by node - and the holder takes as many on `to`."""
        offer, holder = held[0].offer, held[0].order
        starts_at, ends_at = _window(taker, offer, self.now)
        left = gpus
        for fill in held:
            n = min(fill.gpus, left)
            fill.gpus -= n
            left -= n
            handed = _Fill(taker, offer, fill.node_id, n, starts_at, ends_at)
            self.fills.append(handed)
            if self._movable(taker):
                self.holdings[offer.id].append(handed)
            if left == 0:
                break
        moved = _fill(holder, to, gpus, self.now, self.book)
        self.fills.extend(moved)
        self.holdings[to.id].extend(moved)
        self.moved.extend(moved)
        self._room_update(moved)
        self.got[taker.id] += gpus

    def run(self, orders: list[_Order]) -> list[_Fill]:
        for taker in orders:
            if not self.open_offers:
                break
            if self._movable(taker):
                self.place(taker)
        for order in orders:
            if not self.open_offers:
                break
            waiting = order.gang and not self.got[order.id] and order.previous_lease_id is None
            if waiting and self.free_gpus() >= order.need:  # it frees up one GPU per GPU it gets
                self.gang(order)
        self.exchange()
        merged: dict[tuple[int, int, int], _Fill] = {}
        for fill in self.fills:
            if fill.gpus <= 0:
                continue
            key = (fill.order.id, fill.offer.id, fill.node_id)
            if key in merged:
                merged[key].gpus += fill.gpus
            else:
                merged[key] = fill
        return list(merged.values())

    def place(self, taker: _Order) -> None:
        while self.short(taker) > 0:
            placed = 0
            for move in self.moves(taker):
                placed += self.apply(move)
                if self.short(taker) == 0:
                    return
            if not placed:
                return

    def free_gpus(self) -> int:
        return sum(room for room in self.room.values() if room > 0)

    def gang(self, order: _Order) -> None:
        """A gang order still waiting: a site whose free GPUs plus those its
        movable holders could give up (each moving to free capacity at
        another site) cover the whole order. The cheapest such site - the
        gang's own asks plus what the moves cost - wins; what the moves cost
        in asks, `exchange` then wins back where it can."""
        by_site: dict[int, list[_Offer]] = defaultdict(list)
        room, dead = self.room, self.dead
        for offer in self.everything.get(order.models):
            if offer.price > order.max_price:
                break
            if offer.id in dead and room.get(offer.id, 0) <= 0:
                continue  # nothing to take there, nobody to move
            if _compatible(order, offer, self.now):
                by_site[offer.site_id].append(offer)
        best = None
        for site, offers in by_site.items():
            found = self._gang_site(order, site, offers)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
        if best is None:
            return
        _cost, free_part, handovers = best
        for offer, gpus in free_part:
            fills = _fill(order, offer, gpus, self.now, self.book)
            self.fills.extend(fills)
            self._room_update(fills)
        self.got[order.id] += sum(gpus for _offer, gpus in free_part)
        for fill, to, gpus in handovers:
            self._hand_over([fill], gpus, order, to)

    def _gang_site(self, order: _Order, site: int, offers: list[_Offer]):
        """(cost, free GPUs to take, holders' GPUs to take over) placing the
        whole gang at this site, or None."""
        room = self.room
        free_part, need = _site_take((o for o in offers if room.get(o.id, 0) > 0), order.need)
        cost = sum(offer.price * gpus for offer, gpus in free_part) * order.hours
        if need == 0:
            return cost, free_part, []
        live = [o for o in offers if o.id not in self.dead and o.id in self.holdings]
        if sum(f.gpus for o in live for f in self.holdings[o.id]) < need:
            return None
        handovers: list[tuple[_Fill, _Offer, int]] = []
        taken: dict[int, int] = defaultdict(int)  # free offer id -> GPUs promised to movers
        for offer in live:
            if need == 0:
                break
            for fill in self.holdings[offer.id]:
                if need == 0:
                    break
                if fill.gpus <= 0:
                    continue
                to = self._option_elsewhere(fill.order, site, taken)
                if to is None:
                    continue
                gpus = min(fill.gpus, need, self.room[to.id] - taken[to.id])
                taken[to.id] += gpus
                handovers.append((fill, to, gpus))
                cost += offer.price * gpus * order.hours
                cost += (to.price - offer.price) * gpus * fill.order.hours
                need -= gpus
        if need:
            return None
        return cost, free_part, handovers

    def _option_elsewhere(self, holder: _Order, site: int, taken: dict[int, int]):
        """A free offer at another site for a holder the gang would displace.
        Offers sharing nodes with another free offer are left out: promises
        to two of them could add up to more than their nodes hold."""
        if self.option(holder, None) is None:  # also advances the holder's search
            return None
        for offer in self.options[holder.id][0]:
            if (
                offer.site_id != site
                and offer.id not in self.coupled
                and self.room[offer.id] - taken[offer.id] > 0
            ):
                return offer
        return None

    def _room_update(self, fills: list[_Fill]) -> None:
        for fill in fills:  # offers sharing the nodes just used have less room too
            for other in self.sharing[fill.node_id]:
                before = self.room[other.id]
                self.room[other.id] = other.free() if other.available > 0 else 0
                if before > 0 >= self.room[other.id]:
                    self.open_offers -= 1

    def exchange(self) -> None:
        """A moved holder may be a long order now paying a dear ask for all its
        hours. Where a shorter order of the round holds a cheaper offer the
        long one can use, and can itself run on the dear offer within its bid,
        they swap GPUs: the same GPUs traded, (dear - cheap) x (long - short
        hours) less paid in all. Longest first; the short one may swap on."""
        work = sorted(
            (f for f in self.moved if f.order.hours >= self.EXCHANGE_HOURS),
            key=lambda f: -f.order.hours,
        )
        if not work:
            return
        # who could take a dear offer's place: fills of shorter orders, per GPU
        # model they accept, richest first (a partner must afford the dear ask)
        longest = max(f.order.hours for f in work)
        floor = min(f.offer.price for f in work)
        models = {f.offer.gpu_model_id for f in work}
        self.richest = defaultdict(list)
        for fills in self.holdings.values():
            for fill in fills:
                order = fill.order
                if fill.gpus > 0 and order.hours < longest and order.max_price >= floor:
                    for model in order.models & models:
                        self.richest[model].append(fill)
        for fills in self.richest.values():
            fills.sort(key=lambda f: -f.order.max_price)
        self.partners = {}
        while work:
            fill = work.pop(0)
            while fill.gpus > 0:
                partner = self._partner(fill)
                if partner is None:
                    break
                gpus = min(fill.gpus, partner.gpus)
                fill.gpus -= gpus
                partner.gpus -= gpus
                long_, short = fill.order, partner.order
                cheap, dear = partner.offer, fill.offer
                swapped = [
                    _Fill(long_, cheap, partner.node_id, gpus, *_window(long_, cheap, self.now)),
                    _Fill(short, dear, fill.node_id, gpus, *_window(short, dear, self.now)),
                ]
                self.fills.extend(swapped)
                self.holdings[cheap.id].append(swapped[0])
                self.holdings[dear.id].append(swapped[1])
                if short.hours >= self.EXCHANGE_HOURS:
                    work.append(swapped[1])

    def _pool(self, dear: _Offer) -> list[list]:
        """The fills that could take the dear offer's place: shorter orders on
        cheaper offers that can pay its ask (`_fits` says whether they can run
        on it, when asked), as one list per
        order length (shortest first), each cheapest offer first, with the
        position of its first fill that still has GPUs."""
        pool = self.partners.get(dear.id)
        if pool is None:
            by_hours: dict[int, list[_Fill]] = defaultdict(list)
            for fill in self.richest.get(dear.gpu_model_id, ()):
                if fill.order.max_price < dear.price:
                    break
                if fill.offer.price < dear.price:
                    by_hours[fill.order.hours].append(fill)
            pool = self.partners[dear.id] = [
                [hours, sorted(fills, key=lambda f: f.offer.price), 0]
                for hours, fills in sorted(by_hours.items())
            ]
        return pool

    def _fits(self, order: _Order, offer: _Offer) -> bool:
        pair = (order.id, offer.id)
        fits = self.fits.get(pair)
        if fits is None:
            fits = self.fits[pair] = _compatible(order, offer, self.now)
        return fits

    def _partner(self, fill: _Fill) -> _Fill | None:
        """The swap saving most: per shorter length, the cheapest offer whose
        holder can take the dear one and that the long order can use."""
        long_, dear = fill.order, fill.offer
        best: tuple[int, _Fill] | None = None
        for entry in self._pool(dear):
            hours, fills, start = entry
            if hours >= long_.hours:
                break
            while start < len(fills) and fills[start].gpus <= 0:
                start += 1
            entry[2] = start
            for index in range(start, len(fills)):
                other = fills[index]
                cheap = other.offer
                if (
                    other.gpus <= 0
                    or cheap.gpu_model_id not in long_.models
                    or not _compatible(long_, cheap, self.now)
                    or not self._fits(other.order, dear)
                ):
                    continue
                saving = (dear.price - cheap.price) * (long_.hours - hours)
                if best is None or saving > best[0]:
                    best = (saving, other)
                break
        return best[1] if best else None


def _rebalance(
    orders: list[_Order], fills: list[_Fill], book: _Book, now: dt.datetime
) -> list[_Fill]:
    return _Rebalance(fills, book, now).run(orders)


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
