"""The matching engine: buyers' orders meet providers' offers.

Rules (DESIGN.md, "Matching", with the priority made precise below):
- price-time priority: an order placed is matched at once against the book
  (`order_match`), taking the cheapest compatible offers first. Ties between
  offers at one price: greener site, then more reliable provider, then older
  offer. Orders left waiting are matched in rounds (`match_round`), served in
  priority order: the larger bid for the whole lease first (bid per GPU-hour
  x hours: what a round sells is a GPU for the order's hours, so that is the
  price of what the order buys; between orders of one length it is the bid),
  then the higher bid per GPU-hour, then the older order.
- a round then trades as many GPUs as it can (market/matching_book.py,
  `Rebalance`), as a call auction does: an order left short takes an offer
  an earlier fill of the round holds, when that fill's order can move to an
  offer nobody took, within its bid; a waiting gang order can take a site
  that way; and a long order moved onto a dear offer swaps with a shorter
  one on a cheaper offer. Nobody loses a GPU to it, and nobody pays more
  than its bid; committed leases never move.
- pay-as-ask: a lease carries the offer's price, never more than the bid.
- heterogeneous substitution: an order accepts a set of GPU models, or any
  model above a TFLOPS / memory floor (optionally domestic only).
- partial fills unless the order is `gang`; a gang order fills all its GPUs
  at one site in one go, or waits.

Why not highest-bid-first with cheapest offers alone (the first version):
on bench/matching.py it placed 84 % of the GPUs an LP shows allocatable and
71 % of the welfare (sum of (bid - ask) x GPU-hours). Serving the highest
bidders from the cheapest offers strands the offers only they could afford
and the orders only the cheap offers suit; and per-GPU-hour priority lets a
one-hour order outrank a three-day one worth far more to both sides. With
whole-lease priority and the rebalancing: 99 % and 98 % (closing note of
issue 3 for the figures, bench/matching_variants.py for the variants tried).

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
placeholder per value), or a binary COPY: the leases and their events are
copied under ids drawn from the lease sequence in one statement, the order
counters, status moves and their events are one UPDATE + INSERT, and offers
are updated in place (heap-only: migration 0022). What remains is mostly
PostgreSQL's own work: index maintenance and the deferred foreign-key checks
of the new rows at commit (docs/scaling.md, "Matching round phases").

Ties: with prices in integer minor units, ties are rare and no further
tie-break changed the outcome measurably (bench/matching_variants.py), so
none is added.

Layout: this module is the engine's entry (order_match, match_round,
order_quote); market/matching_book.py holds the snapshot and the plan (no
writes), market/matching_store.py the locks, the re-check and the writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q

from core import clock
from market.matching.book import (
    OPEN_STATUSES,
    Book,
    BookOrder,
    Fill,
    RoundResult,
    book_cutoff,
    book_load,
    orders_load,
)
from market.matching.plan import plan_gang, plan_partial
from market.matching.rebalance import round_rebalance
from market.matching.store import round_commit
from market.models import GPUModel, Lease, Order

logger = logging.getLogger(__name__)


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
    now = now or clock.now()
    queryset = Order.objects.filter(pk=order_id, status__in=OPEN_STATUSES)
    if previous_lease_id is None:
        queryset = queryset.filter(on_book(now))
    models = list(GPUModel.objects.all())
    orders = [o for o in orders_load(queryset, models=models) if o.need > 0 and o.models]
    if not orders:
        return []
    order = orders[0]
    if previous_lease_id is not None:
        previous = Lease.objects.get(pk=previous_lease_id, order_id=order_id)
        order.need = min(order.need, previous.gpu_count)
        # a pre-empted lease was cut short: the rest of the window it was matched with
        order.ends_at = previous.original_ends_at or previous.ends_at
        order.start_by = None
        order.previous_lease_id = previous_lease_id
        if order.ends_at <= now:
            return []
    fills = plan_from_cheapest([order], now=now, exclude_node_ids=exclude_node_ids)
    lease_ids = round_commit(fills, now=now, result=RoundResult())
    return list(Lease.objects.filter(id__in=lease_ids).order_by("id"))


def orders_match(*, order_ids: Collection[int], now: dt.datetime | None = None) -> list[int]:
    """Match orders just placed, at once and in the order they were placed
    (price-time priority, as `order_match` one by one would), from one
    snapshot of the book and in one commit: what a coalesced run does for
    every order placed since the last one. Returns the new leases' ids."""
    now = now or clock.now()
    queryset = Order.objects.filter(pk__in=order_ids, status__in=OPEN_STATUSES, start_by__gt=now)
    models = list(GPUModel.objects.all())
    orders = [o for o in orders_load(queryset, models=models) if o.need > 0 and o.models]
    if not orders:
        return []
    orders.sort(key=lambda o: o.id)
    return round_commit(plan_from_cheapest(orders, now=now), now=now, result=RoundResult())


# The cheapest part of the book an order-time match reads first: offers up to
# the price where they hold this many GPUs, or this many times the orders' need.
SNAPSHOT_MIN_GPUS = 512
SNAPSHOT_NEED_FACTOR = 4
SNAPSHOT_GROWTH = 8


