"""Telemetry ingestion throughput: simulated agents POST batches to a gunicorn-
served exchange on PostgreSQL; then raw binary COPY of the same rows into the
same table, measured in the same run, as the ceiling. The ceiling is the bare
COPY of the samples: the trigger that adds each stored sample to its tick
(migration market/0021) is off while it runs, so the ratio counts what ticks
cost ingestion.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> .venv/bin/python bench/ingest.py \
        [--seconds 20] [--agents 4] [--batch 5000] [--workers 2]

It TRUNCATEs market_telemetrysample and market_telemetrytick of that database
(a benchmark database).
The last line printed is a JSON object with samples_per_s, copy_samples_per_s
and ratio.
"""

import argparse
import http.client
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

from _setup import ROOT, django_setup


def build_bodies(node_id: int, gpus: int, batch: int, count: int, t0: float) -> list[bytes]:
    import orjson

    bodies, seq = [], 0
    for _ in range(count):
        samples = []
        for _ in range(batch):
            samples.append(
                {
                    "seq": seq,
                    "ts": t0 + (seq // gpus) * 5.0,
                    "gpu": seq % gpus,
                    "util": 91.5,
                    "mem_used_mib": 70_000 + seq % 977,
                    "power_w": 612.5,
                    "temp_c": 67.0,
                    "ecc_errors": 0,
                    "xid_errors": 0,
                    "missing": False,
                }
            )
            seq += 1
        bodies.append(orjson.dumps({"node": node_id, "samples": samples}))
    return bodies


def agent(port, token, bodies, start_at, seconds, out):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Node {token}", "Content-Type": "application/json"}
    while time.time() < start_at:
        time.sleep(0.01)
    accepted = posts = 0
    deadline = start_at + seconds
    for body in bodies:
        if time.time() >= deadline:
            break
        conn.request("POST", "/api/v1/telemetry/", body=body, headers=headers)
        response = conn.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {payload}")
        accepted += payload["accepted"]
        posts += 1
    out.put((accepted, posts, time.time(), time.process_time()))


_TICK = os.sysconf("SC_CLK_TCK")
TICK_TRIGGER = "market_telemetrytick_add"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def backend_pids(connection) -> list[int]:
    """The server processes serving this database, other than ours."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in cursor.fetchall()]


def raw_copy_rate(connection) -> tuple[int, float]:
    """Dump the stored rows in binary, empty the table, COPY them back in."""
    cols = (
        "node_id, seq, gpu_index, ts, utilisation, memory_used_mib, power_w, "
        "temperature_c, ecc_errors, xid_errors, missing"
    )
    raw = connection.connection
    chunks = []
    with raw.cursor() as cur:
        with cur.copy(
            f"COPY (SELECT {cols} FROM market_telemetrysample) TO STDOUT (FORMAT BINARY)"
        ) as cp:
            for chunk in cp:
                chunks.append(bytes(chunk))
        cur.execute("SELECT count(*) FROM market_telemetrysample")
        rows = cur.fetchone()[0]
        cur.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
        cur.execute(f"ALTER TABLE market_telemetrysample DISABLE TRIGGER {TICK_TRIGGER}")
        raw.commit()
        try:
            start = time.perf_counter()
            with cur.copy(f"COPY market_telemetrysample ({cols}) FROM STDIN (FORMAT BINARY)") as cp:
                for chunk in chunks:
                    cp.write(chunk)
            raw.commit()
            seconds = time.perf_counter() - start
        finally:
            raw.rollback()
            cur.execute(f"ALTER TABLE market_telemetrysample ENABLE TRIGGER {TICK_TRIGGER}")
            raw.commit()
        return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--agents", type=int, default=4, help="client processes (one node each)")
    parser.add_argument("--batch", type=int, default=5000, help="samples per POST (≤ 5000)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per worker (> 1: gthread workers)"
    )
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--max-batches", type=int, default=150, help="pre-built batches per agent")
    args = parser.parse_args()

    # The agents' throttle (30 batches a minute per node) is what the bench measures past.
    os.environ["THROTTLE_RATE_TELEMETRY"] = "1000000/min"
    django_setup()
    from django.core.management import call_command
    from django.db import connection

    from tests.support import free_port, wait_for_http

    call_command("migrate", verbosity=0)  # a new benchmark database works too
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
    nodes = make_nodes(args.agents, gpus=args.gpus, label="ingest")
    t0 = time.time() - 30 * 86400
    print(f"building {args.max_batches} batches of {args.batch} samples for {args.agents} agents")
    bodies = [build_bodies(n.pk, args.gpus, args.batch, args.max_batches, t0) for n, _ in nodes]
    port = free_port()
    server = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "false", "LOG_LEVEL": "WARNING"},
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=server)
        out = mp.Queue()
        start_at = time.time() + 1.0
        procs = [
            mp.Process(target=agent, args=(port, token, b, start_at, args.seconds, out))
            for (_node, token), b in zip(nodes, bodies, strict=True)
        ]
        for p in procs:
            p.start()
        workers = children(server.pid)  # their threads' CPU counts too
        while time.time() < start_at:
            time.sleep(0.01)
        workers_cpu0 = sum(cpu_seconds(w) for w in workers)
        backends0 = {pid: cpu_seconds(pid) for pid in backend_pids(connection)}
        results = [out.get() for _ in procs]
        workers_cpu = sum(cpu_seconds(w) for w in workers) - workers_cpu0
        # Backends opened during the run count from 0 (gunicorn keeps its connections).
        pg_cpu = sum(cpu_seconds(pid) - backends0.get(pid, 0.0) for pid in backend_pids(connection))
        for p in procs:
            p.join()
    finally:
        server.terminate()
        server.wait()
    accepted = sum(r[0] for r in results)
    posts = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results) - start_at
    rate = accepted / elapsed
    print(
        f"HTTP: {accepted:,} samples in {posts} POSTs over {elapsed:.1f} s = {rate:,.0f} samples/s"
    )
    if posts == args.agents * args.max_batches:
        print("note: agents ran out of pre-built batches; raise --max-batches for a longer run")
    rows, copy_seconds = raw_copy_rate(connection)
    copy_rate = rows / copy_seconds
    print(
        f"raw binary COPY of the same {rows:,} rows: {copy_seconds:.2f} s = {copy_rate:,.0f} rows/s"
    )
    ratio = rate / copy_rate
    print(f"ratio HTTP / COPY: {ratio:.2f}")
    agents_cpu = sum(r[3] for r in results)
    per_k = {
        "agents": agents_cpu,
        "gunicorn": workers_cpu,
        "postgres_backends": pg_cpu,
    }
    print(
        "CPU ms per 1,000 samples: "
        + ", ".join(f"{k} {v * 1e6 / max(accepted, 1):.2f}" for k, v in per_k.items())
        + f" (wall {elapsed:.1f} s, {os.getloadavg()[0]:.2f} load)"
    )
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE market_telemetrysample, market_telemetrytick")
    print(
        json.dumps(
            {
                "samples_per_s": round(rate),
                "copy_samples_per_s": round(copy_rate),
                "ratio": round(ratio, 3),
                "samples": accepted,
                "seconds": round(elapsed, 2),
                "agents": args.agents,
                "batch": args.batch,
                "workers": args.workers,
                "threads": args.threads,
                "cpu_ms_per_k": {k: round(v * 1e6 / max(accepted, 1), 2) for k, v in per_k.items()},
            }
        )
    )


from _setup import make_nodes  # noqa: E402

if __name__ == "__main__":
    main()
