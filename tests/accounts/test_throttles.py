"""Rate limits on signing in, signing up and making tokens: 429 with Retry-After."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Organisation
from tests.factories import make_credit_code

User = get_user_model()


def test_the_default_rates():
    assert {
        scope: settings.THROTTLE_RATES[scope] for scope in ("auth-token", "sign-up", "token-create")
    } == {"auth-token": "20/min", "sign-up": "10/hour", "token-create": "20/hour"}


def _retry_after(response) -> int:
    return int(response["Retry-After"])


@pytest.mark.django_db
def test_one_address_gets_twenty_token_requests_a_minute_then_429(buyer):
    client = APIClient(REMOTE_ADDR="203.0.113.7")
    first = [client.post("/api/v1/auth/token/", {}, format="json").status_code for _ in range(20)]

    refused = client.post(
        "/api/v1/auth/token/",
        {"username": "buyer", "password": "correct-horse-battery"},
        format="json",
    )

    assert first == [400] * 20
    assert refused.status_code == 429
    assert 0 < _retry_after(refused) <= 60
    assert refused.json()["detail"].startswith("Request was throttled.")
    assert not AuthToken.objects.exists()
    # another address is not held back
    other = APIClient(REMOTE_ADDR="198.51.100.2").post(
        "/api/v1/auth/token/",
        {"username": "buyer", "password": "correct-horse-battery"},
        format="json",
    )
    assert other.status_code == 201


SIGN_UP = {
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
def test_one_address_gets_ten_sign_ups_an_hour_then_429(client):
    attempts = [
        client.post(reverse("sign_up"), {}, REMOTE_ADDR="203.0.113.8").status_code
        for _ in range(10)
    ]

    refused = client.post(reverse("sign_up"), SIGN_UP, REMOTE_ADDR="203.0.113.8")

    assert attempts == [200] * 10  # form errors, but counted
    assert refused.status_code == 429
    assert 3500 < _retry_after(refused) <= 3600
    assert "Please try again in" in refused.content.decode()
    assert not User.objects.exists()
    assert not Organisation.objects.exists()
    # reading the page is not counted
    assert client.get(reverse("sign_up"), REMOTE_ADDR="203.0.113.8").status_code == 200


@pytest.mark.django_db
def test_registering_organisations_through_the_api_counts_as_sign_ups(throttle_rates):
    throttle_rates(sign_up="2/hour")
    users = [
        User.objects.create_user(f"api.user{n}", password="x-Long-password-1") for n in range(3)
    ]
    answers = []
    for user in users:
        client = APIClient(REMOTE_ADDR="203.0.113.9")
        client.force_authenticate(user)
        answers.append(
            client.post(
                "/api/v1/organisations/",
                {
                    "kind": "buyer",
                    "legal_name": user.username,
                    "credit_code": make_credit_code(),
                },
                format="json",
            )
        )

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert "Retry-After" in answers[2]
    assert Organisation.objects.count() == 2


@pytest.mark.django_db
def test_a_user_makes_twenty_api_tokens_an_hour_then_429(client, client_for, buyer):
    api = client_for(buyer)  # holds one token already
    made = []
    for _ in range(20):
        response = api.post("/api/v1/auth/tokens/")
        made.append(response.status_code)
        api.delete(f"/api/v1/auth/tokens/{response.json()['token_prefix']}/")

    refused = api.post("/api/v1/auth/tokens/")

    assert made == [201] * 20
    assert refused.status_code == 429
    assert 0 < _retry_after(refused) <= 3600
    assert AuthToken.objects.filter(user=buyer).count() == 1
    # and the account page shares the budget
    client.force_login(buyer)
    page = client.post(reverse("token_create"))
    assert page.status_code == 429
    assert AuthToken.objects.filter(user=buyer).count() == 1


@pytest.mark.django_db
def test_the_limit_is_counted_on_the_exchange_clock(buyer):
    """A simulated market day runs in minutes: its agents and buyers are
    limited per simulated minute, not per minute of the machine's wall clock."""
    import datetime as dt

    from core import clock

    instant = [dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)]
    client = APIClient(REMOTE_ADDR="203.0.113.10")
    with clock.use(lambda: instant[0]):
        spent = [
            client.post("/api/v1/auth/token/", {}, format="json").status_code for _ in range(20)
        ]
        held = client.post("/api/v1/auth/token/", {}, format="json")
        instant[0] += dt.timedelta(seconds=61)  # a simulated minute later, no real one
        again = client.post("/api/v1/auth/token/", {}, format="json")

    assert spent == [400] * 20
    assert held.status_code == 429
    assert again.status_code == 400
