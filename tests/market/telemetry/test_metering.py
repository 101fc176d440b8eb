import datetime as dt
from decimal import Decimal

import pytest
import time_machine

from market.models import TelemetrySample, UsageRecord
from market.telemetry import metering
from market.telemetry.metering import leases_meter
from tests.factories import LeaseFactory, NodeFactory, OfferFactory, SiteFactory

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def record_ticks(node, *, start, end, every=5, power_w=500.0, util=80.0, skip=None, **fields):
    """One sample per GPU every `every` s in [start, end), except in `skip` (a (from, to) pair)."""
    samples, seq, t = [], TelemetrySample.objects.filter(node=node).count(), start
    while t < end:
        if not (skip and skip[0] <= t < skip[1]):
            for gpu in range(node.gpu_count):
                samples.append(
                    TelemetrySample(
                        node=node,
                        seq=seq,
                        gpu_index=gpu,
                        ts=t,
                        utilisation=util,
                        memory_used_mib=1024,
                        power_w=power_w,
                        temperature_c=60.0,
                        **fields,
                    )
                )
                seq += 1
        t += dt.timedelta(seconds=every)
    TelemetrySample.objects.bulk_create(samples)


@pytest.fixture
def lease(db):
    site = SiteFactory(
        pue=Decimal("1.25"), carbon_intensity_g_per_kwh=600, green_share=Decimal("0.4")
    )
    node = NodeFactory(site=site, gpu_count=4)
    return LeaseFactory(
        offer=OfferFactory(node=node), gpu_count=2, starts_at=START, ends_at=START + HOUR
    )


def meter(at):
    with time_machine.travel(at, tick=False):
        return leases_meter(now=at)


def written(at) -> int:
    result = meter(at)
    assert result.failed_lease_ids == ()
    return result.written


def test_ten_minutes_of_silence_in_a_two_gpu_hour_are_lost_not_billed(lease):
    # given: a 2-GPU, 1-hour lease on a node silent from 08:25 to 08:35
    record_ticks(
        lease.node,
        start=START - dt.timedelta(minutes=1),
        end=START + HOUR + dt.timedelta(minutes=1),
        skip=(START + dt.timedelta(minutes=25), START + dt.timedelta(minutes=35)),
    )
    # when
    count = written(START + 2 * HOUR)
    # then: twelve 5-minute windows, 6,000 GPU-seconds delivered and 1,200 lost
    records = UsageRecord.objects.filter(lease=lease)
    assert count == 12
    assert sum(r.gpu_seconds_delivered for r in records) == 6_000
    assert sum(r.gpu_seconds_lost for r in records) == 1_200
    silent = records.get(window_start=START + dt.timedelta(minutes=25))
    assert (silent.gpu_seconds_delivered, silent.gpu_seconds_lost) == (0, 600)
    assert records.first().window_start == START
    assert records.last().window_end == START + HOUR


def test_energy_and_carbon_come_from_measured_power_pue_and_the_site_grid(lease):
    # given: 500 W per GPU for the whole hour
    record_ticks(lease.node, start=START, end=START + HOUR + dt.timedelta(minutes=1))
    # when
    meter(START + 2 * HOUR)
    # then: per 5-minute window 2 GPUs × 500 W × 300 s / 3600 × PUE 1.25 = 104.1666… Wh,
    # kept to the milliwatt-hour; carbon 104.1666… Wh × 0.6 g/Wh × (1 − 0.4) = 37.5 g
    records = UsageRecord.objects.filter(lease=lease)
    assert {(r.energy_wh, r.carbon_g) for r in records} == {(Decimal("104.167"), Decimal("37.500"))}
    assert records.count() == 12
    assert {r.avg_utilisation for r in records} == {Decimal("80.00")}
    assert sum(r.gpu_seconds_delivered for r in records) == 7_200


def test_rerunning_metering_changes_nothing(lease):
    # given
    record_ticks(lease.node, start=START, end=START + HOUR)
    meter(START + 2 * HOUR)
    before = list(UsageRecord.objects.values())
    # when
    count = written(START + 3 * HOUR)
    # then
    assert count == 0
    assert list(UsageRecord.objects.values()) == before


def test_only_closed_windows_are_metered_and_the_rest_later(lease):
    # given: samples for the first 20 minutes, metering at 08:21 (grace 2 min)
    record_ticks(lease.node, start=START, end=START + dt.timedelta(minutes=20))
    # when
    first = written(START + dt.timedelta(minutes=21))
    # then: the windows to 08:15 are closed; the one ending 08:20 waits for late samples
    assert first == 3
    assert written(START + 2 * HOUR) == 9
    assert UsageRecord.objects.filter(lease=lease).count() == 12


def test_lease_boundaries_come_from_the_lease_not_the_samples(lease):
    # given: a lease from 08:02:30 for one hour and a node reporting all day
    lease.starts_at = START + dt.timedelta(seconds=150)
    lease.ends_at = lease.starts_at + HOUR
    lease.save()
    record_ticks(lease.node, start=START - HOUR, end=START + 3 * HOUR)
    # when
    meter(START + 4 * HOUR)
    # then
    records = UsageRecord.objects.filter(lease=lease)
    assert records.count() == 13
    assert records.first().window_start == lease.starts_at
    assert records.last().window_end == lease.ends_at
    assert sum(r.gpu_seconds_delivered for r in records) == 7_200
    assert sum(r.gpu_seconds_lost for r in records) == 0


