"""What a newcomer sees change in a freshly started demo: every 30 s for five
minutes, from the demo's own SQLite database (read-only), the nodes by state,
orders, leases and invoices by status, payouts and the lowest ask per model.

    make demo PORT=8124 &            # in a fresh clone
    .venv/bin/python bench/demo_watch.py --root . --port 8124

It waits for the site to answer first and prints how long that took, then one
JSON line per reading (`after_s` is seconds since the site answered).
"""

import argparse
import json
import sqlite3
import time
import urllib.request
from pathlib import Path

QUERIES = {
    "nodes": "SELECT state, count(*) FROM market_node GROUP BY state",
    "orders": "SELECT status, count(*) FROM market_order GROUP BY status",
    "leases": "SELECT status, count(*) FROM market_lease GROUP BY status",
    "invoices": "SELECT status, count(*) FROM billing_invoice GROUP BY status",
    "asks_fen": (
        "SELECT g.slug, min(o.price_amount) FROM market_offer o "
        "JOIN market_gpumodel g ON g.id = o.gpu_model_id WHERE o.status = 'active' GROUP BY g.slug"
    ),
}


def wait_for_site(port: int, *, timeout: float = 900) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)  # noqa: S310 - loopback
            return time.monotonic() - started
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the site did not answer within {timeout:.0f} s")


def reading(database: Path, since: float) -> dict:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        row: dict = {"after_s": round(time.monotonic() - since)}
        for name, sql in QUERIES.items():
            row[name] = dict(connection.execute(sql).fetchall())
        count, total = connection.execute(
            "SELECT count(*), coalesce(sum(amount), 0) FROM billing_payout"
        ).fetchone()
        row["payouts"] = {"count": count, "total_fen": total}
        return row
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the demo's checkout")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--every", type=float, default=30, help="seconds between readings")
    args = parser.parse_args()
    waited = wait_for_site(args.port)
    print(f"the site answered after {waited:.0f} s of waiting", flush=True)
    answered = time.monotonic()
    while True:
        print(
            json.dumps(reading(args.root / "db.sqlite3", answered), ensure_ascii=False), flush=True
        )
        if time.monotonic() - answered + args.every > args.minutes * 60 + 1:
            break
        time.sleep(args.every)


if __name__ == "__main__":
    main()
