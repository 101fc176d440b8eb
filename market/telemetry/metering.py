"""Metering: from the nodes' telemetry to immutable usage records, one per
lease per closed window (run every minute by Celery beat).

The unit of evidence is a *tick*: one round of samples of the node's GPUs
(the agent stamps a round with one timestamp). A tick vouches for the time
until the next tick if that comes within the silence limit (3 reporting
intervals), otherwise for one interval only — the rest of the gap is silence.
A tick's healthy share is the part of the node's GPUs that reported and were
not missing — distinct GPUs, so a GPU sampled twice counts once — or 0 when
an error counter rose since the previous tick; the rest of its time is lost.
A window without a single tick (an agent that never reported, or a silent
one) is all lost: not delivered, not billed.

Start-up grace: in the first AGENT_STARTUP_GRACE_INTERVALS reporting
intervals of a lease, seconds no tick covers (the agent starting up, its
first sample not in yet) are grace — neither delivered (not billed) nor lost
(no provider fault, no SLA credit). A tick in that time still counts as
usual, and an unhealthy one is still lost.

For a lease and a window (aligned to the epoch, clipped to the lease's own
start and end — never to the samples):
    delivered = lease GPUs × healthy node-seconds (seconds × share) in the window
    grace     = lease GPUs × seconds of the start-up grace no tick covers
    lost      = lease GPUs × window length − delivered − grace
    energy Wh = mean per-GPU power × lease GPUs × covered seconds / 3600 × PUE
    carbon g  = energy Wh / 1000 × grid intensity (g/kWh) × (1 − green share)
    average utilisation = mean per-GPU utilisation over the healthy time.
A window is metered once it has been closed for METERING_GRACE_SECONDS (so
samples an agent buffered through a short outage still count) and never
again: records are only ever inserted, and (lease, window_start) is unique.

Ticks are stored (TelemetryTick, one row per node and timestamp, which the
database keeps as samples are inserted): a tick's distinct GPUs are the bits
of its mask (an OR of 1 << gpu over the samples not missing; a GPU index is
below 64, core/limits.py), its error count the sum of its samples' counters,
its means sums over its sample count. Metering reads ticks, never samples: a
day of 100 eight-GPU nodes at 10 s is 864,000 ticks against 6.9 M samples,
and grouping the samples into ticks was the largest step of metering before.
On PostgreSQL one SQL statement computes every due window of every lease
(spans by window functions over the ticks, windows by GROUP BY); the
portable path (SQLite, embedded mode) reads the same ticks and does the same
arithmetic in Python.
Should a run over all leases fail, each lease is metered on its own, so one
lease that cannot be metered is logged and never stops the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max

from core import clock
from core.postgres import pg_array
from market.models import Lease, TelemetryTick, UsageRecord

logger = logging.getLogger(__name__)

METERED_STATUSES = (
    Lease.Status.ACTIVE,
    Lease.Status.COMPLETED,
    Lease.Status.FAILED,
    Lease.Status.MIGRATED,
)
_MILLI = Decimal("0.001")
_CENTI = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Window:
    lease_id: int
    node_id: int
    gpus: int
    start: float  # epoch seconds
    end: float
    grace_end: float = 0.0  # the lease's start-up grace ends here


def startup_grace_seconds() -> float:
    """The agent's start-up grace at the start of every lease."""
    return settings.TELEMETRY_INTERVAL_SECONDS * settings.AGENT_STARTUP_GRACE_INTERVALS


@dataclass(frozen=True, slots=True)
class MeteringResult:
    written: int  # usage records inserted
    failed_lease_ids: tuple[int, ...] = ()  # leases that could not be metered (logged)


@dataclass(slots=True)
class Measure:
    healthy_s: float = 0.0  # node-seconds × healthy share
    grace_covered_s: float = 0.0  # node-seconds of the start-up grace a tick covers
    power_ws: float = 0.0  # mean per-GPU watts × seconds
    util_s: float = 0.0  # mean per-GPU utilisation × healthy seconds


def lease_end(lease: Lease) -> dt.datetime:
    """Where metering of a lease stops: when it ended early, else its end."""
    return min(lease.ended_at, lease.ends_at) if lease.ended_at else lease.ends_at


