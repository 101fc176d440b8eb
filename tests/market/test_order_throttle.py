"""Orders per buyer organisation are rate-limited: 429 with Retry-After, nothing placed."""

import datetime as dt

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organisation
from market.models import Order
from tests.factories import OrganisationFactory, member_of
from tests.market.test_api import order_payload


def test_an_organisation_places_sixty_orders_a_minute_by_default():
    assert settings.THROTTLE_RATES["orders"] == "60/min"


@pytest.mark.django_db
def test_the_sixty_first_order_in_a_minute_is_refused_for_every_member(
    client, client_for, buyer_org, buyer
):
    colleague = member_of(buyer_org, "colleague")
    api = client_for(buyer)
    placed = [
        api.post("/api/v1/orders/", order_payload(), format="json").status_code for _ in range(60)
    ]

    by_colleague = client_for(colleague).post("/api/v1/orders/", order_payload(), format="json")
    client.force_login(colleague)
    on_the_page = client.post(
        reverse("market:order_new"),
        {
            "min_tflops": "100",
            "gpu_count": 1,
            "hours": 1,
            "max_price": "20",
            "start_by": (timezone.localtime() + dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M"),
        },
    )

    assert placed == [201] * 60
    assert by_colleague.status_code == 429
    assert 0 < int(by_colleague["Retry-After"]) <= 60
    assert on_the_page.status_code == 429
    assert 0 < int(on_the_page["Retry-After"]) <= 60
    assert Order.objects.filter(buyer=buyer_org).count() == 60
    # reading is not limited, and another organisation is not held back
    assert api.get("/api/v1/orders/").status_code == 200
    other = member_of(OrganisationFactory(kind=Organisation.Kind.BUYER))
    assert (
        client_for(other).post("/api/v1/orders/", order_payload(), format="json").status_code == 201
    )
