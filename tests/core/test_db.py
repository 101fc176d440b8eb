"""core/db.py: read-only views read the replica when there is one, except for
who the caller is and for a caller who has just written."""

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.test import RequestFactory

from core.db import PIN_COOKIE, ReplicaRouter, replica_pin, replica_reads
from market.models import Offer

pytestmark = pytest.mark.django_db


@pytest.fixture
def with_replica(settings):
    settings.DATABASES = {**settings.DATABASES, "replica": settings.DATABASES["default"]}


def _read_db(request) -> list:
    seen = []

    @replica_reads
    def view(request):
        seen.append(ReplicaRouter().db_for_read(Offer))
        seen.append(ReplicaRouter().db_for_read(get_user_model()))

    view(request)
    return seen


def test_read_only_views_read_the_replica_but_never_for_who_the_caller_is(with_replica):
    request = RequestFactory().get("/market/offers/")
    request.user = type("Anonymous", (), {"is_authenticated": False})()
    assert _read_db(request) == ["replica", None]
    # outside a marked view: the primary
    assert ReplicaRouter().db_for_read(Offer) is None


def test_without_a_replica_everything_reads_the_primary():
    request = RequestFactory().get("/market/offers/")
    assert _read_db(request) == [None, None]


def test_a_user_who_just_wrote_reads_the_primary(with_replica, buyer):
    # given a successful write by the buyer
    post = RequestFactory().post("/api/v1/orders/")
    post.user = buyer
    middleware = replica_pin(lambda request: HttpResponse(status=201))
    answer = middleware(post)
    # when the buyer then reads, with the cookie (browser) or without it (API token)
    browser = RequestFactory().get("/market/offers/")
    browser.COOKIES[PIN_COOKIE] = answer.cookies[PIN_COOKIE].value
    browser.user = type("Anonymous", (), {"is_authenticated": False})()
    api = RequestFactory().get("/api/v1/offers/")
    api.user = buyer
    other = RequestFactory().get("/api/v1/offers/")
    other.user = type("Anonymous", (), {"is_authenticated": False})()
    # then both read the primary; someone else still reads the replica
    assert _read_db(browser) == [None, None]
    assert _read_db(api) == [None, None]
    assert _read_db(other) == ["replica", None]


def test_a_refused_write_pins_nothing(with_replica, buyer):
    post = RequestFactory().post("/api/v1/orders/")
    post.user = buyer
    answer = replica_pin(lambda request: HttpResponse(status=400))(post)
    assert PIN_COOKIE not in answer.cookies
    api = RequestFactory().get("/api/v1/offers/")
    api.user = buyer
    assert _read_db(api) == ["replica", None]
