import datetime as dt

import pytest
from django.utils import timezone

from market.models import Node, NodeHealthEvent
from tests.factories import (
    LeaseFactory,
    OfferFactory,
    OrganisationFactory,
    UsageRecordFactory,
    member_of,
)
from tests.market.telemetry.conftest import node_with_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def lease(buyer_org, provider_org):
    node, _ = node_with_token(site__provider=provider_org)
    return LeaseFactory(offer=OfferFactory(node=node), order__buyer=buyer_org)


def test_usage_records_api_shows_own_leases_only(lease, buyer_client, provider_client, client_for):
    # given: one hour metered, and another buyer's lease
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=6_000, gpu_seconds_lost=1_200)
    UsageRecordFactory()
    stranger = client_for(member_of(OrganisationFactory(), "stranger"))
    # when
    mine = buyer_client.get("/api/v1/usage-records/").json()
    sold = provider_client.get("/api/v1/usage-records/").json()
    theirs = stranger.get("/api/v1/usage-records/").json()
    # then
    assert [
        (r["lease"], r["gpu_seconds_delivered"], r["gpu_seconds_lost"]) for r in mine["results"]
    ] == [(lease.pk, 6_000, 1_200)]
    assert [r["lease"] for r in sold["results"]] == [lease.pk]
    assert theirs["results"] == []


def test_buyer_lease_page_shows_gpu_hours_delivered_and_lost(lease, buyer, client):
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=6_000, gpu_seconds_lost=1_200)
    client.force_login(buyer)
    page = client.get(f"/leases/{lease.pk}/usage/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "1.67" in text and "0.33" in text  # GPU-hours delivered / lost


def test_another_organisation_cannot_see_a_lease_page(lease, client):
    client.force_login(member_of(OrganisationFactory(), "nosy"))
    assert client.get(f"/leases/{lease.pk}/usage/").status_code == 404


def test_provider_node_page_shows_health_history(lease, provider, client):
    NodeHealthEvent.objects.create(
        node=lease.node,
        from_state="online",
        to_state="degraded",
        reason="new XID errors on GPU 3",
        at=timezone.now() - dt.timedelta(minutes=5),
    )
    Node.objects.filter(pk=lease.node_id).update(state="degraded")
    client.force_login(provider)
    page = client.get(f"/nodes/{lease.node_id}/health/")
    assert page.status_code == 200
    assert "new XID errors on GPU 3" in page.content.decode()


def test_a_provider_lease_page_lists_only_its_own_leases_of_the_order(
    lease, provider, buyer, client
):
    # given: the buyer's order also holds a competitor's lease
    competitor_node, _ = node_with_token(name="rival-node-7")
    rival = LeaseFactory(
        offer=OfferFactory(node=competitor_node), order=lease.order, buyer=lease.buyer
    )
    # when
    client.force_login(provider)
    page = client.get(f"/leases/{lease.pk}/usage/")
    # then: the provider sees its own lease, nothing of the competitor's
    assert page.status_code == 200
    assert [item.pk for item in page.context["history"]] == [lease.pk]
    text = page.content.decode()
    assert f"/leases/{rival.pk}/usage/" not in text
    assert "rival-node-7" not in text
    # and the buyer still sees its whole order
    client.force_login(buyer)
    history = client.get(f"/leases/{lease.pk}/usage/").context["history"]
    assert {item.pk for item in history} == {lease.pk, rival.pk}
