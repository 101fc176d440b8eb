import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts.models import Membership, Organisation

User = get_user_model()

FORM = {
    "username": "wang.li",
    "email": "wang.li@example.com",
    "password1": "Gpu-hours-2026!",
    "password2": "Gpu-hours-2026!",
    "kind": "buyer",
    "legal_name": "Hangzhou Model Works Co., Ltd.",
    "credit_code": "91330100716105852F",
    "region": "Zhejiang",
}


@pytest.mark.django_db
def test_sign_up_creates_user_organisation_and_owner_membership(client):
    response = client.post(reverse("sign_up"), FORM)

    assert response.status_code == 302
    user = User.objects.get(username="wang.li")
    membership = Membership.objects.get(user=user)
    assert membership.role == Membership.Role.OWNER
    assert membership.organisation.legal_name == "Hangzhou Model Works Co., Ltd."
    assert membership.organisation.kind == Organisation.Kind.BUYER
    assert membership.organisation.credit_code == "91330100716105852F"
    assert membership.organisation.verified is False
    # signed in straight away
    assert client.get(reverse("account")).status_code == 200


@pytest.mark.django_db
def test_sign_up_with_a_bad_check_character_shows_the_field_error_and_stores_nothing(client):
    response = client.post(reverse("sign_up"), {**FORM, "credit_code": "91330100716105852G"})

    assert response.status_code == 200
    assert "check character" in response.context["form"].errors["credit_code"][0]
    assert not User.objects.exists()
    assert not Organisation.objects.exists()


@pytest.mark.django_db
def test_sign_up_accepts_lowercase_and_spaces_in_the_code(client):
    client.post(reverse("sign_up"), {**FORM, "credit_code": " 91330100716105852f "})

    assert Organisation.objects.get().credit_code == "91330100716105852F"


@pytest.mark.django_db
def test_register_organisation_through_the_api_rejects_a_bad_code_with_a_field_error(api_client):
    user = User.objects.create_user("api.user", password="x-Long-password-1")
    api_client.force_authenticate(user)

    response = api_client.post(
        "/api/v1/organisations/",
        {"kind": "provider", "legal_name": "Gansu Compute", "credit_code": "914403001922038217"},
        format="json",
    )

    assert response.status_code == 400
    assert "check character" in response.json()["errors"]["credit_code"][0]
    assert not Organisation.objects.exists()


@pytest.mark.django_db
def test_register_organisation_through_the_api(api_client):
    user = User.objects.create_user("api.user", password="x-Long-password-1")
    api_client.force_authenticate(user)

    response = api_client.post(
        "/api/v1/organisations/",
        {"kind": "provider", "legal_name": "Gansu Compute", "credit_code": "914403001922038216"},
        format="json",
    )

    assert response.status_code == 201
    me = api_client.get("/api/v1/organisations/me/").json()
    assert me["legal_name"] == "Gansu Compute"
    assert me["kind"] == "provider"
    assert me["verified"] is False
