"""A node awaits its agent from creation until its first telemetry: it is not
matched, not a failover target, and never shown online before it reported."""

import datetime as dt

import orjson
import pytest
import time_machine
from django.utils import timezone

from market.capacity import node_create
from market.leases import leases_failover
from market.matching import match_round
from market.models import Lease, Node, NodeHealthEvent, Order
from market.orders import order_create
from market.telemetry.health import nodes_health_check
from market.telemetry.ingest import telemetry_ingest
from tests.factories import LeaseFactory, OfferFactory, OrderFactory, SiteFactory, gpu
from tests.market.telemetry.conftest import node_with_token, sample

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


def at(seconds: int) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def report(node: Node, *, when: dt.datetime, seq: int = 0) -> None:
    samples = [sample(seq + g, ts=when.timestamp(), gpu=g) for g in range(node.gpu_count)]
    with time_machine.travel(when, tick=False):
        telemetry_ingest(node=node, body=orjson.dumps({"samples": samples}), now=when)


def test_a_new_node_awaits_its_agent_and_is_matched_only_once_it_reported(buyer_org):
    # given: a provider registers a node and offers its 8 GPUs; a buyer orders 4
    site = SiteFactory()
    node, _token = node_create(site=site, name="n1", gpu_model=gpu("nvidia-h800-sxm"), gpu_count=8)
    offer = OfferFactory(node=node, price_amount=1_800)
    order, _ = order_create(
        buyer=buyer_org,
        placed_by=None,
        gpu_count=4,
        hours=2,
        max_price_amount=2_000,
        start_by=at(6 * 3600),
        accepted_models=[gpu("nvidia-h800-sxm")],
    )
    # then: the node awaits its agent and nothing was matched on it
    node.refresh_from_db()
    assert node.state == Node.State.AWAITING_AGENT
    assert match_round(now=at(1)).leases_created == 0
    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.OPEN, 0)
    assert not Lease.objects.exists()
    # when: its agent's first batch arrives
    node.refresh_from_db()
    report(node, when=at(5))
    # then: online, with the reason in its health history, and the order fills on it
    node.refresh_from_db()
    assert (node.state, node.state_changed_at) == (Node.State.ONLINE, at(5))
    event = NodeHealthEvent.objects.get(node=node)
    assert (event.from_state, event.to_state, event.at) == ("awaiting_agent", "online", at(5))
    assert match_round(now=at(6)).leases_created == 1
    lease = Lease.objects.get()
    assert (lease.offer_id, lease.gpu_count, lease.price_amount) == (offer.pk, 4, 1_800)


def test_a_node_awaiting_its_agent_is_no_failover_target(db):
    # given: a lease on a degraded node; the only other offer is on a node that never reported
    h800 = gpu("nvidia-h800-sxm")
    node, _ = node_with_token(gpu_count=8)
    Node.objects.filter(pk=node.pk).update(
        state=Node.State.DEGRADED, state_reason="new XID errors", state_changed_at=at(-120)
    )
    order = OrderFactory(
        accepted_models=[h800],
        gpu_count=2,
        gpus_filled=2,
        status=Order.Status.FILLED,
        start_by=at(-600),
    )
    lease = LeaseFactory(
        order=order,
        offer=OfferFactory(node=node, gpus_available=6),
        starts_at=at(-600),
        ends_at=at(3600),
    )
    silent_node, _ = node_with_token(gpu_count=8, state=Node.State.AWAITING_AGENT)
    spare = OfferFactory(node=silent_node, price_amount=1_000)
    # when
    moved = leases_failover(now=at(0))
    # then: the lease failed and waits; nothing was placed on the silent node
    lease.refresh_from_db()
    assert (moved, lease.status) == (0, Lease.Status.FAILED)
    assert not Lease.objects.filter(node=silent_node).exists()
    spare.refresh_from_db()
    assert spare.gpus_available == 8
    # and once that node's agent reports, the next run moves the lease there
    report(silent_node, when=at(20))
    assert leases_failover(now=at(30)) == 1
    assert Lease.objects.get(previous_lease=lease).offer_id == spare.pk


def test_the_health_check_leaves_a_node_awaiting_its_agent_as_it_is(db):
    node, _ = node_with_token(gpu_count=2, state=Node.State.AWAITING_AGENT)

    with time_machine.travel(at(3600), tick=False):
        changed = nodes_health_check(now=at(3600))

    node.refresh_from_db()
    assert (changed, node.state) == (0, Node.State.AWAITING_AGENT)
    assert not NodeHealthEvent.objects.exists()


def test_my_capacity_shows_a_node_awaiting_its_agent_never_online(provider_org, provider, client):
    node_with_token(site__provider=provider_org, name="gpu-a", state=Node.State.AWAITING_AGENT)
    client.force_login(provider)

    page = client.get("/market/capacity/").content.decode()

    assert '<span class="badge awaiting_agent">awaiting agent</span>' in page
    assert "badge online" not in page