def test_gpu_time_with_new_xid_errors_or_a_missing_gpu_is_lost(lease):
    # given: a clean first half hour, then XID errors rising every tick for 5 min
    record_ticks(lease.node, start=START, end=START + dt.timedelta(minutes=30))
    burst_start = START + dt.timedelta(minutes=30)
    for i in range(60):
        record_ticks(
            lease.node,
            start=burst_start + dt.timedelta(seconds=5 * i),
            end=burst_start + dt.timedelta(seconds=5 * i + 1),
            xid_errors=i + 1,
        )
    record_ticks(
        lease.node,
        start=START + dt.timedelta(minutes=35),
        end=START + HOUR,
        xid_errors=60,
        missing=False,
    )
    # when
    meter(START + 2 * HOUR)
    # then: the 5 minutes of rising XID counters are lost
    burst = UsageRecord.objects.get(lease=lease, window_start=burst_start)
    assert (burst.gpu_seconds_delivered, burst.gpu_seconds_lost) == (0, 600)
    total_lost = sum(
        UsageRecord.objects.filter(lease=lease).values_list("gpu_seconds_lost", flat=True)
    )
    assert total_lost == 600


def test_a_leased_node_that_never_reported_is_metered_as_lost_and_the_others_billed(lease):
    # given: a healthy lease, and another 2-GPU lease on a node whose agent never sent a sample
    record_ticks(lease.node, start=START, end=START + HOUR + dt.timedelta(minutes=1))
    silent = LeaseFactory(
        offer=OfferFactory(node=NodeFactory(gpu_count=2)),
        gpu_count=2,
        starts_at=START,
        ends_at=START + HOUR,
    )
    # when
    result = meter(START + 2 * HOUR)
    # then: both leases metered; the silent one's 2 GPU-hours are all lost, none delivered,
    # but for the agent's start-up grace (2 GPUs × 2 intervals of 5 s)
    assert (result.written, result.failed_lease_ids) == (24, ())
    healthy = UsageRecord.objects.filter(lease=lease)
    assert sum(r.gpu_seconds_delivered for r in healthy) == 7_200
    assert sum(r.gpu_seconds_lost for r in healthy) == 0
    lost = UsageRecord.objects.filter(lease=silent)
    assert lost.count() == 12
    assert sum(r.gpu_seconds_delivered for r in lost) == 0
    assert sum(r.gpu_seconds_grace for r in lost) == 20
    assert sum(r.gpu_seconds_lost for r in lost) == 7_200 - 20
    assert {r.energy_wh for r in lost} == {Decimal("0.000")}


def test_a_tick_counts_distinct_gpus_not_sample_rows(db):
    # given: a 2-GPU node whose every tick holds two samples of GPU 0 and none of GPU 1
    node = NodeFactory(gpu_count=2)
    lease = LeaseFactory(
        offer=OfferFactory(node=node), gpu_count=2, starts_at=START, ends_at=START + HOUR
    )
    samples, t, seq = [], START - dt.timedelta(minutes=1), 0
    while t < START + HOUR + dt.timedelta(minutes=1):
        for _twice in range(2):
            samples.append(
                TelemetrySample(
                    node=node,
                    seq=seq,
                    gpu_index=0,
                    ts=t,
                    utilisation=80.0,
                    memory_used_mib=1024,
                    power_w=500.0,
                    temperature_c=60.0,
                )
            )
            seq += 1
        t += dt.timedelta(seconds=5)
    TelemetrySample.objects.bulk_create(samples)
    # when
    meter(START + 2 * HOUR)
    # then: one GPU of two vouched for each tick: half the lease's GPU-seconds delivered
    records = UsageRecord.objects.filter(lease=lease)
    assert records.count() == 12
    assert sum(r.gpu_seconds_delivered for r in records) == 3_600
    assert sum(r.gpu_seconds_lost for r in records) == 3_600
    assert {(r.gpu_seconds_delivered, r.gpu_seconds_lost) for r in records} == {(300, 300)}


def test_one_lease_failing_to_meter_never_stops_the_others(lease, monkeypatch, caplog):
    # given: two healthy leases on two nodes; building the first one's records breaks
    record_ticks(lease.node, start=START, end=START + HOUR + dt.timedelta(minutes=1))
    other = LeaseFactory(
        offer=OfferFactory(node=NodeFactory(gpu_count=2)),
        gpu_count=2,
        starts_at=START,
        ends_at=START + HOUR,
    )
    record_ticks(other.node, start=START, end=START + HOUR + dt.timedelta(minutes=1))
    real_record = metering._record

    def broken_for_the_first(lease_, window, measure):
        if lease_.pk == lease.pk:
            raise ValueError("corrupt site figures")
        return real_record(lease_, window, measure)

    monkeypatch.setattr(metering, "_record", broken_for_the_first)
    # when
    result = meter(START + 2 * HOUR)
    # then: the other lease is metered in full, the broken one is logged and has nothing
    assert (result.written, result.failed_lease_ids) == (12, (lease.pk,))
    assert not UsageRecord.objects.filter(lease=lease).exists()
    records = UsageRecord.objects.filter(lease=other)
    assert sum(r.gpu_seconds_delivered for r in records) == 7_200
    assert f"lease {lease.pk}" in caplog.text
    # and once the fault is gone the next run meters the broken lease's windows
    monkeypatch.setattr(metering, "_record", real_record)
    assert meter(START + 2 * HOUR).written == 12
    assert sum(r.gpu_seconds_delivered for r in UsageRecord.objects.filter(lease=lease)) == 7_200
