"""Webhooks to an organisation's own systems: subscribe, receive signed events
(a lease that ended, a pre-emption notice, a funding alert, an invoice issued),
retries with backoff, endpoints that keep failing turned off, and URLs the
exchange refuses to call."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from rest_framework.test import APIClient
from standardwebhooks.webhooks import WebhookVerificationError

from accounts.models import Membership, WebhookDelivery, WebhookEndpoint
from accounts.webhooks import webhook_emit, webhooks_send_due
from market.leases import lease_end_now, leases_advance
from market.matching import order_match, orders_preempt
from tests.accounts.conftest import Receiver
from tests.factories import (
    MembershipFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
    UserFactory,
    gpu,
    member_of,
)

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
H800 = "nvidia-h800-sxm"


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _endpoint(organisation, url: str, **body) -> tuple[WebhookEndpoint, str]:
    response = _api(member_of(organisation)).post(
        "/api/v1/webhooks/", {"url": url, **body}, format="json"
    )
    assert response.status_code == 201, response.json()
    return WebhookEndpoint.objects.get(pk=response.json()["id"]), response.json()["secret"]


def _running_lease(*, buyer=None, interruptible=False, bid=3_000, price=2_000):
    node = NodeFactory(gpu_count=8)
    OfferFactory(node=node, price_amount=price, interruptible=interruptible)
    order = OrderFactory(
        buyer=buyer or OrganisationFactory(kind="buyer"),
        accepted_models=[gpu(H800)],
        gpu_count=8,
        hours=4,
        max_price_amount=bid,
        interruptible=interruptible,
    )
    (lease,) = order_match(order_id=order.pk)
    leases_advance()
    lease.refresh_from_db()
    return lease


@time_machine.travel(T0, tick=False)
def test_a_buyer_hears_its_lease_ended_signed_so_it_can_verify_it(receiver):
    # given a running lease whose buyer and provider both listen
    lease = _running_lease()
    _, buyer_secret = _endpoint(lease.buyer, receiver.url)
    other = Receiver()
    _, provider_secret = _endpoint(lease.provider, other.url)

    # when the buyer ends it at 09:30
    with time_machine.travel(T0 + dt.timedelta(minutes=30), tick=False):
        lease_end_now(lease=lease, actor=None, reason="training converged")
        assert webhooks_send_due() == {"delivered": 2, "retrying": 0, "failed": 0}

    # then each got one event, verified with its own secret
    (event,) = receiver.events(buyer_secret)
    assert event["type"] == "lease.ended"
    assert event["organisation"] == lease.buyer_id
    assert event["data"]["lease"] == lease.pk
    assert event["data"]["status"] == "completed"
    assert event["data"]["ended_at"] == "2026-03-02T09:30:00+00:00"
    assert "training converged" in event["data"]["reason"]
    (seen_by_provider,) = other.events(provider_secret)
    assert seen_by_provider["data"] == event["data"]
    # a secret that is not the endpoint's does not verify it
    with pytest.raises(WebhookVerificationError):
        receiver.events(provider_secret)
    other.close()


@time_machine.travel(T0, tick=False)
def test_an_endpoint_hears_only_the_event_types_it_chose(receiver):
    lease = _running_lease()
    _endpoint(lease.buyer, receiver.url, event_types=["invoice.issued"])

    lease_end_now(lease=lease, actor=None)

    assert webhooks_send_due()["delivered"] == 0
    assert receiver.calls == []


@time_machine.travel(T0, tick=False)
def test_a_pre_emption_notice_reaches_the_buyer_when_it_is_given(receiver):
    # given an interruptible lease bought at ¥12.00, listened to by its buyer
    spot = _running_lease(interruptible=True, price=1_200, bid=1_500)
    _, secret = _endpoint(spot.buyer, receiver.url, event_types=["lease.preemption_notice"])
    OfferFactory(node=spot.node, price_amount=2_000)

    # when a higher bid comes at 10:00
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        big = OrderFactory(
            accepted_models=[gpu(H800)], gpu_count=8, hours=3, max_price_amount=2_500
        )
        order_match(order_id=big.pk)
        assert orders_preempt()
        webhooks_send_due()

    # then the buyer is told at once that the lease ends at 10:10, not 13:00
    (event,) = receiver.events(secret)
    assert event["type"] == "lease.preemption_notice"
    assert event["data"]["lease"] == spot.pk
    assert event["data"]["ends_at"] == "2026-03-02T10:10:00+00:00"
    assert event["data"]["planned_ends_at"] == "2026-03-02T13:00:00+00:00"
    assert event["data"]["notice_minutes"] == 10


@time_machine.travel(T0, tick=False)
def test_a_failing_endpoint_is_retried_with_backoff_under_the_same_id(receiver):
    # given an endpoint that answers 500 twice, then 200
    buyer = OrganisationFactory(kind="buyer")
    _, secret = _endpoint(buyer, receiver.url)
    receiver.script = [500, 500]
    webhook_emit(organisation_id=buyer.pk, event_type="webhook.test", data={"n": 1}, key="k1")

    # when it is sent: the first try fails and waits 30 s
    assert webhooks_send_due() == {"delivered": 0, "retrying": 1, "failed": 0}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        1,
        500,
        "HTTP 500",
    )
    assert delivery.next_attempt_at == T0 + dt.timedelta(seconds=30)
    assert webhooks_send_due() == {"delivered": 0, "retrying": 0, "failed": 0}  # not yet due

    # then 30 s later it fails again (next in 60 s), and 60 s after that it is delivered
    with time_machine.travel(T0 + dt.timedelta(seconds=30), tick=False):
        assert webhooks_send_due()["retrying"] == 1
    with time_machine.travel(T0 + dt.timedelta(seconds=90), tick=False):
        assert webhooks_send_due()["delivered"] == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    # three calls of one event: one webhook-id, so the receiver acts on it once
    assert {headers["webhook-id"] for headers, _ in receiver.calls} == {delivery.event_id}
    assert [event["data"] for event in receiver.events(secret)] == [{"n": 1}] * 3

    # and the same event emitted again (same key) is not sent twice
    webhook_emit(organisation_id=buyer.pk, event_type="webhook.test", data={"n": 1}, key="k1")
    assert WebhookDelivery.objects.count() == 1


def test_an_endpoint_whose_events_keep_failing_is_turned_off_with_the_reason(receiver, settings):
    # given an endpoint that always answers 503, two attempts per event
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    buyer = OrganisationFactory(kind="buyer")
    endpoint, _ = _endpoint(buyer, receiver.url)
    receiver.script = [503] * 100

    # when three events fail every attempt
    now = T0
    for n in range(3):
        with time_machine.travel(now, tick=False):
            webhook_emit(organisation_id=buyer.pk, event_type="webhook.test", data={"n": n})
        for _attempt in range(2):
            with time_machine.travel(now, tick=False):
                webhooks_send_due()
            now += dt.timedelta(hours=1)

    # then they are failed, listed, and the endpoint is off, saying why
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == ["failed"] * 3
    endpoint.refresh_from_db()
    assert endpoint.active is False
    assert endpoint.disabled_reason == "its last 3 deliveries failed after every retry"
    seen = _api(member_of(buyer)).get(f"/api/v1/webhooks/{endpoint.pk}/").json()
    assert (seen["active"], seen["disabled_reason"]) == (False, endpoint.disabled_reason)
    calls = len(receiver.calls)
    with time_machine.travel(now, tick=False):
        webhook_emit(organisation_id=buyer.pk, event_type="webhook.test", data={"n": 4})
        webhooks_send_due()
    assert len(receiver.calls) == calls  # nothing more is sent to it

    # when its organisation turns it on again, a redelivery goes through
    receiver.script = []
    client = _api(member_of(buyer))
    assert (
        client.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"active": True}, format="json").json()[
            "disabled_reason"
        ]
        == ""
    )
    failed = WebhookDelivery.objects.filter(status="failed").first()
    assert (
        client.post(f"/api/v1/webhooks/{endpoint.pk}/deliveries/{failed.pk}/redeliver/").status_code
        == 202
    )
    webhooks_send_due()
    failed.refresh_from_db()
    assert failed.status == "delivered"


def test_the_test_event_and_the_delivery_list(receiver):
    buyer = OrganisationFactory(kind="buyer")
    endpoint, secret = _endpoint(buyer, receiver.url, event_types=["invoice.issued"])
    client = _api(member_of(buyer))

    answer = client.post(f"/api/v1/webhooks/{endpoint.pk}/test/")
    assert answer.status_code == 202
    webhooks_send_due()

    (event,) = receiver.events(secret)
    assert event["type"] == "webhook.test"
    listed = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/?status=delivered").json()
    assert [(d["event_type"], d["attempts"], d["last_status_code"]) for d in listed["results"]] == [
        ("webhook.test", 1, 200)
    ]
    bad = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/?status=lost")
    assert bad.status_code == 400 and "status" in bad.json()["errors"]


@pytest.mark.parametrize(
    ("url", "allow_private", "problem"),
    [
        ("http://127.0.0.1:9/hook", False, "Use an https:// URL."),
        ("https://127.0.0.1/hook", False, "private or reserved address (127.0.0.1)"),
        ("https://10.1.2.3/hook", False, "private or reserved address (10.1.2.3)"),
        ("https://169.254.169.254/latest/meta-data", False, "private or reserved address"),
        ("https://user:pw@example.com/hook", True, "Leave credentials out of the URL."),
        ("ftp://example.com/hook", True, "Use an https:// URL."),
    ],
)
def test_urls_the_exchange_will_not_call_are_refused_and_nothing_is_stored(
    settings, url, allow_private, problem
):
    settings.WEBHOOKS_ALLOW_PRIVATE = allow_private
    buyer = OrganisationFactory(kind="buyer")

    response = _api(member_of(buyer)).post("/api/v1/webhooks/", {"url": url}, format="json")

    assert response.status_code == 400
    assert problem in " ".join(response.json()["errors"]["url"])
    assert not WebhookEndpoint.objects.exists()


def test_an_unknown_event_type_is_a_field_error():
    buyer = OrganisationFactory(kind="buyer")
    response = _api(member_of(buyer)).post(
        "/api/v1/webhooks/",
        {"url": "https://hooks.example.com/x", "event_types": ["lease.ended", "everything"]},
        format="json",
    )
    assert response.status_code == 400
    assert "event_types" in response.json()["errors"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("role", [Membership.Role.MEMBER, Membership.Role.READ_ONLY])
def test_only_owners_and_admins_manage_webhooks(role, receiver):
    buyer = OrganisationFactory(kind="buyer")
    endpoint, _ = _endpoint(buyer, receiver.url)
    user = MembershipFactory(organisation=buyer, user=UserFactory(), role=role).user
    client = _api(user)

    assert client.get("/api/v1/webhooks/").status_code == 403
    assert client.post("/api/v1/webhooks/", {"url": receiver.url}, format="json").status_code == 403
    assert client.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 403
    assert WebhookEndpoint.objects.count() == 1


def test_another_organisation_neither_sees_nor_changes_an_endpoint(receiver):
    buyer, rival = OrganisationFactory(kind="buyer"), OrganisationFactory(kind="buyer")
    endpoint, _ = _endpoint(buyer, receiver.url)
    client = _api(member_of(rival))

    assert client.get("/api/v1/webhooks/").json()["count"] == 0
    assert client.get(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 404
    assert client.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret/").status_code == 404
    assert client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/").status_code == 404


def test_the_secret_is_shown_once_and_a_rotated_one_signs_from_then_on(receiver):
    buyer = OrganisationFactory(kind="buyer")
    endpoint, first = _endpoint(buyer, receiver.url)
    client = _api(member_of(buyer))
    assert "secret" not in client.get(f"/api/v1/webhooks/{endpoint.pk}/").json()

    second = client.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret/").json()["secret"]
    client.post(f"/api/v1/webhooks/{endpoint.pk}/test/")
    webhooks_send_due()

    assert second != first and second.startswith("whsec_")
    assert len(receiver.events(second)) == 1
    with pytest.raises(WebhookVerificationError):
        receiver.events(first)


def test_changes_and_test_events_are_throttled_per_organisation(throttle_rates, receiver):
    throttle_rates(webhooks="3/hour")
    buyer = OrganisationFactory(kind="buyer")
    endpoint, _ = _endpoint(buyer, receiver.url)  # 1
    client = _api(member_of(buyer))
    assert client.post(f"/api/v1/webhooks/{endpoint.pk}/test/").status_code == 202  # 2
    assert client.post(f"/api/v1/webhooks/{endpoint.pk}/test/").status_code == 202  # 3
    refused = client.post(f"/api/v1/webhooks/{endpoint.pk}/test/")
    assert refused.status_code == 429 and "Retry-After" in refused
    assert WebhookDelivery.objects.count() == 2
    assert client.get("/api/v1/webhooks/").status_code == 200  # reading is not counted


def test_the_payload_is_json_with_the_documented_shape(receiver):
    buyer = OrganisationFactory(kind="buyer")
    _, secret = _endpoint(buyer, receiver.url)
    webhook_emit(
        organisation_id=buyer.pk, event_type="webhook.test", data={"名称": "庆阳"}, key="x"
    )
    webhooks_send_due()
    ((headers, body),) = receiver.calls
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"id", "type", "created_at", "organisation", "data"}
    assert receiver.events(secret)[0]["data"] == {"名称": "庆阳"}


def test_an_issued_invoice_is_announced_with_what_is_left_to_pay(receiver):
    from tests.billing.conftest import open_invoice

    buyer = OrganisationFactory(kind="buyer")
    _, secret = _endpoint(buyer, receiver.url, event_types=["invoice.issued"])

    invoice = open_invoice(buyer=buyer)  # 10 GPU-hours at ¥20.00
    open_invoice(buyer=buyer)  # settling the period again issues nothing new
    webhooks_send_due()

    (event,) = receiver.events(secret)
    assert event["data"]["invoice"] == invoice.pk
    assert (event["data"]["total_amount"], event["data"]["outstanding_amount"]) == (20_000, 20_000)
    assert event["data"]["status"] == "open"


def test_a_funding_alert_is_announced_once_per_crossing(receiver):
    from billing import prepaid
    from tests.billing.test_prepaid import _credit, _usage

    buyer = OrganisationFactory(kind="buyer")
    _, secret = _endpoint(buyer, receiver.url, event_types=["funding.alert"])
    _credit(buyer, 10_000)  # a credit limit of ¥100.00, set by staff
    client = _api(member_of(buyer))
    client.put(
        "/api/v1/balance/",
        {"at_zero": "stop_orders", "grace_minutes": 0, "alert_thresholds": [5_000]},
        format="json",
    )
    _usage(buyer, gpu_seconds=10_800)  # ¥60.00 of ¥100.00

    prepaid.funding_sweep()
    prepaid.funding_sweep()
    webhooks_send_due()

    (event,) = receiver.events(secret)
    assert event["type"] == "funding.alert"
    assert event["data"] == {
        "threshold_amount": 5_000,
        "available_amount": 4_000,
        "currency": "CNY",
        "at_zero": "stop_orders",
        "grace_minutes": 0,
    }


def test_a_run_stops_at_its_budget_and_hands_back_what_it_did_not_try(receiver, monkeypatch):
    from accounts import webhooks

    # given three due events and a budget spent after the first call
    buyer = OrganisationFactory(kind="buyer")
    _endpoint(buyer, receiver.url)
    with time_machine.travel(T0, tick=False):
        for n in range(3):
            webhook_emit(organisation_id=buyer.pk, event_type="webhook.test", data={"n": n})
    monkeypatch.setattr(webhooks, "SEND_BUDGET_SECONDS", -1.0)

    # when a run sends
    with time_machine.travel(T0, tick=False):
        assert webhooks_send_due() == {"delivered": 0, "retrying": 0, "failed": 0}

        # then it tried none past its budget, and all three are due again at once
        assert receiver.calls == []
        assert (
            list(WebhookDelivery.objects.values_list("attempts", "next_attempt_at"))
            == [(0, T0)] * 3
        )
        monkeypatch.setattr(webhooks, "SEND_BUDGET_SECONDS", 30.0)
        assert webhooks_send_due()["delivered"] == 3
