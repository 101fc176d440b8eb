"""The public book (depth by price level, anonymised), quotes and time in
force through the API and the pages."""

import datetime as dt
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from market.models import Lease, Order
from tests.factories import (
    NodeFactory,
    OfferFactory,
    OrderFactory,
    SiteFactory,
    gpu,
)

pytestmark = pytest.mark.django_db


def iso(delta: dt.timedelta) -> str:
    return (timezone.now() + delta).isoformat()


def _market():
    """Asks: H800 8 @ ¥20.00 and 4 + 4 @ ¥22.00 (two offers) in Gansu, 8 @ ¥21.00 in
    Ningxia; H20 8 @ ¥9.00. Bids: H800 6 left of 8 @ ¥18.00, 4 @ ¥18.00, 2 @ ¥15.00;
    one order accepting H800 or H20 @ ¥8.00; an IOC and an expired order stand nowhere."""
    h800, h20 = gpu("nvidia-h800-sxm"), gpu("nvidia-h20")
    ningxia = SiteFactory(hub="ningxia", region="宁夏")
    OfferFactory(price_amount=2_000)
    OfferFactory(node=NodeFactory(gpu_count=4), price_amount=2_200)
    OfferFactory(node=NodeFactory(gpu_count=4), price_amount=2_200)
    OfferFactory(node=NodeFactory(site=ningxia), price_amount=2_100)
    OfferFactory(node=NodeFactory(gpu_model=h20), price_amount=900)
    OrderFactory(accepted_models=[h800], gpu_count=8, gpus_filled=2, max_price_amount=1_800)
    OrderFactory(accepted_models=[h800], gpu_count=4, max_price_amount=1_800, hubs=["gansu"])
    OrderFactory(accepted_models=[h800], gpu_count=2, max_price_amount=1_500)
    OrderFactory(accepted_models=[h800, h20], gpu_count=1, max_price_amount=800)
    OrderFactory(
        accepted_models=[h800],
        max_price_amount=2_900,
        time_in_force=Order.TimeInForce.IMMEDIATE_OR_CANCEL,
    )
    OrderFactory(accepted_models=[h800], max_price_amount=2_900, status=Order.Status.EXPIRED)


def test_the_book_shows_bids_and_asks_by_price_level_and_names_nobody(api_client):
    _market()

    response = api_client.get("/api/v1/book/", {"gpu_model": "nvidia-h800-sxm"})

    assert response.status_code == 200
    [book] = response.json()["books"]
    assert (book["gpu_model"], book["currency"], book["dense_tflops"]) == (
        "nvidia-h800-sxm",
        "CNY",
        "989.40",
    )
    assert [(lv["price_amount"], lv["gpus"], lv["count"]) for lv in book["bids"]] == [
        (1_800, 10, 2),
        (1_500, 2, 1),
        (800, 1, 1),
    ]
    assert [(lv["price_amount"], lv["gpus"], lv["count"]) for lv in book["asks"]] == [
        (2_000, 8, 1),
        (2_100, 8, 1),
        (2_200, 8, 2),
    ]
    # ¥20.00 per GPU-hour / 0.9894 PFLOPS = ¥20.21 per PFLOPS-hour (in fen)
    assert book["asks"][0]["price_per_pflops_hour"] == "2021.43"
    body = response.content.decode()
    assert "Organisation" not in body and "Site" not in body and '"id"' not in body


def test_the_book_of_one_hub_keeps_the_asks_there_and_the_bids_that_accept_it(api_client):
    _market()

    books = api_client.get("/api/v1/book/", {"hub": "ningxia"}).json()["books"]

    h800 = next(b for b in books if b["gpu_model"] == "nvidia-h800-sxm")
    assert [(lv["price_amount"], lv["gpus"]) for lv in h800["asks"]] == [(2_100, 8)]
    assert [(lv["price_amount"], lv["gpus"]) for lv in h800["bids"]] == [
        (1_800, 6),  # the Gansu-only order is not a bid here
        (1_500, 2),
        (800, 1),
    ]
    h20 = next(b for b in books if b["gpu_model"] == "nvidia-h20")
    assert (h20["asks"], [lv["price_amount"] for lv in h20["bids"]]) == ([], [800])


def test_the_book_refuses_an_unknown_hub(api_client):
    response = api_client.get("/api/v1/book/", {"hub": "atlantis"})
    assert response.status_code == 400
    assert "hub" in response.json()["errors"]


