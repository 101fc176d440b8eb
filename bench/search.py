"""Offer search and the public board over a realistic book, in-process (no HTTP
server): the time per request of the public offer search API and the public
board page with filters, beside the bare DRF list (`gpu-models/`) measured in
the same run, the ratios, and the SQL queries each request runs. A page of the
search is cached until the book changes: each search is measured twice, as
repeated (the cached page) and right after a change to the book (`*_changed`:
the book's cache generation moved on before every request, so the search runs
its queries; the count stays cached per filter as it would).

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


def timed(client, url: str, requests: int, *, changed: bool = False) -> tuple[list[float], int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.cache import generation_bump
    from market.models.capacity import BOARD_CACHE

    client.get(url)  # warm: imports, caches, the plan cache
    times = []
    for _ in range(requests):
        if changed:
            generation_bump(BOARD_CACHE)
        t = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - t)
        assert response.status_code == 200, (url, response.status_code)
    if changed:
        generation_bump(BOARD_CACHE)
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
    runs = [(name, url, False) for name, url in SCENARIOS.items()]
    runs += [
        (f"{name}_changed", url, True) for name, url in SCENARIOS.items() if "api/v1/offers" in url
    ]
    for name, url, changed in runs:
        times, queries = timed(client, url, args.requests, changed=changed)
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
            f"{row['queries']:3} queries  {row['ratio_to_bare']:6.2f}× bare  "
            f"({SCENARIOS[name.removesuffix('_changed')]})"
        )
    print(json.dumps({"offers": live, "requests": args.requests, "scenarios": results}))


if __name__ == "__main__":
    main()
