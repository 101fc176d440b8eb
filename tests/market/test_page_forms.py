"""What a newcomer met on the market pages: dates that came up blank in Chinese,
an estimate that matched nothing on first load, filters silently ignored, shares
in three styles."""

import datetime as dt
import re

import pytest
from django.conf import settings
from django.utils import timezone

from market.models import Offer, Site
from tests.factories import NodeFactory, OfferFactory, SiteFactory

pytestmark = pytest.mark.django_db

ISO_MINUTE = re.compile(r'name="start_by" value="(\d{4}-\d\d-\d\dT\d\d:\d\d)"')


@pytest.mark.parametrize("language", ["zh-hans", "en"])
def test_the_order_form_fills_start_by_in_the_form_datetime_local_takes(client, buyer, language):
    client.force_login(buyer)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language

    page = client.get("/market/orders/new/").content.decode()

    value = ISO_MINUTE.search(page).group(1)
    expected = timezone.localtime() + dt.timedelta(hours=6)
    assert abs(dt.datetime.fromisoformat(value) - expected.replace(tzinfo=None)) < dt.timedelta(
        minutes=2
    )


def test_a_provider_lists_an_offer_with_dates_typed_in_chinese(client, provider, provider_org):
    node = NodeFactory(site=SiteFactory(provider=provider_org), state="online")
    client.force_login(provider)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    form = client.get("/market/capacity/").content.decode()
    start = re.search(r'name="available_from" value="([^"]+)"', form).group(1)
    until = re.search(r'name="available_until" value="([^"]+)"', form).group(1)

    client.post(
        "/market/capacity/offers/",
        {
            "site": node.site.pk,
            "node": node.pk,
            "gpus_total": 4,
            "price": "12.50",
            "available_from": start,
            "available_until": until,
            "min_hours": 1,
            "max_hours": 240,
        },
    )

    offer = Offer.objects.get()
    assert timezone.localtime(offer.available_from).strftime("%Y-%m-%dT%H:%M") == start
    assert (offer.available_until - offer.available_from) == dt.timedelta(days=30)


def test_the_estimate_beside_the_order_form_reads_the_form_on_first_load(client, buyer):
    client.force_login(buyer)

    page = client.get("/market/orders/new/").content.decode()

    assert '<form class="card grow" id="order-form"' in page
    assert 'hx-trigger="load" hx-include="#order-form"' in page


@pytest.mark.parametrize(
    ("query", "field_error"),
    [
        ({"min_green_share": "170"}, "less than or equal to 100"),
        ({"hub": "atlantis"}, "Select a valid choice"),
        ({"max_price": "abc"}, "Enter a number"),
    ],
)
def test_an_unreadable_offer_filter_is_said_not_ignored(client, query, field_error):
    OfferFactory(price_amount=2_400)

    response = client.get("/market/offers/", query)

    assert response.status_code == 400
    page = response.content.decode()
    assert "Some filters could not be read; correct them to see results." in page
    assert field_error in page
    assert "¥24.00" not in page  # no unfiltered list passed off as the answer


def test_an_unreadable_book_filter_is_said(client):
    response = client.get("/market/book/", {"gpu_model": "no-such-gpu"})

    assert response.status_code == 400
    assert "Some filters could not be read" in response.content.decode()


def test_shares_are_typed_and_shown_in_percent(client, provider, provider_org):
    client.force_login(provider)

    client.post(
        "/market/capacity/sites/",
        {
            "name": "Zhongwei 3",
            "region": "宁夏",
            "hub": "ningxia",
            "green_share": "82",
            "pue": "1.2",
            "carbon_intensity_g_per_kwh": "400",
            "latency_class": "national",
        },
    )

    assert str(Site.objects.get(provider=provider_org).green_share) == "0.820"
    page = client.get("/market/capacity/").content.decode()
    assert '<td class="num">82%</td>' in page
    assert "g CO₂e/kWh" in page


def test_withdrawing_an_offer_asks_first(client, provider, provider_org):
    offer = OfferFactory(node__site=SiteFactory(provider=provider_org))
    client.force_login(provider)

    page = client.get("/market/capacity/").content.decode()

    assert (
        f'action="/market/capacity/offers/{offer.pk}/withdraw/" class="inline" '
        f'data-confirm="Withdraw offer {offer.pk}?'
    ) in page


def test_the_catalogue_folds_each_models_sources(client):
    page = client.get("/market/gpus/").content.decode()

    assert page.count('<details class="sources">') == page.count("<tr>") - 1
    assert "H100 SXM" in page


def test_every_page_names_its_favicon(client):
    page = client.get("/").content.decode()

    assert re.search(r'<link rel="icon" href="/static/img/favicon[^"]*\.svg"', page)
