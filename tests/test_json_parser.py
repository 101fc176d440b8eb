"""Issue 10 item 5: deeply nested or oversized JSON is a 400, never a 500."""

import pytest
from rest_framework.test import APIClient

from billing.models import SubsidyProgramme
from core.parsers import MAX_JSON_DEPTH, json_depth_exceeds
from market.models import Order

pytestmark = pytest.mark.django_db

# About 2 KB: deep enough to exhaust the standard library's recursive decoder.
NESTED_LISTS = b"[" * 1_000 + b"]" * 1_000
NESTED_OBJECTS = b'{"a":' * 400 + b"1" + b"}" * 400
TOO_DEEP_FOR_THE_API = b'{"regions": ' + b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH + b"}"


def _post(client: APIClient, url: str, body: bytes):
    return client.post(url, data=body, content_type="application/json")


@pytest.mark.parametrize(
    "body", [NESTED_LISTS, NESTED_OBJECTS, TOO_DEEP_FOR_THE_API], ids=["lists", "objects", "33"]
)
@pytest.mark.parametrize(
    ("who", "url"),
    [
        ("anonymous", "/api/v1/auth/token/"),
        ("buyer", "/api/v1/orders/"),
        ("authority", "/api/v1/programmes/"),
    ],
)
def test_deeply_nested_json_is_a_400_with_a_clear_message(request, api_client, who, url, body):
    # given
    client = api_client if who == "anonymous" else request.getfixturevalue(f"{who}_client")
    # when
    response = _post(client, url, body)
    # then
    assert response.status_code == 400
    answer = response.json()
    assert answer["errors"] == {}
    assert "nested" in answer["detail"] or "depth" in answer["detail"], answer
    assert not Order.objects.exists()
    assert not SubsidyProgramme.objects.exists()


def test_a_body_larger_than_the_limit_is_a_400(settings, buyer_client):
    settings.API_JSON_MAX_BYTES = 1_000
    body = b'{"regions": ["' + b"x" * 1_000 + b'"]}'

    response = _post(buyer_client, "/api/v1/orders/", body)

    assert response.status_code == 400
    assert response.json()["detail"] == "The JSON body is larger than 1000 bytes."
    assert not Order.objects.exists()


@pytest.mark.parametrize("body", [b"[NaN]", b'{"a": Infinity}', b"{'a': 1}", b"\xff"])
def test_what_is_not_strict_json_is_a_400(api_client, body):
    response = _post(api_client, "/api/v1/auth/token/", body)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_a_body_nested_as_deep_as_allowed_still_reaches_the_serializer(buyer_client):
    deepest = b'{"regions": ' + b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1) + b"}"

    response = _post(buyer_client, "/api/v1/orders/", deepest)

    assert response.status_code == 400
    assert "regions" in response.json()["errors"]  # a field error: the parser let it through


def test_depth_is_measured_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]

    assert json_depth_exceeds(deep, limit=MAX_JSON_DEPTH)
    assert not json_depth_exceeds({"a": [1, {"b": []}]}, limit=4)
    assert json_depth_exceeds({"a": [1, {"b": []}]}, limit=3)


@pytest.mark.parametrize(
    "body",
    [b'{"gpu_model": "\\u0000x", "gpus_total": 1}', b'{"\\u0000": 1}'],
    ids=["in a value", "in a key"],
)
def test_a_nul_character_anywhere_in_the_body_is_a_400_and_stores_nothing(provider_client, body):
    # PostgreSQL cannot store NUL in text: found by the schema fuzz test as a 500 on offers
    from market.models import Offer

    response = _post(provider_client, "/api/v1/offers/", body)

    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
    assert not Offer.objects.exists()


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    from core.parsers import json_has_nul

    assert json_has_nul({"a": ["ok", {"b": "\x00"}]})
    assert not json_has_nul({"a": "\\u0000 is text here"})
