"""Sign-up through the API: the page's checks, its throttle, an unverified claim."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from accounts.models import Membership, Organisation
from tests.factories import make_credit_code

User = get_user_model()
pytestmark = pytest.mark.django_db

BODY = {
    "username": "wang.li",
    "email": "wang.li@example.com",
    "password": "Gpu-hours-2026!",
    "kind": "provider",
    "legal_name": "Ningxia Green Compute Co., Ltd.",
    "credit_code": "91330100716105852F",
    "region": "宁夏",
}


def test_signing_up_by_api_makes_the_user_its_unverified_organisation_and_a_token():
    response = APIClient().post("/api/v1/auth/sign-up/", BODY, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    membership = Membership.objects.get(user__username="wang.li")
    assert membership.role == Membership.Role.OWNER
    assert (membership.organisation.kind, membership.organisation.verified) == ("provider", False)
    assert body["organisation"]["id"] == membership.organisation.pk
    assert "password" not in body["user"]
    # the token works at once
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    me = client.get("/api/v1/organisations/me/")
    assert me.json()["legal_name"] == "Ningxia Green Compute Co., Ltd."


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"credit_code": "91330100716105852G"}, "credit_code"),
        ({"password": "12345678"}, "password"),
        ({"password": "wang.li2026"}, "password"),  # too like the username
        ({"username": "bad name!"}, "username"),
        ({"email": "not-an-address"}, "email"),
        ({"kind": "authority"}, "kind"),
    ],
)
def test_a_bad_sign_up_names_the_field_and_stores_nothing(change, field):
    response = APIClient().post("/api/v1/auth/sign-up/", {**BODY, **change}, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not User.objects.exists()
    assert not Organisation.objects.exists()


def test_a_username_taken_in_another_case_is_refused():
    User.objects.create_user("Wang.Li", password="x-Long-password-1")

    response = APIClient().post("/api/v1/auth/sign-up/", BODY, format="json")

    assert response.status_code == 400
    assert response.json()["errors"]["username"] == ["A user with that username already exists."]
    assert not Organisation.objects.exists()


def test_sign_ups_by_api_share_the_pages_limit_per_address(throttle_rates):
    throttle_rates(sign_up="2/hour")
    client = APIClient(REMOTE_ADDR="203.0.113.10")
    answers = [
        client.post(
            "/api/v1/auth/sign-up/",
            {**BODY, "username": f"user{n}", "credit_code": make_credit_code()},
            format="json",
        )
        for n in range(3)
    ]

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert "Retry-After" in answers[2]
    assert Organisation.objects.count() == 2


def test_staff_list_the_claims_waiting_and_verify_one_by_api(admin_user):
    APIClient().post("/api/v1/auth/sign-up/", BODY, format="json")
    staff = APIClient()
    staff.force_authenticate(admin_user)

    waiting = staff.get("/api/v1/organisations/?verified=false").json()["results"]
    (claim,) = waiting
    verified = staff.post(f"/api/v1/organisations/{claim['id']}/verify/")

    assert verified.status_code == 200
    assert Organisation.objects.get(pk=claim["id"]).verified is True
    assert staff.get("/api/v1/organisations/?verified=false").json()["results"] == []
    # a filter value that is neither true nor false is an error, not "no filter"
    unclear = staff.get("/api/v1/organisations/?verified=-58800")
    assert unclear.status_code == 400
    assert unclear.json()["errors"] == {"verified": ["Use true or false."]}