def test_a_quote_answers_cost_and_offers_and_places_nothing(api_client):
    cheap = OfferFactory(node=NodeFactory(gpu_count=4), price_amount=2_000)
    next_one = OfferFactory(price_amount=2_150)
    grey = OfferFactory(
        node=NodeFactory(site=SiteFactory(green_share=Decimal("0.100"))), price_amount=1_000
    )
    h20 = OfferFactory(node=NodeFactory(gpu_model=gpu("nvidia-h20")), price_amount=500)

    response = api_client.post(
        "/api/v1/quotes/",
        {
            "accepted_models": ["nvidia-h800-sxm"],
            "gpu_count": 6,
            "hours": 5,
            "min_green_share": "0.5",
            "start_by": iso(dt.timedelta(days=1)),
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    quote = response.json()
    assert [(line["offer"], line["gpus"], line["cost_amount"]) for line in quote["lines"]] == [
        (cheap.pk, 4, 40_000),
        (next_one.pk, 2, 21_500),
    ]
    assert (quote["gpus"], quote["gpu_hours"], quote["cost_amount"]) == (6, 30, 61_500)
    assert quote["pflops_hours"] == "29.68"  # 30 GPU-hours x 0.9894 PFLOPS
    assert {row["offer"]: row["reasons"] for row in quote["excluded"]} == {
        grey.pk: ["green_share"],
        h20.pk: ["model"],
    }
    assert quote["excluded_total"] == 2
    assert not Order.objects.exists() and not Lease.objects.exists()


def test_a_quote_with_bad_input_is_a_400(api_client):
    response = api_client.post("/api/v1/quotes/", {"gpu_count": 0, "hours": 1}, format="json")
    assert response.status_code == 400
    assert {"gpu_count", "start_by"} <= set(response.json()["errors"])


def test_an_ioc_order_through_the_api_comes_back_matched_and_closed(buyer_client):
    OfferFactory(node=NodeFactory(gpu_count=2), price_amount=2_000)

    response = buyer_client.post(
        "/api/v1/orders/",
        {
            "accepted_models": ["nvidia-h800-sxm"],
            "gpu_count": 4,
            "hours": 3,
            "max_price_amount": 2_500,
            "start_by": iso(dt.timedelta(hours=6)),
            "time_in_force": "ioc",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["gpus_filled"], body["gpus_unfilled"]) == ("expired", 2, 2)
    assert body["time_in_force"] == "ioc"
    detail = buyer_client.get(f"/api/v1/orders/{body['id']}/").json()
    [lease] = detail["leases"]
    assert (lease["gpu_model"], lease["price_amount"], lease["hub"]) == (
        "nvidia-h800-sxm",
        2_000,
        "gansu",
    )
    assert lease["site"] and lease["gpu_model_name"] == "NVIDIA H800 SXM5 80GB"


def test_a_good_till_past_the_start_by_is_a_400_and_nothing_stored(buyer_client):
    response = buyer_client.post(
        "/api/v1/orders/",
        {
            "gpu_count": 1,
            "hours": 1,
            "max_price_amount": 2_500,
            "start_by": iso(dt.timedelta(hours=6)),
            "good_till": iso(dt.timedelta(hours=7)),
        },
        format="json",
    )
    assert response.status_code == 400
    assert "good_till" in response.json()["errors"]
    assert not Order.objects.exists()


# --- pages -----------------------------------------------------------------------


def test_the_book_page_is_public(client):
    _market()
    page = client.get("/market/book/", {"gpu_model": "nvidia-h800-sxm"}).content.decode()
    assert "NVIDIA H800 SXM" in page
    assert "¥22.00" in page and "¥18.00" in page
    assert "Organisation" not in page


def test_the_quote_page_explains_and_links_order_this_to_a_filled_in_form(client, buyer):
    OfferFactory(price_amount=2_000)
    OfferFactory(node=NodeFactory(gpu_model=gpu("nvidia-h20")), price_amount=500)
    client.force_login(buyer)
    h800 = gpu("nvidia-h800-sxm")
    query = {
        "accepted_models": h800.pk,
        "gpu_count": 4,
        "hours": 2,
        "max_price": "25.00",
        "start_by": (timezone.localtime() + dt.timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M"),
    }

    page = client.get("/market/quote/", query).content.decode()

    assert "¥160.00" in page  # 4 GPUs x 2 h x ¥20.00
    assert 'data-reason="model"' in page
    assert f'href="/market/orders/new/?{urlencode(query)}"' in page.replace("&amp;", "&")
    form = client.get("/market/orders/new/", query).content.decode()
    assert 'value="25.00"' in form and 'name="gpu_count" value="4"' in form
