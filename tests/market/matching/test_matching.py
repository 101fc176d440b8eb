import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from market.matching import match_round, order_match
from market.models import Lease, Offer, Order, OrderEvent
from tests.factories import (
    NodeFactory,
    OfferFactory,
    OrderFactory,
    SiteFactory,
    UsageRecordFactory,
    gpu,
)

pytestmark = pytest.mark.django_db


def h800_order(**kwargs) -> Order:
    return OrderFactory(accepted_models=[gpu("nvidia-h800-sxm")], **kwargs)


def test_cheapest_compatible_offer_wins():
    # given three H800 offers at ¥25, ¥20, ¥22 and an H20 at ¥5 the order does not accept
    dear = OfferFactory(price_amount=2_500)
    cheap = OfferFactory(price_amount=2_000)
    OfferFactory(price_amount=2_200)
    OfferFactory(node=NodeFactory(gpu_model=gpu("nvidia-h20")), price_amount=500)
    order = h800_order(gpu_count=8, hours=10, max_price_amount=3_000)

    # when
    leases = order_match(order_id=order.pk)

    # then
    assert [(lease.offer_id, lease.gpu_count, lease.price_amount) for lease in leases] == [
        (cheap.pk, 8, 2_000)
    ]
    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.FILLED, 8)
    cheap.refresh_from_db()
    dear.refresh_from_db()
    assert (cheap.gpus_available, dear.gpus_available) == (0, 8)


def test_buyer_pays_the_ask_not_the_bid():
    offer = OfferFactory(price_amount=1_234)
    order = h800_order(gpu_count=2, hours=3, max_price_amount=9_999)

    lease = order_match(order_id=order.pk)[0]

    lease.refresh_from_db()
    assert lease.price_amount == 1_234
    assert lease.offer_id == offer.pk
    assert lease.ends_at - lease.starts_at == dt.timedelta(hours=3)
    assert lease.status == Lease.Status.PENDING
    assert list(lease.events.values_list("from_status", "to_status")) == [("", "pending")]


def test_no_fill_above_the_bid():
    offer = OfferFactory(price_amount=3_001)
    order = h800_order(max_price_amount=3_000)

    assert order_match(order_id=order.pk) == []

    assert not Lease.objects.exists()
    offer.refresh_from_db()
    order.refresh_from_db()
    assert (offer.gpus_available, order.gpus_filled, order.status) == (8, 0, Order.Status.OPEN)


def test_equal_prices_go_to_the_greener_site():
    grey = OfferFactory(node__site=SiteFactory(green_share=Decimal("0.300")))
    green = OfferFactory(node__site=SiteFactory(green_share=Decimal("0.900")))
    order = h800_order(gpu_count=4)

    leases = order_match(order_id=order.pk)

    assert [lease.offer_id for lease in leases] == [green.pk]
    assert grey.pk != green.pk


def test_equal_price_and_green_share_go_to_the_more_reliable_provider():
    # given provider A delivered 90 % of what it promised, B has no history (scores 1.0)
    shaky = OfferFactory()
    lease = Lease.objects.create(
        order=OrderFactory(),
        offer=shaky,
        node=shaky.node,
        buyer=OrderFactory().buyer,
        provider=shaky.provider,
        gpu_count=1,
        price_amount=1,
        starts_at=timezone.now() - dt.timedelta(days=2),
        ends_at=timezone.now() - dt.timedelta(days=1),
        status=Lease.Status.COMPLETED,
    )
    UsageRecordFactory(lease=lease, gpu_seconds_delivered=9_000, gpu_seconds_lost=1_000)
    solid = OfferFactory()
    order = h800_order(gpu_count=1)

    assert [lease.offer_id for lease in order_match(order_id=order.pk)] == [solid.pk]


