import datetime as dt
import json
import time

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime

from accounts.models import Organisation
from core.templatetags.units import day
from market.capacity import node_create, node_token_digest, node_token_rotate
from market.models import Node
from tests.factories import OrganisationFactory, SiteFactory, gpu, member_of


def _post(token: str, seq: int) -> int:
    return _response(token, seq).status_code


def _response(token: str, seq: int):
    sample = {
        "seq": seq,
        "ts": time.time(),
        "gpu": 0,
        "util": 50.0,
        "mem_used_mib": 1000,
        "power_w": 300.0,
        "temp_c": 60.0,
        "ecc_errors": 0,
        "xid_errors": 0,
        "missing": False,
    }
    response = Client().post(
        "/api/v1/telemetry/",
        json.dumps({"samples": [sample]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Node {token}",
    )
    return response


@pytest.mark.django_db
def test_rotating_a_node_token_revokes_the_old_one_at_once():
    node, first = node_create(
        site=SiteFactory(), name="n1", gpu_model=gpu("nvidia-h20"), gpu_count=8
    )
    assert _post(first, 1) == 200

    second = node_token_rotate(node=node)

    assert second != first and second.startswith(f"{node.pk}.")
    assert _post(first, 2) == 401
    assert _post(second, 3) == 200


def _provider_node(provider_org):
    node, token = node_create(
        site=SiteFactory(provider=provider_org), name="n1", gpu_model=gpu("nvidia-h20"), gpu_count=8
    )
    return node, token


@pytest.mark.django_db
def test_a_node_token_expires_after_a_year(provider_org):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        node, token = _provider_node(provider_org)

    assert node.token_expires_at == start + dt.timedelta(days=365)
    with time_machine.travel(start + dt.timedelta(days=364), tick=False):
        assert _post(token, 1) == 200
    with time_machine.travel(start + dt.timedelta(days=365, seconds=1), tick=False):
        response = _response(token, 2)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.django_db
def test_the_provider_rotates_a_node_token_through_the_api(provider_client, provider_org):
    node, old = _provider_node(provider_org)

    response = provider_client.post(f"/api/v1/nodes/{node.pk}/token/rotate/")

    assert response.status_code == 200
    new = response.json()["agent_token"]
    assert new.startswith(f"{node.pk}.") and new != old
    assert _post(old, 1) == 401
    assert _post(new, 2) == 200
    node.refresh_from_db()
    assert node.token_digest == node_token_digest(token=new)  # stored hashed, never in clear
    assert parse_datetime(response.json()["token_expires_at"]) == node.token_expires_at


@pytest.mark.django_db
def test_the_provider_revokes_a_node_token_and_a_rotation_issues_the_next(
    provider_client, provider_org
):
    node, token = _provider_node(provider_org)
    assert _post(token, 1) == 200

    response = provider_client.post(f"/api/v1/nodes/{node.pk}/token/revoke/")

    assert response.status_code == 200
    assert response.json()["token_expires_at"] is None
    assert response.json()["token_revoked_at"] is not None
    assert _post(token, 2) == 401
    again = provider_client.post(f"/api/v1/nodes/{node.pk}/token/rotate/").json()
    assert again["token_revoked_at"] is None
    assert _post(again["agent_token"], 3) == 200
    assert _post(token, 4) == 401


@pytest.mark.django_db
def test_another_provider_cannot_rotate_or_revoke_a_node_token(provider_org, client_for):
    node, token = _provider_node(provider_org)
    rival = member_of(OrganisationFactory(kind=Organisation.Kind.PROVIDER))
    digest = Node.objects.get(pk=node.pk).token_digest

    rotate = client_for(rival).post(f"/api/v1/nodes/{node.pk}/token/rotate/")
    revoke = client_for(rival).post(f"/api/v1/nodes/{node.pk}/token/revoke/")

    assert (rotate.status_code, revoke.status_code) == (404, 404)
    assert Node.objects.get(pk=node.pk).token_digest == digest
    assert _post(token, 1) == 200


@pytest.mark.django_db
def test_my_capacity_rotates_a_token_shows_it_once_and_revokes_it(client, provider, provider_org):
    node, old = _provider_node(provider_org)
    client.force_login(provider)
    client.cookies["django_language"] = "en"
    rotate_url = reverse("market:node_token", args=[node.pk, "rotate"])
    revoke_url = reverse("market:node_token", args=[node.pk, "revoke"])

    # the new token is shown once, in the agent's command on the node's connect page
    page = client.post(rotate_url, follow=True)
    assert page.redirect_chain[-1][0] == reverse("market:node_connect", args=[node.pk])
    new = page.context["command"].split("'")[1]
    again = client.get(reverse("market:capacity")).content.decode()

    assert new in page.content.decode() and new not in again
    assert new not in client.get(page.redirect_chain[-1][0]).content.decode()
    node.refresh_from_db()
    with translation.override("en"):
        assert f"expires {day(node.token_expires_at)}" in again
    assert _post(old, 1) == 401
    assert _post(new, 2) == 200

    revoked = client.post(revoke_url, follow=True).content.decode()

    assert "revoked" in revoked
    assert _post(new, 3) == 401


@pytest.mark.django_db
def test_my_capacity_does_not_touch_another_providers_node(client, provider_org):
    node, token = _provider_node(provider_org)
    rival = member_of(OrganisationFactory(kind=Organisation.Kind.PROVIDER))
    client.force_login(rival)

    response = client.post(reverse("market:node_token", args=[node.pk, "revoke"]))

    assert response.status_code == 404
    assert _post(token, 1) == 200
