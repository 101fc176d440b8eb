import datetime as dt

import pytest
from django.utils import timezone

from market.models import Node, Offer, Order, Site
from tests.factories import LeaseFactory, NodeFactory, OfferFactory, SiteFactory, gpu

pytestmark = pytest.mark.django_db


def local(delta: dt.timedelta) -> str:
    return timezone.localtime(timezone.now() + delta).strftime("%Y-%m-%dT%H:%M")


def test_catalogue_page_is_public(client):
    page = client.get("/market/gpus/").content.decode()
    assert "H100 SXM" in page and "Ascend 910B3" in page


def test_find_compute_filters_offers(client):
    OfferFactory(node__gpu_model=gpu("nvidia-h100-sxm"), price_amount=2_400)
    OfferFactory(node__gpu_model=gpu("huawei-ascend-910b3"), price_amount=1_000)

    everything = client.get("/market/offers/").content.decode()
    domestic = client.get("/market/offers/", {"domestic": "true", "sort": "green"}).content.decode()

    assert "¥24.00" in everything and "¥10.00" in everything
    assert "¥10.00" in domestic and "¥24.00" not in domestic
    assert "¥24.26" in everything  # ¥24 / 0.9894 PFLOPS per PFLOPS-hour


def test_provider_capacity_page_shows_sold_and_idle_gpus(client, provider, provider_org):
    node = NodeFactory(site=SiteFactory(provider=provider_org, name="Qingyang DC"))
    LeaseFactory(offer__node=node, gpu_count=3, status="active")
    client.force_login(provider)

    page = client.get("/market/capacity/").content.decode()

    assert "Qingyang DC" in page
    assert '<div class="stat">8</div>' in page
    assert '<div class="stat">3</div>' in page
    assert '<div class="stat">5</div>' in page


def test_provider_adds_site_node_and_offer_through_the_pages(client, provider, provider_org):
    client.force_login(provider)

    client.post(
        "/market/capacity/sites/",
        {
            "name": "Guian 1",
            "region": "贵州",
            "hub": "guizhou",
            "green_share": "0.7",
            "pue": "1.2",
            "carbon_intensity_g_per_kwh": "400",
            "latency_class": "national",
        },
    )
    site = Site.objects.get(provider=provider_org)
    client.post(
        "/market/capacity/nodes/",
        {"site": site.pk, "name": "n1", "gpu_model": gpu("nvidia-h20").pk, "gpu_count": 8},
    )
    node = Node.objects.get(site=site)
    page = client.get("/market/capacity/").content.decode()
    assert f'<code class="token">{node.pk}.' in page  # the agent token, shown once
    assert '<code class="token">' not in client.get("/market/capacity/").content.decode()
    client.post(
        "/market/capacity/offers/",
        {
            "site": site.pk,
            "node": node.pk,
            "gpus_total": 8,
            "price": "6.50",
            "available_from": local(dt.timedelta(0)),
            "available_until": local(dt.timedelta(days=10)),
            "min_hours": 1,
            "max_hours": 240,
        },
    )
    offer = Offer.objects.get()
    assert (offer.price_amount, offer.gpu_model.slug) == (650, "nvidia-h20")
    client.post(f"/market/capacity/offers/{offer.pk}/pause/")
    offer.refresh_from_db()
    assert offer.status == "paused"


def test_provider_cannot_act_on_another_providers_offer_page(client, provider):
    offer = OfferFactory()
    client.force_login(provider)

    assert client.post(f"/market/capacity/offers/{offer.pk}/withdraw/").status_code == 404
    offer.refresh_from_db()
    assert offer.status == "active"