def _due_windows(*, leases: list[Lease], metered_until: dict, horizon: float) -> list[Window]:
    size = settings.METERING_WINDOW_SECONDS
    grace = startup_grace_seconds()
    windows: list[Window] = []
    for lease in leases:
        start = (metered_until.get(lease.pk) or lease.starts_at).timestamp()
        stop = lease_end(lease).timestamp()
        grace_end = lease.starts_at.timestamp() + grace
        while start < stop:
            end = min((math.floor(start / size) + 1) * size, stop)
            if end > horizon:
                break
            windows.append(
                Window(
                    lease.pk, lease.node_id, lease.gpu_count, float(start), float(end), grace_end
                )
            )
            start = end
    return windows


def leases_meter(*, now: dt.datetime, lease_ids: list[int] | None = None) -> MeteringResult:
    """Write the usage records of every closed, not yet metered window. Running
    it again writes nothing new. All leases are metered together; should that
    fail, each lease is metered on its own, and the ones that fail are logged
    and returned (their windows are metered by a later run)."""
    horizon = now.timestamp() - settings.METERING_GRACE_SECONDS
    due = Lease.objects.filter(
        status__in=METERED_STATUSES, starts_at__lt=dt.datetime.fromtimestamp(horizon, tz=dt.UTC)
    ).select_related("node__site")
    if lease_ids is not None:
        due = due.filter(pk__in=lease_ids)
    leases = list(due)
    try:
        return MeteringResult(written=_leases_meter(leases=leases, horizon=horizon))
    except Exception:
        if len(leases) <= 1:
            logger.exception("metering failed", extra={"lease": [lease.pk for lease in leases]})
            return MeteringResult(written=0, failed_lease_ids=tuple(lease.pk for lease in leases))
        logger.exception("metering all leases at once failed; metering each on its own")
    written, failed = 0, []
    for lease in leases:
        try:
            written += _leases_meter(leases=[lease], horizon=horizon)
        except Exception:
            logger.exception("metering lease %s failed", lease.pk, extra={"lease": lease.pk})
            failed.append(lease.pk)
    return MeteringResult(written=written, failed_lease_ids=tuple(failed))


def _leases_meter(*, leases: list[Lease], horizon: float) -> int:
    """Meter `leases` all or nothing (a savepoint inside a caller's transaction)."""
    with transaction.atomic():
        metered_until = dict(
            UsageRecord.objects.filter(lease__in=leases)
            .values("lease")
            .annotate(until=Max("window_end"))
            .values_list("lease", "until")
            .order_by()
        )
        windows = _due_windows(leases=leases, metered_until=metered_until, horizon=horizon)
        if not windows:
            return 0
        if connection.vendor == "postgresql":
            measures = _measure_postgres(windows)
        else:
            measures = _measure_portable(windows)
        by_id = {lease.pk: lease for lease in leases}
        records = [_record(by_id[w.lease_id], w, measures.get(w, Measure())) for w in windows]
        if connection.vendor == "postgresql":
            return _records_insert_postgres(records)
        created = UsageRecord.objects.bulk_create(
            [UsageRecord(**record) for record in records], batch_size=2000, ignore_conflicts=True
        )
    return len(created)


def _record(lease: Lease, window: Window, measure: Measure) -> dict[str, Any]:
    """A usage record's fields."""
    site = lease.node.site
    allocated = round(lease.gpu_count * (window.end - window.start))
    delivered = min(allocated, round(lease.gpu_count * measure.healthy_s))
    in_grace = max(0.0, min(window.end, window.grace_end) - window.start)
    silent_in_grace = max(0.0, in_grace - measure.grace_covered_s)
    grace = min(allocated - delivered, round(lease.gpu_count * silent_in_grace))
    energy = Decimal(measure.power_ws * lease.gpu_count / 3600) * site.pue
    carbon = energy / 1000 * site.carbon_intensity_g_per_kwh * (1 - site.green_share)
    utilisation = measure.util_s / measure.healthy_s if measure.healthy_s else 0.0
    return {
        "lease_id": lease.pk,
        "window_start": dt.datetime.fromtimestamp(window.start, tz=dt.UTC),
        "window_end": dt.datetime.fromtimestamp(window.end, tz=dt.UTC),
        "gpu_seconds_delivered": delivered,
        "gpu_seconds_lost": allocated - delivered - grace,
        "gpu_seconds_grace": grace,
        "energy_wh": energy.quantize(_MILLI, rounding=ROUND_HALF_EVEN),
        "carbon_g": carbon.quantize(_MILLI, rounding=ROUND_HALF_EVEN),
        "avg_utilisation": Decimal(utilisation).quantize(_CENTI, rounding=ROUND_HALF_EVEN),
    }


