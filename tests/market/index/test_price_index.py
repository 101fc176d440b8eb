"""The price index over a fixed set of fills, computed by hand; snapshots
hash-chained so that a changed published value is detected; API, CSV, pages."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from market.index import (
    gpu_class,
    index_chain_verify,
    index_compute_day,
    index_publish,
    index_publish_due,
)
from market.models import Lease, PriceIndexSnapshot
from tests.factories import LeaseFactory, NodeFactory, OfferFactory, gpu

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 6, 1)
MORNING = dt.datetime(2026, 6, 1, 10, tzinfo=SHANGHAI)  # 02:00 UTC


def fill(slug: str, *, gpus: int, hours: int, price: int, at: dt.datetime, **kwargs) -> Lease:
    offer = OfferFactory(node=NodeFactory(gpu_model=gpu(slug)), price_amount=price)
    with time_machine.travel(at, tick=False):
        return LeaseFactory(
            offer=offer,
            gpu_count=gpus,
            starts_at=at,
            ends_at=at + dt.timedelta(hours=hours),
            **kwargs,
        )


def fixed_fills() -> None:
    # imported-t1-m1 (989.4 TFLOPS): 4 x 10 h @ ¥20.00, 2 x 5 h @ ¥26.00, and
    # 1 x 2 h @ ¥30.00 that was cancelled later (a trade all the same)
    first = fill("nvidia-h800-sxm", gpus=4, hours=10, price=2_000, at=MORNING)
    fill("nvidia-h100-sxm", gpus=2, hours=5, price=2_600, at=MORNING + dt.timedelta(hours=3))
    fill(
        "nvidia-h800-sxm",
        gpus=1,
        hours=2,
        price=3_000,
        at=MORNING + dt.timedelta(hours=13, minutes=59),  # 23:59 in Shanghai
        status=Lease.Status.CANCELLED,
    )
    # domestic-t2-m2 (Ascend 910B3, 313 TFLOPS): 8 x 3 h @ ¥9.00
    fill("huawei-ascend-910b3", gpus=8, hours=3, price=900, at=MORNING)
    # not counted: a failover replacement, and trades of the day before / after
    fill("nvidia-h800-sxm", gpus=4, hours=5, price=9_000, at=MORNING, previous_lease=first)
    fill("nvidia-h800-sxm", gpus=4, hours=5, price=100, at=MORNING - dt.timedelta(hours=11))
    fill("nvidia-h800-sxm", gpus=4, hours=5, price=100, at=MORNING + dt.timedelta(hours=14))


def test_classes_by_compute_memory_and_origin():
    assert gpu_class(gpu("nvidia-h800-sxm")) == "imported-t1-m1"
    assert gpu_class(gpu("nvidia-a800-sxm-80gb")) == "imported-t2-m1"
    assert gpu_class(gpu("nvidia-h20")) == "imported-t3-m1"
    assert gpu_class(gpu("huawei-ascend-910b3")) == "domestic-t2-m2"
    assert gpu_class(gpu("huawei-ascend-910c")) == "domestic-t1-m1"


def test_a_day_of_the_index_over_fixed_fills_computed_by_hand():
    fixed_fills()

    rows = {row.gpu_class: row for row in index_compute_day(day=DAY)}

    assert set(rows) == {"imported-t1-m1", "domestic-t2-m2"}
    imported = rows["imported-t1-m1"]
    # notional 4x10x2000 + 2x5x2600 + 1x2x3000 = 80,000 + 26,000 + 6,000 = 112,000 fen
    # over 40 + 10 + 2 = 52 GPU-hours: 2,153.846... -> 2,153.85 fen per GPU-hour
    # PFLOPS-hours 52 x 0.9894 = 51.4488: 112,000 / 51.4488 = 2,176.9215... -> 2,176.92
    assert (imported.notional_amount, imported.gpu_hours, imported.trades) == (
        112_000,
        Decimal("52.00"),
        3,
    )
    assert imported.vwap_gpu_hour == Decimal("2153.85")
    assert imported.pflops_hours == Decimal("51.45")
    assert imported.vwap_pflops_hour == Decimal("2176.92")
    domestic = rows["domestic-t2-m2"]
    # 8 x 3 h x 900 = 21,600 fen over 24 GPU-hours = 900.00; 24 x 0.313 = 7.512
    # PFLOPS-hours: 21,600 / 7.512 = 2,875.399... -> 2,875.40
    assert (domestic.vwap_gpu_hour, domestic.vwap_pflops_hour, domestic.trades) == (
        Decimal("900.00"),
        Decimal("2875.40"),
        1,
    )


def test_snapshots_chain_and_a_changed_published_value_is_detected():
    fixed_fills()
    first = index_publish(day=DAY - dt.timedelta(days=1))
    second = index_publish(day=DAY)
    assert index_publish(day=DAY) == second  # publishing again is a no-op
    assert (first.seq, second.seq, second.previous_digest) == (1, 2, first.digest)
    check = index_chain_verify()
    assert (check.ok, check.snapshots, check.head_digest) == (True, 2, second.digest)

    # when someone edits the first published day's VWAP in the database
    PriceIndexSnapshot.objects.filter(pk=first.pk).update(
        payload=first.payload.replace('"vwap_gpu_hour":"100.00"', '"vwap_gpu_hour":"99.00"')
    )

    # then the chain says where it broke
    check = index_chain_verify()
    assert (check.ok, check.broken_seq, check.reason) == (
        False,
        1,
        "payload changed after publication",
    )


def test_a_restatement_is_a_new_snapshot_and_supersedes_the_day(api_client):
    fixed_fills()
    published = index_publish(day=DAY)
    fill("nvidia-h800-sxm", gpus=48, hours=1, price=1_000, at=MORNING)  # a late-recorded trade
    restated = index_publish(day=DAY, restate=True)

    assert (restated.seq, restated.previous_digest) == (2, published.digest)
    assert index_chain_verify().ok
    body = api_client.get("/api/v1/price-index/", {"gpu_class": "imported-t1-m1"}).json()
    [row] = body["rows"]
    assert (row["trades"], row["notional_amount"]) == (4, 160_000)


def test_the_due_day_is_yesterday_in_the_exchange_time_zone():
    fixed_fills()
    snapshot = index_publish_due(now=dt.datetime(2026, 6, 2, 0, 30, tzinfo=SHANGHAI))
    assert snapshot.day == DAY


def test_the_api_csv_verify_and_pages_show_the_published_index(api_client, client):
    fixed_fills()
    index_publish(day=DAY)

    body = api_client.get("/api/v1/price-index/").json()
    assert body["method_version"] == "v1"
    assert [(r["gpu_class"], r["vwap_gpu_hour"], r["vwap_pflops_hour"]) for r in body["rows"]] == [
        ("domestic-t2-m2", "900.00", "2875.40"),
        ("imported-t1-m1", "2153.85", "2176.92"),
    ]
    assert api_client.get("/api/v1/price-index/verify/").json()["ok"] is True
    assert (
        api_client.get(
            "/api/v1/price-index/", {"since": "2026-06-02", "until": "2026-06-01"}
        ).status_code
        == 400
    )

    csv = client.get("/market/index.csv").content.decode().splitlines()
    assert csv[0] == (
        "day,gpu_class,currency,vwap_gpu_hour,vwap_pflops_hour,gpu_hours,pflops_hours,"
        "notional_amount,trades"
    )
    assert csv[2] == "2026-06-01,imported-t1-m1,CNY,2153.85,2176.92,52.00,51.45,112000,3"

    page = client.get("/market/index/").content.decode()
    assert "imported-t1-m1" in page and "<svg" in page and "hash chain intact" in page
    # the chart names the class as a buyer reads it, not by its code
    assert "Imported · ≥ 700 TFLOPS · ≥ 80 GB" in page
    method = client.get("/market/index/method/").content.decode()
    assert "VWAP per PFLOPS-hour" in method


@pytest.mark.parametrize(
    "params", [{"since": "9999-12-31"}, {"until": "0001-01-01"}, {"since": "0001-01-01"}]
)
def test_dates_at_the_ends_of_the_calendar_are_an_empty_answer_not_an_error(api_client, params):
    response = api_client.get("/api/v1/price-index/", params)
    assert response.status_code == 200
    assert response.json()["rows"] == []
