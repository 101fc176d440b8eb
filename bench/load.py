"""Load on the real stack: locust against gunicorn + PostgreSQL + Redis + a
Celery worker, all started here on loopback, over a book of 100,000 offers.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<bench db> \\
        .venv/bin/python bench/load.py [--seconds 20] [--users 8] [--workers 2] \\
        [--scenarios bare,search,board,order,mix] [--replica-url postgres://...]

Each scenario runs --seconds with --users closed-loop clients (each waits for
its answer, then asks again). `bare` (GET gpu-models/, a bare DRF list on the
same server) is the ceiling, measured in the same run at the same
concurrency; every other endpoint's p99 is printed beside it as a ratio.
`mix`: 60 % offer searches, 15 % order placements (Idempotency-Keys, one in
ten a repeat), 10 % lease reads, 10 % usage-record reads, 5 % quotes (POST quotes/,
an order's fields, nothing placed) and
--agents node agents posting telemetry batches; after it, the matching backlog
left behind (queued runs, waiting outbox rows) and the time to drain it.
The agents post to an ingestion server of their own (--ingest-workers
gunicorn processes; 0: the API's server), as a proxy in front of the
exchange routes /api/v1/telemetry/ to its own pool in production, so that
API traffic never queues agents' batches behind it.
Telemetry's floor is measured in the same run, under the same load: the mix
again for as long (`mix_copy`, the API clients only) while --agents
processes write the same batches straight into the table by raw binary COPY,
one transaction a batch, back to back (no HTTP, no parsing, no ticks). The
ratio is samples/s over HTTP during `mix` to rows/s by COPY during
`mix_copy`; a raw COPY of the same rows on the quiet machine is printed
beside them.
Then a pyinstrument profile of the slowest endpoint, in-process.

Redis (Celery's broker and the cache) is a redis-server of its own on a
free loopback port, gone at the end (or --redis-url).
The database is a benchmark database: the book is written once and kept (the
leases and orders of earlier runs are deleted first, every offer's GPUs back),
market_telemetrysample is TRUNCATEd. Throttles are lifted for the server
(a load generator is one client). With --replica-url the server reads through
the replica (DATABASE_REPLICA_URL; bench/replica.py starts one).
The last line printed is one JSON object.
"""

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _setup import ROOT, django_setup, make_book, make_nodes

WEIGHTS = {
    "bare": {"bare": 1},
    "search": {"search": 1},
    "board": {"board": 1},
    "order": {"order": 1},
    "mix": {"search": 60, "order": 15, "leases": 10, "usage": 10, "quote": 5},
}
WEIGHTS["mix_copy"] = WEIGHTS["mix"]  # the same API clients, beside COPY writers
LIFTED_THROTTLES = {
    name: "1000000/min"
    for name in (
        "THROTTLE_RATE_ORDERS",
        "THROTTLE_RATE_QUOTES",
        "THROTTLE_RATE_TELEMETRY",
        "THROTTLE_RATE_AUTH_TOKEN",
        "THROTTLE_RATE_TOKEN_CREATE",
        "THROTTLE_RATE_SIGN_UP",
    )
}


def buyer_token() -> str:
    from knox.models import AuthToken

    from accounts.models import Membership, Organisation
    from tests.factories import UserFactory

    buyer, _ = Organisation.objects.get_or_create(
        credit_code="91440300MA5LOADB0X",
        defaults={"kind": "buyer", "legal_name": "Load Buyer Co., Ltd.", "verified": True},
    )
    user = UserFactory(username="load-buyer")
    Membership.objects.get_or_create(user=user, organisation=buyer, defaults={"role": "owner"})
    _instance, token = AuthToken.objects.create(user=user, expiry=None)
    return token


