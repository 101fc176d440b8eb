"""Failover: a lease whose node has been faulty (degraded or offline) for
FAILOVER_AFTER_SECONDS moves its remaining hours to another compatible offer.

Lease statuses: active → failed (node fault, GPUs taken off the order) →
migrated once a replacement lease exists; the replacement points back through
`previous_lease`, so the buyer sees one order with its history. Where no
capacity exists the failed lease waits: every run retries it (the matching
engine ignores the order's start-by deadline for a failover) until a
replacement is found or the failed lease's window is over.

Orders that do not allow failover keep their lease: the fault time is metered
as lost (not billed) and the lease continues when the node recovers.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from market.leases import _offers_give_back
from market.matching import order_match
from market.models import Lease, LeaseEvent, Node, Order, OrderEvent

logger = logging.getLogger(__name__)


def lease_fail(*, lease_id: int, reason: str, now: dt.datetime) -> Lease | None:
    """active → failed. With failover allowed, the lease's GPUs go back to the
    order's unfilled part (a filled order becomes partially filled again).
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
        if order.failover_allowed:
            Order.objects.filter(pk=order.pk).update(gpus_filled=F("gpus_filled") - lease.gpu_count)
            if order.status == Order.Status.FILLED:
                Order.objects.filter(pk=order.pk).update(status=Order.Status.PARTIALLY_FILLED)
                OrderEvent.objects.create(
                    order=order,
                    from_status=Order.Status.FILLED,
                    to_status=Order.Status.PARTIALLY_FILLED,
                    reason=f"lease {lease.pk} failed; re-matching its remaining hours",
                )
        _offers_give_back({lease.offer_id: lease.gpu_count})
    lease.refresh_from_db()
    return lease


def lease_migrate(*, lease: Lease, now: dt.datetime) -> Lease | None:
    """Re-match a failed lease's remaining hours elsewhere; failed → migrated
    if a replacement was found. Returns the replacement lease or None."""
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
    failover) and re-match every failed lease still waiting; returns how many
    replacements were made."""
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
    waiting = Lease.objects.filter(
        status=Lease.Status.FAILED,
        order__failover_allowed=True,
        next_lease__isnull=True,
        ends_at__gt=now,
    ).order_by("ended_at", "pk")
    return sum(lease_migrate(lease=lease, now=now) is not None for lease in list(waiting))