def plan_from_cheapest(
    orders: list[BookOrder], *, now: dt.datetime, exclude_node_ids: Collection[int] = frozenset()
) -> list[Fill]:
    """Plan `orders` (in the order given, no rebalancing) from the cheapest
    part of the book, reading more of it only when the plan might differ.

    Reading the whole book for a handful of orders was most of an order-time
    match (100,000 offers: 0.7 s a run, a core's worth behind a stream of
    placements). The cheapest offers up to a price P (`book_cutoff`) are a
    prefix of the book in its order, ties at P included, so each order walks
    the same offers in the same order as it would in the whole book, until the
    prefix ends. The plan is the whole book's plan when every order either
    filled completely inside the prefix or bids below P (its walk stops at an
    offer dearer than its bid, inside the prefix): by induction over the
    orders, each takes what it would have taken. Otherwise - an order left
    short that could pay more than P, or a gang order that could (its cheapest
    site may lie past P) - the prefix grows eightfold and the plan is redone,
    up to the whole book. Tested against the whole book's plan."""
    model_ids = frozenset().union(*(o.models for o in orders))
    max_price = max(o.max_price for o in orders)
    gpus = max(SNAPSHOT_MIN_GPUS, SNAPSHOT_NEED_FACTOR * sum(o.need for o in orders))
    while True:
        cutoff = book_cutoff(now=now, model_ids=model_ids, max_price=max_price, gpus=gpus)
        book = book_load(
            now=now,
            model_ids=model_ids,
            max_price=max_price if cutoff is None else cutoff,
            exclude_node_ids=exclude_node_ids,
        )
        fills = plan(orders, book, now, rebalance=False)
        if cutoff is None or _plan_is_whole_book(orders, fills, cutoff):
            return fills
        gpus *= SNAPSHOT_GROWTH


def _plan_is_whole_book(orders: list[BookOrder], fills: list[Fill], cutoff: int) -> bool:
    got: dict[int, int] = {}
    for fill in fills:
        got[fill.order.id] = got.get(fill.order.id, 0) + fill.gpus
    return all(
        order.max_price < cutoff or (not order.gang and got.get(order.id, 0) >= order.need)
        for order in orders
    )


@contextlib.contextmanager
def _gc_paused():
    """A round allocates a few hundred thousand short-lived objects, none in
    reference cycles: the cyclic collector would walk them again and again
    (about a tenth of a large round, unevenly). It runs once, after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def on_book(now: dt.datetime) -> Q:
    """Orders still standing: before their start-by deadline and good-till.
    (A round matches good-till orders only: an immediate-or-cancel order is
    matched once, by the request placing it.)"""
    return Q(start_by__gt=now) & (Q(good_till__isnull=True) | Q(good_till__gt=now))


def _priority(order: BookOrder) -> tuple:
    """Price priority on what a round sells - a GPU for the order's hours:
    the bid for the whole lease (bid x hours) first, then the bid per
    GPU-hour, then the older order."""
    return (-order.max_price * order.hours, -order.max_price, order.id)


def match_round(*, now: dt.datetime | None = None) -> RoundResult:
    """Match every open order against the whole book, in priority order, then
    rebalance: one snapshot, one in-memory plan, one committing transaction."""
    now = now or clock.now()
    with _gc_paused():
        started = time.perf_counter()
        models = list(GPUModel.objects.all())
        queryset = Order.objects.filter(
            on_book(now), status__in=OPEN_STATUSES, time_in_force=Order.TimeInForce.GOOD_TILL
        )
        orders = [o for o in orders_load(queryset, models=models) if o.need > 0 and o.models]
        result = RoundResult(orders_considered=len(orders))
        if not orders:
            return result
        orders.sort(key=_priority)
        book = book_load(now=now)
        planned = time.perf_counter()
        fills = plan(orders, book, now)
        written = time.perf_counter()
        round_commit(fills, now=now, result=result)
        result.phases = {
            "snapshot": planned - started,
            "plan": written - planned,
            "write": time.perf_counter() - written,
        }
    logger.info(
        "matching round",
        extra={
            "orders": result.orders_considered,
            "leases": result.leases_created,
            "gpus": result.gpus_allocated,
            "conflicts": result.conflicts,
            **{f"{name}_seconds": round(s, 3) for name, s in result.phases.items()},
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
    verified_only: bool = False,
    interruptible: bool = False,
    start_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> list[QuoteLine]:
    """What an order like this would get if placed now: a dry run of the
    engine on the current book (nothing is locked or written)."""
    now = now or clock.now()
    order = BookOrder(
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
        verified_only=verified_only,
        interruptible=interruptible,
        start_at=start_at,
    )
    if not model_ids or gpu_count < 1 or hours < 1:
        return []
    book = book_load(now=now, model_ids=model_ids, max_price=max_price_amount)
    lines: dict[int, QuoteLine] = {}
    for fill in plan([order], book, now):
        line = lines.get(fill.offer.id)
        gpus = fill.gpus + (line.gpus if line else 0)
        lines[fill.offer.id] = QuoteLine(
            fill.offer.id, fill.offer.gpu_model_id, gpus, fill.offer.price
        )
    return list(lines.values())


def plan(
    orders: list[BookOrder], book: Book, now: dt.datetime, *, rebalance: bool = True
) -> list[Fill]:
    """Orders in priority order, each from its cheapest compatible offers; then
    the round places what is left over by moving earlier fills (`round_rebalance`)."""
    fills: list[Fill] = []
    book.expect(orders)
    for order in orders:
        fills.extend((plan_gang if order.gang else plan_partial)(order, book, now))
    if rebalance and len(orders) > 1:
        fills = round_rebalance(orders, fills, book, now)
    return fills
