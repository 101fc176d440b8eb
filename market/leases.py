"""Lease lifecycle (pending → active → completed; pending/active → cancelled).

A buyer may end a lease before its end (`lease_end_now`): an active lease
completes at that second (metering closes there, so the invoice bills it to
the second), a pending one is cancelled; either way its GPUs go back to the
offer at once and the reason is on the lease's history. Failure and
migration belong to the telemetry part. Capacity accounting: a
lease holds its node's GPUs while pending or active (market.matching counts
them), so ending a lease frees the node by itself; the offer's
`gpus_available` gets the GPUs back here, unless the offer was withdrawn.
"""

import datetime as dt
import logging
from collections import defaultdict

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q

from accounts.webhooks import webhook_emit
from core import clock
from core.cache import generation_bump
from core.errors import Conflict
from core.outbox import outbox_enqueue
from core.transitions import transition
from market.matching import order_match
from market.models import Lease, LeaseEvent, Node, Offer, Order, OrderEvent
from market.models.capacity import BOARD_CACHE
from market.resale import resales_close

logger = logging.getLogger(__name__)


def _offers_give_back(returned: dict[int, int]) -> None:
    """Return GPUs to their offers, rows locked in primary-key order (the
    matching engine's lock order for offers)."""
    if not returned:
        return
    live = (
        Offer.objects.select_for_update(no_key=True)
        .filter(id__in=returned)
        .exclude(status=Offer.Status.WITHDRAWN)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for offer_id in list(live):
        Offer.objects.filter(pk=offer_id).update(
            gpus_available=F("gpus_available") + returned[offer_id]
        )
    generation_bump(BOARD_CACHE)


def _leases_move(
    leases: list[Lease], *, to: str, reason: str, actor: User | None, now: dt.datetime
) -> list[Lease]:
    """Move each lease from its current status to `to`, only if it is still in
    that status (core.transitions); an ending lease ends now, or at its end."""
    moved = []
    for lease in leases:
        fields = {}
        if to in (Lease.Status.COMPLETED, Lease.Status.CANCELLED):
            fields["ended_at"] = min(now, lease.ends_at)
        if transition(lease, old=lease.status, new=to, actor=actor, reason=reason, **fields):
            moved.append(lease)
    return moved


def leases_advance(*, now: dt.datetime | None = None) -> tuple[int, int]:
    """Activate pending leases whose start has come and complete active leases
    whose end has passed. Returns (activated, completed). Safe to run twice at
    once: rows being moved by another run are skipped."""
    now = now or clock.now()
    with transaction.atomic():
        starting = list(
            Lease.objects.select_for_update(skip_locked=True)
            .filter(status=Lease.Status.PENDING, starts_at__lte=now)
            .order_by("id")
        )
        activated = _leases_move(
            starting, to=Lease.Status.ACTIVE, reason="start time reached", actor=None, now=now
        )
    leases_preempt_due(now=now)
    with transaction.atomic():
        ending = list(
            Lease.objects.select_for_update(skip_locked=True)
            .filter(status=Lease.Status.ACTIVE, ends_at__lte=now, preempt_at__isnull=True)
            .order_by("id")
        )
        completed = _leases_move(
            ending, to=Lease.Status.COMPLETED, reason="end time reached", actor=None, now=now
        )
        returned: dict[int, int] = defaultdict(int)
        for lease in completed:
            returned[lease.offer_id] += lease.gpu_count
        _offers_give_back(returned)
        _leases_completed_notify([lease.pk for lease in completed])
    return len(activated), len(completed)


def _leases_completed_notify(lease_ids: list[int]) -> None:
    """Queue the subscribers of lease completion, through the outbox in the
    transaction that completed the leases.

    The one declared seam against the layering (CONTRIBUTING.md): billing, a
    layer above the market, subscribes by Celery task name in
    settings.LEASE_COMPLETED_TASKS (it refreshes the buyer's draft invoice), so
    the market imports no billing code."""
    for task_name in settings.LEASE_COMPLETED_TASKS:
        for lease_id in lease_ids:
            outbox_enqueue(
                task_name=task_name, args=[lease_id], key=f"lease-completed:{lease_id}:{task_name}"
            )


LIVE_STATUSES = (Lease.Status.PENDING, Lease.Status.ACTIVE)


def leases_ended_announce(leases: list[Lease], *, reason: str) -> None:
    """Tell the buyer's and the provider's webhook endpoints (accounts/webhooks.py)
    that leases ended before their planned end, in the caller's transaction."""
    for lease in leases:
        data = {
            "lease": lease.pk,
            "order": lease.order_id,
            "status": lease.status,
            "gpu_count": lease.gpu_count,
            "starts_at": lease.starts_at.isoformat(),
            "planned_ends_at": (lease.original_ends_at or lease.ends_at).isoformat(),
            "ended_at": lease.ended_at.isoformat() if lease.ended_at else None,
            "reason": reason,
        }
        for organisation_id in sorted({lease.buyer_id, lease.provider_id}):
            webhook_emit(
                organisation_id=organisation_id,
                event_type="lease.ended",
                data=data,
                key=f"lease.ended:{lease.pk}",
            )


def leases_stop(
    *, leases: list[Lease], at: dt.datetime, actor: User | None, reason: str
) -> list[Lease]:
    """End live leases at `at` (caller holds their order's lock): an active one
    completes then (metering stops there), a pending one is cancelled. Their
    GPUs go back to the offers and billing hears of the completed ones, all in
    the caller's transaction. Returns the leases that moved."""
    moved: list[Lease] = []
    for status, to in (
        (Lease.Status.PENDING, Lease.Status.CANCELLED),
        (Lease.Status.ACTIVE, Lease.Status.COMPLETED),
    ):
        batch = [lease for lease in leases if lease.status == status]
        # an active lease never ends before it started (`at` may be truncated)
        for lease in batch:
            when = max(at, lease.starts_at) if status == Lease.Status.ACTIVE else at
            moved += _leases_move([lease], to=to, reason=reason, actor=actor, now=when)
    returned: dict[int, int] = defaultdict(int)
    for lease in moved:
        returned[lease.offer_id] += lease.gpu_count
    _offers_give_back(returned)
    _leases_completed_notify(
        [lease.pk for lease in moved if lease.status == Lease.Status.COMPLETED]
    )
    leases_ended_announce(moved, reason=reason)
    return moved


def lease_end_now(
    *, lease: Lease, actor: User | None, reason: str = "", ended_by: str = "the buyer"
) -> Lease:
    """The buyer ends a lease now, at the current whole second: an active lease
    completes (metered and billed to that second), a pending one is cancelled;
    the GPUs go back to the offer at once. A lease that has already ended is a
    Conflict (409). `ended_by` names who ended it in its history (billing's
    funding sweep: "the exchange")."""
    at = clock.now().replace(microsecond=0)
    why = f"ended early by {ended_by}" + (f": {reason}" if reason else "")
    with transaction.atomic():
        Order.objects.select_for_update().filter(pk=lease.order_id).first()
        locked = Lease.objects.get(pk=lease.pk)
        if locked.status not in LIVE_STATUSES:
            raise Conflict(
                f"The lease is {locked.get_status_display()}; it has already ended.",
                errors={"status": [f"The lease is {locked.status}."]},
            )
        resales_close(leases=[locked], actor=actor)
        if not leases_stop(leases=[locked], at=at, actor=actor, reason=why):
            raise Conflict("The lease ended meanwhile.")
    locked.refresh_from_db()
    return locked


def leases_cancel(*, leases: list[Lease], actor: User | None, reason: str) -> list[Lease]:
    """Cancel pending or active leases (caller holds the order's lock) and give
    their GPUs back to the offers."""
    now = clock.now()
    cancellable = [
        lease for lease in leases if lease.status in (Lease.Status.PENDING, Lease.Status.ACTIVE)
    ]
    cancelled = _leases_move(
        cancellable, to=Lease.Status.CANCELLED, reason=reason, actor=actor, now=now
    )
    returned: dict[int, int] = defaultdict(int)
    for lease in cancelled:
        returned[lease.offer_id] += lease.gpu_count
    _offers_give_back(returned)
    return cancelled


def _may_rearm(order: Order) -> bool:
    return order.failover_allowed and (
        order.max_refills is None or order.refills_used < order.max_refills
    )


def _order_rearm(*, order: Order, lease: Lease, reason: str) -> None:
    """The order (locked by the caller) takes the lost lease's GPUs back into
    its unfilled part, spending one refill, and the lease is marked for its
    window's rest to be matched again (`leases_failover`)."""
    Order.objects.filter(pk=order.pk).update(
        gpus_filled=F("gpus_filled") - lease.gpu_count, refills_used=F("refills_used") + 1
    )
    Lease.objects.filter(pk=lease.pk).update(rearm=True)
    lease.rearm = True
    if order.status == Order.Status.FILLED:
        Order.objects.filter(pk=order.pk).update(status=Order.Status.PARTIALLY_FILLED)
        OrderEvent.objects.create(
            order=order,
            from_status=Order.Status.FILLED,
            to_status=Order.Status.PARTIALLY_FILLED,
            reason=reason,
        )


def leases_preempt_due(*, now: dt.datetime) -> int:
    """End every lease whose pre-emption notice has run out
    (market/matching/preempt.py); returns how many ended. Each ends at its
    `preempt_at`, billed to that second; its order re-arms within its refills
    and the rest of its window is matched again at once (later by
    `leases_failover` if nothing is free now)."""
    due = Lease.objects.filter(status__in=LIVE_STATUSES, preempt_at__lte=now).order_by("pk")
    ended = 0
    for lease_id in list(due.values_list("pk", flat=True)):
        lease = lease_preempt_end(lease_id=lease_id)
        if lease is None:
            continue
        ended += 1
        if lease.rearm:
            lease_migrate(lease=lease, now=now)
    return ended


def lease_preempt_end(*, lease_id: int) -> Lease | None:
    """A pre-empted lease's notice ran out: it completes at `preempt_at` (a
    lease that never started is cancelled) and its order re-arms if it may.
    None if it had ended already."""
    with transaction.atomic():
        lease = Lease.objects.get(pk=lease_id)
        order = Order.objects.select_for_update().get(pk=lease.order_id)
        lease.refresh_from_db()
        if lease.status not in LIVE_STATUSES or lease.preempt_at is None:
            return None
        at = lease.preempt_at
        why = "pre-empted by a higher bid; the notice ran out"
        if not leases_stop(leases=[lease], at=at, actor=None, reason=why):
            return None
        rest = (lease.original_ends_at or at) > at
        if lease.status == Lease.Status.COMPLETED and rest and _may_rearm(order):
            _order_rearm(
                order=order,
                lease=lease,
                reason=f"lease {lease.pk} pre-empted; re-arming its remaining hours",
            )
    return lease


def lease_fail(*, lease_id: int, reason: str, now: dt.datetime) -> Lease | None:
    """active → failed. With failover allowed and a refill left, the lease's
    GPUs go back to the order's unfilled part (a filled order becomes
    partially filled again) and its window's rest waits for failover.
    Returns the failed lease, or None if it was no longer active."""
    with transaction.atomic():
        lease = Lease.objects.select_related("order").get(pk=lease_id)
        order = Order.objects.select_for_update().get(pk=lease.order_id)
        moved = Lease.objects.filter(pk=lease.pk, status=Lease.Status.ACTIVE).update(
            status=Lease.Status.FAILED, ended_at=now
        )
        if moved != 1:
            return None
        LeaseEvent.objects.create(
            lease=lease,
            from_status=Lease.Status.ACTIVE,
            to_status=Lease.Status.FAILED,
            reason=reason[:200],
        )
        lease.status, lease.ended_at = Lease.Status.FAILED, now
        leases_ended_announce([lease], reason=reason[:200])
        if _may_rearm(order):
            _order_rearm(
                order=order,
                lease=lease,
                reason=f"lease {lease.pk} failed; re-matching its remaining hours",
            )
        _offers_give_back({lease.offer_id: lease.gpu_count})
    lease.refresh_from_db()
    return lease


def lease_migrate(*, lease: Lease, now: dt.datetime) -> Lease | None:
    """Re-match a lost lease's remaining hours elsewhere (a failed one, or a
    pre-empted one); failed → migrated if a replacement was found (a
    pre-empted lease stays completed). Returns the replacement lease or None."""
    replacements = order_match(
        order_id=lease.order_id,
        exclude_node_ids={lease.node_id},
        previous_lease_id=lease.pk,
        now=now,
    )
    if not replacements:
        logger.info("failover waits for capacity", extra={"lease": lease.pk})
        return None
    first = next(r for r in replacements if r.previous_lease_id == lease.pk)
    with transaction.atomic():
        if Lease.objects.filter(pk=lease.pk, status=Lease.Status.FAILED).update(
            status=Lease.Status.MIGRATED
        ):
            LeaseEvent.objects.create(
                lease=lease,
                from_status=Lease.Status.FAILED,
                to_status=Lease.Status.MIGRATED,
                reason=f"remaining hours moved to lease {first.pk}",
            )
            lease.status = Lease.Status.MIGRATED
    return first


def leases_failover(*, now: dt.datetime) -> int:
    """Fail the leases of nodes faulty for long enough (where the order allows
    failover) and re-match every lost lease still waiting (failed, or
    pre-empted, and re-armed); returns how many replacements were made."""
    faulty_since = now - dt.timedelta(seconds=settings.FAILOVER_AFTER_SECONDS)
    # A node offline for silence whose agent has reported again is recovering
    # (often the exchange itself was restarted): let health bring it back
    # rather than moving the buyer's work away from a node that answers.
    still_faulty = Q(node__state=Node.State.DEGRADED) | Q(
        Q(node__last_seen_at__isnull=True) | Q(node__last_seen_at__lte=faulty_since),
        node__state=Node.State.OFFLINE,
    )
    doomed = Lease.objects.filter(
        still_faulty,
        status=Lease.Status.ACTIVE,
        order__failover_allowed=True,
        node__state_changed_at__lte=faulty_since,
    ).select_related("node")
    for lease in list(doomed):
        reason = f"node {lease.node.state}: {lease.node.state_reason}"
        lease_fail(lease_id=lease.pk, reason=reason, now=now)
    waiting = (
        Lease.objects.filter(rearm=True, next_lease__isnull=True)
        .filter(
            Q(status=Lease.Status.FAILED, ends_at__gt=now)
            | Q(status=Lease.Status.COMPLETED, original_ends_at__gt=now)
        )
        .order_by("ended_at", "pk")
    )
    return sum(lease_migrate(lease=lease, now=now) is not None for lease in list(waiting))
