import datetime as dt

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime
from knox.models import AuthToken
from rest_framework.test import APIClient

from core.templatetags.units import when


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


def _obtain(username: str = "buyer"):
    return APIClient().post(
        "/api/v1/auth/token/",
        {"username": username, "password": "correct-horse-battery"},
        format="json",
    )


@pytest.mark.django_db
def test_a_token_expires_thirty_days_after_it_is_made(buyer):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        response = _obtain()
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 201
    assert parse_datetime(response.json()["expiry"]) == start + dt.timedelta(days=30)
    with time_machine.travel(start + dt.timedelta(days=29, hours=23), tick=False):
        assert client.get("/api/v1/organisations/me/").status_code == 200
    with time_machine.travel(start + dt.timedelta(days=30, seconds=1), tick=False):
        assert client.get("/api/v1/organisations/me/").status_code == 401


@pytest.mark.django_db
def test_a_user_holds_at_most_ten_tokens_and_the_eleventh_is_refused(buyer):
    made = [_obtain().status_code for _ in range(10)]

    refused = _obtain()

    assert made == [201] * 10
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "You already hold 10 API tokens, the most allowed; revoke one first."
    )
    assert AuthToken.objects.filter(user=buyer).count() == 10


@pytest.mark.django_db
def test_revoking_a_token_frees_a_place_under_the_cap(buyer_client, buyer):
    for _ in range(9):
        assert buyer_client.post("/api/v1/auth/tokens/").status_code == 201
    assert buyer_client.post("/api/v1/auth/tokens/").status_code == 409
    prefix = buyer_client.get("/api/v1/auth/tokens/").json()[0]["token_prefix"]

    buyer_client.delete(f"/api/v1/auth/tokens/{prefix}/")

    assert buyer_client.post("/api/v1/auth/tokens/").status_code == 201
    assert AuthToken.objects.filter(user=buyer).count() == 10


@pytest.mark.django_db
def test_expired_tokens_neither_count_nor_show(buyer):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(10):
            _obtain()
    with time_machine.travel(start + dt.timedelta(days=31), tick=False):
        fresh = _obtain()
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {fresh.json()['token']}")
        listed = client.get("/api/v1/auth/tokens/").json()

    assert fresh.status_code == 201
    assert [t["token_prefix"] for t in listed] == [fresh.json()["token_prefix"]]
    assert AuthToken.objects.filter(user=buyer).count() == 1


@pytest.mark.django_db
def test_the_account_page_shows_when_each_token_expires_and_refuses_one_over_the_cap(client, buyer):
    start = timezone.now()
    client.force_login(buyer)
    client.cookies["django_language"] = "en"
    with time_machine.travel(start, tick=False):
        client.post(reverse("token_create"))
    with translation.override("en"):  # the page's one date format in English
        expiry = when(start + dt.timedelta(days=30))
    for _ in range(9):
        client.post(reverse("token_create"))

    over = client.post(reverse("token_create"), follow=True)

    page = over.content.decode()
    assert expiry in page
    assert "You already hold 10 API tokens, the most allowed; revoke one first." in page
    assert AuthToken.objects.filter(user=buyer).count() == 10
