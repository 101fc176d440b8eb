"""Interruptible capacity: pre-emption with notice, billing to the second, re-arming."""

import datetime as dt

import pytest
import time_machine
from rest_framework.test import APIClient

from billing.invoices import invoice_draft_refresh
from billing.models import InvoiceLine
from market.leases import leases_advance, leases_failover
from market.matching import order_match, orders_preempt
from market.models import Lease, LeaseEvent, Offer, Order
from market.telemetry.metering import leases_meter
from tests.factories import NodeFactory, OfferFactory, OrderFactory, gpu, member_of
from tests.market.telemetry.test_metering import record_ticks

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
H800 = "nvidia-h800-sxm"


def _client(organisation) -> APIClient:
    client = APIClient()
    client.force_authenticate(member_of(organisation))
    return client


def _spot_market(*, node_gpus=8):
    """One node listed twice: ¥20.00 regular and ¥12.00 interruptible."""
    node = NodeFactory(gpu_count=node_gpus)
    regular = OfferFactory(node=node, price_amount=2_000)
    spot = OfferFactory(node=node, price_amount=1_200, interruptible=True)
    return node, regular, spot


def _spot_lease(*, gpus=8, hours=4, bid=1_500, **order_fields) -> tuple[Order, Lease]:
    order = OrderFactory(
        accepted_models=[gpu(H800)],
        gpu_count=gpus,
        hours=hours,
        max_price_amount=bid,
        interruptible=True,
        **order_fields,
    )
    (lease,) = order_match(order_id=order.pk)
    leases_advance()
    lease.refresh_from_db()
    assert lease.status == Lease.Status.ACTIVE
    return order, lease


@time_machine.travel(T0, tick=False)
def test_an_order_that_does_not_accept_interruptible_capacity_never_lands_on_it():
    # given only interruptible GPUs on the book, at ¥12.00
    OfferFactory(price_amount=1_200, interruptible=True)
    plain = OrderFactory(accepted_models=[gpu(H800)], gpu_count=4, max_price_amount=3_000)
    spot = OrderFactory(
        accepted_models=[gpu(H800)], gpu_count=4, max_price_amount=3_000, interruptible=True
    )

    # then the plain order gets nothing, the one accepting interruptible gets them at the ask
    assert order_match(order_id=plain.pk) == []
    (lease,) = order_match(order_id=spot.pk)
    assert (lease.gpu_count, lease.price_amount) == (4, 1_200)


@time_machine.travel(T0, tick=False)
def test_a_higher_bid_pre_empts_an_interruptible_lease_only_after_its_notice():
    # given: the node's 8 GPUs run an interruptible lease bought at ¥12.00 (bid ¥15.00)
    node, regular, spot = _spot_market()
    spot_order, spot_lease = _spot_lease()
    assert regular.gpus_available == 8  # the regular offer's GPUs exist, but the node is full

    # when: at 10:00 a buyer bids ¥25.00 for 8 GPUs that stay
    now = T0 + dt.timedelta(hours=1)
    with time_machine.travel(now, tick=False):
        big = OrderFactory(
            accepted_models=[gpu(H800)], gpu_count=8, hours=3, max_price_amount=2_500
        )
        assert order_match(order_id=big.pk) == []  # nothing free now
        (new_id,) = orders_preempt()

    # then: the spot lease has 10 minutes' notice, told on the API and in its history
    notice_end = now + dt.timedelta(minutes=10)
    spot_lease.refresh_from_db()
    assert (spot_lease.status, spot_lease.preempt_at, spot_lease.ends_at) == (
        "active",
        notice_end,
        notice_end,
    )
    assert spot_lease.original_ends_at == T0 + dt.timedelta(hours=4)
    seen = _client(spot_order.buyer).get(f"/api/v1/leases/{spot_lease.pk}/").json()
    assert dt.datetime.fromisoformat(seen["preempt_at"]) == notice_end
    assert seen["interruptible"] is True
    assert spot_lease.events.latest("pk").reason == (
        "pre-empted by a higher bid: ends at 2026-03-02 10:10:00 UTC, after 10 minutes' notice"
    )
    # the pre-empting lease starts at the notice's end, at the regular ask
    new = Lease.objects.get(pk=new_id)
    assert (new.order_id, new.offer_id, new.gpu_count, new.price_amount) == (
        big.pk,
        regular.pk,
        8,
        2_000,
    )
    assert (new.status, new.starts_at, new.ends_at) == (
        "pending",
        notice_end,
        notice_end + dt.timedelta(hours=3),
    )

    # and: a minute before the notice runs out the spot lease still runs
    with time_machine.travel(notice_end - dt.timedelta(minutes=1), tick=False):
        leases_advance()
    spot_lease.refresh_from_db()
    assert spot_lease.status == "active"

    # when: the notice runs out
    with time_machine.travel(notice_end + dt.timedelta(seconds=7), tick=False):
        leases_advance()

    # then: it completed at the notice's end; the pre-empting lease runs
    spot_lease.refresh_from_db()
    new.refresh_from_db()
    assert (spot_lease.status, spot_lease.ended_at) == ("completed", notice_end)
    assert new.status == "active"
    assert spot_lease.events.latest("pk").reason == (
        "pre-empted by a higher bid; the notice ran out"
    )
    # the interruptible offer has its GPUs back, yet the node holds only the new lease
    assert Offer.objects.get(pk=spot.pk).gpus_available == 8
    assert Offer.objects.get(pk=regular.pk).gpus_available == 0
    late = OrderFactory(
        accepted_models=[gpu(H800)], gpu_count=1, max_price_amount=3_000, interruptible=True
    )
    with time_machine.travel(notice_end + dt.timedelta(minutes=1), tick=False):
        assert order_match(order_id=late.pk) == []


