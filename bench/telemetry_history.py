"""A lease chart over a long telemetry history: N nodes × G GPUs × D days of
samples every 10 s (default 100 × 8 × 7 days ≈ 48.4 M rows) in day partitions,
rolled up per minute by the rollup task, then the lease usage page (its chart:
the lease's last hour) requested as its buyer, timed; beside it, in the same
run, its floor: the same page for a lease of the same length on a node without
any telemetry (the page's fixed cost: sign-in, lease, totals, template).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> .venv/bin/python bench/telemetry_history.py \\
        [--nodes 100] [--gpus 8] [--days 7] [--requests 30] [--keep]

The history is written a day at a time the way a bulk load is (a table filled,
then indexed, then attached as the day's partition), not through ingestion:
bench/ingest.py measures that. It TRUNCATEs the telemetry tables of that
database (a benchmark database) and, unless --keep, empties them at the end.
It also prints the time of the rollups, of the same hour aggregated from the
raw samples (what the chart read before rollups), and of the whole lease's
per-minute series. The last line printed is a JSON object.
"""

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import time

from _setup import django_setup, make_nodes

INTERVAL = 10


def day_load(cursor, *, table: str, day: dt.datetime, nodes: list[int], gpus: int, first_k: int):
    """One day of samples for every node, bulk loaded and attached as a partition."""
    from market.telemetry import storage

    name = storage.partition_name(table, day)
    staging = f"{name}_load"
    ticks = 86400 // INTERVAL
    cursor.execute(f"DROP TABLE IF EXISTS {name}, {staging}")
    cursor.execute(
        f"CREATE TABLE {staging} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    cursor.execute(
        f"""
        INSERT INTO {staging}
            (node_id, seq, gpu_index, ts, utilisation, memory_used_mib, power_w,
             temperature_c, ecc_errors, xid_errors, missing)
        SELECT n, k * %(gpus)s + g, g, %(start)s + make_interval(secs => (k - %(k0)s) * %(every)s),
               70 + (k + g + n) %% 30, 60000, 550 + ((k + n) %% 100), 65, 0, 0, false
        FROM generate_series(%(k0)s, %(k0)s + %(ticks)s - 1) AS k,
             unnest(%(nodes)s::bigint[]) AS n, generate_series(0, %(gpus)s - 1) AS g
        """,
        {
            "gpus": gpus,
            "start": day,
            "every": INTERVAL,
            "k0": first_k,
            "ticks": ticks,
            "nodes": nodes,
        },
    )
    rows = cursor.rowcount
    cursor.execute(f"ALTER TABLE {staging} ADD PRIMARY KEY (node_id, seq, ts)")
    cursor.execute(f"CREATE INDEX ON {staging} (node_id, ts)")
    cursor.execute(f"CREATE INDEX ON {staging} USING brin (ts)")
    cursor.execute(f"ALTER TABLE {staging} RENAME TO {name}")
    lo, hi = day.isoformat(), (day + dt.timedelta(days=1)).isoformat()
    cursor.execute(
        f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"
    )
    cursor.execute(f"ANALYZE {name}")
    return rows


