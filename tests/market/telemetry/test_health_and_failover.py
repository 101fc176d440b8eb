import datetime as dt

import orjson
import pytest
import time_machine
from django.utils import timezone

from market.leases import leases_failover
from market.models import Lease, Node, NodeHealthEvent, Order
from market.telemetry.health import nodes_health_check
from market.telemetry.ingest import telemetry_ingest
from tests.factories import LeaseFactory, OfferFactory, OrderFactory, gpu
from tests.market.telemetry.conftest import node_with_token, sample

pytestmark = pytest.mark.django_db

# Offers from the factories are available around the real now.
NOW = timezone.now().replace(microsecond=0)


def ingest(node, samples, *, at):
    with time_machine.travel(at, tick=False):
        return telemetry_ingest(node=node, body=orjson.dumps({"samples": samples}), now=at)


def tick(node, seq, at, **fields):
    """One round of samples of every GPU of `node`, stamped `at`."""
    return [sample(seq + g, ts=at.timestamp(), gpu=g, **fields) for g in range(node.gpu_count)]


def check(at):
    with time_machine.travel(at, tick=False):
        return nodes_health_check(now=at)


def at(seconds):
    return NOW + dt.timedelta(seconds=seconds)


def test_new_xid_errors_degrade_a_node_with_the_reason_and_time(db):
    # given: a node reporting cleanly, then XID errors on GPU 1
    node, _ = node_with_token(gpu_count=2)
    ingest(node, tick(node, 0, at(0)), at=at(0))
    check(at(1))
    ingest(
        node,
        [
            sample(2, ts=at(5).timestamp(), gpu=0),
            sample(3, ts=at(5).timestamp(), gpu=1, xid_errors=4),
        ],
        at=at(5),
    )
    # when
    check(at(6))
    # then
    node.refresh_from_db()
    assert (node.state, node.state_changed_at) == (Node.State.DEGRADED, at(6))
    event = NodeHealthEvent.objects.get(node=node)
    assert (event.from_state, event.to_state, event.reason, event.at) == (
        "online",
        "degraded",
        "new XID errors on GPU 1",
        at(6),
    )


def test_silence_for_three_intervals_takes_a_node_offline_and_a_clean_period_brings_it_back(db):
    # given
    node, _ = node_with_token(gpu_count=2)
    ingest(node, tick(node, 0, at(0)), at=at(0))
    # when: nothing for 15 s is still fine, 16 s is not
    check(at(15))
    node.refresh_from_db()
    assert node.state == Node.State.ONLINE
    check(at(16))
    node.refresh_from_db()
    assert node.state == Node.State.OFFLINE
    assert node.state_reason == "no telemetry for 16 s"
    # then: reporting again, it returns online only after 60 clean seconds
    for i, second in enumerate(range(20, 90, 5)):
        ingest(node, tick(node, 2 + 2 * i, at(second)), at=at(second))
        check(at(second))
        node.refresh_from_db()
        assert node.state == (Node.State.OFFLINE if second < 76 else Node.State.ONLINE), second
    assert list(NodeHealthEvent.objects.filter(node=node).values_list("to_state", flat=True)) == [
        "online",
        "offline",
    ]


def test_a_gpu_reported_missing_degrades_the_node(db):
    node, _ = node_with_token(gpu_count=2)
    ingest(node, tick(node, 0, at(0), missing=True), at=at(0))
    check(at(1))
    node.refresh_from_db()
    assert node.state == Node.State.DEGRADED
    assert node.state_reason == "GPU 0 missing; GPU 1 missing"


def test_a_counter_reset_after_an_agent_restart_is_not_an_error(db):
    node, _ = node_with_token(gpu_count=1)
    ingest(node, [sample(0, ts=at(0).timestamp(), xid_errors=7)], at=at(0))
    check(at(1))
    node.refresh_from_db()
    assert node.state == Node.State.ONLINE  # errors before the first check are history
    ingest(node, [sample(1, ts=at(5).timestamp(), xid_errors=0)], at=at(5))
    check(at(6))
    node.refresh_from_db()
    assert node.state == Node.State.ONLINE