def test_partial_fill_then_completion_by_a_later_offer():
    # given an 8-GPU order and only 4 GPUs on offer
    first = OfferFactory(node=NodeFactory(gpu_count=4), price_amount=2_000)
    order = h800_order(gpu_count=8, max_price_amount=3_000)
    order_match(order_id=order.pk)
    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.PARTIALLY_FILLED, 4)

    # when a second offer arrives and the periodic round runs
    second = OfferFactory(price_amount=2_400)
    result = match_round()

    # then the rest is filled from it at its own ask
    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.FILLED, 8)
    assert sorted(order.leases.values_list("offer_id", "gpu_count", "price_amount")) == sorted(
        [(first.pk, 4, 2_000), (second.pk, 4, 2_400)]
    )
    assert (result.leases_created, result.gpus_allocated) == (1, 4)
    assert list(order.events.values_list("from_status", "to_status")) == [
        ("open", "partially_filled"),
        ("partially_filled", "filled"),
    ]


def test_gang_order_waits_rather_than_splitting_sites():
    # given two sites with 8 GPUs each and a gang order for 12
    OfferFactory(node__site=SiteFactory(name="A"))
    OfferFactory(node__site=SiteFactory(name="B"))
    order = h800_order(gpu_count=12, gang=True)

    assert match_round().leases_created == 0
    assert not Lease.objects.exists()
    assert Offer.objects.filter(gpus_available=8).count() == 2

    # when site B gets a second node and offers it, the whole order goes there
    site_b = SiteFactory._meta.model.objects.get(name="B")
    extra = OfferFactory(node=NodeFactory(site=site_b))
    match_round()

    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.FILLED, 12)
    assert set(order.leases.values_list("node__site__name", flat=True)) == {"B"}
    assert sum(order.leases.values_list("gpu_count", flat=True)) == 12
    assert extra.pk in set(order.leases.values_list("offer_id", flat=True))


def test_gang_order_picks_the_cheapest_whole_site():
    # site A: 7 GPUs at ¥10 + 1 at ¥30 (total ¥100/h) completes later in price order
    # than site B: 8 at ¥15 (¥120/h); the buyer gets the cheaper whole site A.
    site_a, site_b = SiteFactory(), SiteFactory()
    OfferFactory(node=NodeFactory(site=site_a, gpu_count=7), price_amount=1_000)
    OfferFactory(node=NodeFactory(site=site_a, gpu_count=1), price_amount=3_000)
    OfferFactory(node=NodeFactory(site=site_b, gpu_count=8), price_amount=1_500)
    order = h800_order(gpu_count=8, gang=True, max_price_amount=3_000)

    leases = order_match(order_id=order.pk)

    assert {lease.node.site_id for lease in leases} == {site_a.pk}
    assert sum(lease.gpu_count * lease.price_amount for lease in leases) == 10_000


def test_heterogeneous_substitution_takes_the_cheaper_accepted_model():
    h800 = OfferFactory(price_amount=2_000)
    a800 = OfferFactory(node=NodeFactory(gpu_model=gpu("nvidia-a800-sxm-80gb")), price_amount=1_200)
    order = OrderFactory(
        accepted_models=[gpu("nvidia-h800-sxm"), gpu("nvidia-a800-sxm-80gb")], gpu_count=12
    )

    leases = order_match(order_id=order.pk)

    assert sorted((lease.offer_id, lease.gpu_count) for lease in leases) == sorted(
        [(a800.pk, 8), (h800.pk, 4)]
    )


def test_a_tflops_floor_accepts_any_model_above_it():
    OfferFactory(node=NodeFactory(gpu_model=gpu("nvidia-rtx-4090")), price_amount=300)
    h800 = OfferFactory(price_amount=2_000)
    order = OrderFactory(min_tflops=Decimal("500"), gpu_count=2)

    assert [lease.offer_id for lease in order_match(order_id=order.pk)] == [h800.pk]


