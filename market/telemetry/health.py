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

A check is set-based: one grouped query reads, for every node at once, what
its GPUs reported since its cursor, and one statement moves all the cursors;
only the nodes that change state are written one by one (bench/health.py
times it beside a bare aggregate scan of the same samples).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q

from core.postgres import pg_array
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


def _gpu_faults(rows: list[dict], cursor: NodeHealthCursor) -> tuple[list[str], int, dict]:
    """Faults in one node's per-GPU aggregates of the samples received since
    the last check; the new cursor position and counters."""
    faults: list[str] = []
    counters = dict(cursor.error_counters)
    last_seq = cursor.last_seq
    for row in rows:
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


_GPU_FIELDS = ("gpu_index", "last_seq", "missing", "xid_max", "xid_min", "ecc_max", "ecc_min")


# Samples stamped longer ago than this are history, not news: a check reads
# the samples after each node's cursor within this time, so that on PostgreSQL
# it reads the last day partitions only, not every day kept.
HEALTH_LOOKBACK = dt.timedelta(days=1)


def _per_gpu_since_cursors(
    cursors: dict[int, NodeHealthCursor], *, now: dt.datetime
) -> dict[int, list[dict]]:
    """One grouped query for every node: per node and GPU, the samples after
    its cursor."""
    since = now - HEALTH_LOOKBACK
    if connection.vendor == "postgresql":
        rows = _per_gpu_postgres(cursors, since=since)
    else:
        rows = list(
            TelemetrySample.objects.filter(
                node_id__in=list(cursors),
                seq__gt=F("node__health_cursor__last_seq"),
                ts__gte=since,
            )
            .values("node_id", "gpu_index")
            .annotate(
                last_seq=Max("seq"),
                missing=Count("seq", filter=Q(missing=True)),
                xid_max=Max("xid_errors"),
                xid_min=Min("xid_errors"),
                ecc_max=Max("ecc_errors"),
                ecc_min=Min("ecc_errors"),
            )
            .values_list("node_id", *_GPU_FIELDS)
            .order_by("node_id", "gpu_index")
        )
    per_node: dict[int, list[dict]] = defaultdict(list)
    for node_id, *values in rows:
        per_node[node_id].append(dict(zip(_GPU_FIELDS, values, strict=True)))
    return per_node


# LATERAL: for each node, an index range scan of (node, seq > its cursor) in the
# day partitions since `since` — the new samples only, however long the day.
_PER_GPU_SQL = """
SELECT c.node_id, g.*
FROM unnest(%(nodes)s::bigint[], %(seqs)s::bigint[]) AS c(node_id, last_seq)
CROSS JOIN LATERAL (
    SELECT s.gpu_index, max(s.seq), count(*) FILTER (WHERE s.missing),
           max(s.xid_errors), min(s.xid_errors), max(s.ecc_errors), min(s.ecc_errors)
    FROM market_telemetrysample s
    WHERE s.node_id = c.node_id AND s.seq > c.last_seq AND s.ts >= %(since)s
    GROUP BY s.gpu_index
) AS g
ORDER BY c.node_id, g.gpu_index
"""


def _per_gpu_postgres(cursors: dict[int, NodeHealthCursor], *, since: dt.datetime) -> list:
    params: dict[str, str | dt.datetime] = {
        "nodes": pg_array(cursors),
        "seqs": pg_array(c.last_seq for c in cursors.values()),
        "since": since,
    }
    with connection.cursor() as db:
        db.execute(_PER_GPU_SQL, params)
        return db.fetchall()


def _assess(
    *, state: str, state_changed_at, last_seen_at, cursor: NodeHealthCursor, rows, now
) -> tuple[str | None, str, bool]:
    """Move the cursor over the new samples; the state the node should move
    to (None: stays), why, and whether a GPU's error counters rose (the node
    then loses its verification)."""
    faults, cursor.last_seq, cursor.error_counters = _gpu_faults(rows, cursor)
    silent_for = now - last_seen_at
    target = Node.State.DEGRADED if faults else None
    if silent_for > silence_limit():
        faults.insert(0, f"no telemetry for {int(silent_for.total_seconds())} s")
        target = Node.State.OFFLINE
    if faults:
        cursor.last_fault_at, cursor.last_fault_reason = now, "; ".join(faults)[:200]
    errors = any("XID" in fault or "ECC" in fault for fault in faults)
    if target and state != target:
        return target, "; ".join(faults), errors
    if not faults and state in FAULTY_STATES:
        clean_since = cursor.last_fault_at or state_changed_at or now
        clean_for = (now - clean_since).total_seconds()
        if clean_for >= settings.HEALTH_CLEAN_PERIOD_SECONDS:
            return (
                Node.State.ONLINE,
                f"clean for {int(clean_for)} s after: {cursor.last_fault_reason}",
                errors,
            )
    return None, "", errors


