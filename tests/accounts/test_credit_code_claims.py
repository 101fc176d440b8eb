"""Registering a credit code is a claim staff verify: whoever registers a real company's
code first cannot lock the company out, and cannot trade on it unverified."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organisation
from accounts.services import organisation_unverify, organisation_verify
from core.errors import Conflict
from market.models import Offer, Order
from tests.factories import NodeFactory, OrganisationFactory, SiteFactory, member_of
from tests.market.test_api import offer_payload, order_payload

User = get_user_model()

CODE = "91330100716105852F"


def _sign_up(client, username: str, legal_name: str, code: str = CODE, kind: str = "buyer"):
    return client.post(
        reverse("sign_up"),
        {
            "username": username,
            "email": f"{username}@example.com",
            "password1": "Gpu-hours-2026!",
            "password2": "Gpu-hours-2026!",
            "kind": kind,
            "legal_name": legal_name,
            "credit_code": code,
            "region": "Zhejiang",
        },
    )


@pytest.mark.django_db
def test_a_second_sign_up_with_a_registered_code_files_a_competing_claim(client, django_user_model):
    # given: a squatter registered the company's credit code first
    _sign_up(client, "squatter", "Not Really Hangzhou Model Works")
    client.logout()

    # when: the real company signs up with its own code
    response = _sign_up(client, "real.owner", "Hangzhou Model Works Co., Ltd.")

    # then: it is registered too, not turned away; both claims wait for staff
    assert response.status_code == 302
    claims = Organisation.objects.filter(credit_code=CODE).order_by("pk")
    assert [(o.legal_name, o.verified) for o in claims] == [
        ("Not Really Hangzhou Model Works", False),
        ("Hangzhou Model Works Co., Ltd.", False),
    ]
    assert claims[1].memberships.get().user.username == "real.owner"
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("Another organisation has also registered this credit code" in m for m in shown)


@pytest.mark.django_db
def test_a_code_already_verified_for_another_organisation_can_still_be_disputed(api_client):
    holder = OrganisationFactory(credit_code=CODE, verified=True)
    user = User.objects.create_user("claimant", password="x-Long-password-1")
    api_client.force_authenticate(user)

    response = api_client.post(
        "/api/v1/organisations/",
        {"kind": "buyer", "legal_name": "Hangzhou Model Works", "credit_code": CODE},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["verified"] is False
    holder.refresh_from_db()
    assert holder.verified is True
    assert Organisation.objects.filter(credit_code=CODE).count() == 2


@pytest.mark.django_db
def test_staff_verify_one_claim_and_the_competing_one_cannot_be_verified_too(admin_user):
    first = OrganisationFactory(credit_code=CODE, verified=False)
    second = OrganisationFactory(credit_code=CODE, verified=False)

    organisation_verify(organisation=second, by=admin_user)
    with pytest.raises(Conflict):
        organisation_verify(organisation=first, by=admin_user)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.verified, second.verified) == (False, True)
    assert second.verified_by == admin_user


@pytest.mark.django_db
def test_staff_move_a_code_to_the_right_claimant_by_unverifying_the_holder(admin_user):
    squatter = OrganisationFactory(credit_code=CODE, verified=True)
    company = OrganisationFactory(credit_code=CODE, verified=False)

    organisation_unverify(organisation=squatter)
    organisation_verify(organisation=company, by=admin_user)

    squatter.refresh_from_db()
    company.refresh_from_db()
    assert (squatter.verified, company.verified) == (False, True)


@pytest.mark.django_db
def test_the_database_refuses_two_verified_organisations_with_one_code():
    OrganisationFactory(credit_code=CODE, verified=True)

    with pytest.raises(IntegrityError), transaction.atomic():
        OrganisationFactory(credit_code=CODE, verified=True)

    assert Organisation.objects.filter(credit_code=CODE, verified=True).count() == 1


@pytest.mark.django_db
def test_an_unverified_buyer_cannot_place_an_order(client_for):
    buyer = member_of(OrganisationFactory(kind=Organisation.Kind.BUYER, verified=False))

    response = client_for(buyer).post("/api/v1/orders/", order_payload(), format="json")

    assert response.status_code == 403
    assert "awaiting verification" in response.json()["detail"]
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_an_unverified_buyer_sees_why_the_order_page_did_not_place_the_order(client):
    buyer = member_of(OrganisationFactory(kind=Organisation.Kind.BUYER, verified=False))
    client.force_login(buyer)

    response = client.post(
        reverse("market:order_new"),
        {
            "accepted_models": [],
            "min_tflops": "100",
            "gpu_count": 1,
            "hours": 1,
            "max_price": "20",
            "start_by": (timezone.localtime() + dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M"),
            "min_green_share": "0",
        },
    )

    assert response.status_code == 200
    assert "awaiting verification" in response.content.decode()
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_an_unverified_provider_cannot_list_an_offer(client_for):
    provider_org = OrganisationFactory(kind=Organisation.Kind.PROVIDER, verified=False)
    node = NodeFactory(site=SiteFactory(provider=provider_org))

    response = client_for(member_of(provider_org)).post(
        "/api/v1/offers/", offer_payload(node.site, node), format="json"
    )

    assert response.status_code == 403
    assert not Offer.objects.exists()


@pytest.mark.django_db
def test_staff_see_the_competing_claims_side_by_side_in_the_admin(admin_client):
    OrganisationFactory(credit_code=CODE, legal_name="Claimant One", verified=False)
    OrganisationFactory(credit_code=CODE, legal_name="Claimant Two", verified=False)
    OrganisationFactory(legal_name="Unrelated Co.")

    response = admin_client.get("/admin/accounts/organisation/?competing=yes")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Claimant One" in page and "Claimant Two" in page
    assert "Unrelated Co." not in page
    assert [o.claims for o in response.context["cl"].result_list] == [2, 2]