def test_pool_offer_spreads_over_nodes_and_respects_gpus_leased_from_other_offers():
    # given a site with two 8-GPU H800 nodes; node 1 also has its own offer
    site = SiteFactory()
    node1, node2 = NodeFactory(site=site), NodeFactory(site=site)
    node_offer = OfferFactory(node=node1, price_amount=1_500)
    pool = OfferFactory(node=None, site=site, gpu_model=gpu("nvidia-h800-sxm"), gpus_total=16)

    # when one order takes node 1 through the cheap node offer, another takes the pool
    first = h800_order(gpu_count=8)
    order_match(order_id=first.pk)
    second = h800_order(gpu_count=16)
    leases = order_match(order_id=second.pk)

    # then the pool can only give node 2's 8 GPUs: node 1 is already leased
    assert [(lease.offer_id, lease.node_id, lease.gpu_count) for lease in leases] == [
        (pool.pk, node2.pk, 8)
    ]
    assert node_offer.leases.get().node_id == node1.pk
    pool.refresh_from_db()
    assert pool.gpus_available == 8


def test_offline_nodes_and_paused_offers_are_not_matched():
    OfferFactory(node=NodeFactory(state="offline"))
    OfferFactory(status=Offer.Status.PAUSED)
    order = h800_order(gpu_count=1)

    assert order_match(order_id=order.pk) == []


def test_round_serves_the_higher_bid_first():
    OfferFactory(node=NodeFactory(gpu_count=4))
    low = h800_order(gpu_count=4, max_price_amount=2_500)
    high = h800_order(gpu_count=4, max_price_amount=2_900)

    match_round()

    assert high.leases.count() == 1
    assert low.leases.count() == 0


def test_round_serves_the_larger_whole_lease_bid_first():
    # given 4 GPUs and two 4-GPU orders: ¥30 for 1 hour (¥30 per GPU in all)
    # and ¥25 for 10 hours (¥250 per GPU in all)
    OfferFactory(node=NodeFactory(gpu_count=4))
    brief = h800_order(gpu_count=4, hours=1, max_price_amount=3_000)
    long_ = h800_order(gpu_count=4, hours=10, max_price_amount=2_500)

    match_round()

    assert list(long_.leases.values_list("gpu_count", "price_amount")) == [(4, 2_000)]
    assert not brief.leases.exists()


def test_round_moves_an_earlier_fill_so_a_lower_bid_trades_too():
    # given 8 H800s at ¥20 and 8 at ¥25, and two 8-GPU orders of 10 hours
    # bidding ¥30 and ¥22: served first from the cheapest offer, the ¥30
    # order would leave the ¥22 order nothing it can afford
    cheap = OfferFactory(price_amount=2_000)
    dear = OfferFactory(price_amount=2_500)
    high = h800_order(gpu_count=8, hours=10, max_price_amount=3_000)
    low = h800_order(gpu_count=8, hours=10, max_price_amount=2_200)

    result = match_round()

    # then both trade: the ¥30 order at ¥25, the ¥22 order at ¥20
    assert list(high.leases.values_list("offer_id", "gpu_count", "price_amount")) == [
        (dear.pk, 8, 2_500)
    ]
    assert list(low.leases.values_list("offer_id", "gpu_count", "price_amount")) == [
        (cheap.pk, 8, 2_000)
    ]
    assert (result.gpus_allocated, result.orders_touched) == (16, 2)
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.FILLED}
    assert set(Offer.objects.values_list("gpus_available", flat=True)) == {0}


def test_round_never_moves_a_committed_lease():
    # given the ¥30 order already holds the ¥20 offer from an earlier match
    cheap = OfferFactory(price_amount=2_000)
    high = h800_order(gpu_count=8, hours=10, max_price_amount=3_000)
    order_match(order_id=high.pk)
    dear = OfferFactory(price_amount=2_500)
    low = h800_order(gpu_count=8, hours=10, max_price_amount=2_200)

    result = match_round()

    # then the ¥22 order keeps waiting: nothing it can afford is free
    assert result.leases_created == 0
    assert list(high.leases.values_list("offer_id", "price_amount")) == [(cheap.pk, 2_000)]
    assert not low.leases.exists()
    dear.refresh_from_db()
    assert dear.gpus_available == 8


