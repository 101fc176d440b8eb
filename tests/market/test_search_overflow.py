"""Issue 10 item 3: one provider's absurd price must not take public search down."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from core import limits
from market.models import Offer, OfferEvent
from tests.factories import NodeFactory, OfferFactory, SiteFactory, gpu
from tests.support import check_constraint_suspended

pytestmark = pytest.mark.django_db

COLUMN_LIMIT = 2**63 - 1  # the largest bigint


def _offer_payload(site, **overrides) -> dict:
    now = timezone.now()
    return {
        "site": site.pk,
        "gpu_model": "nvidia-h800-sxm",
        "gpus_total": 8,
        "price_amount": 2_150,
        "available_from": now.isoformat(),
        "available_until": (now + dt.timedelta(days=30)).isoformat(),
    } | overrides


@pytest.mark.parametrize(
    "price", [COLUMN_LIMIT, 2**62, 10**16, limits.MAX_PRICE_AMOUNT + 1], ids=str
)
def test_an_offer_priced_beyond_the_limit_is_refused_with_a_field_error(
    provider_client, provider_org, price
):
    # given
    site = SiteFactory(provider=provider_org)
    NodeFactory(site=site)
    # when
    response = provider_client.post(
        "/api/v1/offers/", _offer_payload(site, price_amount=price), format="json"
    )
    # then
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["price_amount"]
    assert not Offer.objects.exists()


def test_an_offer_at_the_limit_is_listed_and_searchable(provider_client, provider_org, api_client):
    site = SiteFactory(provider=provider_org)
    NodeFactory(site=site)

    created = provider_client.post(
        "/api/v1/offers/",
        _offer_payload(site, price_amount=limits.MAX_PRICE_AMOUNT),
        format="json",
    )
    found = api_client.get("/api/v1/offers/", {"sort": "price_per_pflops"})

    assert created.status_code == 201, created.json()
    assert found.status_code == 200
    assert [row["price_amount"] for row in found.json()["results"]] == [limits.MAX_PRICE_AMOUNT]


def test_repricing_beyond_the_limit_is_refused_and_the_price_is_kept(provider_client, provider_org):
    offer = OfferFactory(node__site__provider=provider_org, price_amount=2_000)

    response = provider_client.patch(
        f"/api/v1/offers/{offer.pk}/", {"price_amount": COLUMN_LIMIT}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["price_amount"]
    offer.refresh_from_db()
    assert offer.price_amount == 2_000
    assert not OfferEvent.objects.filter(offer=offer).exists()


def test_the_database_refuses_an_offer_priced_beyond_the_limit(provider_org):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        OfferFactory(node__site__provider=provider_org, price_amount=limits.MAX_PRICE_AMOUNT + 1)


@pytest.mark.parametrize("sort", ["price", "-price", "price_per_pflops", "green", "reliability"])
def test_public_search_survives_a_row_priced_at_the_columns_limit(api_client, client, sort):
    """A row written before the bounds existed (the CHECK suspended to write
    it) still must not fail the search: the per-PFLOPS price is computed as
    NUMERIC, never as a bigint product."""
    # given
    h100 = gpu("nvidia-h100-sxm")
    fair = OfferFactory(node__gpu_model=h100, price_amount=2_400)
    with check_constraint_suspended(Offer, "offer_price_bounded"):
        absurd = OfferFactory(node__gpu_model=h100, price_amount=COLUMN_LIMIT)
    # when
    api = api_client.get("/api/v1/offers/", {"sort": sort})
    page = client.get("/market/offers/", {"sort": sort})
    # then
    assert api.status_code == 200, api.content
    rows = {row["id"]: row for row in api.json()["results"]}
    assert set(rows) == {fair.pk, absurd.pk}
    assert rows[fair.pk]["price_per_pflops_hour"] == "2425.71"  # ¥24 / 0.9894 PFLOPS
    assert rows[absurd.pk]["price_amount"] == COLUMN_LIMIT
    expected = Decimal(COLUMN_LIMIT) * 1000 / h100.dense_tflops
    assert Decimal(rows[absurd.pk]["price_per_pflops_hour"]) == pytest.approx(
        expected, rel=Decimal("1e-9")
    )
    assert page.status_code == 200
