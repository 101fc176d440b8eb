"""Telemetry storage that lasts: day partitions, per-minute rollups, retention.

On PostgreSQL the raw samples (market_telemetrysample, on `ts`), their ticks
(market_telemetrytick, on `ts`: one row per node and timestamp, which the
database keeps as samples are inserted, models/telemetry.py) and the rollups
(market_telemetryminute, on `minute`) are partitioned by UTC day, named
`<table>_pYYYYMMDD`, with a DEFAULT partition for rows no day partition takes
(a sample stamped long ago). `telemetry_storage_maintain` (beat, hourly)
creates the days from the retention limit to TELEMETRY_PARTITIONS_AHEAD_DAYS
ahead (moving rows the default partition holds for a day into it) and drops
whole days past retention; SQLite (embedded mode) keeps plain tables and
deletes the same rows. Ticks are evidence as much as the samples they sum
(metering reads them): their days go with the samples' days, by the same rule.

Raw samples are the evidence behind usage records, so a day of them goes
only once it is older than TELEMETRY_RAW_RETENTION_DAYS *and* metered *and*
rolled up: `raw_droppable_before` is the earliest moment any of the three
still needs. A lease not metered to its end (one metering could not meter,
or one whose windows are not due yet) holds back every day from where its
metering stands, less the silence a tick carries over a window's start.

`telemetry_rollup` (beat, every minute) rolls the closed minutes (closed for
METERING_GRACE_SECONDS, as metering waits for late samples) into one row per
node, GPU and minute with one INSERT ... SELECT ... GROUP BY per
backlog hour; a cursor row records how far it went. Rollups are kept for
TELEMETRY_ROLLUP_RETENTION_DAYS; charts read them (selectors.node_series).
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, TruncMinute

from market.models import (
    Lease,
    TelemetryMinute,
    TelemetryRollupCursor,
    TelemetrySample,
    TelemetryTick,
    UsageRecord,
)
from market.telemetry.metering import METERED_STATUSES

logger = logging.getLogger(__name__)

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
ROLLUP_CURSOR = "minute"
SAMPLES = TelemetrySample._meta.db_table
TICKS = TelemetryTick._meta.db_table
MINUTES = TelemetryMinute._meta.db_table
# Partitioned tables and the column each is partitioned on.
PARTITIONED = {SAMPLES: "ts", TICKS: "ts", MINUTES: "minute"}
# Leases that metering still reads samples for: pending ones start later, but
# a pending lease past its start (advanced late) is metered from its start.
_HOLDING_STATUSES = (Lease.Status.PENDING, *METERED_STATUSES)


def day_start(moment: dt.datetime) -> dt.datetime:
    """The UTC midnight at or before `moment`."""
    moment = moment.astimezone(dt.UTC)
    return dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)


def partition_name(table: str, day: dt.datetime) -> str:
    return f"{table}_p{day:%Y%m%d}"


def partitions(*, table: str) -> dict[str, dt.datetime]:
    """The day partitions of `table` (PostgreSQL), name -> the day it holds."""
    pattern = re.compile(rf"^{re.escape(table)}_p(\d{{8}})$")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = {}
    for name in names:
        match = pattern.match(name)
        if match:
            found[name] = dt.datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=dt.UTC)
    return found


def _literal(moment: dt.datetime) -> str:
    return f"'{moment.astimezone(dt.UTC).isoformat()}'"


def partition_create(*, table: str, day: dt.datetime) -> bool:
    """Create `table`'s partition for `day` unless it exists; rows the default
    partition holds for that day move into it. True if it was created."""
    column, name = PARTITIONED[table], partition_name(table, day)
    lo, hi = _literal(day), _literal(day + DAY)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is not None:
            return False
        cursor.execute(
            f"SELECT 1 FROM {table}_default WHERE {column} >= %s AND {column} < %s LIMIT 1",  # noqa: S608 - our tables
            [day, day + DAY],
        )
        if cursor.fetchone() is None:
            cursor.execute(
                f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})"
            )
            return True
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"WITH moved AS (DELETE FROM {table}_default "  # noqa: S608 - our tables
            f"WHERE {column} >= %s AND {column} < %s RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved",
            [day, day + DAY],
        )
        cursor.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"
        )
    return True


def _drop_before(*, table: str, before: dt.datetime) -> int:
    """Drop `table`'s day partitions that end at or before `before`, and delete
    older rows from its default partition; how many partitions were dropped."""
    column = PARTITIONED[table]
    dropped = 0
    for name, day in sorted(partitions(table=table).items(), key=lambda item: item[1]):
        if day + DAY <= before:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                cursor.execute(f"DROP TABLE {name}")
            dropped += 1
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table}_default WHERE {column} < %s", [before])  # noqa: S608
    return dropped


def rolled_until() -> dt.datetime | None:
    """Every minute before this is rolled up (None: nothing is yet)."""
    return (
        TelemetryRollupCursor.objects.filter(name=ROLLUP_CURSOR)
        .values_list("rolled_until", flat=True)
        .first()
    )


def metering_needs_since(*, before: dt.datetime) -> dt.datetime | None:
    """The earliest sample time metering still needs, among leases that started
    before `before` (None: none needs any): for each lease not metered to its
    end, where its metering stands (its last usage record's end, or its start)
    less the silence a tick carries over into a window."""
    last_end = (
        UsageRecord.objects.filter(lease=OuterRef("pk"))
        .order_by("-window_start")
        .values("window_end")[:1]
    )
    unmetered = (
        Lease.objects.filter(status__in=_HOLDING_STATUSES, starts_at__lt=before)
        .annotate(metered_to=Coalesce(Subquery(last_end), F("starts_at")))
        .filter(
            Q(metered_to__lt=F("ends_at"))
            & (Q(ended_at__isnull=True) | Q(metered_to__lt=F("ended_at")))
        )
    )
    earliest = unmetered.order_by("metered_to").values_list("metered_to", flat=True).first()
    if earliest is None:
        return None
    silent = settings.TELEMETRY_INTERVAL_SECONDS * settings.TELEMETRY_SILENT_INTERVALS
    return earliest - dt.timedelta(seconds=silent)


def raw_droppable_before(*, now: dt.datetime) -> dt.datetime:
    """Raw samples before this may go: past retention, metered, rolled up."""
    limit = day_start(now) - dt.timedelta(days=settings.TELEMETRY_RAW_RETENTION_DAYS)
    needed = metering_needs_since(before=limit)
    rolled = rolled_until()
    candidates = [limit, rolled or dt.datetime.min.replace(tzinfo=dt.UTC)]
    if needed is not None:
        candidates.append(needed)
    return min(candidates)


def telemetry_storage_maintain(*, now: dt.datetime) -> dict[str, int]:
    """Create the day partitions from the retention limit to the days ahead,
    drop raw samples (and their ticks) past retention once metered and rolled
    up, and rollups past theirs. Idempotent; returns what it did: partitions
    created, and raw sample and rollup days dropped (PostgreSQL) or rows
    deleted (SQLite)."""
    raw_before = raw_droppable_before(now=now)
    rollups_before = day_start(now) - dt.timedelta(days=settings.TELEMETRY_ROLLUP_RETENTION_DAYS)
    done = {"partitions_created": 0, "raw_dropped": 0, "rollups_dropped": 0}
    if connection.vendor != "postgresql":
        done["raw_dropped"] = TelemetrySample.objects.filter(ts__lt=raw_before).delete()[0]
        TelemetryTick.objects.filter(ts__lt=raw_before).delete()
        done["rollups_dropped"] = TelemetryMinute.objects.filter(
            minute__lt=rollups_before
        ).delete()[0]
        return done
    today = day_start(now)
    ahead = settings.TELEMETRY_PARTITIONS_AHEAD_DAYS
    for table, retention in (
        (SAMPLES, settings.TELEMETRY_RAW_RETENTION_DAYS),
        (TICKS, settings.TELEMETRY_RAW_RETENTION_DAYS),
        (MINUTES, settings.TELEMETRY_ROLLUP_RETENTION_DAYS),
    ):
        for offset in range(-retention, ahead + 1):
            done["partitions_created"] += partition_create(table=table, day=today + offset * DAY)
    done["raw_dropped"] = _drop_before(table=SAMPLES, before=raw_before)
    _drop_before(table=TICKS, before=raw_before)
    done["rollups_dropped"] = _drop_before(table=MINUTES, before=rollups_before)
    logger.info("telemetry storage maintained", extra=done)
    return done


# --- rollups -----------------------------------------------------------------------

_ROLLUP_SQL = """
INSERT INTO market_telemetryminute
    (node_id, minute, gpu_index, samples, utilisation_sum, power_w_sum, temperature_c_max,
     memory_used_mib_max, ecc_errors_max, xid_errors_max, missing)
SELECT node_id, date_trunc('minute', ts), gpu_index, count(*), sum(utilisation), sum(power_w),
       max(temperature_c), max(memory_used_mib), max(ecc_errors), max(xid_errors),
       count(*) FILTER (WHERE missing)
FROM market_telemetrysample
WHERE ts >= %(lo)s AND ts < %(hi)s
GROUP BY node_id, date_trunc('minute', ts), gpu_index
"""


def _rollup_postgres(lo: dt.datetime, hi: dt.datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(_ROLLUP_SQL, {"lo": lo, "hi": hi})
        return cursor.rowcount


def _rollup_portable(lo: dt.datetime, hi: dt.datetime) -> int:
    rows = (
        TelemetrySample.objects.filter(ts__gte=lo, ts__lt=hi)
        .annotate(at=TruncMinute("ts"))
        .values("node_id", "at", "gpu_index")
        .annotate(
            n=Count("*"),
            util=Sum("utilisation"),
            power=Sum("power_w"),
            temp=Max("temperature_c"),
            mem=Max("memory_used_mib"),
            ecc=Max("ecc_errors"),
            xid=Max("xid_errors"),
            missing_n=Count("seq", filter=Q(missing=True)),
        )
        .order_by()
    )
    minutes = [
        TelemetryMinute(
            node_id=r["node_id"],
            minute=r["at"],
            gpu_index=r["gpu_index"],
            samples=r["n"],
            utilisation_sum=r["util"],
            power_w_sum=r["power"],
            temperature_c_max=r["temp"],
            memory_used_mib_max=r["mem"],
            ecc_errors_max=r["ecc"],
            xid_errors_max=r["xid"],
            missing=r["missing_n"],
        )
        for r in rows
    ]
    TelemetryMinute.objects.bulk_create(minutes, batch_size=1000)
    return len(minutes)


def _first_sample_minute() -> dt.datetime | None:
    first = TelemetrySample.objects.order_by("ts").values_list("ts", flat=True).first()
    return first.replace(second=0, microsecond=0) if first else None


def telemetry_rollup(*, now: dt.datetime) -> int:
    """Roll every closed minute not yet rolled up into per-minute rows, an hour
    at a time (each hour's groups fit in memory, and commits with the cursor,
    so a long backlog resumes where it stopped); returns how many rows were
    written."""
    closed = now - dt.timedelta(seconds=settings.METERING_GRACE_SECONDS)
    horizon = closed.astimezone(dt.UTC).replace(second=0, microsecond=0)
    written = 0
    while True:
        with transaction.atomic():
            cursor = (
                TelemetryRollupCursor.objects.select_for_update().filter(name=ROLLUP_CURSOR).first()
            )
            if cursor is None:
                start = _first_sample_minute()
                if start is None:
                    return written
                cursor = TelemetryRollupCursor.objects.create(
                    name=ROLLUP_CURSOR, rolled_until=start
                )
            lo = cursor.rolled_until
            if lo >= horizon:
                return written
            hi = min(horizon, lo.replace(minute=0) + HOUR)
            if connection.vendor == "postgresql":
                written += _rollup_postgres(lo, hi)
            else:
                written += _rollup_portable(lo, hi)
            TelemetryRollupCursor.objects.filter(name=ROLLUP_CURSOR).update(rolled_until=hi)
