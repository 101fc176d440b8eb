import threading

import pytest
from django.db import connection, connections
from django.db.models import Sum

from market.matching import engine as matching
from market.models import Lease, Node, Offer, Order
from tests.factories import NodeFactory, OfferFactory, OrderFactory, SiteFactory, gpu


def _run_in_threads(targets):
    errors = []

    def wrap(target):
        try:
            target()
        except Exception as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    # a racer still running would commit under the next step's feet: say so plainly
    assert not any(thread.is_alive() for thread in threads), "a matcher thread did not finish"
    assert not errors, errors


def _commit_when_all_planned(monkeypatch, racers: int) -> list[list]:
    """Hold every matcher's commit until all `racers` have planned (so they
    plan from one snapshot); returns the fills each planned, as they come."""
    barrier = threading.Barrier(racers, timeout=30)
    real_commit = matching.round_commit
    planned = []

    def commit_when_all_planned(fills, **kwargs):
        planned.append(fills)
        barrier.wait()
        return real_commit(fills, **kwargs)

    monkeypatch.setattr(matching, "round_commit", commit_when_all_planned)
    return planned


def _assert_no_gpu_allocated_twice():
    for offer in Offer.objects.all():
        leased = offer.leases.aggregate(n=Sum("gpu_count"))["n"] or 0
        assert leased == offer.gpus_total - offer.gpus_available
    for node in Node.objects.all():
        held = node.leases.filter(status__in=["pending", "active"]).aggregate(n=Sum("gpu_count"))
        assert (held["n"] or 0) <= node.gpu_count
    for order in Order.objects.all():
        filled = order.leases.aggregate(n=Sum("gpu_count"))["n"] or 0
        assert filled == order.gpus_filled <= order.gpu_count


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_rounds_at_once_never_allocate_a_gpu_twice(monkeypatch, seeded_catalogue):
    # given 3 sites of two nodes each (8 + 10 + 12 = 30 GPUs), each node offered
    # on its own and again through its site's pool, and 30 orders wanting 90 GPUs
    h800 = gpu("nvidia-h800-sxm")
    for site_number in range(3):
        site = SiteFactory()
        nodes = [NodeFactory(site=site, gpu_count=4 + site_number) for _ in range(2)]
        for node in nodes:
            OfferFactory(node=node, price_amount=2_000 + site_number)
        OfferFactory(
            node=None, site=site, gpu_model=h800, gpus_total=sum(n.gpu_count for n in nodes)
        )
    for i in range(30):
        OrderFactory(accepted_models=[h800], gpu_count=3, gang=i % 3 == 0)
    # both rounds plan from the same snapshot before either commits
    planned = _commit_when_all_planned(monkeypatch, 2)
    results = []

    # when
    _run_in_threads([lambda: results.append(matching.match_round())] * 2)

    # then each planned all 30 GPUs, but only 30 were allocated in all
    connections.close_all()
    assert [sum(f.gpus for f in fills) for fills in planned] == [30, 30]
    assert sum(r.gpus_allocated for r in results) == 30
    assert sorted(r.gpus_allocated for r in results)[0] == 0
    assert sum(r.conflicts for r in results) > 0
    assert Lease.objects.aggregate(n=Sum("gpu_count"))["n"] == 30
    _assert_no_gpu_allocated_twice()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_round_and_single_order_matches_racing_share_the_capacity(monkeypatch, seeded_catalogue):
    h800 = gpu("nvidia-h800-sxm")
    site = SiteFactory()
    for _ in range(3):
        OfferFactory(node=NodeFactory(site=site, gpu_count=8))
    OfferFactory(node=None, site=site, gpu_model=h800, gpus_total=24)
    orders = [OrderFactory(accepted_models=[h800], gpu_count=5) for _ in range(8)]
    real_commit = matching.round_commit
    _commit_when_all_planned(monkeypatch, 3)

    _run_in_threads(
        [
            matching.match_round,
            lambda: matching.order_match(order_id=orders[0].pk),
            lambda: matching.order_match(order_id=orders[1].pk),
        ]
    )

    # then nothing was allocated twice; what a loser of the race could not
    # take is left for the next round, which fills the market up exactly
    connections.close_all()
    _assert_no_gpu_allocated_twice()
    assert Lease.objects.aggregate(n=Sum("gpu_count"))["n"] <= 24
    monkeypatch.setattr(matching, "round_commit", real_commit)
    matching.match_round()
    assert Lease.objects.aggregate(n=Sum("gpu_count"))["n"] == 24
    _assert_no_gpu_allocated_twice()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_rebalancing_rounds_at_once_never_allocate_a_gpu_twice(monkeypatch, seeded_catalogue):
    # given three sites, each with 8 H800s at ¥20 and 8 at ¥25, and per site an
    # order bidding ¥30 and one bidding ¥22: each round plans 48 GPUs only by
    # moving the ¥30 orders onto the ¥25 offers (the rebalancing)
    h800 = gpu("nvidia-h800-sxm")
    for _ in range(3):
        site = SiteFactory()
        OfferFactory(node=NodeFactory(site=site), price_amount=2_000)
        OfferFactory(node=NodeFactory(site=site), price_amount=2_500)
    for _ in range(3):
        OrderFactory(accepted_models=[h800], gpu_count=8, hours=10, max_price_amount=3_000)
        OrderFactory(accepted_models=[h800], gpu_count=8, hours=10, max_price_amount=2_200)
    planned = _commit_when_all_planned(monkeypatch, 2)
    results = []

    _run_in_threads([lambda: results.append(matching.match_round())] * 2)

    # then both planned the rebalanced market, and it was allocated once
    connections.close_all()
    expected = sorted([(2_200, 2_000, 8)] * 3 + [(3_000, 2_500, 8)] * 3)
    assert [sorted((f.order.max_price, f.offer.price, f.gpus) for f in p) for p in planned] == [
        expected,
        expected,
    ]
    assert sorted(r.gpus_allocated for r in results) == [0, 48]
    assert (
        sorted(Lease.objects.values_list("order__max_price_amount", "price_amount"))
        == [(2_200, 2_000)] * 3 + [(3_000, 2_500)] * 3
    )
    _assert_no_gpu_allocated_twice()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_buyers_racing_for_the_last_gpus_of_a_book_level(monkeypatch, seeded_catalogue):
    # given the ¥20.00 level of the H800 book has its last 4 GPUs (an earlier
    # order took the other 4), the next level is ¥25.00, and two buyers each
    # bid ¥20.00 for 4 GPUs
    h800 = gpu("nvidia-h800-sxm")
    last = OfferFactory(price_amount=2_000)
    OfferFactory(price_amount=2_500)
    earlier = OrderFactory(accepted_models=[h800], gpu_count=4, max_price_amount=2_000)
    matching.order_match(order_id=earlier.pk)
    first, second = (
        OrderFactory(accepted_models=[h800], gpu_count=4, max_price_amount=2_000) for _ in range(2)
    )
    planned = _commit_when_all_planned(monkeypatch, 2)

    # when both orders are matched at once, from one snapshot
    _run_in_threads(
        [
            lambda: matching.order_match(order_id=first.pk),
            lambda: matching.order_match(order_id=second.pk),
        ]
    )

    # then both planned the same 4 GPUs, exactly one got them at ¥20.00, the
    # other stands on the book unfilled (never moved up to the ¥25.00 level)
    connections.close_all()
    assert [[(f.offer.id, f.gpus) for f in fills] for fills in planned] == [[(last.pk, 4)]] * 2
    lease = Lease.objects.exclude(order=earlier).get()
    assert (lease.offer_id, lease.gpu_count, lease.price_amount) == (last.pk, 4, 2_000)
    loser = second if lease.order_id == first.pk else first
    loser.refresh_from_db()
    assert (loser.status, loser.gpus_filled) == (Order.Status.OPEN, 0)
    last.refresh_from_db()
    assert last.gpus_available == 0
    _assert_no_gpu_allocated_twice()


