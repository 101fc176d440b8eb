"""Offer search and the public board over a realistic book, in-process (no HTTP
server): the time per request of the public offer search API and the public
board page with filters, beside the bare DRF list (`gpu-models/`) measured in
the same run, the ratios, and the SQL queries each request runs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> .venv/bin/python bench/search.py \
        [--offers 100000] [--requests 30] [--profile offers|board] [--explain]

The book (bench/_setup.make_book: 200 providers, 2,000 sites, 20,000 nodes)
is written once into that database and kept (a benchmark database): a second
run reuses it. --explain prints EXPLAIN ANALYZE of the search's SQL;
--profile prints a pyinstrument profile of one scenario.
The last line printed is one JSON object.
"""

import argparse
import json
import statistics
import time

from _setup import django_setup, make_book

SCENARIOS = {
    "bare": "/api/v1/gpu-models/",
    "offers": "/api/v1/offers/?vendor=NVIDIA&min_gpus=2&sort=price",
    "offers_hub": "/api/v1/offers/?hub=gansu&min_green_share=0.3&sort=green",
    "offers_page_40": "/api/v1/offers/?sort=price_per_pflops&page=40",
    "board": "/market/offers/?vendor=NVIDIA&min_gpus=2",
    "board_plain": "/market/offers/",
}


def timed(client, url: str, requests: int) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: imports, caches, the plan cache
    times = []
    for _ in range(requests):
        t = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - t)
        assert response.status_code == 200, (url, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    return times, len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--profile", choices=sorted(SCENARIOS))
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    django_setup()
    from django.core.cache import cache
    from django.test import Client

    from market.models import Offer

    if Offer.objects.filter(node__name__startswith="load-node-").count() < args.offers:
        print(f"writing a book of {args.offers:,} offers ...")
        make_book(offers=args.offers)
    live = Offer.objects.filter(status="active").count()
    print(f"{live:,} active offers")
    cache.clear()
    client = Client(HTTP_HOST="127.0.0.1")
    if args.explain:
        from django.db import connection

        from market.selectors import offers_search

        sql, params = offers_search(vendor="NVIDIA", min_gpus=2).query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql} LIMIT 50", params)
            print("\n".join(row[0] for row in cursor.fetchall()))
    if args.profile:
        from pyinstrument import Profiler

        url = SCENARIOS[args.profile]
        client.get(url)
        with Profiler(interval=0.0005) as profiler:
            for _ in range(5):
                client.get(url)
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    results = {}
    for name, url in SCENARIOS.items():
        times, queries = timed(client, url, args.requests)
        times.sort()
        results[name] = {
            "median_ms": round(statistics.median(times) * 1000, 1),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1000, 1),
            "queries": queries,
        }
    bare = results["bare"]["median_ms"]
    for name, row in results.items():
        row["ratio_to_bare"] = round(row["median_ms"] / bare, 2)
        print(
            f"{name:15} median {row['median_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  "
            f"{row['queries']:3} queries  {row['ratio_to_bare']:6.2f}× bare  ({SCENARIOS[name]})"
        )
    print(json.dumps({"offers": live, "requests": args.requests, "scenarios": results}))


if __name__ == "__main__":
    main()
