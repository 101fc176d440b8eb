"""A short simulated market through the real exchange (demo/simulation):
on PostgreSQL with a real Celery worker on the step clock, every invariant
holds and the figures of its seed are exactly these; the same seed twice gives
the same report."""

import datetime as dt
import os

import pytest
from django.conf import settings as django_settings
from django.db import connection

from billing.gateways.localstripe import LocalStripe
from demo.simulation import (
    EagerTasks,
    Options,
    WorkerTasks,
    report_build,
    settings_apply,
    simulate,
)
from tests.support import RedisServer, celery_broker

# 21:30 → 03:30 Beijing time: the day's invoices close at midnight, are paid by
# card, and the 03:00 payout run pays the providers.
NIGHT = Options(
    hours=6,
    seed=13,
    providers=3,
    nodes=10,
    buyers=8,
    orders=50,
    fault_rate=3.0,
    never_reporting=1,
    real_agents=1,  # one node reported by the real agent process, over HTTP
    start=dt.datetime(2026, 3, 2, 21, 30, tzinfo=dt.timezone(dt.timedelta(hours=8))),
)


@pytest.fixture
def catalogue(db):
    from market.catalogue import gpu_models_load
    from market.models import GPUModel

    if not GPUModel.objects.exists():
        gpu_models_load()


@pytest.fixture
def stripe():
    server = LocalStripe().start()
    yield server
    server.stop()


def _run(options, *, settings, stripe, tasks_factory):
    settings_apply(
        {"STRIPE_API_BASE": stripe.api_base, "STRIPE_CONNECT_ENABLED": False}, target=settings
    )
    cast, model, observations = simulate(options, tasks_factory=tasks_factory)
    return report_build(options=options, cast=cast, model=model, observations=observations)


@pytest.mark.xdist_group("real-stack")  # one heavy stack at a time on a 2-core CI machine
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_night_of_market_on_a_real_worker_keeps_every_invariant(
    catalogue, stripe, settings, tmp_path
):
    if connection.vendor != "postgresql":
        pytest.skip("the real-worker simulation runs on PostgreSQL")
    # given our own Redis (no other test's flush can touch the step clock or the queue)
    redis = RedisServer(log=tmp_path / "redis.log").start()
    settings.REDIS_URL = redis.url
    db = django_settings.DATABASES["default"]
    env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis.url,
        "CACHE_REDIS_URL": redis.url,
        "EXCHANGE_CLOCK": f"step:{redis.url}",
    }
    try:
        with celery_broker(redis.url):
            env |= settings_apply(
                {"STRIPE_API_BASE": stripe.api_base, "STRIPE_CONNECT_ENABLED": False},
                target=settings,
            )
            cast, model, observations = simulate(
                NIGHT,
                tasks_factory=lambda o: WorkerTasks(env=env, log=tmp_path / "worker.log"),
            )
            report = report_build(options=NIGHT, cast=cast, model=model, observations=observations)
    finally:
        redis.kill()

    # then every invariant holds
    assert [(c.name, c.ok) for c in report.checks if not c.ok] == []
    assert len(report.checks) == 7
    figures = report.figures
    # and the night's figures for seed 13 are exactly these
    assert figures["faults injected"]["never"] == 1
    assert {k: figures[k] for k in EXPECTED} == EXPECTED
    assert figures["scheduled task failures"] == 0
    # the real agent ran once a step (73 steps) and its node was metered like the rest
    assert figures["real agent runs (HTTP)"] == 73


EXPECTED = {
    "orders placed": 27,
    "orders filled": 10,
    "leases made": 13,
    "GPU-hours delivered": 170.3,
    "GPU-hours lost to faults": 6.7,
    "invoices paid": 2,
    "revenue (gross billed)": "¥240.94",
    "usage of open periods, not yet invoiced": "¥975.62",  # 00:00-03:30, closes at midnight
    "platform fees": "¥12.05",
    "card payments captured": "¥204.78",
    "payouts": "3 for ¥228.89",
    "subsidy spent / budget": "¥36.16 / ¥2,000,000.00",
    "subsidy claims paid": 1,
}


@pytest.mark.xdist_group("real-stack")  # one heavy stack at a time on a 2-core CI machine
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_same_seed_gives_the_same_report(catalogue, stripe, settings):
    from django.core.management import call_command

    from market.catalogue import gpu_models_load

    options = Options(
        hours=3, seed=5, providers=3, nodes=8, buyers=6, orders=30, fault_rate=4.0,
        start=dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))),
    )  # fmt: skip
    with celery_broker(None):
        first = _run(options, settings=settings, stripe=stripe, tasks_factory=EagerTasks)
        call_command("flush", interactive=False, verbosity=0)
        gpu_models_load()
        stripe.flush()
        second = _run(options, settings=settings, stripe=stripe, tasks_factory=EagerTasks)

    assert first.ok
    assert first.figures["orders placed"] > 0
    assert second.comparable() == first.comparable()