def _assert_no_gpu_held_twice_at_any_moment():
    """Leases under notice and the leases pre-empting them share GPUs in turn:
    at every moment, the live leases of a node hold at most its GPUs."""
    for node in Node.objects.all():
        spans = list(
            node.leases.filter(status__in=["pending", "active"]).values_list(
                "starts_at", "ends_at", "gpu_count"
            )
        )
        for moment in {start for start, _end, _gpus in spans}:
            held = sum(g for start, end, g in spans if start <= moment < end)
            assert held <= node.gpu_count, (node, moment, held)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_pre_emptions_and_a_match_at_once_never_promise_a_gpu_twice(
    monkeypatch, seeded_catalogue
):
    # given 3 nodes of 8 GPUs, each listed at ¥20.00 and as interruptible at ¥12.00,
    # 6 GPUs of each on a spot lease (bid ¥15.00), and 6 standing orders bidding
    # ¥25.00 for 4 GPUs that stay
    from market.matching import preempt

    h800 = gpu("nvidia-h800-sxm")
    for _ in range(3):
        node = NodeFactory(gpu_count=8)
        OfferFactory(node=node, price_amount=2_000)
        OfferFactory(node=node, price_amount=1_200, interruptible=True)
        spot = OrderFactory(
            accepted_models=[h800], gpu_count=6, max_price_amount=1_500, interruptible=True
        )
        matching.order_match(order_id=spot.pk)
    assert Lease.objects.aggregate(n=Sum("gpu_count"))["n"] == 18
    for _ in range(6):
        OrderFactory(accepted_models=[h800], gpu_count=4, max_price_amount=2_500)
    late_spot = OrderFactory(
        accepted_models=[h800], gpu_count=6, max_price_amount=1_500, interruptible=True
    )
    # the racers plan from one snapshot before any of them locks or writes
    barrier = threading.Barrier(3, timeout=120)
    planned = []
    real_preempt_commit = preempt._commit
    real_round_commit = matching.round_commit

    def preempt_when_all_planned(fills, victims, **kwargs):
        planned.append(("pre-empt", sum(f.gpus for f in fills)))
        if len(planned) <= 3:
            barrier.wait()
        return real_preempt_commit(fills, victims, **kwargs)

    def match_when_all_planned(fills, **kwargs):
        planned.append(("match", sum(f.gpus for f in fills)))
        barrier.wait()
        return real_round_commit(fills, **kwargs)

    monkeypatch.setattr(preempt, "_commit", preempt_when_all_planned)
    monkeypatch.setattr(matching, "round_commit", match_when_all_planned)

    # when two pre-emption runs and a spot order's match run at once
    _run_in_threads(
        [
            preempt.orders_preempt,
            preempt.orders_preempt,
            lambda: matching.order_match(order_id=late_spot.pk),
        ]
    )

    # then both pre-emption runs planned the same notices, the spot order the 6
    # free GPUs; yet no moment sees a node hold more GPUs than it has, every
    # spot lease under notice ends where the leases pre-empting it start
    connections.close_all()
    assert sorted(planned[:3]) == [("match", 6), ("pre-empt", 4), ("pre-empt", 4)]
    _assert_no_gpu_held_twice_at_any_moment()
    for notice in Lease.objects.filter(preempt_at__isnull=False):
        assert notice.offer.interruptible and notice.ends_at == notice.preempt_at
    for order in Order.objects.all():
        assert (order.leases.aggregate(n=Sum("gpu_count"))["n"] or 0) == order.gpus_filled
    for offer in Offer.objects.all():
        leased = offer.leases.aggregate(n=Sum("gpu_count"))["n"] or 0
        assert leased == offer.gpus_total - offer.gpus_available
    # and the next run fills every standing order from what notices free
    monkeypatch.setattr(preempt, "_commit", real_preempt_commit)
    monkeypatch.setattr(matching, "round_commit", real_round_commit)
    preempt.orders_preempt()
    _assert_no_gpu_held_twice_at_any_moment()
    pre_empting = Lease.objects.filter(order__interruptible=False)
    assert pre_empting.aggregate(n=Sum("gpu_count"))["n"] == 24
