"""Metering throughput: N nodes × G GPUs × H hours of samples every 10 s
(default 100 × 8 × 24 h ≈ 6.9 M rows), one lease per node for the whole
period, then the time to meter all of it into usage records; beside it, in
the same run, its floor: PostgreSQL's bare aggregate scan of the same raw
samples (per node: count, mean utilisation and power, error counters), and
the ratio; and a second floor, the same bare scan of the tick rows metering
reads (one per node and timestamp), and the ratio to that.

The samples are loaded with the ticks trigger off, then summed into ticks by
the SQL migration market/0021 uses, timed on its own: that is ingestion's
cost (the trigger pays it batch by batch), not metering's.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> .venv/bin/python bench/metering.py \
        [--nodes 100] [--gpus 8] [--hours 24]

It TRUNCATEs market_telemetrysample and market_telemetrytick of that database
(a benchmark database). The last line printed is a JSON object with samples,
meter_seconds, floor_seconds and ratio, ticks, tick_floor_seconds and
tick_ratio.
"""

import argparse
import datetime as dt
import importlib
import json
import os
import time

from _setup import django_setup, make_nodes

INTERVAL = 10
TICK_TRIGGER = "market_telemetrytick_add"


SAMPLES_SCAN = """
SELECT node_id, count(*), avg(utilisation), avg(power_w),
       max(xid_errors + ecc_errors), count(*) FILTER (WHERE missing)
FROM market_telemetrysample
WHERE node_id = ANY(%s) AND ts >= %s AND ts < %s
GROUP BY node_id
"""
TICKS_SCAN = """
SELECT node_id, count(*), sum(util_sum) / sum(samples), sum(power_sum) / sum(samples),
       max(errs), sum(bit_count(gpu_mask::bit(64)))
FROM market_telemetrytick
WHERE node_id = ANY(%s) AND ts >= %s AND ts < %s
GROUP BY node_id
"""


def floor_scan(connection, node_ids, start, end, sql=SAMPLES_SCAN) -> float:
    """Median of 3: one pass over the same rows, aggregated per node; with and
    without JIT, and with index scans allowed or not (on a day's partition the
    planner chose an index scan that took 17.9 s where the sequential scan takes
    about 2), the fastest: a floor is the best PostgreSQL can do."""
    import statistics

    medians = []
    with connection.cursor() as cursor:
        for jit in ("on", "off"):
            for index_scans in ("on", "off"):
                cursor.execute(f"SET jit = {jit}")
                cursor.execute(f"SET enable_indexscan = {index_scans}")
                cursor.execute(f"SET enable_bitmapscan = {index_scans}")
                medians.append(statistics.median(_scan_times(cursor, sql, node_ids, start, end)))
        cursor.execute("RESET jit")
        cursor.execute("RESET enable_indexscan")
        cursor.execute("RESET enable_bitmapscan")
    return min(medians)


