"""Sign-in lockout (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one
username from one address, even the right password is refused for the cool-off."""

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def _log_in(client, username: str, password: str, address: str = "203.0.113.5"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def _token(username: str, password: str, address: str = "203.0.113.5"):
    return APIClient().post(
        "/api/v1/auth/token/",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def _signed_in(client) -> bool:
    return client.get(reverse("account")).status_code == 200


def test_the_limit_and_cool_off_are_five_tries_and_fifteen_minutes_by_default():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.LOGIN_COOLOFF_MINUTES == 15
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 900


@pytest.mark.django_db
def test_after_five_wrong_passwords_the_right_one_no_longer_logs_in_on_the_form(client, buyer):
    for _ in range(5):
        _log_in(client, "buyer", "wrong-guess")

    response = _log_in(client, "buyer", PASSWORD)

    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    assert "Too many failed log-ins for this account. Try again in 15 minutes." in (
        response.content.decode()
    )
    assert not _signed_in(client)


@pytest.mark.django_db
def test_after_five_wrong_passwords_the_token_endpoint_refuses_the_right_one(buyer):
    answers = [_token("buyer", "wrong-guess").status_code for _ in range(5)]

    response = _token("buyer", PASSWORD)

    assert answers == [400, 400, 400, 400, 429]
    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    assert response.json() == {
        "detail": "Too many failed sign-ins for this account from this address; "
        "try again in 15 minutes.",
        "errors": {},
    }
    assert not AuthToken.objects.exists()


@pytest.mark.django_db
def test_wrong_passwords_on_the_form_lock_the_api_too(client, buyer):
    for _ in range(5):
        _log_in(client, "buyer", "wrong-guess")

    assert _token("buyer", PASSWORD).status_code == 429
    assert not AuthToken.objects.exists()


@pytest.mark.django_db
def test_the_right_password_works_again_after_the_cool_off(client, buyer):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            _log_in(client, "buyer", "wrong-guess")
    with time_machine.travel(start + dt.timedelta(minutes=14), tick=False):
        assert _token("buyer", PASSWORD).status_code == 429
    # a failure during the lockout started the cool-off again, at minute 14
    with time_machine.travel(start + dt.timedelta(minutes=30), tick=False):
        response = _token("buyer", PASSWORD)

    assert response.status_code == 201
    assert AuthToken.objects.filter(user=buyer).count() == 1


@pytest.mark.django_db
def test_the_lockout_holds_one_username_from_one_address_only(client, buyer, provider):
    for _ in range(5):
        _log_in(client, "buyer", "wrong-guess", address="203.0.113.5")

    # another user from the same address, and the same user from elsewhere, sign in
    assert _token("provider", PASSWORD, address="203.0.113.5").status_code == 201
    assert _token("buyer", PASSWORD, address="198.51.100.9").status_code == 201
    assert _token("buyer", PASSWORD, address="203.0.113.5").status_code == 429


@pytest.mark.django_db
def test_a_success_before_the_limit_clears_the_count(client, buyer):
    for _ in range(4):
        _log_in(client, "buyer", "wrong-guess")
    assert _log_in(client, "buyer", PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        _log_in(client, "buyer", "wrong-guess")

    assert _log_in(client, "buyer", PASSWORD).status_code == 302
    assert _signed_in(client)