# Records travel as one array literal per column (core/postgres.py): Django's
# bulk_create prepared 288,000 values one by one for a day of 100 leases, about
# a third of metering's time.
_INSERT_RECORDS_SQL = """
INSERT INTO market_usagerecord
    (lease_id, window_start, window_end, gpu_seconds_delivered, gpu_seconds_lost,
     gpu_seconds_grace, energy_wh, carbon_g, avg_utilisation, created_at)
SELECT r.*, %(now)s
FROM unnest(%(lease_id)s::bigint[], %(window_start)s::timestamptz[],
            %(window_end)s::timestamptz[], %(gpu_seconds_delivered)s::bigint[],
            %(gpu_seconds_lost)s::bigint[], %(gpu_seconds_grace)s::bigint[],
            %(energy_wh)s::numeric[], %(carbon_g)s::numeric[], %(avg_utilisation)s::numeric[])
     AS r
ON CONFLICT (lease_id, window_start) DO NOTHING
"""


def _records_insert_postgres(records: list[dict[str, Any]]) -> int:
    """Insert the records in one statement (a window metered meanwhile by
    another run is left as it is); how many were inserted."""
    params: dict[str, Any] = {
        field: pg_array(record[field] for record in records) for field in records[0]
    }
    params["now"] = clock.now()
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_RECORDS_SQL, params)
        return cursor.rowcount


def _limits() -> tuple[float, float]:
    interval = settings.TELEMETRY_INTERVAL_SECONDS
    return interval, interval * settings.TELEMETRY_SILENT_INTERVALS


# --- PostgreSQL: one statement --------------------------------------------------

_MEASURE_SQL = """
WITH w AS MATERIALIZED (
    SELECT w.*, floor(w.ws / %(size)s)::bigint AS k
    FROM unnest(%(lease)s::bigint[], %(node)s::bigint[], %(ws)s::float8[],
                %(we)s::float8[], %(ge)s::float8[]) AS w(lease_id, node_id, ws, we, ge)
), r AS (  -- each node's span as timestamps once, not converted again for every sample
    SELECT node_id, to_timestamp(min(ws) - %(silent)s) AS lo,
           to_timestamp(max(we) + %(silent)s) AS hi
    FROM w GROUP BY node_id
), ticks AS (
    SELECT k.node_id, date_part('epoch', k.ts) AS t, bit_count(k.gpu_mask::bit(64)) AS n,
           k.errs, k.util_sum / k.samples AS util, k.power_sum / k.samples AS power
    FROM r JOIN market_telemetrytick k
      ON k.node_id = r.node_id AND k.ts >= r.lo AND k.ts < r.hi
    WHERE k.ts >= %(lo)s AND k.ts < %(hi)s  -- constants: only the partitions of these days
), spans AS (
    SELECT t.node_id, t.t AS a,
           t.t + CASE WHEN lead(t.t) OVER nw - t.t <= %(silent)s
                      THEN lead(t.t) OVER nw - t.t ELSE %(interval)s END AS b,
           CASE WHEN t.errs <= coalesce(lag(t.errs) OVER nw, t.errs)
                THEN least(1.0, t.n::float8 / nd.gpu_count) ELSE 0.0 END AS share,
           t.util, t.power
    FROM ticks t JOIN market_node nd ON nd.id = t.node_id
    WINDOW nw AS (PARTITION BY t.node_id ORDER BY t.t)
), pieces AS MATERIALIZED (
    SELECT sp.*, k FROM spans sp,
      generate_series(floor(sp.a / %(size)s)::bigint, floor((sp.b - 1e-9) / %(size)s)::bigint) AS k
), shares AS (
    SELECT w.lease_id, w.ws, p.share, p.util, p.power,
           greatest(0, least(p.b, w.we) - greatest(p.a, w.ws)) AS secs,
           greatest(0, least(p.b, w.we, w.ge) - greatest(p.a, w.ws)) AS gsecs
    FROM w JOIN pieces p ON p.node_id = w.node_id AND p.k = w.k
)
SELECT lease_id, ws,
       coalesce(sum(secs * share), 0),
       coalesce(sum(secs * power), 0),
       coalesce(sum(secs * share * util), 0),
       coalesce(sum(gsecs), 0)
FROM shares GROUP BY lease_id, ws
"""


