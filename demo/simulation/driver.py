"""The simulation loop: a step clock, the beat schedule played on it, the
agents' reports, the people's actions, and the observations the report needs.

Each step (the agents' reporting interval, `--step`, 5 simulated minutes by default) at t:
the clock moves to t (published for the worker); every agent reports; buyers
order and pay, providers re-price (hourly); each scheduled task of
CELERY_BEAT_SCHEDULE that is due runs once (a task due more often than a step
runs once a step; daily ones at 03:00 Beijing time); then the loop waits until
every task published — by the loop or by the tasks themselves — has finished.
Embedded (no REDIS_URL), tasks run in this process; with PostgreSQL and Redis
they go to a real Celery worker started with the same settings and the step
clock, so time stands still while it works and the same seed gives the same
figures.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import close_old_connections

from core import clock
from demo.simulation import agents, behaviour, world
from market.models import Lease, Offer, Order

logger = logging.getLogger(__name__)

SHANGHAI = behaviour.SHANGHAI
DEFAULT_START = dt.datetime(2026, 3, 2, 0, 0, tzinfo=SHANGHAI)

# The exchange's settings for a simulated market: agents report once a step,
# daily invoices (so a day of market closes a period). Applied in this process
# and passed to the worker's environment.
DEFAULT_STEP = 300


def sim_settings(step: int = DEFAULT_STEP) -> dict:
    return {
        "TELEMETRY_INTERVAL_SECONDS": float(step),
        "TELEMETRY_SILENT_INTERVALS": 3,
        "HEALTH_CLEAN_PERIOD_SECONDS": 2 * step,
        "FAILOVER_AFTER_SECONDS": 3 * step,
        "METERING_WINDOW_SECONDS": step,
        "METERING_GRACE_SECONDS": 120,
        "BILLING_PERIOD": "daily",
        # hundreds of agents' batches a step: no WAL flush wait per batch
        "TELEMETRY_ASYNC_COMMIT": True,
        # the clock moves in steps: a matching window in wall-clock time would
        # split a step's orders between runs by how fast the machine is
        "MATCH_COALESCE_SECONDS": 0.0,
    }


SIM_SETTINGS = sim_settings()


@dataclass(frozen=True)
class Options:
    hours: float = 24.0
    seed: int = 1
    providers: int = 20
    nodes: int = 200
    buyers: int = 60
    orders: int = 1_000
    fault_rate: float = 1.0  # faults per node per simulated day
    never_reporting: int = 1
    speed: float = 0.0  # at most this many simulated seconds per real second; 0 = flat out
    start: dt.datetime = DEFAULT_START
    step: int = DEFAULT_STEP  # simulated seconds between the agents' reports (whole minutes)
    real_agents: int = 0  # nodes reported by real agent processes over HTTP


@dataclass
class Observations:
    """What the loop saw, step by step (all in simulated time)."""

    placed: dict[int, tuple[float, str]] = field(default_factory=dict)  # order → (t, kind)
    first_fill: dict[int, float] = field(default_factory=dict)
    prices: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # ¥/PFLOPS-h
    utilisation: list[tuple[float, float]] = field(default_factory=list)
    reprices: int = 0
    payments_started: int = 0
    task_failures: list[tuple[str, str]] = field(default_factory=list)
    samples: int = 0
    steps: int = 0
    end: float = 0.0  # the last step's instant
    real_agent_runs: int = 0  # real agent processes run (one per chosen node per step)


class EagerTasks:
    """Celery in this process (the embedded default): a task runs when sent."""

    def __init__(self, observations: Observations) -> None:
        self.observations = observations

    def run(self, name: str, args: tuple) -> None:
        result = current_app.tasks[name].apply(args=args, throw=False)
        if result.failed():
            self.observations.task_failures.append((name, repr(result.result)[:200]))

    def settle(self) -> None:
        pass

    def stop(self) -> None:
        pass


class WorkerTasks:
    """A real Celery worker on the step clock; `settle` waits for it."""

    def __init__(self, *, env: dict[str, str], log: Path) -> None:
        import redis

        from demo.simulation.counters import counters_connect, counters_reset

        self.redis = redis.Redis.from_url(settings.REDIS_URL)
        current_app.control.purge()
        counters_reset(self.redis)
        counters_connect(settings.REDIS_URL)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
             "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"simulate-{os.getpid()}@%h",
             "--queues", ",".join(settings.EXCHANGE_CELERY_QUEUES)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def run(self, name: str, args: tuple) -> None:
        current_app.send_task(name, args=list(args))

    def settle(self, timeout: float = 300.0) -> None:
        from demo.simulation.counters import counters_read

        deadline = time.monotonic() + timeout
        pause = 0.002
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited ({self.process.returncode})")
            published, finished = counters_read(self.redis)
            if finished >= published:
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        raise TimeoutError("the Celery worker did not finish the step's tasks")

    def stop(self) -> None:
        from demo.simulation.counters import counters_disconnect

        counters_disconnect()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _interval(schedule) -> float:
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, dt.timedelta):
        return schedule.total_seconds()
    return schedule.run_every.total_seconds()


class Beat:
    """CELERY_BEAT_SCHEDULE on the simulated clock. With `floor`, a task also
    waits at least that many real seconds between runs (the demo's fast clock
    would otherwise run every frequent task on every tick)."""

    def __init__(self, *, start: dt.datetime, floor: float = 0.0) -> None:
        self.floor = floor
        self.last_real: dict[str, float] = {}
        current_app.loader.import_default_modules()
        self.entries = []
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            every = _interval(entry["schedule"])
            due = start
            if every >= 86_400:  # daily work runs at 03:00 Beijing time
                local = start.astimezone(SHANGHAI).replace(hour=3, minute=0, second=0)
                due = local if local >= start else local + dt.timedelta(days=1)
            self.entries.append([name, entry["task"], tuple(entry.get("args", ())), every, due])

    def due(self, now: dt.datetime) -> list[tuple[str, tuple]]:
        ready = []
        real = time.monotonic()
        for entry in self.entries:
            if self.floor and real - self.last_real.get(entry[0], -math.inf) < self.floor:
                continue
            if entry[4] <= now:
                self.last_real[entry[0]] = real
                ready.append((entry[1], entry[2]))
                while entry[4] <= now:
                    entry[4] += dt.timedelta(seconds=entry[3])
        return ready


def settings_apply(extra: dict, *, target=None, step: int = DEFAULT_STEP) -> dict[str, str]:
    """Apply the simulation's settings to `target` (this process's settings by
    default); returns them as environment values for another process."""
    env = {}
    for name, value in {**sim_settings(step), **extra}.items():
        setattr(target or settings, name, value)
        env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def simulate(
    options: Options,
    *,
    tasks_factory: Callable[[Observations], EagerTasks | WorkerTasks],
    progress: Callable[[int, int, dict], None] = lambda done, total, figures: None,
) -> tuple[world.Cast, agents.AgentModel, Observations]:
    rng = random.Random(options.seed)
    source = clock.SteppedClock(at=options.start)
    publish = _publisher()
    publish(options.start)
    observations = Observations()
    tasks = tasks_factory(observations)
    clock.install(source)
    try:
        cast = world.Cast()
        world.supply_create(
            rng=rng, cast=cast, providers=options.providers, nodes=options.nodes,
            now=options.start,
        )  # fmt: skip
        world.demand_create(rng=rng, cast=cast, buyers=options.buyers, now=options.start)
        tasks.settle()
        model = agents.AgentModel(
            rng=random.Random(options.seed * 7919 + 1),
            nodes=list(cast.nodes),
            start=options.start,
            hours=options.hours,
            step=options.step,
            fault_rate=options.fault_rate,
            never_reporting=options.never_reporting,
        )
        real = None
        if options.real_agents:
            server = agents.TelemetryServer()
            real = agents.RealAgents(
                model=model, count=options.real_agents, url=server.url, seed=options.seed
            )
        try:
            _loop(options, rng, cast, model, observations, tasks, source, publish, progress, real)
        finally:
            if real:
                real.stop()
                server.stop()
        observations.real_agent_runs = real.runs if real else 0
        behaviour.claims_settle(cast=cast, now=clock.now())
        tasks.settle()
    finally:
        tasks.stop()
        clock.install(None)
    return cast, model, observations


def _publisher() -> Callable[[dt.datetime], None]:
    if not settings.REDIS_URL:
        return lambda at: None
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    return lambda at: client.set(clock.STEP_KEY, repr(at.timestamp()))


def _loop(options, rng, cast, model, observations, tasks, source, publish, progress, real) -> None:
    steps = int(options.hours * 3600 // options.step)
    per_step = options.orders / max(steps, 1)
    beat = Beat(start=options.start)
    serial = [0]
    real_start = time.monotonic()
    for i in range(steps + 1):
        now = options.start + dt.timedelta(seconds=i * options.step)
        source.set(now)
        publish(now)
        observations.samples += model.report(now=now)
        if real:
            observations.samples += real.report(now=now)
        if i < steps:
            for order_id, kind in behaviour.orders_place(
                rng=rng, cast=cast, now=now, per_step=per_step, serial=serial
            ):
                observations.placed[order_id] = (now.timestamp(), kind)
        tasks.settle()
        if i % (3600 // options.step) == 0 and i:
            observations.reprices += behaviour.offers_reprice(cast=cast)
        observations.payments_started += behaviour.invoices_pay(rng=rng, cast=cast)
        for name, args in beat.due(now):
            tasks.run(name, args)
        tasks.settle()
        close_old_connections()
        _observe(observations, cast, now, hourly=i % (3600 // options.step) == 0)
        observations.steps, observations.end = i + 1, now.timestamp()
        progress(i + 1, steps + 1, _figures(observations))
        if options.speed:
            behind = (i + 1) * options.step / options.speed - (time.monotonic() - real_start)
            if behind > 0:
                time.sleep(behind)


def _observe(observations: Observations, cast, now: dt.datetime, *, hourly: bool) -> None:
    t = now.timestamp()
    waiting = [pk for pk in observations.placed if pk not in observations.first_fill]
    for pk in Order.objects.filter(pk__in=waiting, gpus_filled__gt=0).values_list("pk", flat=True):
        observations.first_fill[pk] = t
    if not hourly:
        return
    by_model: dict[str, list[float]] = {}
    for price, tflops, slug in Offer.objects.filter(
        status=Offer.Status.ACTIVE, pk__in=cast.base_price
    ).values_list("price_amount", "gpu_model__bf16_tflops", "gpu_model__slug"):
        # fen per GPU-hour → yuan per normalised PFLOPS-hour (dense BF16)
        by_model.setdefault(slug, []).append(price / 100 / (float(tflops) / 1000))
    observations.prices.append((t, {s: sum(v) / len(v) for s, v in sorted(by_model.items())}))
    total = sum(n.gpu_count for n in cast.nodes)
    busy = sum(
        Lease.objects.filter(
            status=Lease.Status.ACTIVE, starts_at__lte=now, ends_at__gt=now
        ).values_list("gpu_count", flat=True)
    )
    observations.utilisation.append((t, busy / total if total else 0.0))


def _figures(observations: Observations) -> dict:
    return {
        "orders": len(observations.placed),
        "filled": len(observations.first_fill),
        "samples": observations.samples,
        "utilisation": observations.utilisation[-1][1] if observations.utilisation else 0.0,
    }
