"""Node health checks at scale: N nodes x G GPUs with T new ticks each since
the last check (default 2,000 x 8 x 6: one 5-second beat interval of a large
fleet reporting every second), then one `nodes_health_check` over all of them;
beside it, in the same run, its floor: PostgreSQL's bare aggregate scan of the
same rows (per node and GPU: max seq, missing count, error counter extremes).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> .venv/bin/python bench/health.py \\
        [--nodes 2000] [--gpus 8] [--ticks 6] [--repeat 3]

It TRUNCATEs market_telemetrysample of that database (a benchmark database).
The last line printed is a JSON object with the medians and the ratio.
"""

import argparse
import json
import statistics
import time

from _setup import django_setup, make_nodes

FLOOR_SQL = """
SELECT node_id, gpu_index, max(seq), count(*) FILTER (WHERE missing),
       max(xid_errors), min(xid_errors), max(ecc_errors), min(ecc_errors)
FROM market_telemetrysample WHERE seq > %(after)s GROUP BY node_id, gpu_index
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    django_setup()
    from django.db import connection

    from core import clock
    from market.models import Node, NodeHealthCursor
    from market.telemetry.health import nodes_health_check

    now = clock.now()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
    Node.objects.exclude(state__in=["maintenance", "awaiting_agent"]).update(state="maintenance")
    print(f"{args.nodes} nodes x {args.gpus} GPUs, {args.ticks} new ticks a check")
    nodes = make_nodes(args.nodes, gpus=args.gpus, label="health")
    ids = [node.pk for node, _ in nodes]
    Node.objects.filter(pk__in=ids).update(state="online", last_seen_at=now)
    check_times, floor_times = [], []
    for round_ in range(args.repeat):
        first = round_ * args.ticks
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO market_telemetrysample
                    (node_id, seq, gpu_index, ts, utilisation, memory_used_mib, power_w,
                     temperature_c, ecc_errors, xid_errors, missing)
                SELECT n, k * %(gpus)s + g, g, %(now)s - make_interval(secs => 60 - k),
                       80, 60000, 600, 65, 0, 0, false
                FROM unnest(%(nodes)s::bigint[]) AS n,
                     generate_series(%(first)s, %(last)s) AS k, generate_series(0, %(gpus)s - 1) AS g
                """,
                {
                    "gpus": args.gpus,
                    "now": now,
                    "nodes": ids,
                    "first": first,
                    "last": first + args.ticks - 1,
                },
            )
            rows = cursor.rowcount
            cursor.execute("ANALYZE market_telemetrysample")
        t = time.perf_counter()
        changed = nodes_health_check(now=now)
        check_times.append(time.perf_counter() - t)
        after = first * args.gpus - 1
        with connection.cursor() as cursor:
            t = time.perf_counter()
            cursor.execute(FLOOR_SQL, {"after": after})
            cursor.fetchall()
            floor_times.append(time.perf_counter() - t)
        print(
            f"check {round_ + 1}: {rows:,} new samples, {check_times[-1] * 1000:.0f} ms "
            f"({changed} changed state); floor {floor_times[-1] * 1000:.0f} ms"
        )
    NodeHealthCursor.objects.filter(node_id__in=ids).delete()
    Node.objects.filter(pk__in=ids).update(state="maintenance")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
    check, floor = statistics.median(check_times), statistics.median(floor_times)
    print(
        f"median check {check * 1000:.0f} ms, floor {floor * 1000:.0f} ms, ratio {check / floor:.2f}"
    )
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "gpus": args.gpus,
                "ticks": args.ticks,
                "check_ms": round(check * 1000, 1),
                "floor_ms": round(floor * 1000, 1),
                "ratio": round(check / floor, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
