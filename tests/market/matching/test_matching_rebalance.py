"""The round's rebalancing (market/matching_book.py `Rebalance`) on random
small markets, in memory: whatever it moves, every fill stays within the
rules, nobody ends up with fewer GPUs than the priority pass gave them, and
the round trades at least as many GPUs in all."""

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.matching.book import Book, BookNode, BookOffer, BookOrder
from market.matching.engine import plan
from market.matching.plan import compatible
from market.matching.quote import exclusion_reasons

NOW = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
MODELS = (1, 2, 3)


@st.composite
def markets(draw):
    """(offers spec, orders spec): sites with nodes; node offers and site pool
    offers over the same nodes (so offers share capacity), a few starting
    later; orders of mixed sizes, lengths, model sets, some gang."""
    nodes, offers = [], []
    for site in range(draw(st.integers(1, 4))):
        for model in draw(st.sets(st.sampled_from(MODELS), min_size=1, max_size=2)):
            ids = []
            for _ in range(draw(st.integers(1, 3))):
                nodes.append((len(nodes) + 1, draw(st.sampled_from([1, 2, 4, 8]))))
                ids.append(nodes[-1][0])
            pool = draw(st.integers(0, 3))  # 0: node offers, 1: a pool, 2+: both
            for node_id in ids if pool != 1 else []:
                offers.append((site, model, [node_id], draw(st.integers(10, 40))))
            if pool:
                offers.append((site, model, ids, draw(st.integers(10, 40))))
    offers = [
        (*offer, draw(st.integers(1, 8)), draw(st.sampled_from([0, 0, 0, 3]))) for offer in offers
    ]
    orders = draw(
        st.lists(
            st.tuples(
                st.sets(st.sampled_from(MODELS), min_size=1),
                st.sampled_from([1, 2, 4, 8, 12]),
                st.sampled_from([1, 4, 8, 24, 72]),
                st.integers(10, 45),
                st.booleans() if draw(st.booleans()) else st.just(False),
                st.sampled_from([2, 2, 6]),
            ),
            min_size=1,
            max_size=20,
        )
    )
    return dict(nodes), offers, orders


