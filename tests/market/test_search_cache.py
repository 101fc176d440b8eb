"""A page of the public offer search is cached for everyone until the book
changes: the same search again runs no query, and every change a searcher
could see - a new price, GPUs taken by an order, a node verified - shows at
once, not when the cache times out."""

import datetime as dt
from decimal import Decimal

import pytest

from core import clock
from market.telemetry import provider_reliability_refresh
from market.verification import node_self_test_record
from tests.factories import LeaseFactory, NodeFactory, OfferFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

SEARCH = "/api/v1/offers/?vendor=NVIDIA"


def _row(api_client, offer_id: int) -> dict:
    rows = api_client.get(SEARCH).json()["results"]
    return next(row for row in rows if row["id"] == offer_id)


def test_the_same_search_again_runs_no_query(api_client, django_assert_num_queries):
    OfferFactory(price_amount=2_000)
    first = api_client.get(SEARCH).json()
    with django_assert_num_queries(0):
        again = api_client.get(SEARCH).json()
    assert again == first
    assert again["count"] == 1


def test_a_new_price_shows_at_once(api_client, provider_client, provider_org):
    offer = OfferFactory(node__site__provider=provider_org, price_amount=2_000)
    assert _row(api_client, offer.pk)["price_amount"] == 2_000

    answer = provider_client.patch(
        f"/api/v1/offers/{offer.pk}/", {"price_amount": 1_800}, format="json"
    )

    assert answer.status_code == 200, answer.json()
    assert _row(api_client, offer.pk)["price_amount"] == 1_800


def test_a_new_offer_shows_at_once(api_client, provider_client, provider_org):
    first = OfferFactory(node__site__provider=provider_org, price_amount=2_000)
    assert api_client.get(SEARCH).json()["count"] == 1

    listed = provider_client.post(
        "/api/v1/offers/",
        {
            "site": first.site_id,
            "node": first.node_id,
            "gpus_total": 4,
            "price_amount": 1_500,
            "available_from": clock.now().isoformat(),
            "available_until": (clock.now() + dt.timedelta(days=30)).isoformat(),
        },
        format="json",
    )

    assert listed.status_code == 201, listed.json()
    page = api_client.get(SEARCH).json()
    assert page["count"] == 2
    assert page["results"][0]["id"] == listed.json()["id"]


def test_gpus_an_order_takes_leave_the_search_at_once(
    api_client, buyer_client, django_capture_on_commit_callbacks
):
    offer = OfferFactory(price_amount=2_000)  # 8 GPUs
    assert _row(api_client, offer.pk)["gpus_available"] == 8

    with django_capture_on_commit_callbacks(execute=True):
        placed = buyer_client.post(
            "/api/v1/orders/",
            {
                "accepted_models": ["nvidia-h800-sxm"],
                "gpu_count": 3,
                "hours": 2,
                "max_price_amount": 2_500,
                "start_by": (clock.now() + dt.timedelta(hours=6)).isoformat(),
            },
            format="json",
        )

    assert placed.status_code == 201, placed.json()
    assert _row(api_client, offer.pk)["gpus_available"] == 5


def test_a_node_passing_its_self_test_shows_verified_at_once(api_client):
    node = NodeFactory(verified=False, gpu_count=8)
    offer = OfferFactory(node=node)
    assert _row(api_client, offer.pk)["verified"] is False

    test = node_self_test_record(
        node=node,
        gpus_seen=8,
        gpu_name=node.gpu_model.name,
        memory_gb=Decimal(node.gpu_model.memory_gb),
        bandwidth_gb_s=Decimal(2_000),
        tflops=node.gpu_model.dense_tflops * Decimal("0.9"),
        now=clock.now(),
    )

    assert test.passed, test.reason
    assert _row(api_client, offer.pk)["verified"] is True


def test_a_new_reliability_score_shows_at_once(api_client):
    offer = OfferFactory()
    assert _row(api_client, offer.pk)["reliability"] == "1.0000"
    lease = LeaseFactory(offer=offer, gpu_count=1)
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=1800, gpu_seconds_lost=1800)

    provider_reliability_refresh()

    assert _row(api_client, offer.pk)["reliability"] != "1.0000"