def history_load(args, *, start: dt.datetime):
    """Empty the telemetry tables and load the history; the quiet node (no
    telemetry), the nodes with it, the samples written and the seconds taken."""
    from django.db import connection

    from market.models import TelemetryRollupCursor
    from market.telemetry import storage

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {storage.SAMPLES}, {storage.TICKS}, {storage.MINUTES}")
    TelemetryRollupCursor.objects.all().delete()
    nodes = make_nodes(args.nodes + 1, gpus=args.gpus, label="history")
    quiet, nodes = nodes[0][0], nodes[1:]
    node_ids = [node.pk for node, _ in nodes]
    print(
        f"loading {args.nodes} nodes × {args.gpus} GPUs × {args.days} days every {INTERVAL} s ..."
    )
    t = time.perf_counter()
    samples = 0
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute("SET synchronous_commit = off")
        for d in range(args.days):
            day = start + dt.timedelta(days=d)
            samples += day_load(
                cursor,
                table=storage.SAMPLES,
                day=day,
                nodes=node_ids,
                gpus=args.gpus,
                first_k=d * 86400 // INTERVAL,
            )
            print(f"  {day:%Y-%m-%d}: {samples:,} samples, {time.perf_counter() - t:.0f} s")
    return quiet, nodes, samples, time.perf_counter() - t


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="leave the history in place")
    parser.add_argument(
        "--reuse", action="store_true", help="time the chart over the history a --keep run left"
    )
    args = parser.parse_args()
    os.environ["TELEMETRY_INTERVAL_SECONDS"] = str(INTERVAL)
    django_setup()
    from django.db import connection
    from django.test import Client

    from accounts.models import Organisation
    from core import clock
    from market.models import Lease, Node, TelemetryRollupCursor
    from market.telemetry import selectors, storage
    from tests.factories import LeaseFactory, OfferFactory, OrderFactory, member_of

    now = clock.now()
    end = storage.day_start(now)
    start = end - dt.timedelta(days=args.days)
    if args.reuse:
        history = list(Node.objects.filter(name__startswith="history-").order_by("-pk"))
        quiet, nodes = history[args.nodes], [(n, None) for n in reversed(history[: args.nodes])]
        samples, load_seconds, minutes, rollup_seconds = 0, 0.0, 0, 0.0
    else:
        quiet, nodes, samples, load_seconds = history_load(args, start=start)
        print("maintaining partitions (days ahead) ...")
        storage.telemetry_storage_maintain(now=now)
        t = time.perf_counter()
        minutes = storage.telemetry_rollup(now=now)
        rollup_seconds = time.perf_counter() - t
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {storage.MINUTES}")
        sizes = {}
        for table in (storage.SAMPLES, storage.MINUTES):
            cursor.execute(
                "SELECT sum(pg_total_relation_size(c.oid)), sum(c.reltuples) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                [table],
            )
            sizes[table] = cursor.fetchone()
    raw_bytes, rollup_bytes = int(sizes[storage.SAMPLES][0]), int(sizes[storage.MINUTES][0])
    if args.reuse:
        samples, minutes = int(sizes[storage.SAMPLES][1]), int(sizes[storage.MINUTES][1])
    print(
        f"{samples:,} samples ({raw_bytes / 2**30:.1f} GiB with indexes) loaded in "
        f"{load_seconds:.0f} s; rolled up into {minutes:,} minute rows "
        f"({rollup_bytes / 2**30:.2f} GiB) in {rollup_seconds:.1f} s"
        + (" (row counts from the planner's statistics)" if args.reuse else "")
    )

    buyer_org, _ = Organisation.objects.get_or_create(
        credit_code="91440300MA5BUYER0X",
        defaults={"kind": "buyer", "legal_name": "Bench Buyer Co., Ltd.", "verified": True},
    )
    node = nodes[len(nodes) // 2][0]

    def lease_on(target):
        offer = OfferFactory(node=target, available_from=start, available_until=end)
        order = OrderFactory(
            buyer=buyer_org, gpu_count=args.gpus, hours=24 * args.days, start_by=end
        )
        return LeaseFactory(
            offer=offer,
            order=order,
            gpu_count=args.gpus,
            starts_at=start,
            ends_at=end,
            status=Lease.Status.COMPLETED,
        )

    lease, floor_lease = lease_on(node), lease_on(quiet)
    client = Client()
    client.force_login(member_of(buyer_org, f"history-{secrets.token_hex(4)}"))

    def page(target):
        response = client.get(f"/leases/{target.pk}/usage/")
        assert response.status_code == 200, response.status_code
        return response

    assert "<svg" in page(lease).content.decode()  # warm up; the chart is there
    page(floor_lease)
    chart_ms, floor_ms = [], []
    for _ in range(args.requests):  # interleaved, so that both see the same load
        chart_ms += timed(lambda: page(lease), 1)
        floor_ms += timed(lambda: page(floor_lease), 1)
    hour = dt.timedelta(hours=1)
    series_ms = timed(lambda: selectors.node_series(node=node, since=end - hour, until=end), 10)
    raw_sql = f"""
        SELECT date_trunc('minute', ts), avg(utilisation), avg(power_w) FROM {storage.SAMPLES}
        WHERE node_id = %s AND ts >= %s AND ts < %s GROUP BY 1 ORDER BY 1
    """

    def raw_hour():
        with connection.cursor() as cursor:
            cursor.execute(raw_sql, [node.pk, end - hour, end])
            cursor.fetchall()

    raw_ms = timed(raw_hour, 10)
    whole_ms = timed(lambda: selectors.node_series(node=node, since=start, until=end), 3)
    chart, floor = statistics.median(chart_ms), statistics.median(floor_ms)
    chart_p95 = sorted(chart_ms)[int(0.95 * (len(chart_ms) - 1))]
    print(
        f"lease usage page with its chart: median {chart:.1f} ms, p95 {chart_p95:.1f} ms; "
        f"floor (same page, no telemetry) {floor:.1f} ms; ratio {chart / floor:.2f}"
    )
    print(
        f"the chart's series from rollups {statistics.median(series_ms):.1f} ms; the same hour "
        f"aggregated from raw samples {statistics.median(raw_ms):.1f} ms; the whole "
        f"{args.days}-day lease per minute from rollups {statistics.median(whole_ms):.0f} ms"
    )
    print(f"load average {os.getloadavg()[0]:.2f}")
    Lease.objects.filter(pk__in=[lease.pk, floor_lease.pk]).update(status=Lease.Status.CANCELLED)
    if not args.keep:
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {storage.SAMPLES}, {storage.TICKS}, {storage.MINUTES}")
        TelemetryRollupCursor.objects.all().delete()
    print(
        json.dumps(
            {
                "samples": samples,
                "nodes": args.nodes,
                "gpus": args.gpus,
                "days": args.days,
                "raw_gib": round(raw_bytes / 2**30, 2),
                "load_seconds": round(load_seconds, 1),
                "rollup_rows": minutes,
                "rollup_seconds": round(rollup_seconds, 1),
                "chart_page_ms": round(chart, 1),
                "chart_page_p95_ms": round(chart_p95, 1),
                "floor_page_ms": round(floor, 1),
                "ratio": round(chart / floor, 2),
                "series_ms": round(statistics.median(series_ms), 2),
                "raw_hour_ms": round(statistics.median(raw_ms), 2),
                "whole_lease_series_ms": round(statistics.median(whole_ms), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
