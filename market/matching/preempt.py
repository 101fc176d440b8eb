"""Pre-emption: a higher bid takes interruptible capacity back, with notice.

A provider may list a node's GPUs twice: at its regular ask, and cheaper as
interruptible (`Offer.interruptible`). Interruptible offers fill only orders
that accept them (`Order.interruptible`). When a standing order that does not
(it wants capacity that stays) still lacks GPUs after matching, and a regular
offer it can take has GPUs its node cannot give because interruptible leases
hold them, the order pre-empts those leases - only leases whose orders bid
less per GPU-hour than it does, the lowest bid first, then the newest lease:

- the pre-empted lease ends at `preempt_at` = now + the notice
  (settings.PREEMPTION_NOTICE_MINUTES): its `ends_at` is brought forward, the
  end it was matched with kept in `original_ends_at`; its buyer sees
  `preempt_at` on the lease and an event in its history at once;
- the pre-empting lease starts at `preempt_at`, on the GPUs the notice frees;
- at `preempt_at` the pre-empted lease completes (market.leases), billed to
  that second, and its order re-arms within its refills: the rest of the
  window is matched again from the best offer then (the failover path).

Node capacity stays exact: book.held_gpus counts a node with a lease under
notice by time, so a lease starting now still sees the pre-empted one until
its notice runs out, and the pre-empting one is counted from its start.

Gang orders do not pre-empt (they wait for a whole site), nor do
immediate-or-cancel orders (nothing starts immediately after a notice).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F

from accounts.webhooks import webhook_emit
from core import clock
from market.matching.book import (
    HOLDING_STATUSES,
    OPEN_STATUSES,
    BookOrder,
    Fill,
    RoundResult,
    book_load,
    held_gpus,
    orders_load,
)
from market.matching.engine import on_book
from market.matching.plan import compatible
from market.matching.store import round_commit
from market.models import GPUModel, Lease, LeaseEvent, Node, Order


@dataclass(slots=True)
class _Victim:
    lease_id: int
    node_id: int
    gpus: int
    status: str


class _Lost(Exception):
    """Something moved under the locks: undo this pre-emption, the next round retries."""


def notice() -> dt.timedelta:
    return dt.timedelta(minutes=settings.PREEMPTION_NOTICE_MINUTES)


def _exposed():
    """Live leases on interruptible offers not yet under notice."""
    return Lease.objects.filter(
        status__in=HOLDING_STATUSES, offer__interruptible=True, preempt_at__isnull=True
    )


def orders_preempt(
    *, now: dt.datetime | None = None, order_ids: Collection[int] | None = None
) -> list[int]:
    """Let standing orders that do not accept interruptible capacity and still
    lack GPUs pre-empt lower bids' interruptible leases (module docstring), in
    the round's priority order. Returns the pre-empting leases' ids."""
    now = now or clock.now()
    if order_ids is None and not _exposed().exists():
        return []  # the round, with nothing to pre-empt: no need to load every open order
    queryset = Order.objects.filter(
        on_book(now),
        status__in=OPEN_STATUSES,
        time_in_force=Order.TimeInForce.GOOD_TILL,
        interruptible=False,
        gang=False,
    )
    if order_ids is not None:
        queryset = queryset.filter(pk__in=order_ids)
    models = list(GPUModel.objects.all())
    orders = [o for o in orders_load(queryset, models=models) if o.need > 0 and o.models]
    # after an order-time match most orders are filled: nothing left to look at
    # (the live leases on interruptible offers are a scan of every live lease)
    if not orders or (order_ids is not None and not _exposed().exists()):
        return []
    orders.sort(key=lambda o: (-o.max_price * o.hours, -o.max_price, o.id))
    lease_ids: list[int] = []
    for order in orders:
        lease_ids += order_preempt(order=order, now=now)
    return lease_ids


def order_preempt(*, order: BookOrder, now: dt.datetime) -> list[int]:
    """Plan and commit one order's pre-emptions; returns its new leases' ids."""
    at = now.replace(microsecond=0) + notice()
    if order.start_by is not None and at > order.start_by:
        return []
    book = book_load(now=now, model_ids=order.models, max_price=order.max_price)
    offers = [
        offer
        for offer in book.offers
        if not offer.interruptible
        and offer.available > 0
        and offer.available_from <= at
        and offer.price <= order.max_price
        and compatible(order, offer, at)
    ]
    node_ids = {node.id for offer in offers for node in offer.nodes}
    # free from the notice's end on: leases already under notice have ended by then
    held = held_gpus(node_ids, since=at)
    free_then = {
        pk: count - held.get(pk, 0)
        for pk, count in Node.objects.filter(id__in=node_ids).values_list("id", "gpu_count")
    }
    waiting: dict[int, list[_Victim]] = defaultdict(list)
    for row in (
        _exposed()
        .filter(
            node_id__in=node_ids,
            order__max_price_amount__lt=order.max_price,
            starts_at__lt=at,
            ends_at__gt=at,
        )
        .order_by("order__max_price_amount", "-pk")
        .values_list("pk", "node_id", "gpu_count", "status")
    ):
        waiting[row[1]].append(_Victim(*row))
    fills: list[Fill] = []
    victims: list[_Victim] = []
    need = order.need
    for offer in offers:
        for node in sorted(offer.nodes, key=lambda n: free_then[n.id], reverse=True):
            want = min(need, offer.available)
            if want <= 0:
                break
            free = free_then[node.id]
            taken: list[_Victim] = []
            while free < want and waiting[node.id]:
                victim = waiting[node.id].pop(0)
                taken.append(victim)
                free += victim.gpus
            gpus = min(want, free)
            if gpus <= 0 or (not taken and node.free >= gpus):
                continue  # GPUs free now are plain matching's
            victims += taken
            free_then[node.id] = free - gpus
            offer.available -= gpus
            need -= gpus
            fills.append(Fill(order, offer, node.id, gpus, at, at + order.duration))
    if not fills:
        return []
    try:
        return _commit(fills, victims, at=at, now=now)
    except _Lost:
        return []


def _commit(fills: list[Fill], victims: list[_Victim], *, at: dt.datetime, now: dt.datetime):
    """Give the victims notice and write the pre-empting leases, in one
    transaction with the engine's lock order (nodes, orders, offers): either
    both happen or neither."""
    why = (
        f"pre-empted by a higher bid: ends at {at:%Y-%m-%d %H:%M:%S} UTC, "
        f"after {settings.PREEMPTION_NOTICE_MINUTES} minutes' notice"
    )
    with transaction.atomic():
        list(
            Node.objects.select_for_update(no_key=True)
            .filter(id__in={v.node_id for v in victims})
            .order_by("id")
            .values_list("id", flat=True)
        )
        ids = sorted(v.lease_id for v in victims)
        marked = Lease.objects.filter(
            pk__in=ids, status__in=HOLDING_STATUSES, preempt_at__isnull=True, ends_at__gt=at
        ).update(preempt_at=at, original_ends_at=F("ends_at"), ends_at=at)
        if marked != len(ids):
            raise _Lost
        LeaseEvent.objects.bulk_create(
            LeaseEvent(lease_id=v.lease_id, from_status=v.status, to_status=v.status, reason=why)
            for v in victims
        )
        _notices_announce(ids, at=at, why=why)
        result = RoundResult()
        lease_ids = round_commit(fills, now=now, result=result, since=at)
        if result.gpus_allocated != sum(fill.gpus for fill in fills):
            raise _Lost
    return lease_ids


def _notices_announce(lease_ids: list[int], *, at: dt.datetime, why: str) -> None:
    """The buyer's webhook endpoints hear of the notice when it is given
    (accounts/webhooks.py); the order and lease pages show it too."""
    for lease in Lease.objects.filter(pk__in=lease_ids).order_by("pk"):
        webhook_emit(
            organisation_id=lease.buyer_id,
            event_type="lease.preemption_notice",
            data={
                "lease": lease.pk,
                "order": lease.order_id,
                "gpu_count": lease.gpu_count,
                "ends_at": at.isoformat(),
                "planned_ends_at": (lease.original_ends_at or at).isoformat(),
                "notice_minutes": settings.PREEMPTION_NOTICE_MINUTES,
                "reason": why,
            },
            key=f"lease.preemption_notice:{lease.pk}",
        )