def test_a_waiting_gang_order_takes_a_site_whose_holder_can_move():
    # given site A: 8 GPUs at ¥20, site B: 8 at ¥24; a 24-hour order for 8 GPUs
    # at up to ¥30 (served first: ¥720 per GPU in all) and a 10-hour gang order
    # for 8 at up to ¥22 (¥220)
    site_a, site_b = SiteFactory(name="A"), SiteFactory(name="B")
    at_a = OfferFactory(node=NodeFactory(site=site_a), price_amount=2_000)
    at_b = OfferFactory(node=NodeFactory(site=site_b), price_amount=2_400)
    first = h800_order(gpu_count=8, hours=24, max_price_amount=3_000)
    gang = h800_order(gpu_count=8, hours=10, max_price_amount=2_200, gang=True)

    match_round()

    # then the first order runs at B, and the gang order gets all of site A
    assert list(first.leases.values_list("offer_id", "gpu_count", "price_amount")) == [
        (at_b.pk, 8, 2_400)
    ]
    assert list(gang.leases.values_list("offer_id", "gpu_count", "price_amount")) == [
        (at_a.pk, 8, 2_000)
    ]


def test_a_long_order_moved_to_a_dear_offer_swaps_with_a_shorter_one():
    # given H800s: 4 at ¥20, 4 at ¥22, 4 at ¥26; orders for 4 GPUs each:
    # 72 h at ¥30, 10 h at ¥21 and 1 h at ¥30, served in that order
    x = OfferFactory(node=NodeFactory(gpu_count=4), price_amount=2_000)
    z = OfferFactory(node=NodeFactory(gpu_count=4), price_amount=2_200)
    y = OfferFactory(node=NodeFactory(gpu_count=4), price_amount=2_600)
    long_ = h800_order(gpu_count=4, hours=72, max_price_amount=3_000)
    mid = h800_order(gpu_count=4, hours=10, max_price_amount=2_100)
    brief = h800_order(gpu_count=4, hours=1, max_price_amount=3_000)

    match_round()

    # the priority pass: 72 h on ¥20, 1 h on ¥22, nothing for the ¥21 order;
    # the ¥21 order takes ¥20 and the 72 h order moves to ¥26; then the 72 h
    # and 1 h orders swap: (26 - 22) x (72 - 1) x 4 = ¥1,136 less paid
    def got(order):
        return list(order.leases.values_list("offer_id", "price_amount"))

    assert got(long_) == [(z.pk, 2_200)]
    assert got(mid) == [(x.pk, 2_000)]
    assert got(brief) == [(y.pk, 2_600)]
    paid = sum(
        lease.price_amount * lease.gpu_count * lease.order.hours
        for lease in Lease.objects.select_related("order")
    )
    assert paid == (2_200 * 72 + 2_000 * 10 + 2_600 * 1) * 4


def test_orders_past_their_start_by_are_not_matched():
    OfferFactory()
    h800_order(start_by=timezone.now() + dt.timedelta(minutes=5))

    with time_machine.travel(timezone.now() + dt.timedelta(minutes=10)):
        assert match_round().leases_created == 0


def test_failover_rematches_the_remaining_window_away_from_the_failed_node():
    # given a lease on node 1, which fails; the order allows failover
    site = SiteFactory()
    node1, node2 = NodeFactory(site=site), NodeFactory(site=site)
    pool = OfferFactory(node=None, site=site, gpu_model=gpu("nvidia-h800-sxm"), gpus_total=16)
    order = h800_order(gpu_count=8)
    failed = order_match(order_id=order.pk)[0]
    assert failed.node_id in (node1.pk, node2.pk)
    Lease.objects.filter(pk=failed.pk).update(status=Lease.Status.FAILED)
    Order.objects.filter(pk=order.pk).update(gpus_filled=0, status=Order.Status.PARTIALLY_FILLED)

    # when
    leases = order_match(
        order_id=order.pk, exclude_node_ids={failed.node_id}, previous_lease_id=failed.pk
    )

    # then
    (new,) = leases
    assert new.node_id != failed.node_id
    assert new.previous_lease_id == failed.pk
    assert new.ends_at == failed.ends_at
    assert new.offer_id == pool.pk
    assert OrderEvent.objects.filter(order=order, to_status="filled").count() == 2
