"""Ticks: one row per node and timestamp, kept by the database as samples are
inserted (migration market/0021), which metering reads instead of the samples."""

import datetime as dt
import importlib

import orjson
import pytest
import time_machine
from django.db import connection

from market.models import (
    Lease,
    TelemetryRollupCursor,
    TelemetrySample,
    TelemetryTick,
    UsageRecord,
)
from market.telemetry import storage
from market.telemetry.ingest import telemetry_ingest
from market.telemetry.metering import leases_meter
from tests.factories import LeaseFactory, NodeFactory, OfferFactory
from tests.market.telemetry.conftest import sample

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
T0 = START.timestamp()
NOW = START + dt.timedelta(minutes=20)  # when the batches arrive
TICKS = importlib.import_module("market.migrations.0021_telemetry_ticks")


def ingest(node, samples: list[dict]):
    return telemetry_ingest(node=node, body=orjson.dumps({"samples": samples}), now=NOW)


def ticks(node) -> list[tuple]:
    return list(
        TelemetryTick.objects.filter(node=node)
        .order_by("ts")
        .values_list("ts", "gpu_mask", "samples", "errs", "util_sum", "power_sum")
    )


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(T0 + seconds, tz=dt.UTC)


def rounds(first_seq: int, *, start: float, count: int, gpus: int, every: float = 5) -> list[dict]:
    """`count` rounds of `gpus` samples, every `every` s from T0 + `start`."""
    return [
        sample(
            first_seq + k * gpus + gpu,
            ts=T0 + start + k * every,
            gpu=gpu,
            util=10.0 * (gpu + 1),
            power_w=100.0 + gpu,
        )
        for k in range(count)
        for gpu in range(gpus)
    ]


def test_a_batch_makes_one_tick_per_timestamp_summing_its_samples():
    # given: a 3-GPU node
    node = NodeFactory(gpu_count=3)
    # when: two rounds of its three GPUs
    result = ingest(node, rounds(0, start=0, count=2, gpus=3))
    # then: two ticks, each with all three GPUs, three samples and their sums
    assert (result.accepted, result.duplicates) == (6, 0)
    assert ticks(node) == [
        (at(0), 0b111, 3, 0, 60.0, 303.0),
        (at(5), 0b111, 3, 0, 60.0, 303.0),
    ]


def test_a_ticks_gpus_arriving_in_two_batches_make_one_tick():
    # given: GPU 0 of a round arrives in one batch
    node = NodeFactory(gpu_count=2)
    ingest(node, [sample(0, ts=T0, gpu=0, util=40.0, power_w=300.0, ecc_errors=1)])
    # when: GPU 1 of the same round in the next, with the next round
    ingest(
        node,
        [
            sample(1, ts=T0, gpu=1, util=60.0, power_w=500.0, xid_errors=2),
            sample(2, ts=T0 + 5, gpu=0),
            sample(3, ts=T0 + 5, gpu=1),
        ],
    )
    # then: one tick for the round, both GPUs, both samples' sums
    assert ticks(node) == [
        (at(0), 0b11, 2, 3, 100.0, 800.0),
        (at(5), 0b11, 2, 0, 175.0, 1200.0),
    ]


def test_a_missing_gpu_leaves_its_bit_out_but_its_sample_counts():
    node = NodeFactory(gpu_count=2)
    ingest(node, [sample(0, ts=T0, gpu=0), sample(1, ts=T0, gpu=1, missing=True, util=0.0)])
    assert ticks(node) == [(at(0), 0b01, 2, 0, 87.5, 1200.0)]


def test_an_error_counter_rise_shows_in_the_ticks_error_sum():
    node = NodeFactory(gpu_count=2)
    ingest(
        node,
        [
            sample(0, ts=T0, gpu=0, xid_errors=4, ecc_errors=1),
            sample(1, ts=T0, gpu=1, ecc_errors=2),
            sample(2, ts=T0 + 5, gpu=0, xid_errors=5, ecc_errors=1),
            sample(3, ts=T0 + 5, gpu=1, ecc_errors=2),
        ],
    )
    assert [(ts, errs) for ts, _mask, _n, errs, *_ in ticks(node)] == [(at(0), 7), (at(5), 8)]


