"""Node health from the agents' telemetry (run every few seconds by Celery beat).

A node is
- offline when no batch arrived for TELEMETRY_SILENT_INTERVALS reporting
  intervals (the heartbeat is the time a batch was received, not the samples'
  own timestamps, which may be old after an outage);
- degraded when a GPU was reported missing, or a GPU's cumulative XID or ECC
  error counter rose since the last check (a counter that went down means the
  agent restarted and counts from zero again; a rise after that is still new);
- back online after HEALTH_CLEAN_PERIOD_SECONDS without any fault.
Nodes in maintenance are left alone, and so are nodes awaiting their agent
(a new node is not a failed node; ingestion brings it online on its first
batch). Every change of state is a
NodeHealthEvent with the reason: the provider's health history.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q

from market.models import Node, NodeHealthCursor, NodeHealthEvent, TelemetrySample
from market.verification import node_deverify

logger = logging.getLogger(__name__)

FAULTY_STATES = (Node.State.DEGRADED, Node.State.OFFLINE)
LEFT_ALONE = (Node.State.MAINTENANCE, Node.State.AWAITING_AGENT)


def silence_limit() -> dt.timedelta:
    return dt.timedelta(
        seconds=settings.TELEMETRY_INTERVAL_SECONDS * settings.TELEMETRY_SILENT_INTERVALS
    )


def node_state_change(*, node: Node, to_state: str, reason: str, now: dt.datetime) -> bool:
    """Move `node` from its current state to `to_state`, recording why.

    Returns False (and records nothing) if the node's state changed meanwhile.
    """
    from_state = node.state
    with transaction.atomic():
        changed = Node.objects.filter(pk=node.pk, state=from_state).update(
            state=to_state, state_reason=reason[:200], state_changed_at=now
        )
        if changed != 1:
            return False
        NodeHealthEvent.objects.create(
            node=node, from_state=from_state, to_state=to_state, reason=reason[:200], at=now
        )
    node.state, node.state_reason, node.state_changed_at = to_state, reason[:200], now
    logger.info(
        "node state changed",
        extra={"node": node.pk, "from": from_state, "to": to_state, "reason": reason},
    )
    return True


def _baseline(before: int, lowest_new: int) -> int:
    """What a counter is compared with: its value at the last check, or — if
    it went below that (the agent restarted) — its lowest new value."""
    return before if lowest_new >= before else lowest_new


def _sample_faults(*, node: Node, cursor: NodeHealthCursor) -> tuple[list[str], int, dict]:
    """Faults in the samples received since the last check; the new cursor position."""
    per_gpu = (
        TelemetrySample.objects.filter(node=node, seq__gt=cursor.last_seq)
        .values("gpu_index")
        .annotate(
            last_seq=Max("seq"),
            missing=Count("seq", filter=Q(missing=True)),
            xid_max=Max("xid_errors"),
            xid_min=Min("xid_errors"),
            ecc_max=Max("ecc_errors"),
            ecc_min=Min("ecc_errors"),
        )
        .order_by("gpu_index")
    )
    faults: list[str] = []
    counters = dict(cursor.error_counters)
    last_seq = cursor.last_seq
    for row in per_gpu:
        gpu = row["gpu_index"]
        # Before a GPU's first check its counters are history, not news.
        xid_before, ecc_before = counters.get(str(gpu), (row["xid_min"], row["ecc_min"]))
        if row["missing"]:
            faults.append(f"GPU {gpu} missing")
        if row["xid_max"] > _baseline(xid_before, row["xid_min"]):
            faults.append(f"new XID errors on GPU {gpu}")
        if row["ecc_max"] > _baseline(ecc_before, row["ecc_min"]):
            faults.append(f"new ECC errors on GPU {gpu}")
        counters[str(gpu)] = (row["xid_max"], row["ecc_max"])
        last_seq = max(last_seq, row["last_seq"])
    return faults, last_seq, counters


def node_health_check(*, node_id: int, now: dt.datetime) -> str | None:
    """Re-assess one node; returns its state afterwards (None if it is gone)."""
    with transaction.atomic():
        node = Node.objects.select_for_update().filter(pk=node_id).first()
        if node is None or node.state in LEFT_ALONE or node.last_seen_at is None:
            return node.state if node else None
        cursor, _ = NodeHealthCursor.objects.select_for_update().get_or_create(node=node)
        faults, cursor.last_seq, cursor.error_counters = _sample_faults(node=node, cursor=cursor)
        silent_for = now - node.last_seen_at
        target = Node.State.DEGRADED if faults else None
        if silent_for > silence_limit():
            faults.insert(0, f"no telemetry for {int(silent_for.total_seconds())} s")
            target = Node.State.OFFLINE
        if faults:
            cursor.last_fault_at, cursor.last_fault_reason = now, "; ".join(faults)[:200]
        cursor.save()
        if any("XID" in fault or "ECC" in fault for fault in faults):
            node_deverify(node=node, reason=f"de-verified: {'; '.join(faults)}")
        if target and node.state != target:
            node_state_change(node=node, to_state=target, reason="; ".join(faults), now=now)
        elif not faults and node.state in FAULTY_STATES:
            clean_since = cursor.last_fault_at or node.state_changed_at or now
            clean_for = (now - clean_since).total_seconds()
            if clean_for >= settings.HEALTH_CLEAN_PERIOD_SECONDS:
                node_state_change(
                    node=node,
                    to_state=Node.State.ONLINE,
                    reason=f"clean for {int(clean_for)} s after: {cursor.last_fault_reason}",
                    now=now,
                )
        return node.state


def nodes_health_check(*, now: dt.datetime) -> int:
    """Re-assess every node that reports; returns how many changed state."""
    changed = 0
    rows = Node.objects.exclude(state__in=LEFT_ALONE).exclude(last_seen_at=None)
    for node_id, state in rows.values_list("pk", "state"):
        changed += node_health_check(node_id=node_id, now=now) != state
    return changed
