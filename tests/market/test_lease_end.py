"""A buyer ends a lease now; a provider drains a node with notice."""

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from market.maintenance import nodes_drain_due
from market.matching import order_match
from market.models import Lease, LeaseEvent, Node, Offer, Order, UsageRecord
from market.telemetry.metering import leases_meter
from tests.factories import (
    NodeFactory,
    OfferFactory,
    OrderFactory,
    gpu,
    member_of,
)
from tests.market.telemetry.test_metering import record_ticks

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
H800 = "nvidia-h800-sxm"


def _client(organisation) -> APIClient:
    client = APIClient()
    client.force_authenticate(member_of(organisation))
    return client


def _placed(*, gpus=4, hours=2, failover=True, node=None) -> tuple[Order, Lease]:
    offer = OfferFactory(node=node) if node else OfferFactory()
    order = OrderFactory(
        accepted_models=[gpu(H800)], gpu_count=gpus, hours=hours, failover_allowed=failover
    )
    (lease,) = order_match(order_id=order.pk)
    Lease.objects.filter(pk=lease.pk).update(status=Lease.Status.ACTIVE)
    lease.refresh_from_db()
    assert offer.pk == lease.offer_id
    return order, lease


@time_machine.travel(T0, tick=False)
def test_the_buyer_ends_a_running_lease_and_gets_its_gpus_back_to_the_offer_at_once():
    # given: 4 of the offer's 8 GPUs leased for 2 hours
    order, lease = _placed()
    assert Offer.objects.get(pk=lease.offer_id).gpus_available == 4
    buyer = _client(order.buyer)

    # when: 1 h 23 min 17.6 s later the buyer ends it
    with time_machine.travel(T0 + dt.timedelta(hours=1, minutes=23, seconds=17.6), tick=False):
        response = buyer.post(f"/api/v1/leases/{lease.pk}/end/", {"reason": "job done"})

    # then: completed at the whole second, the GPUs are the offer's again, the reason is kept
    assert response.status_code == 200, response.content
    ended = T0 + dt.timedelta(hours=1, minutes=23, seconds=17)
    assert response.json()["status"] == "completed"
    assert response.json()["ended_reason"] == "ended early by the buyer: job done"
    lease.refresh_from_db()
    assert (lease.status, lease.ended_at) == ("completed", ended)
    assert Offer.objects.get(pk=lease.offer_id).gpus_available == 8
    event = LeaseEvent.objects.filter(lease=lease).latest("pk")
    assert (event.from_status, event.to_status, event.actor.username) == (
        "active",
        "completed",
        order.buyer.memberships.get().user.username,
    )
    # the provider sees why it ended
    seen = _client(lease.provider).get(f"/api/v1/leases/{lease.pk}/").json()
    assert seen["ended_reason"] == "ended early by the buyer: job done"


@time_machine.travel(T0, tick=False)
def test_ending_a_lease_that_has_already_ended_is_a_409_and_changes_nothing():
    order, lease = _placed()
    buyer = _client(order.buyer)
    assert buyer.post(f"/api/v1/leases/{lease.pk}/end/").status_code == 200
    events = LeaseEvent.objects.count()

    response = buyer.post(f"/api/v1/leases/{lease.pk}/end/")

    assert response.status_code == 409
    assert response.json()["errors"] == {"status": ["The lease is completed."]}
    assert LeaseEvent.objects.count() == events
    assert Offer.objects.get(pk=lease.offer_id).gpus_available == 8


@time_machine.travel(T0, tick=False)
def test_only_the_buyer_of_a_lease_may_end_it():
    order, lease = _placed()

    assert _client(lease.provider).post(f"/api/v1/leases/{lease.pk}/end/").status_code == 403
    other = OrderFactory().buyer
    assert _client(other).post(f"/api/v1/leases/{lease.pk}/end/").status_code == 404
    assert Lease.objects.get(pk=lease.pk).status == "active"


@time_machine.travel(T0, tick=False)
def test_a_lease_ended_early_is_metered_and_billed_to_the_second_it_ended():
    # given: a 2-GPU lease on a node that reports all the time
    order, lease = _placed(gpus=2)
    record_ticks(lease.node, start=T0 - dt.timedelta(minutes=1), end=T0 + dt.timedelta(hours=3))
    with time_machine.travel(T0 + dt.timedelta(minutes=47, seconds=13), tick=False):
        _client(order.buyer).post(f"/api/v1/leases/{lease.pk}/end/")

    # when
    leases_meter(now=T0 + dt.timedelta(hours=3))

    # then: 2 GPUs × 2,833 s, nothing after the end
    records = UsageRecord.objects.filter(lease=lease).order_by("window_start")
    assert records.last().window_end == T0 + dt.timedelta(minutes=47, seconds=13)
    assert sum(r.gpu_seconds_delivered for r in records) == 2 * 2_833
    assert sum(r.gpu_seconds_lost for r in records) == 0


@time_machine.travel(T0, tick=False)
def test_a_pending_lease_ended_now_is_cancelled():
    order, lease = _placed()
    Lease.objects.filter(pk=lease.pk).update(
        status=Lease.Status.PENDING, starts_at=T0 + dt.timedelta(hours=1)
    )

    response = _client(order.buyer).post(f"/api/v1/leases/{lease.pk}/end/")

    assert response.status_code == 200
    assert Lease.objects.get(pk=lease.pk).status == "cancelled"
    assert Offer.objects.get(pk=lease.offer_id).gpus_available == 8


