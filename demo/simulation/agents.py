"""A fast in-process model of the node agents, and the faults they meet.

Each simulated node's agent samples all its GPUs once per step (the
simulation's reporting interval) and posts the batch through
`telemetry_ingest`, the service the telemetry API calls, with the simulated
instant as "now". GPUs a lease holds run busy, the others idle. Faults, drawn
from the seeded generator at the configured rate:

- ``xid``: a burst of XID errors on one GPU for one to six reports (the node is
  degraded; a long burst fails its leases over);
- ``silent``: the node is down for a while and samples nothing (the windows are
  lost; a long outage fails its leases over);
- ``restart``: the agent loses the exchange for a while, keeps sampling into its
  buffer, restarts (its error counters start from zero again) and posts the
  whole buffer late;
- ``dies``: the agent stops for good in the middle of the run;
- ``never``: a node whose agent never reports at all (never matched).

The model keeps the ground truth the end checks compare the exchange with:
which ticks each node really had stored.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from django.db.models import Sum

from market.models import Lease, Node
from market.telemetry import MAX_SAMPLES_PER_BATCH, telemetry_ingest

FAULT_KINDS = ("xid", "silent", "restart", "dies")


@dataclass
class Fault:
    kind: str
    start: float  # epoch seconds
    end: float


@dataclass
class NodeModel:
    node: Node
    tdp_w: float
    seq: int = 0
    xid: list[int] = field(default_factory=list)
    buffer: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    never: bool = False

    def active(self, t: float) -> Fault | None:
        return next((f for f in self.faults if f.start <= t < f.end), None)


class AgentModel:
    def __init__(
        self,
        *,
        rng: random.Random,
        nodes: list[Node],
        start: dt.datetime,
        hours: float,
        step: int,
        fault_rate: float,
        never_reporting: int,
    ) -> None:
        self.rng, self.step = rng, step
        self.models = [
            NodeModel(node=n, tdp_w=float(n.gpu_model.tdp_w or 400), xid=[0] * n.gpu_count)
            for n in nodes
        ]
        self.ticks: dict[int, set[float]] = defaultdict(set)  # node id → tick ts stored
        self.real: set[int] = set()  # nodes whose real agent process reports (RealAgents)
        self.faults = Counter[str]()
        self._plan(start=start.timestamp(), hours=hours, rate=fault_rate, never=never_reporting)

    def _plan(self, *, start: float, hours: float, rate: float, never: int) -> None:
        """Draw every fault up front (same seed, same faults)."""
        end = start + hours * 3600
        never_models = self.rng.sample(self.models, k=min(never, len(self.models)))
        for model in never_models:
            model.never = True
            self.faults["never"] += 1
        expected = rate * len(self.models) * hours / 24
        for _ in range(poisson(self.rng, expected)):
            model = self.rng.choice(self.models)
            kind = self.rng.choices(FAULT_KINDS, weights=[5, 3, 3, 1])[0]
            # faults start after the first hour, when the market has filled
            at = self.rng.uniform(start + 3600, end)
            at -= at % self.step
            length = {
                "xid": self.step * self.rng.randint(1, 6),
                "silent": self.step * self.rng.randint(2, 18),
                "restart": self.step * self.rng.randint(1, 6),
                "dies": end - at + 1,
            }[kind]
            if model.never or any(f.start <= at + length and at <= f.end for f in model.faults):
                continue  # one fault at a time per node
            model.faults.append(Fault(kind, at, at + length))
            self.faults[kind] += 1

    def report(self, *, now: dt.datetime) -> int:
        """Every agent's report for this step; returns the samples stored."""
        t = now.timestamp()
        busy = dict(
            Lease.objects.filter(status=Lease.Status.ACTIVE)
            .values("node")
            .annotate(g=Sum("gpu_count"))
            .values_list("node", "g")
            .order_by()
        )
        stored = 0
        for model in self.models:
            if model.never or model.node.pk in self.real:
                continue
            fault = model.active(t)
            kind = fault.kind if fault else ""
            if kind in ("silent", "dies"):
                continue  # down: nothing sampled, nothing sent
            samples = self._tick(model, t, busy.get(model.node.pk, 0), xid=kind == "xid")
            if kind == "restart":
                model.buffer += samples
                if t + self.step >= fault.end:  # back next step: restart with zero counters
                    model.xid = [0] * model.node.gpu_count
                continue
            batch, model.buffer = model.buffer + samples, []
            stored += self._post(model, batch, now=now)
        return stored

    def _tick(self, model: NodeModel, t: float, busy: int, *, xid: bool) -> list[dict]:
        rng = self.rng
        if xid:
            model.xid[rng.randrange(model.node.gpu_count)] += rng.randint(1, 4)
        samples = []
        for gpu in range(model.node.gpu_count):
            util = rng.uniform(72, 99) if gpu < busy else rng.uniform(0, 3)
            samples.append(
                {
                    "seq": model.seq,
                    "gpu": gpu,
                    "ts": t,
                    "util": round(util, 1),
                    "mem_used_mib": int(util * 780),
                    "power_w": round(60 + (model.tdp_w - 60) * util / 100, 1),
                    "temp_c": round(34 + 46 * util / 100, 1),
                    "ecc_errors": 0,
                    "xid_errors": model.xid[gpu],
                }
            )
            model.seq += 1
        return samples

    def _post(self, model: NodeModel, samples: list[dict], *, now: dt.datetime) -> int:
        stored = 0
        for i in range(0, len(samples), MAX_SAMPLES_PER_BATCH):
            batch = samples[i : i + MAX_SAMPLES_PER_BATCH]
            body = orjson.dumps({"node": model.node.pk, "samples": batch})
            stored += telemetry_ingest(node=model.node, body=body, now=now).accepted
        self.ticks[model.node.pk].update(s["ts"] for s in samples)
        return stored

    def never_reporting_ids(self) -> list[int]:
        return [m.node.pk for m in self.models if m.never]

    def fault_seconds(self) -> dict[int, list[tuple[float, float, str]]]:
        return {m.node.pk: [(f.start, f.end, f.kind) for f in m.faults] for m in self.models}


def poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method, split for large means (stays exact with one generator)."""
    count = 0
    while mean > 30:
        count += round(rng.gauss(30, 30**0.5))
        mean -= 30
    limit, product = pow(2.718281828459045, -mean), rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return max(count, 0)


def simulated_agent_argv(*, url: str, gpus: int, state_dir: Path) -> list[str]:
    """The real node agent on a simulated node (`python -m agent --simulate`),
    reporting to `url`; its token goes in the environment (EXCHANGE_NODE_TOKEN),
    never on the command line `ps` shows."""
    return [sys.executable, "-m", "agent", "--url", url, "--simulate"] + [
        "--gpus", str(gpus), "--state-dir", str(state_dir),
    ]  # fmt: skip


class RealAgents:
    """The real node agent (`python -m agent --simulate --once`), one process per
    chosen node per step, posting over HTTP to the exchange this process serves
    on a loopback port (`TelemetryServer`): the agent's own code (its simulated
    GPUs, its buffer and sequence numbers, its HTTP client) and the telemetry
    API's (token, throttle, ingestion) run in the simulation beside the fast
    model. Each agent stamps its samples with the step's instant (the
    accelerated clock spec at speed 0: time stands still, as on the step clock).
    The nodes are taken from the model: the first ones with no fault planned,
    so the faults the seed draws are the same with or without real agents."""

    def __init__(self, *, model: AgentModel, count: int, url: str, seed: int) -> None:
        from market.capacity import node_token_rotate

        self.model, self.url, self.seed = model, url, seed
        chosen = [m for m in model.models if not m.never and not m.faults][:count]
        self.nodes = [(m.node, node_token_rotate(node=m.node)) for m in chosen]
        model.real = {m.node.pk for m in chosen}
        self.state = Path(tempfile.mkdtemp(prefix="simulate-agents-"))
        self.runs = 0

    def report(self, *, now: dt.datetime) -> int:
        spec = f"sim:{now.isoformat()}@{time.time():.3f}x0"
        running = []
        for node, token in self.nodes:
            argv = simulated_agent_argv(
                url=self.url, gpus=node.gpu_count, state_dir=self.state / str(node.pk)
            )
            argv += ["--once", "--seed", str(self.seed * 1_000 + node.pk)]
            env = {**os.environ, "EXCHANGE_NODE_TOKEN": token, "EXCHANGE_CLOCK": spec}
            running.append(
                (
                    node,
                    subprocess.Popen(
                        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                    ),
                )
            )
        stored = 0
        for node, process in running:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise RuntimeError(
                    f"the agent of node {node.pk} exited {process.returncode}: "
                    + output.decode(errors="replace")[-2000:]
                )
            self.model.ticks[node.pk].add(now.timestamp())
            stored += node.gpu_count
        self.runs += len(running)
        return stored

    def stop(self) -> None:
        shutil.rmtree(self.state, ignore_errors=True)


class TelemetryServer:
    """The exchange's WSGI application on a loopback port, in a thread of the
    simulating process (so it shares the step clock), for the real agents."""

    def __init__(self) -> None:
        import threading
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        from django.core.wsgi import get_wsgi_application

        class Quiet(WSGIRequestHandler):
            def handle(self) -> None:
                from django.db import connections

                try:
                    super().handle()
                finally:
                    connections.close_all()  # this thread's; none left open at the end

            def log_message(self, *args) -> None:
                pass

        self.server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
