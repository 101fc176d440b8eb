import pytest
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient


@pytest.mark.django_db
def test_username_and_password_are_exchanged_for_a_working_token(buyer):
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/",
        {"username": "buyer", "password": "correct-horse-battery"},
        format="json",
    )
    assert response.status_code == 201
    token = response.json()["token"]

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = client.get("/api/v1/organisations/me/")

    assert me.status_code == 200
    assert me.json()["legal_name"] == "Eastern AI Lab Co., Ltd."


@pytest.mark.django_db
def test_wrong_password_gets_400_and_no_token(buyer):
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "buyer", "password": "nope"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["non_field_errors"] == ["Wrong username or password."]
    assert not AuthToken.objects.exists()


@pytest.mark.django_db
def test_missing_token_is_401():
    response = APIClient().get("/api/v1/organisations/me/")
    assert response.status_code == 401
    assert response.json()["detail"]


@pytest.mark.django_db
def test_garbage_token_is_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token-0123456789abcdef")
    assert client.get("/api/v1/organisations/me/").status_code == 401


@pytest.mark.django_db
def test_revoked_token_stops_working(buyer_client):
    prefix = buyer_client.get("/api/v1/auth/tokens/").json()[0]["token_prefix"]

    assert buyer_client.delete(f"/api/v1/auth/tokens/{prefix}/").status_code == 204
    assert buyer_client.get("/api/v1/organisations/me/").status_code == 401


@pytest.mark.django_db
def test_tokens_are_stored_hashed(buyer):
    _instance, key = AuthToken.objects.create(user=buyer, expiry=None)
    stored = AuthToken.objects.get()
    assert key not in (stored.digest, stored.token_key)


@pytest.mark.django_db
def test_account_page_creates_shows_once_and_revokes_a_token(client, buyer):
    client.force_login(buyer)

    client.post(reverse("token_create"))
    page = client.get(reverse("account"))
    key = page.context["new_token"]
    again = client.get(reverse("account"))

    assert key and key in page.content.decode()
    assert key not in again.content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/organisations/me/").status_code == 200

    client.post(reverse("token_revoke", args=[AuthToken.objects.get().token_key]))
    assert api.get("/api/v1/organisations/me/").status_code == 401
