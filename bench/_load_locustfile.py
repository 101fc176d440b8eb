"""Locust users for bench/load.py (run by it as `locust -f`, never alone).

The run's identities and the scenario come from the JSON file named by
LOAD_CONFIG; each request is named for its endpoint so that the statistics
group by endpoint."""

import itertools
import json
import os
import random
import time
import uuid
from pathlib import Path

from locust import FastHttpUser, constant, task

CONFIG = json.loads(Path(os.environ["LOAD_CONFIG"]).read_text())
SCENARIO = CONFIG["scenario"]
WEIGHTS = CONFIG["weights"][SCENARIO]

SEARCHES = [
    "/api/v1/offers/?vendor=NVIDIA&min_gpus=2",
    "/api/v1/offers/?hub=gansu&min_green_share=0.3&sort=green",
    "/api/v1/offers/?sort=-price&page=3",
    "/api/v1/offers/?domestic=true&sort=price",
    "/api/v1/offers/?max_price=3000&min_gpus=4&page=2",
]
BOARDS = ["/market/offers/", "/market/offers/?vendor=NVIDIA&min_gpus=2"]


class ApiUser(FastHttpUser):
    """One client of the API, waiting for each answer before the next request
    (closed loop: the concurrency is the number of users)."""

    wait_time = constant(0)
    weight = 1

    def on_start(self) -> None:
        self.buyer = {"Authorization": f"Token {CONFIG['buyer_token']}"}
        self.keys: list[str] = []

    @task(WEIGHTS.get("bare", 0))
    def bare(self) -> None:
        self.client.get("/api/v1/gpu-models/", name="bare gpu-models/")

    @task(WEIGHTS.get("search", 0))
    def search(self) -> None:
        self.client.get(random.choice(SEARCHES), name="search offers/")

    @task(WEIGHTS.get("board", 0))
    def board(self) -> None:
        self.client.get(random.choice(BOARDS), name="board /market/offers/")

    @task(WEIGHTS.get("order", 0))
    def order(self) -> None:
        # One in ten repeats an earlier key: the first order comes back (200).
        key = random.choice(self.keys) if self.keys and random.random() < 0.1 else None
        if key is None:
            key = uuid.uuid4().hex
            self.keys = (self.keys + [key])[-20:]
        rng = random.Random(key)
        body = {
            "accepted_models": CONFIG["models"],
            "gpu_count": rng.randint(1, 8),
            "hours": rng.randint(1, 24),
            "max_price_amount": CONFIG["max_price"],
            "start_by": CONFIG["start_by"],
        }
        with self.client.post(
            "/api/v1/orders/",
            json=body,
            headers={**self.buyer, "Idempotency-Key": key},
            name="order POST orders/",
            catch_response=True,
        ) as response:
            if response.status_code not in (200, 201):
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(WEIGHTS.get("quote", 0))
    def quote(self) -> None:
        # A quote takes the order's own fields and places nothing.
        body = {
            "accepted_models": CONFIG["models"],
            "gpu_count": random.randint(1, 8),
            "hours": random.randint(1, 24),
            "start_by": CONFIG["start_by"],
        }
        self.client.post(
            CONFIG["quote_url"], json=body, headers=self.buyer, name="quote POST quotes/"
        )

    @task(WEIGHTS.get("leases", 0))
    def leases(self) -> None:
        self.client.get("/api/v1/leases/", headers=self.buyer, name="leases leases/")

    @task(WEIGHTS.get("usage", 0))
    def usage(self) -> None:
        self.client.get("/api/v1/usage-records/", headers=self.buyer, name="usage usage-records/")


_agents = itertools.count()


class AgentUser(FastHttpUser):
    """A node agent posting telemetry batches of its GPUs (in the mix only)."""

    wait_time = constant(0)
    fixed_count = CONFIG["agents"] if SCENARIO == "mix" else 0

    def on_start(self) -> None:
        node_id, token = CONFIG["nodes"][next(_agents) % len(CONFIG["nodes"])]
        self.node_id = node_id
        self.headers = {"Authorization": f"Node {token}", "Content-Type": "application/json"}
        self.seq = int(time.time() * 1000) * 1000  # fresh numbers on every run

    @task
    def telemetry(self) -> None:
        gpus, batch = CONFIG["gpus"], CONFIG["batch"]
        base = time.time() - 60
        samples = []
        for i in range(batch):
            samples.append(
                {
                    "seq": self.seq,
                    "ts": base + (i // gpus) * 0.001,
                    "gpu": self.seq % gpus,
                    "util": 91.5,
                    "mem_used_mib": 70_000,
                    "power_w": 612.5,
                    "temp_c": 67.0,
                    "ecc_errors": 0,
                    "xid_errors": 0,
                    "missing": False,
                }
            )
            self.seq += 1
        self.client.post(
            # its own server when the run has one (a proxy routes this path to its pool)
            CONFIG.get("ingest_url", "") + "/api/v1/telemetry/",
            data=json.dumps({"node": self.node_id, "samples": samples}),
            headers=self.headers,
            name="telemetry POST telemetry/",
        )


if SCENARIO != "mix":
    del AgentUser
