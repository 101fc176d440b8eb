"""An order-time match reads the cheapest part of the book first
(market.matching.engine.plan_from_cheapest) and more only when its plan
might differ. Property: whatever the book and the orders (several models and
sites, pool and node offers, regions, gang orders, bids above and below the
prefix's price), the fills are exactly those planned on the whole book."""

import datetime as dt

import pytest
import time_machine
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.matching import engine
from market.matching.book import book_cutoff, book_load, orders_load
from market.models import GPUModel, Order
from tests.factories import NodeFactory, OfferFactory, OrderFactory, SiteFactory, gpu

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
MODELS = ["nvidia-h800-sxm", "huawei-ascend-910b3"]

# (site, model, GPUs on the node, ask in ¥, a pool offer of the site instead of the node's own)
OFFERS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(MODELS),
        st.sampled_from([2, 4, 8]),
        st.integers(10, 40),
        st.booleans(),
    ),
    min_size=1,
    max_size=10,
)
# (GPUs, bid in ¥, accepted models, gang, region)
ORDERS = st.lists(
    st.tuples(
        st.sampled_from([1, 2, 4, 8, 12]),
        st.integers(8, 45),
        st.sampled_from([MODELS[:1], MODELS[1:], MODELS]),
        st.booleans(),
        st.sampled_from(["", "甘肃", "贵州"]),
    ),
    min_size=1,
    max_size=6,
)


def _as_rows(fills) -> list[tuple]:
    return [(f.order.id, f.offer.id, f.node_id, f.gpus, f.starts_at, f.ends_at) for f in fills]


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(offers=OFFERS, orders=ORDERS)
def test_the_cheapest_part_of_the_book_plans_what_the_whole_book_plans(offers, orders, monkeypatch):
    # The smallest prefix: one GPU's worth, growing twofold - every step is exercised.
    monkeypatch.setattr(engine, "SNAPSHOT_MIN_GPUS", 1)
    monkeypatch.setattr(engine, "SNAPSHOT_NEED_FACTOR", 0)
    monkeypatch.setattr(engine, "SNAPSHOT_GROWTH", 2)
    with time_machine.travel(T0, tick=False), transaction.atomic():
        sites = [SiteFactory(region=region) for region in ("甘肃", "贵州", "甘肃")]
        for site, model, count, price, pool in offers:
            node = NodeFactory(site=sites[site], gpu_model=gpu(model), gpu_count=count)
            OfferFactory(
                node=None if pool else node,
                site=sites[site],
                gpu_model=gpu(model),
                gpus_total=count,
                price_amount=price * 100,
            )
        for gpus, bid, models, gang, region in orders:
            OrderFactory(
                accepted_models=[gpu(m) for m in models],
                gpu_count=gpus,
                max_price_amount=bid * 100,
                gang=gang,
                regions=[region] if region else [],
            )
        now = T0
        queryset = Order.objects.order_by("id")
        catalogue = list(GPUModel.objects.all())
        planned = [o for o in orders_load(queryset, models=catalogue) if o.need > 0 and o.models]
        if planned:
            whole = engine.plan(planned, book_load(now=now), now, rebalance=False)
            again = [o for o in orders_load(queryset, models=catalogue) if o.need > 0 and o.models]
            from_cheapest = engine.plan_from_cheapest(again, now=now)
            assert _as_rows(from_cheapest) == _as_rows(whole)
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_a_gang_order_filled_inside_the_prefix_still_looks_past_it(monkeypatch):
    """Site X sells 8 GPUs at ¥20 inside the prefix; site Y sells 4 at ¥10 and
    4 more at ¥21, past it: Y costs ¥124 an hour against X's ¥160, so the gang
    order goes to Y, as on the whole book."""
    monkeypatch.setattr(engine, "SNAPSHOT_MIN_GPUS", 1)
    monkeypatch.setattr(engine, "SNAPSHOT_NEED_FACTOR", 0)
    monkeypatch.setattr(engine, "SNAPSHOT_GROWTH", 2)
    with time_machine.travel(T0, tick=False):
        site_x, site_y = SiteFactory(), SiteFactory()
        x = OfferFactory(node=NodeFactory(site=site_x, gpu_count=8), price_amount=2_000)
        y_cheap = OfferFactory(node=NodeFactory(site=site_y, gpu_count=4), price_amount=1_000)
        y_dear = OfferFactory(node=NodeFactory(site=site_y, gpu_count=4), price_amount=2_100)
        order = OrderFactory(
            accepted_models=[gpu(MODELS[0])], gpu_count=8, max_price_amount=3_000, gang=True
        )
        leases = engine.order_match(order_id=order.pk)
    assert sorted((lease.offer_id, lease.gpu_count) for lease in leases) == sorted(
        [(y_cheap.pk, 4), (y_dear.pk, 4)]
    )
    assert x.pk not in {lease.offer_id for lease in leases}


@pytest.mark.django_db
def test_the_cutoff_is_the_price_where_the_cheapest_offers_first_hold_enough():
    h800 = gpu("nvidia-h800-sxm")
    for price, gpus in ((100, 2), (200, 4), (200, 4), (300, 8)):
        OfferFactory(node=NodeFactory(gpu_count=gpus), gpu_model=h800, price_amount=price)
    # sold out: never counted, however cheap
    OfferFactory(node=NodeFactory(gpu_count=8), gpu_model=h800, price_amount=50, gpus_available=0)
    now = dt.datetime.now(dt.UTC)

    def cutoff(**kwargs):
        return book_cutoff(now=now, model_ids=[h800.pk], **kwargs)

    assert cutoff(gpus=2) == 100
    assert cutoff(gpus=3) == 200
    assert cutoff(gpus=10) == 200  # both offers at 200: ties fall inside the prefix
    assert cutoff(gpus=11) == 300
    assert cutoff(gpus=19) is None  # the whole book holds 18
    assert cutoff(gpus=11, max_price=250) is None
    assert cutoff(offers=2) == 200
    assert cutoff(offers=4) == 300
    assert cutoff(offers=5) is None
    with transaction.atomic():  # inside a caller's transaction as well
        assert cutoff(gpus=11) == 300