def test_a_resent_batch_counts_nothing_twice_in_ticks_or_usage():
    # given: two identical 2-GPU leases; one node's agent sends its samples once,
    # the other's sends them, then all again, then a batch overlapping both halves
    once, twice = NodeFactory(gpu_count=2), NodeFactory(gpu_count=2)
    samples = rounds(0, start=-60, count=180, gpus=2)  # 07:59 to 08:14
    ingest(once, samples)
    ingest(twice, samples[:200])
    ingest(twice, samples[100:])
    resent = ingest(twice, samples)
    leases = [
        LeaseFactory(
            offer=OfferFactory(node=node),
            gpu_count=2,
            starts_at=START,
            ends_at=START + dt.timedelta(minutes=10),
            status=Lease.Status.COMPLETED,
        )
        for node in (once, twice)
    ]
    # when
    with time_machine.travel(START + dt.timedelta(hours=1), tick=False):
        leases_meter(now=START + dt.timedelta(hours=1))
    # then: the re-sent samples are duplicates, and neither the ticks nor the
    # usage records (delivered, lost, energy) count them
    assert (resent.accepted, resent.duplicates) == (0, 360)
    assert TelemetrySample.objects.filter(node=twice).count() == 360
    assert ticks(twice) == ticks(once)
    assert len(ticks(once)) == 180
    fields = ("window_start", "gpu_seconds_delivered", "gpu_seconds_lost", "energy_wh", "carbon_g")
    records = [
        list(UsageRecord.objects.filter(lease=lease).order_by("window_start").values_list(*fields))
        for lease in leases
    ]
    assert records[0] == records[1]
    assert [r[1:3] for r in records[0]] == [(600, 0), (600, 0)]


@pytest.mark.postgres
def test_a_copy_falling_back_to_on_conflict_counts_only_the_samples_it_stored(monkeypatch):
    # given: half a round stored after the range probe ran (simulated: the probe
    # sees nothing, as it would before a concurrent commit)
    node = NodeFactory(gpu_count=2)
    ingest(node, [sample(0, ts=T0, gpu=0)])
    monkeypatch.setattr(
        "market.telemetry.ingest._STORED_IN_RANGE_SQL",
        "SELECT 1 WHERE %s < 0 AND %s < 0 AND %s < 0 AND %s IS NULL AND %s IS NULL",
    )
    # when: the whole round, COPY collides, ON CONFLICT stores GPU 1
    result = ingest(node, [sample(0, ts=T0, gpu=0), sample(1, ts=T0, gpu=1)])
    # then
    assert (result.accepted, result.duplicates) == (1, 1)
    assert ticks(node) == [(at(0), 0b11, 2, 0, 175.0, 1200.0)]


def test_the_ticks_the_migration_sums_equal_the_ticks_kept_as_samples_arrive():
    # given: samples of two nodes, a missing GPU, errors, a round split in two batches
    first, second = NodeFactory(gpu_count=4), NodeFactory(gpu_count=2)
    ingest(first, rounds(0, start=0, count=5, gpus=4)[:-2])
    ingest(first, [*rounds(0, start=0, count=5, gpus=4)[-2:], sample(20, ts=T0 + 30, gpu=3)])
    ingest(second, [sample(0, ts=T0, gpu=1, missing=True, xid_errors=9)])
    kept = sorted(TelemetryTick.objects.values_list())
    # when: summed again from the samples by the migration's SQL
    build = TICKS.PG_BUILD if connection.vendor == "postgresql" else TICKS.SQLITE_BUILD
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM market_telemetrytick")
        cursor.execute(build)
    # then
    assert sorted(TelemetryTick.objects.values_list()) == kept
    assert len(kept) == 7


@pytest.mark.postgres
def test_tick_days_are_created_and_dropped_with_the_samples_days(settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 2
    settings.TELEMETRY_PARTITIONS_AHEAD_DAYS = 1
    storage.telemetry_storage_maintain(now=START)
    days = sorted(name[-8:] for name in storage.partitions(table=storage.SAMPLES))
    assert sorted(name[-8:] for name in storage.partitions(table=storage.TICKS)) == days
    assert days == ["20260429", "20260430", "20260501", "20260502"]
    later = START + dt.timedelta(days=2)
    TelemetryRollupCursor.objects.create(name=storage.ROLLUP_CURSOR, rolled_until=later)
    storage.telemetry_storage_maintain(now=later)
    assert sorted(name[-8:] for name in storage.partitions(table=storage.SAMPLES)) == [
        "20260501",
        "20260502",
        "20260503",
        "20260504",
    ]
    assert sorted(name[-8:] for name in storage.partitions(table=storage.TICKS)) == [
        "20260501",
        "20260502",
        "20260503",
        "20260504",
    ]