def test_xid_burst_degrades_the_node_and_the_lease_fails_over_to_the_next_cheapest_offer(db):
    # given: a 2-GPU order filled on the cheapest offer; two other compatible offers
    h800 = gpu("nvidia-h800-sxm")
    node, _ = node_with_token(gpu_count=8)
    cheapest = OfferFactory(node=node, price_amount=1_500, gpus_available=6)
    next_cheapest = OfferFactory(price_amount=2_000)
    OfferFactory(price_amount=2_500)
    order = OrderFactory(
        accepted_models=[h800],
        gpu_count=2,
        hours=4,
        max_price_amount=3_000,
        gpus_filled=2,
        status=Order.Status.FILLED,
        start_by=at(-600),
    )
    lease = LeaseFactory(
        order=order, offer=cheapest, gpu_count=2, starts_at=at(-3600), ends_at=at(3 * 3600)
    )
    ingest(node, tick(node, 0, at(0)), at=at(0))
    check(at(1))
    # when: an XID burst, the health check, and failover a minute later
    ingest(node, tick(node, 8, at(5), xid_errors=12), at=at(5))
    check(at(6))
    with time_machine.travel(at(66), tick=False):
        moved = leases_failover(now=at(66))
    # then
    assert moved == 1
    lease.refresh_from_db()
    assert (lease.status, lease.ended_at) == (Lease.Status.MIGRATED, at(66))
    assert list(lease.events.values_list("from_status", "to_status")) == [
        ("active", "failed"),
        ("failed", "migrated"),
    ]
    assert lease.events.first().reason.startswith("node degraded: new XID errors on GPU 0")
    replacement = Lease.objects.get(previous_lease=lease)
    assert replacement.offer == next_cheapest
    assert (replacement.gpu_count, replacement.price_amount) == (2, 2_000)
    assert (replacement.starts_at, replacement.ends_at) == (at(66), at(3 * 3600))
    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.FILLED, 2)
    assert set(order.leases.values_list("pk", flat=True)) == {lease.pk, replacement.pk}
    cheapest.refresh_from_db()
    assert cheapest.gpus_available == 8


def test_without_capacity_the_failed_lease_waits_and_moves_when_an_offer_appears(db):
    # given: the only offer's node fails
    h800 = gpu("nvidia-h800-sxm")
    node, _ = node_with_token(gpu_count=8)
    offer = OfferFactory(node=node, gpus_available=6)
    order = OrderFactory(
        accepted_models=[h800],
        gpu_count=2,
        gpus_filled=2,
        status=Order.Status.FILLED,
        start_by=at(-600),
    )
    lease = LeaseFactory(order=order, offer=offer, starts_at=at(-600), ends_at=at(3600))
    Node.objects.filter(pk=node.pk).update(state=Node.State.OFFLINE, state_changed_at=at(-120))
    # when
    assert leases_failover(now=at(0)) == 0
    # then: failed, waiting in the book
    lease.refresh_from_db()
    order.refresh_from_db()
    assert lease.status == Lease.Status.FAILED
    assert (order.status, order.gpus_filled) == (Order.Status.PARTIALLY_FILLED, 0)
    # and when capacity appears, the next run moves it
    OfferFactory(price_amount=2_400)
    assert leases_failover(now=at(30)) == 1
    lease.refresh_from_db()
    assert lease.status == Lease.Status.MIGRATED
    assert Lease.objects.get(previous_lease=lease).starts_at == at(30)


def test_an_order_without_failover_keeps_its_lease_through_a_fault(db):
    node, _ = node_with_token(gpu_count=8)
    order = OrderFactory(failover_allowed=False, gpus_filled=2, status=Order.Status.FILLED)
    lease = LeaseFactory(
        order=order, offer=OfferFactory(node=node), starts_at=at(-600), ends_at=at(3600)
    )
    OfferFactory(price_amount=1_000)
    Node.objects.filter(pk=node.pk).update(state=Node.State.OFFLINE, state_changed_at=at(-120))
    assert leases_failover(now=at(0)) == 0
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE


def _silent_node_with_a_lease():
    h800 = gpu("nvidia-h800-sxm")
    node, _ = node_with_token(gpu_count=8)
    offer = OfferFactory(node=node, price_amount=1_500, gpus_available=6)
    OfferFactory(price_amount=2_000)  # somewhere to fail over to
    order = OrderFactory(
        accepted_models=[h800],
        gpu_count=2,
        hours=4,
        max_price_amount=3_000,
        gpus_filled=2,
        status=Order.Status.FILLED,
        start_by=at(-600),
    )
    lease = LeaseFactory(
        order=order, offer=offer, gpu_count=2, starts_at=at(-3600), ends_at=at(3 * 3600)
    )
    ingest(node, tick(node, 0, at(0)), at=at(0))
    check(at(16))  # silent: offline
    node.refresh_from_db()
    assert node.state == Node.State.OFFLINE
    return node, lease


def test_a_node_still_silent_a_minute_after_going_offline_fails_over():
    node, lease = _silent_node_with_a_lease()

    with time_machine.travel(at(80), tick=False):
        moved = leases_failover(now=at(80))

    lease.refresh_from_db()
    assert (moved, lease.status) == (1, Lease.Status.MIGRATED)


def test_a_node_whose_agent_is_back_keeps_its_lease_while_it_recovers():
    # given: offline for a minute (say the exchange was restarted), but the
    # agent has reported again since
    node, lease = _silent_node_with_a_lease()
    ingest(node, tick(node, 8, at(70)), at=at(70))

    with time_machine.travel(at(80), tick=False):
        moved = leases_failover(now=at(80))

    lease.refresh_from_db()
    assert (moved, lease.status) == (0, Lease.Status.ACTIVE)
