"""Node maintenance: a provider drains a node with notice, never by editing rows.

`node_drain_schedule` announces maintenance at `drain_at` (now + notice): from
then on the node takes no new lease (the book skips it) and the buyers of its
leases see the date on their leases. At `drain_at` the beat's
`nodes_drain_due` puts the node into maintenance and ends its leases there:
a running lease whose order allows failover fails (the failover task moves
its remaining hours to another offer), any other running lease completes at
`drain_at` (billed to that second), and a lease not yet started is
cancelled. `node_drain_cancel` withdraws a drain still ahead, or brings a
node back from maintenance (online again on its agent's next batch).
"""

import datetime as dt

from django.contrib.auth.models import User
from django.db import transaction

from core import clock, limits
from core.errors import ApplicationError, Conflict
from market.leases import LIVE_STATUSES, lease_fail, leases_stop
from market.models import Lease, Node, Order
from market.telemetry import node_state_change


def node_drain_schedule(
    *, node: Node, notice_minutes: int, reason: str, actor: User | None
) -> Node:
    """Announce maintenance of `node` in `notice_minutes` (0 = at the next
    run of the drain task). A drain already announced is moved to the new time."""
    if not 0 <= notice_minutes <= limits.MAX_DRAIN_NOTICE_MINUTES:
        raise ApplicationError(
            "The notice is out of range.",
            errors={
                "notice_minutes": [
                    f"Give 0 to {limits.MAX_DRAIN_NOTICE_MINUTES} minutes of notice."
                ]
            },
        )
    at = clock.now().replace(microsecond=0) + dt.timedelta(minutes=notice_minutes)
    with transaction.atomic():
        moved = (
            Node.objects.filter(pk=node.pk)
            .exclude(state=Node.State.MAINTENANCE)
            .update(drain_at=at, drain_reason=reason[:200])
        )
        if moved != 1:
            raise Conflict(
                "The node is already in maintenance.",
                errors={"state": ["The node is in maintenance."]},
            )
    node.refresh_from_db()
    return node


def node_drain_cancel(*, node: Node, actor: User | None) -> Node:
    """Withdraw a drain still ahead, or end a node's maintenance: it awaits its
    agent and is matched again once the agent reports."""
    with transaction.atomic():
        locked = Node.objects.select_for_update().get(pk=node.pk)
        if locked.state == Node.State.MAINTENANCE:
            node_state_change(
                node=locked,
                to_state=Node.State.AWAITING_AGENT,
                reason="maintenance over; back in service once its agent reports",
                now=clock.now(),
            )
        elif locked.drain_at is None:
            raise Conflict(
                "The node has no drain scheduled.", errors={"drain_at": ["No drain scheduled."]}
            )
        Node.objects.filter(pk=node.pk).update(drain_at=None, drain_reason="")
    node.refresh_from_db()
    return node


def node_drain(*, node_id: int) -> int:
    """Put one node whose notice has run out into maintenance and end its
    leases at `drain_at`. Returns how many leases ended (or failed over)."""
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(pk=node_id).first()
        if node is None or node.drain_at is None or node.drain_at > clock.now():
            return 0
        at, why = node.drain_at, "node drained for maintenance"
        if node.drain_reason:
            why = f"{why}: {node.drain_reason}"
        if node.state != Node.State.MAINTENANCE:
            node_state_change(node=node, to_state=Node.State.MAINTENANCE, reason=why, now=at)
        Node.objects.filter(pk=node.pk).update(drain_at=None)
    live = Lease.objects.filter(node_id=node_id, status__in=LIVE_STATUSES).select_related("order")
    ended = 0
    for lease in live.order_by("order_id", "pk"):
        if lease.status == Lease.Status.ACTIVE and lease.order.failover_allowed:
            ended += lease_fail(lease_id=lease.pk, reason=why, now=at) is not None
            continue
        with transaction.atomic():
            Order.objects.select_for_update().filter(pk=lease.order_id).first()
            ended += len(leases_stop(leases=[lease], at=at, actor=None, reason=why))
    return ended


def nodes_drain_due(*, now: dt.datetime | None = None) -> int:
    """Drain every node whose notice has run out; returns how many leases ended."""
    now = now or clock.now()
    due = Node.objects.filter(drain_at__lte=now).order_by("pk").values_list("pk", flat=True)
    return sum(node_drain(node_id=pk) for pk in list(due))