def _measure_postgres(windows: list[Window]) -> dict[Window, Measure]:
    interval, silent = _limits()
    params = {  # array literals: psycopg quotes list parameters value by value in Python
        "lease": pg_array(w.lease_id for w in windows),
        "node": pg_array(w.node_id for w in windows),
        "ws": pg_array(w.start for w in windows),
        "we": pg_array(w.end for w in windows),
        "ge": pg_array(w.grace_end for w in windows),
        "silent": silent,
        "interval": interval,
        "size": settings.METERING_WINDOW_SECONDS,
        "lo": dt.datetime.fromtimestamp(min(w.start for w in windows) - silent, tz=dt.UTC),
        "hi": dt.datetime.fromtimestamp(max(w.end for w in windows) + silent, tz=dt.UTC),
    }
    by_key = {(w.lease_id, w.start): w for w in windows}
    with connection.cursor() as cursor:
        # This transaction only: no JIT (the planner, counting up to 1,000 windows per
        # span from generate_series, compiled for seconds on a day's samples), and
        # the ticks sorted in memory rather than in temporary files.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(_MEASURE_SQL, params)
        return {
            by_key[(lease_id, ws)]: Measure(healthy_s=h, power_ws=p, util_s=u, grace_covered_s=g)
            for lease_id, ws, h, p, u, g in cursor.fetchall()
        }


# --- portable: the same arithmetic in Python --------------------------------------


def _spans(node_id: int, gpu_count: int, lo: float, hi: float):
    interval, silent = _limits()
    ticks = list(
        TelemetryTick.objects.filter(
            node_id=node_id,
            ts__gte=dt.datetime.fromtimestamp(lo, tz=dt.UTC),
            ts__lt=dt.datetime.fromtimestamp(hi, tz=dt.UTC),
        )
        .values_list("ts", "gpu_mask", "samples", "errs", "util_sum", "power_sum")
        .order_by("ts")
    )
    previous_errs = None
    for i, (ts, mask, samples, errs, util_sum, power_sum) in enumerate(ticks):
        a = ts.timestamp()
        gap = ticks[i + 1][0].timestamp() - a if i + 1 < len(ticks) else math.inf
        clean = previous_errs is None or errs <= previous_errs
        gpus = (mask & (2**64 - 1)).bit_count()  # GPU 63 makes the mask negative
        share = min(1.0, gpus / gpu_count) if clean else 0.0
        previous_errs = errs
        yield (
            a,
            a + (gap if gap <= silent else interval),
            share,
            util_sum / samples,
            power_sum / samples,
        )


def _measure_portable(windows: list[Window]) -> dict[Window, Measure]:
    from market.models import Node

    _interval, silent = _limits()
    by_node: dict[int, list[Window]] = defaultdict(list)
    for window in windows:
        by_node[window.node_id].append(window)
    measures: dict[Window, Measure] = {}
    gpu_counts = dict(Node.objects.filter(pk__in=by_node).values_list("pk", "gpu_count"))
    for node_id, node_windows in by_node.items():
        lo = min(w.start for w in node_windows) - silent
        hi = max(w.end for w in node_windows) + silent
        spans = list(_spans(node_id, gpu_counts[node_id], lo, hi))
        for window in node_windows:
            measure = measures.setdefault(window, Measure())
            for a, b, share, util, power in spans:
                secs = max(0.0, min(b, window.end) - max(a, window.start))
                if not secs:
                    continue
                measure.grace_covered_s += max(
                    0.0, min(b, window.end, window.grace_end) - max(a, window.start)
                )
                measure.power_ws += secs * power
                measure.healthy_s += secs * share
                measure.util_s += secs * share * util
    return measures