@st.composite
def gang_markets(draw):
    """Sites of one model with node offers only, busy long orders and waiting
    gang orders: the shape in which a gang can take a site whose holders move."""
    nodes, offers = [], []
    for site in range(draw(st.integers(2, 4))):
        for _ in range(draw(st.integers(1, 3))):
            nodes.append((len(nodes) + 1, draw(st.sampled_from([2, 4, 8]))))
            offers.append((site, 1, [nodes[-1][0]], draw(st.integers(10, 30)), 8, 0))
    orders = draw(
        st.lists(
            st.tuples(
                st.just({1}),
                st.sampled_from([2, 4, 8]),
                st.sampled_from([24, 72]),
                st.integers(25, 45),
                st.just(False),
                st.just(6),
            ),
            min_size=1,
            max_size=6,
        )
    ) + draw(
        st.lists(
            st.tuples(
                st.just({1}),
                st.sampled_from([4, 8]),
                st.sampled_from([1, 4, 8]),
                st.integers(10, 30),
                st.just(True),
                st.just(6),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return dict(nodes), offers, orders


def build(spec):
    node_gpus, offer_spec, order_spec = spec
    nodes = {pk: BookNode(id=pk, free=gpus) for pk, gpus in node_gpus.items()}
    offers = []
    for pk, (site, model, node_ids, price, available, late) in enumerate(offer_spec, start=1):
        offers.append(
            BookOffer(
                id=pk,
                provider_id=site,
                site_id=site,
                gpu_model_id=model,
                price=price,
                currency="CNY",
                available=available,
                available_from=NOW + dt.timedelta(hours=late),
                available_until=NOW + dt.timedelta(days=10),
                min_hours=1,
                max_hours=720,
                green=Decimal("0.5"),
                region="甘肃",
                hub="gansu",
                nodes=[nodes[n] for n in node_ids],
                key=(price, 0, 0, pk, pk),
            )
        )
    orders = [
        BookOrder(
            id=pk,
            buyer_id=pk,
            need=need,
            hours=hours,
            max_price=bid,
            currency="CNY",
            models=frozenset(models),
            regions=frozenset(),
            hubs=frozenset(),
            min_green=Decimal(0),
            gang=gang,
            start_by=NOW + dt.timedelta(hours=start_by),
        )
        for pk, (models, need, hours, bid, gang, start_by) in enumerate(order_spec, start=1)
    ]
    orders.sort(key=lambda o: (-o.max_price * o.hours, -o.max_price, o.id))
    return orders, Book(offers), node_gpus, {o.id: o.available for o in offers}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets())
def test_rebalancing_keeps_the_rules_and_takes_no_gpu_from_anyone(spec):
    check(spec)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gang_markets())
def test_gang_placement_by_moving_holders_keeps_the_rules(spec):
    check(spec)


def check(spec):
    orders, book, _nodes, _available = build(spec)
    before = defaultdict(int)
    for fill in plan(orders, book, NOW, rebalance=False):
        before[fill.order.id] += fill.gpus

    orders, book, node_gpus, available = build(spec)
    fills = plan(orders, book, NOW)

    after, per_offer, per_node = defaultdict(int), defaultdict(int), defaultdict(int)
    sites = defaultdict(set)
    for fill in fills:
        order, offer = fill.order, fill.offer
        assert fill.gpus > 0
        assert offer.price <= order.max_price
        assert offer.gpu_model_id in order.models
        assert compatible(order, offer, NOW)
        assert fill.node_id in {node.id for node in offer.nodes}
        assert (fill.starts_at, fill.ends_at - fill.starts_at) == (
            max(NOW, offer.available_from),
            dt.timedelta(hours=order.hours),
        )
        after[order.id] += fill.gpus
        per_offer[offer.id] += fill.gpus
        per_node[fill.node_id] += fill.gpus
        sites[order.id].add(offer.site_id)
    for offer_id, gpus in per_offer.items():
        assert gpus <= available[offer_id]
    for node_id, gpus in per_node.items():
        assert gpus <= node_gpus[node_id]
    for order in orders:
        assert after[order.id] <= order.need
        assert after[order.id] >= before[order.id], "rebalancing took GPUs from an order"
        if order.gang and after[order.id]:
            assert after[order.id] == order.need
            assert len(sites[order.id]) == 1
    assert sum(after.values()) >= sum(before.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    markets(),
    st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("0.7")]),
    st.sampled_from([frozenset(), frozenset({"gansu"}), frozenset({"ningxia"})]),
    st.booleans(),
)
def test_a_quote_excludes_an_offer_exactly_when_the_engine_would_not_use_it(
    spec, green, hubs, verified_only
):
    """The reasons a quote gives are the engine's own test: none exactly when
    the offer is of an accepted model, within the bid and compatible."""
    orders, book, _nodes, _available = build(spec)
    for offer in book.offers:
        offer.verified = offer.id % 2 == 0
    for order in orders:
        order.min_green, order.hubs, order.verified_only = green, hubs, verified_only
        for offer in book.offers:
            reasons = exclusion_reasons(order, offer, NOW)
            usable = (
                offer.gpu_model_id in order.models
                and offer.price <= order.max_price
                and compatible(order, offer, NOW)
            )
            assert (not reasons) == usable, (reasons, order, offer)
            assert len(set(reasons)) == len(reasons)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sets(st.integers(1, 40)))
def test_orders_requiring_verified_capacity_never_land_on_an_unverified_offer(spec, verified_ids):
    """The rules of a round hold with verification in play, and a
    verified-only order's every fill is on a verified offer."""
    orders, book, node_gpus, available = build(spec)
    for offer in book.offers:
        offer.verified = offer.id in verified_ids
    for order in orders:
        order.verified_only = order.id % 2 == 0
    fills = plan(orders, book, NOW)
    per_offer, per_node = defaultdict(int), defaultdict(int)
    for fill in fills:
        assert compatible(fill.order, fill.offer, NOW)
        assert fill.offer.gpu_model_id in fill.order.models
        if fill.order.verified_only:
            assert fill.offer.verified
        per_offer[fill.offer.id] += fill.gpus
        per_node[fill.node_id] += fill.gpus
    assert all(gpus <= available[pk] for pk, gpus in per_offer.items())
    assert all(gpus <= node_gpus[pk] for pk, gpus in per_node.items())
