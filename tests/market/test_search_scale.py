"""The public search and board at scale: a fixed number of queries whatever the
book's size, pages bounded by the sort's first key yet identical to a full
sort (ties included), counts cached until the book changes, reliability from
the stored scores."""

import datetime as dt
from decimal import Decimal

import pytest

from core import clock
from market import capacity
from market.models import Offer
from market.telemetry import provider_reliability_refresh
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    SiteFactory,
    UsageRecordFactory,
    gpu,
)

pytestmark = pytest.mark.django_db


def _book(count: int) -> None:
    for i in range(count):
        site = SiteFactory(green_share=Decimal(i % 4) / 4, hub="gansu")
        OfferFactory(node__site=site, price_amount=1_000 + 100 * (i % 3))


@pytest.mark.parametrize("size", [3, 12])
def test_offer_search_runs_the_same_queries_whatever_the_size_of_the_book(
    api_client, size, django_assert_num_queries
):
    # given
    _book(size)
    api_client.get("/api/v1/offers/")  # the count is cached from here on
    # when / then: the bound on the first sort key, the page
    with django_assert_num_queries(2):
        page = api_client.get("/api/v1/offers/", {"page_size": 2}).json()
    assert (page["count"], len(page["results"])) == (size, 2)
    # a model filter adds the catalogue lookup, and its own count the first time
    with django_assert_num_queries(4):
        api_client.get("/api/v1/offers/", {"vendor": "NVIDIA", "sort": "green"})
    # another page size: its count is cached, its page is not yet
    with django_assert_num_queries(3):
        api_client.get("/api/v1/offers/", {"vendor": "NVIDIA", "sort": "green", "page_size": 5})
    # the same page again: cached until the book changes (test_search_cache.py)
    with django_assert_num_queries(0):
        api_client.get("/api/v1/offers/", {"vendor": "NVIDIA", "sort": "green", "page_size": 5})


@pytest.mark.parametrize("size", [3, 12])
def test_the_public_board_runs_the_same_queries_whatever_the_size_of_the_book(
    client, size, django_assert_num_queries
):
    _book(size)
    client.get("/market/offers/")
    # an anonymous visitor: the bound, the page, the form's model choices
    with django_assert_num_queries(3):
        response = client.get("/market/offers/")
    assert response.status_code == 200
    assert response.context["page"].paginator.count == size


@pytest.mark.parametrize("sort", ["price", "-price", "green", "price_per_pflops", "reliability"])
def test_pages_of_a_search_are_the_full_sort_cut_in_pages(api_client, sort):
    # given many ties on the first sort key (three prices, four green shares)
    _book(14)
    OfferFactory(node__gpu_model=gpu("huawei-ascend-910b3"), price_amount=1_100)
    expected = [
        offer.pk
        for offer in Offer.objects.order_by(
            *{
                "price": ("price_amount", "-site__green_share", "created_at", "id"),
                "-price": ("-price_amount", "created_at", "id"),
                "green": ("-site__green_share", "price_amount", "id"),
            }.get(sort, ("pk",))
        )
    ]
    # when
    seen = []
    for number in range(1, 5):
        response = api_client.get("/api/v1/offers/", {"sort": sort, "page_size": 4, "page": number})
        seen += [row["id"] for row in response.json()["results"]]
    # then
    assert sorted(seen) == sorted(expected)
    if sort in ("price", "-price", "green"):
        assert seen == expected


def test_the_count_follows_the_book_as_it_changes(api_client, provider, provider_org):
    # given
    node = NodeFactory(site__provider=provider_org)
    first = OfferFactory(node=node)
    assert api_client.get("/api/v1/offers/").json()["count"] == 1
    # when a provider lists another offer and pauses the first
    now = clock.now()
    capacity.offer_create(
        provider=provider_org,
        actor=provider,
        site=node.site,
        node=None,
        gpu_model=node.gpu_model,
        gpus_total=node.gpu_count,
        price_amount=900,
        available_from=now,
        available_until=now + dt.timedelta(days=3),
    )
    assert api_client.get("/api/v1/offers/").json()["count"] == 2
    capacity.offer_pause(offer=first, actor=provider)
    # then
    assert api_client.get("/api/v1/offers/").json()["count"] == 1


def test_search_shows_the_reliability_stored_after_metering(api_client):
    # given a provider that delivered 3 GPU-hours of 4
    offer = OfferFactory()
    lease = LeaseFactory(offer=offer, gpu_count=4)
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=3 * 3600, gpu_seconds_lost=3600)
    assert api_client.get("/api/v1/offers/").json()["results"][0]["reliability"] == "1.0000"
    # when
    provider_reliability_refresh()
    # then
    row = api_client.get("/api/v1/offers/").json()["results"][0]
    assert (row["id"], row["reliability"]) == (offer.pk, "0.7500")


def test_board_summary_per_model_and_hub_follows_the_book(
    provider, provider_org, django_assert_num_queries
):
    from market.selectors import board_summary

    # given three H100 offers at ¥10, ¥12, ¥30 and one Ascend offer
    h100 = gpu("nvidia-h100-sxm")
    green = SiteFactory(provider=provider_org, hub="ningxia", green_share=Decimal("0.900"))
    for price in (1_000, 1_200, 3_000):
        OfferFactory(node__site=green, node__gpu_model=h100, node__gpu_count=8, price_amount=price)
    grey = SiteFactory(provider=provider_org, hub="jingjinji", green_share=Decimal("0.100"))
    ascend = OfferFactory(
        node__site=grey, node__gpu_model=gpu("huawei-ascend-910b3"), node__gpu_count=8
    )
    OfferFactory(node__site=grey, status=Offer.Status.PAUSED)
    # when
    board = board_summary()
    with django_assert_num_queries(0):
        assert board_summary() == board
    # then
    first = next(m for m in board.models if m.slug == "nvidia-h100-sxm")
    assert (first.offers, first.gpus_available) == (3, 24)
    assert (first.lowest_ask_amount, first.median_ask_amount) == (1_000, 1_200)
    assert first.lowest_per_pflops_hour == Decimal("1010.71")  # ¥10 / 0.9894 PFLOPS
    assert [(h.hub, h.gpus_available, h.green_share) for h in board.hubs] == [
        ("jingjinji", 8, Decimal("0.100")),
        ("ningxia", 24, Decimal("0.900")),
    ]
    # when the Ascend offer is withdrawn, the board follows at once
    capacity.offer_withdraw(offer=ascend, actor=provider)
    assert [h.hub for h in board_summary().hubs] == ["ningxia"]
