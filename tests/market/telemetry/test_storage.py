"""Telemetry storage that lasts: per-minute rollups the charts read, day
partitions on PostgreSQL, and retention that never drops unmetered samples."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from market.models import Lease, TelemetryMinute, TelemetrySample, UsageRecord
from market.telemetry import selectors, storage
from market.telemetry.metering import leases_meter
from tests.factories import LeaseFactory, NodeFactory, OfferFactory, SiteFactory, member_of

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def record(node, *, start, end, every=5, gpus=None, first_seq=None, vary=True, **fields):
    """One sample per GPU every `every` s in [start, end); utilisation, power,
    temperature and memory vary per tick and GPU so that means are not trivial."""
    seq = TelemetrySample.objects.filter(node=node).count() if first_seq is None else first_seq
    samples, t, k = [], start, 0
    while t < end:
        for gpu in range(gpus if gpus is not None else node.gpu_count):
            samples.append(
                TelemetrySample(
                    node=node,
                    seq=seq,
                    gpu_index=gpu,
                    ts=t,
                    utilisation=(37.5 + 7 * k + 11 * gpu) % 100 if vary else 80.0,
                    memory_used_mib=1000 + 13 * k + gpu,
                    power_w=(410.25 + 3.5 * k + 20 * gpu) if vary else 500.0,
                    temperature_c=50 + (k * 7 + gpu) % 23,
                    **fields,
                )
            )
            seq += 1
        t += dt.timedelta(seconds=every)
        k += 1
    TelemetrySample.objects.bulk_create(samples)


@pytest.fixture
def storage_settings(settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 2
    settings.TELEMETRY_ROLLUP_RETENTION_DAYS = 4
    settings.TELEMETRY_PARTITIONS_AHEAD_DAYS = 1
    return settings


def test_rollups_hold_exactly_the_raw_samples_of_each_minute_and_gpu():
    # given: two GPUs reporting every 5 s for three minutes, one of them once missing
    node = NodeFactory(gpu_count=2)
    record(node, start=START, end=START + dt.timedelta(minutes=3))
    TelemetrySample.objects.filter(node=node, gpu_index=1, seq=5).update(missing=True)
    # when: rolled up once the minutes are closed (grace 2 min)
    written = storage.telemetry_rollup(now=START + dt.timedelta(minutes=6))
    # then: one row per minute and GPU with the raw samples' sums, counts and peaks
    assert written == 6
    for row in TelemetryMinute.objects.filter(node=node):
        raw = list(
            TelemetrySample.objects.filter(
                node=node,
                gpu_index=row.gpu_index,
                ts__gte=row.minute,
                ts__lt=row.minute + dt.timedelta(minutes=1),
            )
        )
        assert row.samples == len(raw) == 12
        assert row.utilisation_sum == pytest.approx(sum(s.utilisation for s in raw), abs=1e-9)
        assert row.power_w_sum == pytest.approx(sum(s.power_w for s in raw), abs=1e-9)
        assert row.temperature_c_max == max(s.temperature_c for s in raw)
        assert row.memory_used_mib_max == max(s.memory_used_mib for s in raw)
        assert row.missing == sum(s.missing for s in raw)
    assert TelemetryMinute.objects.filter(missing=1).count() == 1


def test_a_minute_is_rolled_up_once_closed_and_never_twice():
    node = NodeFactory(gpu_count=1)
    record(node, start=START, end=START + dt.timedelta(minutes=5))
    # at 08:04:30 minutes to 08:02 are closed (grace 2 min): 08:00 and 08:01
    assert storage.telemetry_rollup(now=START + dt.timedelta(minutes=4, seconds=30)) == 2
    assert storage.telemetry_rollup(now=START + dt.timedelta(minutes=4, seconds=50)) == 0
    assert storage.telemetry_rollup(now=START + dt.timedelta(minutes=10)) == 3
    assert storage.rolled_until() == START + dt.timedelta(minutes=8)
    assert TelemetryMinute.objects.count() == 5


def test_the_chart_shows_the_raw_samples_means_and_reads_rollups_not_samples():
    # given: an hour of varied samples on a 4-GPU node, rolled up
    node = NodeFactory(gpu_count=4)
    record(node, start=START, end=START + HOUR)
    storage.telemetry_rollup(now=START + 2 * HOUR)
    expected = {}
    for s in TelemetrySample.objects.filter(node=node):
        minute = expected.setdefault(s.ts.replace(second=0), [0, 0.0, 0.0])
        minute[0] += 1
        minute[1] += s.utilisation
        minute[2] += s.power_w
    # when
    with CaptureQueriesContext(connection) as queries:
        series = selectors.node_series(node=node, since=START, until=START + HOUR)
    # then: each minute's mean utilisation and node power (mean per GPU × 4) as from the
    # raw samples, in two queries (how far rollups go, the rollups), none on the samples
    assert len(series) == 60
    for point in series:
        n, util, power = expected[point["minute"]]
        assert point["util"] == pytest.approx(util / n, abs=1e-9)
        assert point["power"] == pytest.approx(power / n * 4, abs=1e-9)
    assert len(queries) == 2
    assert not [q for q in queries.captured_queries if "market_telemetrysample" in q["sql"]]


def test_a_live_chart_adds_the_minutes_not_yet_rolled_up_from_the_samples():
    node = NodeFactory(gpu_count=2)
    record(node, start=START, end=START + dt.timedelta(minutes=10))
    storage.telemetry_rollup(now=START + dt.timedelta(minutes=8))  # rolled up to 08:06
    with CaptureQueriesContext(connection) as queries:
        series = selectors.node_series(
            node=node, since=START, until=START + dt.timedelta(minutes=10)
        )
    assert [p["minute"].minute for p in series] == list(range(10))
    assert len(queries) == 3


def test_the_lease_usage_page_reads_its_chart_from_rollups(client):
    node = NodeFactory(gpu_count=2)
    lease = LeaseFactory(
        offer=OfferFactory(node=node), gpu_count=2, starts_at=START, ends_at=START + HOUR
    )
    record(node, start=START, end=START + HOUR, vary=False)
    storage.telemetry_rollup(now=START + 2 * HOUR)
    client.force_login(member_of(lease.buyer))
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/leases/{lease.pk}/usage/")
    assert response.status_code == 200
    assert "<svg" in response.content.decode()
    assert not [q for q in queries.captured_queries if "market_telemetrysample" in q["sql"]]


def _lease_on(node, *, starts_at, hours=1, **fields):
    return LeaseFactory(
        offer=OfferFactory(node=node),
        gpu_count=node.gpu_count,
        starts_at=starts_at,
        ends_at=starts_at + hours * HOUR,
        **fields,
    )


def test_retention_keeps_samples_a_lease_still_has_to_be_metered_for(storage_settings):
    # given: a lease 3 days ago with samples, rolled up but not metered (say metering
    # failed for it); raw retention is 2 days, rollups 4
    site = SiteFactory(pue=Decimal("1.2"))
    node = NodeFactory(site=site, gpu_count=2)
    old = START - dt.timedelta(days=3)
    lease = _lease_on(node, starts_at=old, status=Lease.Status.COMPLETED)
    record(node, start=old, end=old + HOUR, vary=False)
    now = START
    storage.telemetry_rollup(now=now)
    # when
    storage.telemetry_storage_maintain(now=now)
    # then: every sample is kept, and metering later bills the full hour from them
    assert TelemetrySample.objects.filter(node=node).count() == 2 * 720
    assert leases_meter(now=now, lease_ids=[lease.pk]).written == 12
    assert sum(UsageRecord.objects.values_list("gpu_seconds_delivered", flat=True)) == 7_200
    # and once metered, the next maintenance drops them; the rollups stay
    storage.telemetry_storage_maintain(now=now)
    assert TelemetrySample.objects.filter(node=node).count() == 0
    assert TelemetryMinute.objects.filter(node=node).count() == 2 * 60


def test_retention_keeps_samples_not_rolled_up(storage_settings):
    node = NodeFactory(gpu_count=1)
    old = START - dt.timedelta(days=10)
    record(node, start=old, end=old + HOUR)
    storage.telemetry_storage_maintain(now=START)
    assert TelemetrySample.objects.filter(node=node).count() == 720
    storage.telemetry_rollup(now=START)
    storage.telemetry_storage_maintain(now=START)
    assert TelemetrySample.objects.filter(node=node).count() == 0


def test_retention_keeps_the_days_of_a_lease_still_running(storage_settings):
    # given: a 30-day lease that started 10 days ago, metered to 3 days ago only, with
    # samples 4 days ago and 2.5 days ago (both past the 2 days of retention)
    node = NodeFactory(gpu_count=1)
    lease = _lease_on(node, starts_at=START - dt.timedelta(days=10), hours=24 * 30)
    metered = START - dt.timedelta(days=4)
    unmetered = START - dt.timedelta(days=2, hours=12)
    record(node, start=metered, end=metered + HOUR)
    record(node, start=unmetered, end=unmetered + HOUR)
    storage.telemetry_rollup(now=START)
    UsageRecord.objects.create(
        lease=lease,
        window_start=lease.starts_at,
        window_end=START - dt.timedelta(days=3),
        gpu_seconds_delivered=0,
    )
    # when
    storage.telemetry_storage_maintain(now=START)
    # then: the samples of 4 days ago are metered and go; the later ones stay
    kept = TelemetrySample.objects.filter(node=node)
    assert kept.count() == 720
    assert kept.earliest("ts").ts == unmetered


def test_rollups_go_after_their_own_retention(storage_settings):
    node = NodeFactory(gpu_count=1)
    record(node, start=START - dt.timedelta(days=6), end=START - dt.timedelta(days=6) + HOUR)
    record(node, start=START - HOUR, end=START)
    storage.telemetry_rollup(now=START + HOUR)
    storage.telemetry_storage_maintain(now=START + HOUR)
    minutes = TelemetryMinute.objects.filter(node=node)
    assert minutes.count() == 60
    assert minutes.earliest("minute").minute == START - HOUR


@pytest.mark.postgres
def test_day_partitions_are_created_ahead_and_dropped_once_metered_and_rolled_up(
    storage_settings,
):
    # given: samples 5 days ago (in the default partition: no day partition for them)
    node = NodeFactory(gpu_count=1)
    old = START - dt.timedelta(days=5)
    lease = _lease_on(node, starts_at=old, status=Lease.Status.COMPLETED)
    record(node, start=old, end=old + HOUR, vary=False)
    record(node, start=START - HOUR, end=START, vary=False)
    # when: maintained on 1 May
    storage.telemetry_storage_maintain(now=START)
    # then: days from the retention limit (29 April) to a day ahead (2 May) exist for both
    assert sorted(storage.partitions(table=storage.SAMPLES)) == [
        "market_telemetrysample_p20260429",
        "market_telemetrysample_p20260430",
        "market_telemetrysample_p20260501",
        "market_telemetrysample_p20260502",
    ]
    assert sorted(storage.partitions(table=storage.MINUTES)) == [
        "market_telemetryminute_p20260427",
        "market_telemetryminute_p20260428",
        "market_telemetryminute_p20260429",
        "market_telemetryminute_p20260430",
        "market_telemetryminute_p20260501",
        "market_telemetryminute_p20260502",
    ]
    # and the last hour's samples moved from the default partition into 1 May's
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM market_telemetrysample_p20260501")
        assert cursor.fetchone()[0] == 720
        cursor.execute("SELECT count(*) FROM market_telemetrysample_default")
        assert cursor.fetchone()[0] == 720  # 26 April's, unmetered and not rolled up
    # when: metered and rolled up, then maintained two days later
    leases_meter(now=START, lease_ids=[lease.pk])
    storage.telemetry_rollup(now=START + dt.timedelta(minutes=2))  # to 08:00 (grace 2 min)
    storage.telemetry_storage_maintain(now=START + dt.timedelta(days=2))
    # then: 26 April's samples are gone, and so are the partitions of 29 and 30 April
    # (past retention, rolled up, no lease to meter); 1 May's is kept, days to 4 May ready
    assert sorted(storage.partitions(table=storage.SAMPLES)) == [
        "market_telemetrysample_p20260501",
        "market_telemetrysample_p20260502",
        "market_telemetrysample_p20260503",
        "market_telemetrysample_p20260504",
    ]
    assert TelemetrySample.objects.count() == 720
    # the rollups of 1 May stay; 26 April's are past the 4 days rollups are kept
    assert TelemetryMinute.objects.filter(minute__lt=START).count() == 60
    assert TelemetryMinute.objects.earliest("minute").minute == START - HOUR


@pytest.mark.postgres
def test_a_partition_holding_unmetered_samples_is_not_dropped(storage_settings):
    node = NodeFactory(gpu_count=1)
    day = START - dt.timedelta(days=1)
    storage.partition_create(table=storage.SAMPLES, day=day)
    _lease_on(node, starts_at=day + HOUR)  # active, never metered
    record(node, start=day + HOUR, end=day + 2 * HOUR)
    storage.telemetry_rollup(now=START + dt.timedelta(days=5))
    storage.telemetry_storage_maintain(now=START + dt.timedelta(days=5))
    assert "market_telemetrysample_p20260430" in storage.partitions(table=storage.SAMPLES)
    assert TelemetrySample.objects.filter(node=node).count() == 720