@time_machine.travel(T0, tick=False)
def test_cancelling_an_order_can_end_its_running_leases_too():
    order, lease = _placed()  # filled: 4 of 4 GPUs
    buyer = _client(order.buyer)

    # without the flag a filled order cannot be cancelled and its lease runs on
    assert buyer.post(f"/api/v1/orders/{order.pk}/cancel/").status_code == 400
    assert Lease.objects.get(pk=lease.pk).status == "active"

    with time_machine.travel(T0 + dt.timedelta(minutes=10), tick=False):
        response = buyer.post(
            f"/api/v1/orders/{order.pk}/cancel/", {"end_running_leases": True}, format="json"
        )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    lease.refresh_from_db()
    assert (lease.status, lease.ended_at) == ("completed", T0 + dt.timedelta(minutes=10))
    assert Offer.objects.get(pk=lease.offer_id).gpus_available == 8
    assert lease.events.latest("pk").reason == "ended early by the buyer: order cancelled"


@time_machine.travel(T0, tick=False)
def test_the_orders_page_ends_a_lease_and_cancels_with_running_leases(client):
    order, lease = _placed()
    client.force_login(member_of(order.buyer))
    page = client.get("/market/orders/")
    assert f"/market/leases/{lease.pk}/end/".encode() in page.content

    client.post(f"/market/leases/{lease.pk}/end/")

    assert Lease.objects.get(pk=lease.pk).status == "completed"


# --- node drain -------------------------------------------------------------------------


@time_machine.travel(T0, tick=False)
def test_a_drained_node_takes_no_new_lease_and_at_the_notice_end_its_leases_end_or_fail_over():
    # given: two leases on one node, one order allowing failover, and another node elsewhere
    node = NodeFactory(gpu_count=8)
    OfferFactory(node=node)
    moving = OrderFactory(accepted_models=[gpu(H800)], gpu_count=2, hours=4)
    staying = OrderFactory(
        accepted_models=[gpu(H800)], gpu_count=2, hours=4, failover_allowed=False
    )
    (moving_lease,) = order_match(order_id=moving.pk)
    (staying_lease,) = order_match(order_id=staying.pk)
    Lease.objects.update(status=Lease.Status.ACTIVE)
    provider = _client(node.site.provider)

    # when: the provider announces maintenance in 30 minutes
    response = provider.post(
        f"/api/v1/nodes/{node.pk}/drain/", {"notice_minutes": 30, "reason": "BMC firmware"}
    )

    # then: the notice shows on the node and the buyer's lease; no new lease lands there
    assert response.status_code == 200, response.content
    drain_at = T0 + dt.timedelta(minutes=30)
    assert dt.datetime.fromisoformat(response.json()["drain_at"]) == drain_at
    seen = _client(staying.buyer).get(f"/api/v1/leases/{staying_lease.pk}/").json()
    assert seen["node_drain_at"] == response.json()["drain_at"]
    late = OrderFactory(accepted_models=[gpu(H800)], gpu_count=2, hours=1)
    assert order_match(order_id=late.pk) == []
    assert nodes_drain_due() == 0  # not before the notice runs out

    # when: the notice runs out (the task runs a little after)
    OfferFactory(node=NodeFactory(gpu_count=8))  # somewhere to fail over to
    with time_machine.travel(drain_at + dt.timedelta(seconds=9), tick=False):
        assert nodes_drain_due() == 2

    # then: the node is in maintenance; each lease ended at the notice's end
    node.refresh_from_db()
    assert (node.state, node.drain_at) == (Node.State.MAINTENANCE, None)
    moving_lease.refresh_from_db()
    staying_lease.refresh_from_db()
    assert (moving_lease.status, moving_lease.ended_at) == ("failed", drain_at)
    assert (staying_lease.status, staying_lease.ended_at) == ("completed", drain_at)
    assert staying_lease.events.latest("pk").reason == (
        "node drained for maintenance: BMC firmware"
    )
    moving.refresh_from_db()
    assert moving.status == Order.Status.PARTIALLY_FILLED  # its remaining hours wait to move

    # and the provider brings the node back: matched again once its agent reports
    back = provider.post(f"/api/v1/nodes/{node.pk}/drain/cancel/")
    assert back.json()["state"] == Node.State.AWAITING_AGENT


@time_machine.travel(T0, tick=False)
def test_a_drain_can_be_withdrawn_before_its_notice_runs_out():
    node = NodeFactory()
    provider = _client(node.site.provider)
    provider.post(f"/api/v1/nodes/{node.pk}/drain/", {"notice_minutes": 60})

    response = provider.post(f"/api/v1/nodes/{node.pk}/drain/cancel/")

    assert response.status_code == 200
    assert response.json()["drain_at"] is None
    with time_machine.travel(T0 + dt.timedelta(hours=2), tick=False):
        assert nodes_drain_due() == 0
    assert Node.objects.get(pk=node.pk).state == Node.State.ONLINE
    assert provider.post(f"/api/v1/nodes/{node.pk}/drain/cancel/").status_code == 409


def test_a_drain_notice_is_bounded(db):
    node = NodeFactory()
    response = _client(node.site.provider).post(
        f"/api/v1/nodes/{node.pk}/drain/", {"notice_minutes": 60 * 24 * 31}
    )
    assert response.status_code == 400
    assert "notice_minutes" in response.json()["errors"]
    assert Node.objects.get(pk=node.pk).drain_at is None