def test_order_estimate_partial_shows_gpu_hours_pflops_hours_and_cost(client, buyer):
    OfferFactory(price_amount=2_000)  # 8 × H800 (989.4 TFLOPS dense BF16)
    client.force_login(buyer)

    page = client.get(
        "/market/orders/estimate/",
        {
            "accepted_models": [gpu("nvidia-h800-sxm").pk],
            "gpu_count": 4,
            "hours": 10,
            "max_price": "25.00",
            "start_by": local(dt.timedelta(hours=2)),
        },
        HTTP_HX_REQUEST="true",
    ).content.decode()

    assert '<div class="stat">40</div>' in page  # GPU-hours
    assert '<div class="stat">39.58</div>' in page  # 40 × 0.9894 PFLOPS
    assert "¥800.00" in page  # 40 GPU-hours × ¥20 ask
    assert "¥1,000.00" in page  # at most, at the ¥25 bid


def test_place_order_page_loads_htmx_and_places_an_order(client, buyer, buyer_org):
    client.force_login(buyer)
    page = client.get("/market/orders/new/").content.decode()
    assert "htmx" in page and 'hx-get="/market/orders/estimate/"' in page

    response = client.post(
        "/market/orders/new/",
        {
            "accepted_models": [gpu("nvidia-h800-sxm").pk],
            "gpu_count": 2,
            "hours": 5,
            "max_price": "30.00",
            "start_by": local(dt.timedelta(hours=3)),
            "failover_allowed": "on",
        },
    )

    assert response.status_code == 302
    order = Order.objects.get(buyer=buyer_org)
    assert (order.max_price_amount, order.gpu_count) == (3_000, 2)


def test_invalid_order_form_stores_nothing(client, buyer):
    client.force_login(buyer)

    response = client.post(
        "/market/orders/new/",
        {"gpu_count": 2, "hours": -1, "max_price": "0", "start_by": local(dt.timedelta(hours=3))},
    )

    assert response.status_code == 200
    assert not Order.objects.exists()


def test_my_orders_shows_only_my_orders_and_their_leases(client, buyer, buyer_org):
    mine = LeaseFactory(order__buyer=buyer_org, price_amount=1_234)
    LeaseFactory(price_amount=4_321)
    client.force_login(buyer)

    page = client.get("/market/orders/").content.decode()

    assert f"Order {mine.order_id}" in page and "¥12.34" in page
    assert "¥43.21" not in page
    # how a price above the cheapest offer can come about
    assert "never above its maximum price" in page


@pytest.mark.parametrize("path", ["/market/capacity/", "/market/orders/", "/market/orders/new/"])
def test_pages_for_the_other_kind_of_organisation_are_404(client, buyer, provider, path):
    client.force_login(provider if "orders" in path else buyer)
    assert client.get(path).status_code == 404


def test_anonymous_users_are_sent_to_log_in_from_market_pages(client):
    response = client.get("/market/orders/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_order_estimate_honours_verified_only_and_interruptible(client, buyer):
    # given 4 unverified H800s at ¥18.00, 4 interruptible at ¥15.00 and 4 verified at ¥20.00
    OfferFactory(node=NodeFactory(gpu_count=4), price_amount=1_800)
    OfferFactory(node=NodeFactory(gpu_count=4), price_amount=1_500, interruptible=True)
    OfferFactory(node=NodeFactory(gpu_count=4, verified=True), price_amount=2_000)
    client.force_login(buyer)
    asked = {
        "accepted_models": [gpu("nvidia-h800-sxm").pk],
        "gpu_count": 4,
        "hours": 10,
        "max_price": "25.00",
        "start_by": local(dt.timedelta(hours=2)),
    }

    def estimate(**extra) -> str:
        return client.get(
            "/market/orders/estimate/", {**asked, **extra}, HTTP_HX_REQUEST="true"
        ).content.decode()

    # then each estimate prices what the order could really get
    assert "¥720.00" in estimate()  # 40 GPU-hours × ¥18 (interruptible left out)
    assert "¥800.00" in estimate(verified_only="on")  # only the verified ¥20 node
    assert "¥600.00" in estimate(interruptible="on")  # the ¥15 interruptible GPUs