def _scan_times(cursor, sql, node_ids, start, end) -> list[float]:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        cursor.execute(sql, [node_ids, start, end])
        cursor.fetchall()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--hours", type=float, default=24)
    parser.add_argument(
        "--explain", action="store_true", help="print EXPLAIN ANALYZE of the metering statement"
    )
    args = parser.parse_args()
    os.environ["TELEMETRY_INTERVAL_SECONDS"] = str(INTERVAL)  # the agents sample every 10 s
    django_setup()
    from django.db import connection, transaction

    from accounts.models import Organisation
    from market.models import Lease, UsageRecord
    from market.telemetry import storage
    from market.telemetry.metering import leases_meter
    from tests.factories import LeaseFactory, OfferFactory, OrderFactory

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = start + dt.timedelta(hours=args.hours)
    nodes = make_nodes(args.nodes, gpus=args.gpus, label="meter")
    node_ids = [node.pk for node, _ in nodes]
    ticks = int(args.hours * 3600 / INTERVAL)
    print(f"generating {args.nodes} × {args.gpus} GPUs × {ticks} ticks of samples ...")
    t = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
    day = storage.day_start(start)
    while day < end:  # the days' partitions, as the upkeep task keeps them for recent days
        storage.partition_create(table=storage.SAMPLES, day=day)
        storage.partition_create(table=storage.TICKS, day=day)
        day += dt.timedelta(days=1)
    ticks_migration = importlib.import_module("market.migrations.0021_telemetry_ticks")
    with connection.cursor() as cursor:
        # The ticks are summed below, timed on their own.
        cursor.execute(f"ALTER TABLE market_telemetrysample DISABLE TRIGGER {TICK_TRIGGER}")
        cursor.execute(
            """
            INSERT INTO market_telemetrysample
                (node_id, seq, gpu_index, ts, utilisation, memory_used_mib, power_w,
                 temperature_c, ecc_errors, xid_errors, missing)
            SELECT n, k * %(gpus)s + g, g, %(start)s + make_interval(secs => k * %(every)s),
                   70 + (k + g) %% 30, 60000, 550 + (k %% 100), 65, 0, 0, false
            FROM unnest(%(nodes)s::bigint[]) AS n, generate_series(0, %(ticks)s - 1) AS k,
                 generate_series(0, %(gpus)s - 1) AS g
            """,
            {
                "gpus": args.gpus,
                "start": start,
                "every": INTERVAL,
                "nodes": node_ids,
                "ticks": ticks,
            },
        )
        samples = cursor.rowcount
        cursor.execute(f"ALTER TABLE market_telemetrysample ENABLE TRIGGER {TICK_TRIGGER}")
        cursor.execute("ANALYZE market_telemetrysample")
        print(f"{samples:,} samples in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        cursor.execute(ticks_migration.PG_BUILD)
        tick_rows = cursor.rowcount
        cursor.execute("ANALYZE market_telemetrytick")
        ticks_seconds = time.perf_counter() - t
    print(
        f"{tick_rows:,} ticks summed from them in {ticks_seconds:.2f} s "
        "(ingestion's cost, not metering's)"
    )
    buyer, _ = Organisation.objects.get_or_create(
        credit_code="91440300MA5BUYER0X",
        defaults={"kind": "buyer", "legal_name": "Bench Buyer Co., Ltd.", "verified": True},
    )
    leases = []
    for node, _ in nodes:
        offer = OfferFactory(node=node, available_from=start, available_until=end)
        order = OrderFactory(
            buyer=buyer, gpu_count=args.gpus, hours=max(1, round(args.hours)), start_by=end
        )
        leases.append(
            LeaseFactory(
                offer=offer, order=order, gpu_count=args.gpus, starts_at=start, ends_at=end
            )
        )
    lease_ids = [lease.pk for lease in leases]
    statements = []

    def capture(execute, sql, params, many, context):
        if "WITH w AS MATERIALIZED" in sql:
            statements.append((sql, params))
        return execute(sql, params, many, context)

    t = time.perf_counter()
    with connection.execute_wrapper(capture):
        written = leases_meter(now=end + dt.timedelta(hours=1), lease_ids=lease_ids).written
    meter_seconds = time.perf_counter() - t
    if args.explain and statements:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")  # as metering runs it
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statements[0][0], statements[0][1])
            print("\n".join(row[0] for row in cursor.fetchall()))
    records = UsageRecord.objects.filter(lease_id__in=lease_ids)
    delivered = sum(records.values_list("gpu_seconds_delivered", flat=True))
    lost = sum(records.values_list("gpu_seconds_lost", flat=True))
    print(f"metered {written:,} usage records in {meter_seconds:.2f} s")
    print(f"delivered {delivered:,} GPU-s, lost {lost:,} GPU-s")
    rerun = leases_meter(now=end + dt.timedelta(hours=2), lease_ids=lease_ids).written
    print(f"re-run wrote {rerun} records")
    floor_seconds = floor_scan(connection, node_ids, start, end)
    ratio = meter_seconds / floor_seconds
    print(
        f"floor (bare aggregate scan of the same raw samples): {floor_seconds:.2f} s; "
        f"ratio {ratio:.2f}"
    )
    tick_floor_seconds = floor_scan(connection, node_ids, start, end, sql=TICKS_SCAN)
    tick_ratio = meter_seconds / tick_floor_seconds
    print(
        f"tick floor (bare aggregate scan of the {tick_rows:,} tick rows): "
        f"{tick_floor_seconds:.2f} s; ratio {tick_ratio:.2f}"
    )
    records.delete()
    Lease.objects.filter(pk__in=lease_ids).update(status=Lease.Status.CANCELLED)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
    print(
        json.dumps(
            {
                "samples": samples,
                "meter_seconds": round(meter_seconds, 2),
                "floor_seconds": round(floor_seconds, 2),
                "ratio": round(ratio, 2),
                "ticks": tick_rows,
                "ticks_seconds": round(ticks_seconds, 2),
                "tick_floor_seconds": round(tick_floor_seconds, 3),
                "tick_ratio": round(tick_ratio, 2),
                "usage_records": written,
                "gpu_seconds_delivered": delivered,
                "gpu_seconds_lost": lost,
                "nodes": args.nodes,
                "gpus": args.gpus,
                "hours": args.hours,
            }
        )
    )


if __name__ == "__main__":
    main()