@time_machine.travel(T0, tick=False)
def test_no_gpu_is_promised_twice_during_the_notice():
    # given an 8-GPU node: 6 GPUs on a spot lease under notice, 2 taken by the pre-empting order
    node, regular, spot = _spot_market()
    _spot_lease(gpus=6)
    big = OrderFactory(accepted_models=[gpu(H800)], gpu_count=4, max_price_amount=2_500)
    (pre_empting,) = [Lease.objects.get(pk=pk) for pk in orders_preempt()]
    # 2 GPUs were free: plain matching's; 2 more needed the whole 6-GPU lease pre-empted
    assert pre_empting.gpu_count == 4

    # when, during the notice, a buyer asks for GPUs starting now
    now_order = OrderFactory(
        accepted_models=[gpu(H800)], gpu_count=8, max_price_amount=3_000, interruptible=True
    )
    got = order_match(order_id=now_order.pk)

    # then it gets only the 2 GPUs the spot lease never held: 6 + 2 now, 4 + 2 after
    assert [lease.gpu_count for lease in got] == [2]
    big.refresh_from_db()
    assert big.gpus_filled == 4


@time_machine.travel(T0, tick=False)
def test_an_equal_or_lower_bid_never_pre_empts():
    _spot_market()
    _spot_lease(bid=2_500)
    OrderFactory(accepted_models=[gpu(H800)], gpu_count=8, max_price_amount=2_500)

    assert orders_preempt() == []
    assert Lease.objects.get().preempt_at is None


@time_machine.travel(T0, tick=False)
@pytest.mark.parametrize(
    "fields",
    [{"gang": True}, {"time_in_force": "ioc"}],
    ids=["gang waits for a whole site", "immediate-or-cancel cannot wait a notice"],
)
def test_gang_and_immediate_or_cancel_orders_never_pre_empt(fields):
    _spot_market()
    _, spot = _spot_lease(bid=1_500)
    OrderFactory(accepted_models=[gpu(H800)], gpu_count=8, max_price_amount=3_000, **fields)

    assert orders_preempt() == []
    spot.refresh_from_db()
    assert (spot.preempt_at, spot.status) == (None, Lease.Status.ACTIVE)


@time_machine.travel(T0, tick=False)
def test_a_pre_empted_lease_is_billed_only_for_the_time_it_ran():
    # given: 8 interruptible GPUs at ¥12.00 from 09:00, pre-empted at 10:00 with 10 minutes' notice
    node, regular, spot = _spot_market()
    spot_order, spot_lease = _spot_lease(max_refills=0)
    record_ticks(node, start=T0 - dt.timedelta(minutes=1), end=T0 + dt.timedelta(hours=4))
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        OrderFactory(accepted_models=[gpu(H800)], gpu_count=8, hours=3, max_price_amount=2_500)
        orders_preempt()
    notice_end = T0 + dt.timedelta(hours=1, minutes=10)
    with time_machine.travel(notice_end + dt.timedelta(seconds=30), tick=False):
        leases_advance()

    # when: metered and the buyer's draft invoice refreshed
    with time_machine.travel(T0 + dt.timedelta(hours=4), tick=False):
        leases_meter(now=T0 + dt.timedelta(hours=4))
        invoice_draft_refresh(buyer=spot_order.buyer)

    # then: 8 GPUs x 1 h 10 min = 33,600 GPU-seconds x ¥12.00/h = ¥112.00, nothing after
    line = InvoiceLine.objects.get(lease=spot_lease)
    assert line.gpu_seconds == 8 * 70 * 60
    assert line.amount == 11_200
    assert line.window_end == notice_end
    # no refill allowed: the order keeps its lost GPUs off the book
    spot_order.refresh_from_db()
    assert (spot_order.status, spot_order.gpus_filled, spot_order.refills_used) == ("filled", 8, 0)
    spot_lease.refresh_from_db()
    assert spot_lease.rearm is False


