import datetime as dt
import hashlib

import pytest
from django.utils import timezone

from market.models import Lease, Node, Offer, OfferEvent, Order, OrderEvent, Site
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
    SiteFactory,
    gpu,
)

pytestmark = pytest.mark.django_db


def iso(delta: dt.timedelta) -> str:
    return (timezone.now() + delta).isoformat()


# --- catalogue -----------------------------------------------------------------------


def test_catalogue_is_public_with_sources(api_client):
    response = api_client.get("/api/v1/gpu-models/", {"page_size": 100})

    assert response.status_code == 200
    by_slug = {row["slug"]: row for row in response.json()["results"]}
    assert by_slug["nvidia-h100-sxm"]["dense_tflops"] == "989.40"
    assert by_slug["huawei-ascend-910b3"]["domestic"] is True
    assert by_slug["nvidia-h100-sxm"]["sources"]
    assert api_client.get("/api/v1/gpu-models/nvidia-h20/").json()["memory_gb"] == 96


# --- sites and nodes -----------------------------------------------------------------------


def test_provider_creates_a_site(provider_client, provider_org):
    response = provider_client.post(
        "/api/v1/sites/",
        {
            "name": "Qingyang DC 1",
            "region": "甘肃",
            "hub": "gansu",
            "green_share": "0.820",
            "pue": "1.15",
            "carbon_intensity_g_per_kwh": 480,
            "latency_class": "national",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    site = Site.objects.get()
    assert (site.provider, site.hub, str(site.green_share)) == (provider_org, "gansu", "0.820")


def test_invalid_site_gets_field_errors_and_nothing_is_stored(provider_client):
    response = provider_client.post(
        "/api/v1/sites/",
        {
            "name": "x",
            "region": "甘肃",
            "green_share": "1.5",
            "pue": "0.9",
            "hub": "mars",
            "carbon_intensity_g_per_kwh": 1,
        },
        format="json",
    )

    assert response.status_code == 400
    assert {"green_share", "hub"} <= set(response.json()["errors"])
    assert not Site.objects.exists()


def test_buyers_cannot_create_sites(buyer_client):
    assert buyer_client.post("/api/v1/sites/", {}, format="json").status_code == 403


def test_node_create_returns_its_agent_token_once_and_stores_only_the_digest(
    provider_client, provider_org
):
    site = SiteFactory(provider=provider_org)

    response = provider_client.post(
        "/api/v1/nodes/",
        {"site": site.pk, "name": "gpu-01", "gpu_model": "nvidia-h800-sxm", "gpu_count": 8},
        format="json",
    )

    assert response.status_code == 201, response.json()
    token = response.json()["agent_token"]
    node = Node.objects.get()
    node_id, secret = token.split(".", 1)
    assert int(node_id) == node.pk and len(secret) >= 43
    assert node.token_digest == hashlib.sha256(token.encode()).hexdigest()
    listed = provider_client.get(f"/api/v1/nodes/{node.pk}/").json()
    assert "agent_token" not in listed
    assert listed["gpus_leased"] == 0


def test_provider_cannot_add_a_node_to_another_providers_site(provider_client):
    other_site = SiteFactory()

    response = provider_client.post(
        "/api/v1/nodes/",
        {"site": other_site.pk, "name": "x", "gpu_model": "nvidia-h20", "gpu_count": 8},
        format="json",
    )

    assert response.status_code == 400
    assert not Node.objects.exists()


def test_other_providers_sites_and_nodes_are_404(provider_client):
    node = NodeFactory()
    assert provider_client.get(f"/api/v1/sites/{node.site_id}/").status_code == 404
    assert provider_client.get(f"/api/v1/nodes/{node.pk}/").status_code == 404
    assert provider_client.get("/api/v1/nodes/").json()["count"] == 0


# --- offers ------------------------------------------------------------------------------


def offer_payload(site, node=None, **overrides):
    payload = {
        "site": site.pk,
        "node": node.pk if node else None,
        "gpu_model": "nvidia-h800-sxm",
        "gpus_total": 8,
        "price_amount": 2_150,
        "available_from": iso(dt.timedelta(0)),
        "available_until": iso(dt.timedelta(days=30)),
        "min_hours": 1,
        "max_hours": 720,
    }
    return payload | overrides


def test_provider_lists_a_pool_offer_over_its_site(provider_client, provider_org):
    site = SiteFactory(provider=provider_org)
    NodeFactory(site=site), NodeFactory(site=site)

    response = provider_client.post(
        "/api/v1/offers/", offer_payload(site, gpus_total=16), format="json"
    )

    assert response.status_code == 201, response.json()
    offer = Offer.objects.get()
    assert (offer.node, offer.gpus_total, offer.gpus_available) == (None, 16, 16)
    assert OfferEvent.objects.get(offer=offer).to_status == "active"


def test_an_offer_cannot_promise_more_gpus_than_the_node_has(provider_client, provider_org):
    node = NodeFactory(site=SiteFactory(provider=provider_org), gpu_count=8)

    response = provider_client.post(
        "/api/v1/offers/", offer_payload(node.site, node, gpus_total=9), format="json"
    )

    assert response.status_code == 400
    assert "gpus_total" in response.json()["errors"]
    assert not Offer.objects.exists()


def test_provider_pauses_resumes_reprices_and_withdraws_an_offer(provider_client, provider_org):
    offer = OfferFactory(node__site__provider=provider_org, price_amount=2_000)
    url = f"/api/v1/offers/{offer.pk}/"

    assert provider_client.post(url + "pause/").json()["status"] == "paused"
    assert provider_client.post(url + "pause/").status_code == 400
    assert provider_client.post(url + "resume/").json()["status"] == "active"
    assert (
        provider_client.patch(url, {"price_amount": 1_800}, format="json").json()["price_amount"]
        == 1_800
    )
    withdrawn = provider_client.post(url + "withdraw/").json()
    assert (withdrawn["status"], withdrawn["gpus_available"]) == ("withdrawn", 0)
    assert list(offer.events.values_list("from_status", "to_status", "reason")) == [
        ("active", "paused", "paused"),
        ("paused", "active", "resumed"),
        ("active", "active", "price 2000 → 1800"),
        ("active", "withdrawn", "withdrawn"),
    ]


def test_repricing_does_not_change_leases_already_made(provider_client, provider_org):
    offer = OfferFactory(node__site__provider=provider_org, price_amount=2_000)
    lease = LeaseFactory(offer=offer)

    provider_client.patch(f"/api/v1/offers/{offer.pk}/", {"price_amount": 2_600}, format="json")

    lease.refresh_from_db()
    assert lease.price_amount == 2_000


def test_a_provider_cannot_edit_another_providers_offer(provider_client):
    offer = OfferFactory(price_amount=2_000)

    assert (
        provider_client.patch(
            f"/api/v1/offers/{offer.pk}/", {"price_amount": 1}, format="json"
        ).status_code
        == 404
    )
    assert provider_client.post(f"/api/v1/offers/{offer.pk}/withdraw/").status_code == 404
    offer.refresh_from_db()
    assert (offer.price_amount, offer.status) == (2_000, "active")


def test_offer_search_filters_and_sorts(api_client, django_assert_max_num_queries):
    green = SiteFactory(green_share="0.900", region="宁夏", hub="ningxia")
    grey = SiteFactory(green_share="0.200", region="北京", hub="jingjinji")
    h100 = OfferFactory(
        node__site=green, node__gpu_model=gpu("nvidia-h100-sxm"), price_amount=2_400
    )
    ascend = OfferFactory(
        node__site=grey, node__gpu_model=gpu("huawei-ascend-910b3"), price_amount=1_000
    )
    OfferFactory(node__site=grey, status=Offer.Status.PAUSED)

    def ids(**params):
        response = api_client.get("/api/v1/offers/", params)
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids() == [ascend.pk, h100.pk]
    assert ids(sort="green") == [h100.pk, ascend.pk]
    # ¥10 / 0.313 PFLOPS = 3,194.89 fen per PFLOPS-hour; ¥24 / 0.9894 = 2,425.71
    assert ids(sort="price_per_pflops") == [h100.pk, ascend.pk]
    assert ids(domestic="true") == [ascend.pk]
    assert ids(vendor="nvidia") == [h100.pk]
    assert ids(min_memory_gb=80) == [h100.pk]
    assert ids(min_tflops=500) == [h100.pk]
    assert ids(region="宁夏") == [h100.pk]
    assert ids(hub="jingjinji") == [ascend.pk]
    assert ids(min_green_share="0.5") == [h100.pk]
    assert ids(max_price=1_500) == [ascend.pk]
    assert ids(min_gpus=9) == []
    assert ids(gpu_model="nvidia-h100-sxm") == [h100.pk]
    row = api_client.get("/api/v1/offers/", {"sort": "price_per_pflops"}).json()["results"][0]
    assert row["price_per_pflops_hour"] == "2425.71"
    assert row["reliability"] == "1.0000"
    with django_assert_max_num_queries(6):
        api_client.get("/api/v1/offers/", {"sort": "reliability"})


def test_offer_search_is_paginated(api_client):
    for _ in range(3):
        OfferFactory()

    page = api_client.get("/api/v1/offers/", {"page_size": 2}).json()

    assert (page["count"], len(page["results"]), page["next"] is not None) == (3, 2, True)


# --- orders --------------------------------------------------------------------------------


def order_payload(**overrides):
    payload = {
        "accepted_models": ["nvidia-h800-sxm", "nvidia-h100-sxm"],
        "gpu_count": 8,
        "hours": 24,
        "max_price_amount": 2_500,
        "start_by": iso(dt.timedelta(hours=6)),
        "min_green_share": "0.5",
    }
    return payload | overrides


def test_placing_an_order_matches_it_at_once(
    buyer_client, buyer_org, django_capture_on_commit_callbacks
):
    offer = OfferFactory(node__site__green_share="0.700", price_amount=2_100)

    with django_capture_on_commit_callbacks(execute=True):
        response = buyer_client.post("/api/v1/orders/", order_payload(), format="json")

    assert response.status_code == 201, response.json()
    order = Order.objects.get()
    assert (order.buyer, order.status, order.gpus_filled) == (buyer_org, "filled", 8)
    lease = Lease.objects.get()
    assert (lease.offer, lease.price_amount, lease.gpu_count) == (offer, 2_100, 8)
    detail = buyer_client.get(f"/api/v1/orders/{order.pk}/").json()
    assert [row["id"] for row in detail["leases"]] == [lease.pk]


def test_the_same_idempotency_key_twice_makes_one_order(buyer_client):
    payload = order_payload()

    first = buyer_client.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = buyer_client.post("/api/v1/orders/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Order.objects.count() == 1
    assert OrderEvent.objects.filter(to_status="open").count() == 1


def test_the_same_idempotency_key_with_another_order_is_a_conflict(buyer_client):
    buyer_client.post("/api/v1/orders/", order_payload(), format="json", HTTP_IDEMPOTENCY_KEY="k")

    response = buyer_client.post(
        "/api/v1/orders/", order_payload(gpu_count=4), format="json", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert response.status_code == 409
    assert Order.objects.get().gpu_count == 8


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hours": -3}, "hours"),
        ({"accepted_models": ["nvidia-h999"]}, "accepted_models"),
        ({"max_price_amount": 0}, "max_price_amount"),
        ({"max_price_amount": -100}, "max_price_amount"),
        ({"gpu_count": 0}, "gpu_count"),
        ({"start_by": "2020-01-01T00:00:00Z"}, "start_by"),
        ({"hubs": ["atlantis"]}, "hubs"),
        ({"accepted_models": [], "min_tflops": "5000"}, "accepted_models"),
    ],
)
def test_invalid_orders_get_field_errors_and_store_nothing(buyer_client, overrides, field):
    response = buyer_client.post("/api/v1/orders/", order_payload(**overrides), format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert not Order.objects.exists()
    assert not OrderEvent.objects.exists()


def test_a_gang_order_larger_than_any_site_is_refused(buyer_client):
    site = SiteFactory()
    NodeFactory(site=site), NodeFactory(site=site)  # 16 H800 at the largest site
    NodeFactory()

    response = buyer_client.post(
        "/api/v1/orders/", order_payload(gang=True, gpu_count=17), format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"]["gpu_count"] == [
        "A gang order must fit in one site; the largest site has 16 GPUs of the accepted models."
    ]
    assert not Order.objects.exists()


def test_providers_cannot_place_orders(provider_client):
    assert (
        provider_client.post("/api/v1/orders/", order_payload(), format="json").status_code == 403
    )


def test_a_buyer_cannot_see_another_buyers_orders_or_leases(buyer_client, buyer_org):
    other = LeaseFactory()
    mine = LeaseFactory(order__buyer=buyer_org)

    assert buyer_client.get(f"/api/v1/orders/{other.order_id}/").status_code == 404
    assert buyer_client.post(f"/api/v1/orders/{other.order_id}/cancel/").status_code == 404
    assert buyer_client.get(f"/api/v1/leases/{other.pk}/").status_code == 404
    assert [row["id"] for row in buyer_client.get("/api/v1/orders/").json()["results"]] == [
        mine.order_id
    ]
    assert [row["id"] for row in buyer_client.get("/api/v1/leases/").json()["results"]] == [mine.pk]
    other.order.refresh_from_db()
    assert other.order.status == "open"


def test_provider_sees_the_leases_it_sold_with_usage(provider_client, provider_org):
    from tests.factories import UsageRecordFactory

    lease = LeaseFactory(offer__node__site__provider=provider_org, gpu_count=2)
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=7_000, gpu_seconds_lost=200)
    LeaseFactory()

    rows = provider_client.get("/api/v1/leases/").json()["results"]

    assert [(r["id"], r["gpu_seconds_delivered"], r["gpu_seconds_lost"]) for r in rows] == [
        (lease.pk, 7_000, 200)
    ]


def test_cancelling_an_order_cancels_pending_leases_and_gives_the_gpus_back(
    buyer_client, buyer_org
):
    offer = OfferFactory()
    order = OrderFactory(buyer=buyer_org, accepted_models=[gpu("nvidia-h800-sxm")], gpu_count=12)
    from market.matching import order_match

    order_match(order_id=order.pk)
    offer.refresh_from_db()
    assert offer.gpus_available == 0

    response = buyer_client.post(f"/api/v1/orders/{order.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert Lease.objects.get().status == "cancelled"
    offer.refresh_from_db()
    assert offer.gpus_available == 8
    assert buyer_client.post(f"/api/v1/orders/{order.pk}/cancel/").status_code == 400


def test_anonymous_users_reach_no_private_market_api(api_client):
    for path in ("/api/v1/orders/", "/api/v1/leases/", "/api/v1/sites/", "/api/v1/nodes/"):
        assert api_client.get(path).status_code == 401
    assert OrganisationFactory  # factories importable for the suite


def test_offer_detail_is_public_while_live_and_private_to_its_provider_otherwise(
    api_client, provider_client, provider_org
):
    live = OfferFactory()
    paused = OfferFactory(node__site__provider=provider_org, status=Offer.Status.PAUSED)

    assert api_client.get(f"/api/v1/offers/{live.pk}/").json()["id"] == live.pk
    assert api_client.get(f"/api/v1/offers/{paused.pk}/").status_code == 404
    assert provider_client.get(f"/api/v1/offers/{paused.pk}/").json()["status"] == "paused"
    assert provider_client.get("/api/v1/offers/mine/").json()["count"] == 1