def market_reset() -> tuple[int, int]:
    """Every run starts from the same book: the leases, orders and matching
    rows earlier runs left are deleted and each offer's GPUs are back (a run
    places thousands of orders; after a few, every node of the ordered models
    was held and each order walked a book that had nothing left to sell).
    Benchmark database only. Returns (leases, orders) removed."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM market_lease), (SELECT count(*) FROM market_order)"
        )
        leases, orders = cursor.fetchone()
        for statement in (
            "DELETE FROM market_offerevent WHERE offer_id IN "
            "(SELECT id FROM market_offer WHERE resale_of_id IS NOT NULL)",
            "DELETE FROM market_offer WHERE resale_of_id IS NOT NULL",
            "DELETE FROM market_usagerecord",
            "DELETE FROM billing_invoiceline WHERE lease_id IS NOT NULL",
            "DELETE FROM market_leaseevent",
            "UPDATE market_lease SET previous_lease_id = NULL, resold_from_id = NULL "
            "WHERE previous_lease_id IS NOT NULL OR resold_from_id IS NOT NULL",
            "DELETE FROM market_lease",
            "DELETE FROM billing_frameworkagreement_orders",
            "DELETE FROM market_orderevent",
            "DELETE FROM market_order_accepted_models",
            "DELETE FROM market_order",
            "DELETE FROM core_outboxmessage",
            "UPDATE market_offer SET gpus_available = gpus_total "
            "WHERE gpus_available <> gpus_total",
        ):
            cursor.execute(statement)
    return leases, orders


def quote_url() -> str:
    """The quote endpoint (POST an order's fields; nothing is placed)."""
    from django.urls import reverse

    return reverse("api-quotes")


def start_server(port: int, workers: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    from django.conf import settings

    queues = settings.EXCHANGE_CELERY_QUEUES
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--queues",
            ",".join(queues),
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def copy_writer(node_id: int, *, batch: int, gpus: int, seconds: float, url: str, rows) -> None:
    """One writer of telemetry's floor (in its own process): batches of
    `batch` new samples of `node_id`, as an agent builds them, each written by
    one binary COPY (ingestion's own encoding) and committed, back to back for
    `seconds`; adds the rows written to `rows` (a shared counter)."""
    import psycopg

    from market.telemetry.ingest import _COPY_SQL, _copy_data

    seq = int(time.time() * 1000) * 1000  # numbers no agent of this run has used
    written = 0
    with psycopg.connect(url) as connection:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            base = time.time() - 60
            seqs = range(seq, seq + batch)
            columns = (
                list(seqs),
                [q % gpus for q in seqs],
                [base + (i // gpus) * 0.001 for i in range(batch)],
                [91.5] * batch,
                [70_000] * batch,
                [612.5] * batch,
                [67.0] * batch,
                [0] * batch,
                [0] * batch,
                [False] * batch,
            )
            seq += batch
            with connection.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
                copy.write(_copy_data(node_id=node_id, columns=columns))
            connection.commit()
            written += batch
    with rows.get_lock():
        rows.value += written


def copy_floor_during(*, run, config: dict, seconds: float, url: str) -> int:
    """Rows written by raw COPY (one writer per agent, the tick trigger off)
    while `run()` - the API clients of the mix - loads the server."""
    import multiprocessing

    from django.db import connection
    from ingest import TICK_TRIGGER

    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE market_telemetrysample DISABLE TRIGGER {TICK_TRIGGER}")
    connection.close()  # the writers are forked: none may share this connection
    context = multiprocessing.get_context("fork")
    rows = context.Value("q", 0)
    writers = [
        context.Process(
            target=copy_writer,
            args=(node_id,),
            kwargs={
                "batch": config["batch"],
                "gpus": config["gpus"],
                "seconds": seconds,
                "url": url,
                "rows": rows,
            },
        )
        for node_id, _token in config["nodes"]
    ]
    try:
        for writer in writers:
            writer.start()
        run()
        for writer in writers:
            writer.join()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE market_telemetrysample ENABLE TRIGGER {TICK_TRIGGER}")
    return rows.value


def run_locust(*, scenario: str, config: dict, port: int, users: int, seconds: float, out: Path):
    config = {**config, "scenario": scenario}
    path = out / f"{scenario}.json"
    path.write_text(json.dumps(config))
    prefix = out / scenario
    total_users = users + (config["agents"] if scenario == "mix" else 0)
    subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "locust"),
            "-f",
            str(ROOT / "bench" / "_load_locustfile.py"),
            "--headless",
            "--users",
            str(total_users),
            "--spawn-rate",
            str(total_users),
            "--run-time",
            f"{int(seconds)}s",
            "--host",
            f"http://127.0.0.1:{port}",
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "ERROR",
            "--stop-timeout",
            "10",
        ],
        env={**os.environ, "LOAD_CONFIG": str(path)},
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=(out / f"{scenario}.log").open("w"),
    )
    rows = {}
    with open(f"{prefix}_stats.csv") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                continue
            rows[row["Name"].split(" ")[0]] = {
                "requests": int(row["Request Count"]),
                "errors": int(row["Failure Count"]),
                "rps": round(float(row["Requests/s"]), 1),
                "p50_ms": float(row["50%"]),
                "p95_ms": float(row["95%"]),
                "p99_ms": float(row["99%"]),
            }
    return rows


def match_backlog(redis_url: str) -> tuple[int, int]:
    """(messages queued for workers, outbox rows of order matching still waiting)."""
    import redis

    from core.models import OutboxMessage

    client = redis.Redis.from_url(redis_url)
    queued = sum(
        client.llen(name) for name in client.scan_iter(match="*") if _is_queue(client, name)
    )
    waiting = OutboxMessage.objects.filter(
        task_name="market.match_order", completed_at__isnull=True
    ).count()
    return queued, waiting


def _is_queue(client, name) -> bool:
    try:
        return client.type(name) == b"list"
    except Exception:
        return False


def profile_slowest(endpoint: str, config: dict) -> str:
    from django.test import Client
    from pyinstrument import Profiler

    from tests.support import celery_broker

    client = Client(HTTP_HOST="127.0.0.1")
    auth = {"HTTP_AUTHORIZATION": f"Token {config['buyer_token']}"}
    calls = {
        "search": lambda: client.get("/api/v1/offers/?vendor=NVIDIA&min_gpus=2"),
        "board": lambda: client.get("/market/offers/?vendor=NVIDIA&min_gpus=2"),
        "leases": lambda: client.get("/api/v1/leases/", **auth),
        "usage": lambda: client.get("/api/v1/usage-records/", **auth),
        "order": lambda: client.post(
            "/api/v1/orders/",
            {
                "accepted_models": config["models"],
                "gpu_count": 2,
                "hours": 4,
                "max_price_amount": config["max_price"],
                "start_by": config["start_by"],
            },
            content_type="application/json",
            **auth,
        ),
        "telemetry": lambda: client.get("/api/v1/gpu-models/"),
        "bare": lambda: client.get("/api/v1/gpu-models/"),
        "quote": lambda: client.post(
            config["quote_url"],
            {
                "accepted_models": config["models"],
                "gpu_count": 2,
                "hours": 4,
                "start_by": config["start_by"],
            },
            content_type="application/json",
            **auth,
        ),
    }
    call = calls[endpoint]
    # As on the server: a placed order's matching is sent to a broker, not run here.
    with celery_broker("memory://"):
        call()
        with Profiler(interval=0.0005) as profiler:
            for _ in range(5):
                call()
    return profiler.output_text(unicode=True, color=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--users", type=int, default=8, help="concurrent API clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--agents", type=int, default=2, help="telemetry agents in the mix")
    parser.add_argument("--batch", type=int, default=1000, help="samples per telemetry POST")
    parser.add_argument(
        "--ingest-workers",
        type=int,
        default=2,
        help="gunicorn processes of the agents' own server in the mix (0: the API's)",
    )
    parser.add_argument("--offers", type=int, default=100_000)
    parser.add_argument("--scenarios", default="bare,search,board,order,mix")
    parser.add_argument("--replica-url", help="DATABASE_REPLICA_URL for the server")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--redis-url", help="an existing Redis (default: one of our own)")
    args = parser.parse_args()
    os.environ.update(LIFTED_THROTTLES)
    os.environ.pop("REDIS_URL", None)  # this process writes the book; the server uses our Redis
    django_setup()
    from django.core.management import call_command
    from django.db import connection
    from ingest import raw_copy_rate

    from core import clock
    from market.models import GPUModel, Offer
    from tests.support import RedisServer, free_port, wait_for_http

    call_command("migrate", verbosity=0)
    if Offer.objects.filter(node__name__startswith="load-node-").count() < args.offers:
        print(f"writing a book of {args.offers:,} offers (kept for the next run) ...")
        make_book(offers=args.offers)
    leases, orders = market_reset()
    print(f"market reset: {leases:,} leases and {orders:,} orders of earlier runs removed")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
    nodes = make_nodes(max(1, args.agents), gpus=8, label="load-agent")
    models = list(
        GPUModel.objects.filter(offers__node__name__startswith="load-node-")
        .values_list("slug", flat=True)
        .distinct()
        .order_by("slug")[:4]
    )
    config = {
        "buyer_token": buyer_token(),
        "nodes": [(node.pk, token) for node, token in nodes],
        "models": models,
        "max_price": 1_000_000,
        "start_by": (clock.now() + dt.timedelta(hours=6)).isoformat(),
        "agents": args.agents,
        "gpus": 8,
        "batch": args.batch,
        "weights": WEIGHTS,
        "quote_url": quote_url(),
    }
    notes = []
    live = Offer.objects.filter(status="active", gpus_available__gt=0).count()
    print(f"book: {live:,} live offers; load: {args.users} users, {args.seconds:.0f} s a scenario")
    env = {**os.environ, "DEBUG": "false", "LOG_LEVEL": "WARNING"}
    if args.replica_url:
        env["DATABASE_REPLICA_URL"] = args.replica_url
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="load-"))
    own_redis = None
    if args.redis_url:
        redis_url = args.redis_url
    else:
        own_redis = RedisServer(log=out / "redis.log").start()
        redis_url = own_redis.url
    env["REDIS_URL"] = redis_url
    server = start_server(port, args.workers, env)
    ingest = None
    scenarios = args.scenarios.split(",")
    if "mix" in scenarios and args.agents and args.ingest_workers:
        ingest_port = free_port()
        ingest = start_server(ingest_port, args.ingest_workers, env)
        config["ingest_url"] = f"http://127.0.0.1:{ingest_port}"
    worker = start_worker(env, out / "worker.log")
    results: dict[str, dict] = {}
    backlog: dict = {}
    copy_rows = 0
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=server)
        if ingest is not None:
            wait_for_http(f"{config['ingest_url']}/healthz", process=ingest)
        if "mix" in scenarios and args.agents:
            scenarios.insert(scenarios.index("mix") + 1, "mix_copy")
        for scenario in scenarios:
            t = time.perf_counter()

            def run(scenario=scenario):
                return run_locust(
                    scenario=scenario,
                    config=config,
                    port=port,
                    users=args.users,
                    seconds=args.seconds,
                    out=out,
                )

            if scenario == "mix_copy":
                got: dict = {}
                copy_rows = copy_floor_during(
                    run=lambda got=got: got.update(run()),
                    config=config,
                    seconds=args.seconds,
                    url=os.environ["DATABASE_URL"],
                )
                results[scenario] = got
            else:
                results[scenario] = run()
            if scenario in ("order", "mix"):
                queued, waiting = match_backlog(redis_url)
                at_end = {"queued_runs": queued, "waiting_orders": waiting}
                start = time.perf_counter()
                while (queued or waiting) and time.perf_counter() - start < 120:
                    time.sleep(0.5)
                    queued, waiting = match_backlog(redis_url)
                left = match_backlog(redis_url) if (queued or waiting) else (0, 0)
                backlog[scenario] = {
                    **at_end,
                    "drain_seconds": round(time.perf_counter() - start, 1),
                    "left_after_120s": sum(left),
                }
            print(f"  {scenario}: {time.perf_counter() - t:.0f} s")
    finally:
        for process in (server, worker, ingest):
            if process is not None:
                process.terminate()
                process.wait()
        if own_redis is not None:
            own_redis.kill()
    bare = results.get("bare", {}).get("bare")
    print(
        f"\n{'scenario / endpoint':34} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'errors':>6} {'p99/bare':>8}"
    )
    errors = 0
    for scenario, rows in results.items():
        for endpoint, row in rows.items():
            errors += row["errors"]
            ratio = round(row["p99_ms"] / bare["p99_ms"], 2) if bare else None
            row["p99_to_bare"] = ratio
            print(
                f"{scenario + ' / ' + endpoint:34} {row['rps']:7.1f} {row['p50_ms']:6.0f}ms "
                f"{row['p95_ms']:6.0f}ms {row['p99_ms']:6.0f}ms {row['errors']:6} "
                f"{ratio if ratio is not None else '-':>8}"
            )
    for scenario, row in backlog.items():
        print(
            f"matching after '{scenario}': {row['queued_runs']} queued runs, "
            f"{row['waiting_orders']} orders waiting for one; drained in {row['drain_seconds']} s"
        )
    telemetry = results.get("mix", {}).get("telemetry")
    copy = None
    if telemetry and telemetry["requests"] > telemetry["errors"] and copy_rows:
        samples_per_s = telemetry["rps"] * args.batch
        in_run = copy_rows / args.seconds
        rows, seconds = raw_copy_rate(connection)
        copy = {
            "samples_per_s": round(samples_per_s),
            "copy_in_mix_rows_per_s": round(in_run),
            "ratio": round(samples_per_s / in_run, 3),
            "copy_quiet_rows_per_s": round(rows / seconds),
            "ingest_workers": args.ingest_workers if ingest is not None else 0,
        }
        print(
            f"telemetry during the mix: {samples_per_s:,.0f} samples/s over HTTP; raw binary "
            f"COPY by {args.agents} writers during the same mix (mix_copy): {in_run:,.0f} rows/s; "
            f"ratio {copy['ratio']:.2f} (a raw COPY of {rows:,} rows on the quiet machine: "
            f"{rows / seconds:,.0f} rows/s)"
        )
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
    slowest = None
    if not args.no_profile and results.get("mix"):
        slowest = max(
            (e for e in results["mix"] if e != "telemetry"),
            key=lambda e: results["mix"][e]["p99_ms"],
        )
        print(f"\nprofile of the slowest endpoint of the mix ({slowest}), in-process, 5 requests:")
        print("\n".join(profile_slowest(slowest, config).splitlines()[:60]))
    for note in notes:
        print(f"note: {note}")
    print(
        json.dumps(
            {
                "offers": live,
                "users": args.users,
                "seconds": args.seconds,
                "workers": args.workers,
                "replica": bool(args.replica_url),
                "load_average": round(os.getloadavg()[0], 2),
                "errors": errors,
                "scenarios": results,
                "matching_backlog": backlog,
                "telemetry_vs_copy": copy,
                "slowest": slowest,
                "notes": notes,
            }
        )
    )


if __name__ == "__main__":
    main()