@time_machine.travel(T0, tick=False)
def test_a_pre_empted_standing_order_re_arms_from_the_best_offer_then():
    # given: a spot order (bid ¥15.00, one refill) pre-empted at 10:00, and a second
    # interruptible offer elsewhere at ¥13.00
    _spot_market()
    spot_order, spot_lease = _spot_lease(max_refills=1)
    elsewhere = OfferFactory(price_amount=1_300, interruptible=True)
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        OrderFactory(accepted_models=[gpu(H800)], gpu_count=8, hours=3, max_price_amount=2_500)
        orders_preempt()
    notice_end = T0 + dt.timedelta(hours=1, minutes=10)

    # when the notice runs out
    with time_machine.travel(notice_end + dt.timedelta(seconds=5), tick=False):
        leases_advance()

    # then the order re-armed: the rest of the window (to 13:00) runs on the ¥13.00 offer
    spot_lease.refresh_from_db()
    assert (spot_lease.status, spot_lease.rearm) == ("completed", True)
    refill = Lease.objects.get(previous_lease=spot_lease)
    assert (refill.offer_id, refill.gpu_count, refill.price_amount) == (elsewhere.pk, 8, 1_300)
    assert (refill.starts_at, refill.ends_at) == (
        notice_end + dt.timedelta(seconds=5),
        T0 + dt.timedelta(hours=4),
    )
    spot_order.refresh_from_db()
    assert (spot_order.status, spot_order.gpus_filled, spot_order.refills_used) == ("filled", 8, 1)
    assert spot_order.events.filter(to_status="partially_filled").get().reason == (
        f"lease {spot_lease.pk} pre-empted; re-arming its remaining hours"
    )
    # the buyer follows the order as one: the old lease names its successor
    seen = _client(spot_order.buyer).get(f"/api/v1/leases/{spot_lease.pk}/").json()
    assert (seen["rearm"], seen["next_lease"]) == (True, refill.pk)


@time_machine.travel(T0, tick=False)
def test_a_re_arm_with_nothing_free_waits_for_capacity_and_refills_are_counted():
    _spot_market()
    spot_order, spot_lease = _spot_lease(max_refills=2)
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        OrderFactory(accepted_models=[gpu(H800)], gpu_count=8, hours=3, max_price_amount=2_500)
        orders_preempt()
    at = T0 + dt.timedelta(hours=1, minutes=11)
    with time_machine.travel(at, tick=False):
        leases_advance()
    spot_order.refresh_from_db()
    assert (spot_order.status, spot_order.gpus_filled, spot_order.refills_used) == (
        "partially_filled",
        0,
        1,
    )

    # when capacity appears, the failover task re-matches the rest of the window
    later = OfferFactory(price_amount=1_400, interruptible=True)
    with time_machine.travel(at + dt.timedelta(minutes=5), tick=False):
        assert leases_failover(now=at + dt.timedelta(minutes=5)) == 1
    refill = Lease.objects.get(previous_lease=spot_lease)
    assert (refill.offer_id, refill.ends_at) == (later.pk, T0 + dt.timedelta(hours=4))


@time_machine.travel(T0, tick=False)
def test_a_node_failure_spends_a_refill_and_without_one_nothing_moves():
    # given an order allowed no refill on a node that fails
    from market.leases import lease_fail

    order = OrderFactory(accepted_models=[gpu(H800)], gpu_count=4, max_refills=0)
    OfferFactory()
    OfferFactory(price_amount=2_100)
    (lease,) = order_match(order_id=order.pk)
    leases_advance()

    lease_fail(lease_id=lease.pk, reason="XID 79", now=T0 + dt.timedelta(minutes=5))

    # then the lease failed, the order stays filled and failover finds nothing to move
    order.refresh_from_db()
    assert (order.status, order.gpus_filled, order.refills_used) == ("filled", 4, 0)
    assert leases_failover(now=T0 + dt.timedelta(minutes=6)) == 0
    assert not Lease.objects.filter(previous_lease=lease).exists()


def test_refills_are_bounded(db):
    buyer = OrderFactory().buyer
    response = _client(buyer).post(
        "/api/v1/orders/",
        {
            "accepted_models": [H800],
            "gpu_count": 1,
            "hours": 1,
            "max_price_amount": 2_000,
            "start_by": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(),
            "max_refills": 101,
        },
        format="json",
    )
    assert response.status_code == 400
    assert "max_refills" in response.json()["errors"]
    assert Order.objects.count() == 1
    assert LeaseEvent.objects.count() == 0


@time_machine.travel(T0, tick=False)
def test_a_re_arming_order_stays_on_the_book_past_its_start_by_until_its_window_ends():
    from market.orders import orders_expire

    # given a spot order (start-by 10:30) pre-empted at 10:00, re-armed at 10:10, nothing free
    _spot_market()
    spot_order, spot_lease = _spot_lease(max_refills=1)
    Order.objects.filter(pk=spot_order.pk).update(start_by=T0 + dt.timedelta(hours=1, minutes=30))
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        OrderFactory(accepted_models=[gpu(H800)], gpu_count=8, hours=3, max_price_amount=2_500)
        orders_preempt()
    with time_machine.travel(T0 + dt.timedelta(hours=1, minutes=10), tick=False):
        leases_advance()

    # then past its start-by it waits on (its lease's window runs to 13:00), not after
    assert orders_expire(now=T0 + dt.timedelta(hours=2)) == 0
    assert Order.objects.get(pk=spot_order.pk).status == "partially_filled"
    assert orders_expire(now=T0 + dt.timedelta(hours=4)) == 1
    assert Order.objects.get(pk=spot_order.pk).status == "expired"
