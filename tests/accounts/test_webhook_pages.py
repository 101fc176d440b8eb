"""The webhooks card of the account page: owners and admins add endpoints,
see the signing secret once, send a test event and see each delivery's outcome."""

import pytest
from django.test import Client
from django.utils import translation

from accounts.models import Membership, WebhookDelivery, WebhookEndpoint
from accounts.webhooks import webhooks_send_due
from tests.factories import MembershipFactory, OrganisationFactory, UserFactory, member_of

pytestmark = pytest.mark.django_db


def _browser(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def test_an_owner_adds_an_endpoint_sees_its_secret_once_and_a_test_event_arrive(receiver):
    buyer = OrganisationFactory(kind="buyer")
    browser = _browser(member_of(buyer))

    added = browser.post(
        "/account/webhooks/",
        {"url": receiver.url, "description": "scheduler", "event_types": ["lease.ended"]},
        follow=True,
    )

    endpoint = WebhookEndpoint.objects.get()
    page = added.content.decode()
    assert (endpoint.url, endpoint.event_types) == (receiver.url, ["lease.ended"])
    assert "Webhook endpoint added." in page
    assert f'<code class="token" id="new-webhook-secret">{endpoint.secret}</code>' in page
    assert endpoint.secret not in browser.get("/account/").content.decode()  # shown once

    # when it sends a test event and the worker delivers it
    browser.post(f"/account/webhooks/{endpoint.pk}/test/")
    webhooks_send_due()

    # then the receiver got it, signed, and the page says it was delivered
    assert receiver.events(endpoint.secret)[0]["type"] == "webhook.test"
    page = browser.get("/account/").content.decode()
    assert "Recent deliveries" in page
    assert '<span class="badge ok">Delivered</span>' in page


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://hooks.example.com/x", "Use an https:// URL."), ("not a url", "Enter a valid URL.")],
)
def test_a_bad_url_is_shown_on_its_field_and_nothing_is_stored(url, problem):
    buyer = OrganisationFactory(kind="buyer")

    response = _browser(member_of(buyer)).post("/account/webhooks/", {"url": url})

    assert response.status_code == 400
    assert problem in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_in_production_a_private_address_is_refused_on_the_page(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    buyer = OrganisationFactory(kind="buyer")

    response = _browser(member_of(buyer)).post(
        "/account/webhooks/", {"url": "https://192.168.1.20/hook"}
    )

    assert response.status_code == 400
    assert "private or reserved address (192.168.1.20)" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_turning_an_endpoint_off_and_on_and_removing_it(receiver):
    buyer = OrganisationFactory(kind="buyer")
    browser = _browser(member_of(buyer))
    browser.post("/account/webhooks/", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get()

    browser.post(f"/account/webhooks/{endpoint.pk}/off/")
    endpoint.refresh_from_db()
    assert endpoint.active is False
    refused = browser.post(f"/account/webhooks/{endpoint.pk}/test/", follow=True)
    assert "The endpoint is turned off; turn it on to send it events." in refused.content.decode()
    assert not WebhookDelivery.objects.exists()

    browser.post(f"/account/webhooks/{endpoint.pk}/on/")
    endpoint.refresh_from_db()
    assert endpoint.active is True

    browser.post(f"/account/webhooks/{endpoint.pk}/delete/")
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("role", [Membership.Role.MEMBER, Membership.Role.READ_ONLY])
def test_members_who_are_not_managers_neither_see_nor_change_webhooks(role, receiver):
    buyer = OrganisationFactory(kind="buyer")
    _browser(member_of(buyer)).post("/account/webhooks/", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get()
    user = MembershipFactory(organisation=buyer, user=UserFactory(), role=role).user
    browser = _browser(user)

    assert 'id="webhooks"' not in browser.get("/account/").content.decode()
    assert browser.post("/account/webhooks/", {"url": receiver.url}).status_code == 403
    assert browser.post(f"/account/webhooks/{endpoint.pk}/delete/").status_code == 403
    assert WebhookEndpoint.objects.count() == 1


def test_another_organisations_endpoint_is_not_found(receiver):
    buyer, rival = OrganisationFactory(kind="buyer"), OrganisationFactory(kind="buyer")
    _browser(member_of(buyer)).post("/account/webhooks/", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get()

    answer = _browser(member_of(rival)).post(f"/account/webhooks/{endpoint.pk}/delete/")

    assert answer.status_code == 404
    assert WebhookEndpoint.objects.exists()


def test_the_webhooks_card_speaks_chinese():
    buyer = OrganisationFactory(kind="buyer")
    browser = _browser(member_of(buyer))
    with translation.override("zh-hans"):
        page = browser.get("/account/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert "添加端点" in page and "尚无 Webhook 端点" in page