_CURSOR_FIELDS = ["last_seq", "error_counters", "last_fault_at", "last_fault_reason"]


def _cursors_save(cursors: list[NodeHealthCursor]) -> None:
    if not cursors:
        return
    if connection.vendor != "postgresql":
        NodeHealthCursor.objects.bulk_update(cursors, _CURSOR_FIELDS, batch_size=500)
        return
    with connection.cursor() as db:
        db.execute(
            """
            UPDATE market_nodehealthcursor c
               SET last_seq = u.last_seq, error_counters = u.counters,
                   last_fault_at = u.fault_at, last_fault_reason = u.reason
              FROM unnest(%s::bigint[], %s::bigint[], %s::jsonb[], %s::timestamptz[], %s::text[])
                   AS u(node_id, last_seq, counters, fault_at, reason)
             WHERE c.node_id = u.node_id
            """,
            [  # array literals: psycopg quotes list parameters value by value in Python
                pg_array(c.node_id for c in cursors),
                pg_array(c.last_seq for c in cursors),
                pg_array(json.dumps(c.error_counters) for c in cursors),
                pg_array(c.last_fault_at for c in cursors),
                pg_array(c.last_fault_reason for c in cursors),
            ],
        )


def _cursors_create(node_ids: list[int]) -> None:
    """A cursor for each node that has none yet."""
    if connection.vendor != "postgresql":
        NodeHealthCursor.objects.bulk_create(
            [NodeHealthCursor(node_id=pk) for pk in node_ids], ignore_conflicts=True
        )
        return
    with connection.cursor() as db:
        db.execute(
            """
            INSERT INTO market_nodehealthcursor
                (node_id, last_seq, error_counters, last_fault_at, last_fault_reason)
            SELECT n, -1, '{}', NULL, '' FROM unnest(%s::bigint[]) AS n
            WHERE NOT EXISTS (SELECT 1 FROM market_nodehealthcursor c WHERE c.node_id = n)
            ON CONFLICT DO NOTHING
            """,
            [pg_array(node_ids)],
        )


def _check(nodes, *, now: dt.datetime) -> int:
    """Assess `nodes` (a queryset) together: one grouped query over the new
    samples of all of them, the cursors written in one statement, then a
    transition (with its event) for each node whose state changes. Cursors
    are locked for the run; nodes whose cursor another run holds are left to
    it. Returns how many nodes changed state."""
    with transaction.atomic():
        rows = list(
            nodes.exclude(state__in=LEFT_ALONE)
            .exclude(last_seen_at=None)
            .values_list("pk", "state", "state_changed_at", "last_seen_at")
        )
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        _cursors_create(ids)
        cursors = {
            c.node_id: c
            for c in NodeHealthCursor.objects.select_for_update(skip_locked=True).filter(
                node_id__in=ids
            )
        }
        per_gpu = _per_gpu_since_cursors(cursors, now=now)
        moves: dict[int, tuple[str, str]] = {}
        deverify: dict[int, str] = {}
        for pk, state, changed_at, last_seen in rows:
            if pk not in cursors:
                continue
            target, reason, errors = _assess(
                state=state,
                state_changed_at=changed_at,
                last_seen_at=last_seen,
                cursor=cursors[pk],
                rows=per_gpu.get(pk, []),
                now=now,
            )
            if target:
                moves[pk] = (target, reason)
            if errors:
                deverify[pk] = cursors[pk].last_fault_reason
        _cursors_save(list(cursors.values()))
        for node in Node.objects.filter(pk__in=deverify).order_by("pk"):
            node_deverify(node=node, reason=f"de-verified: {deverify[node.pk]}")
        changed = 0
        for node in Node.objects.filter(pk__in=moves).order_by("pk"):
            target, reason = moves[node.pk]
            changed += node_state_change(node=node, to_state=target, reason=reason, now=now)
    return changed


def node_health_check(*, node_id: int, now: dt.datetime) -> str | None:
    """Re-assess one node; returns its state afterwards (None if it is gone)."""
    _check(Node.objects.filter(pk=node_id), now=now)
    return Node.objects.filter(pk=node_id).values_list("state", flat=True).first()


def nodes_health_check(*, now: dt.datetime) -> int:
    """Re-assess every node that reports, set-based (not one node at a time);
    returns how many changed state."""
    return _check(Node.objects.all(), now=now)
