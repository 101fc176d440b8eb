"""Standing limit orders on the book: good-till versus immediate-or-cancel,
partial fills over time, and quotes that say why each offer was left out."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Organisation
from market.matching import match_round, order_match, order_quote_explain
from market.models import Lease, Order
from market.orders import order_create, orders_expire
from tests.factories import NodeFactory, OfferFactory, OrganisationFactory, SiteFactory, gpu

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)


def buyer() -> Organisation:
    return OrganisationFactory(kind=Organisation.Kind.BUYER)


def h800_offer(*, gpus: int, price: int, **kwargs):
    return OfferFactory(node=NodeFactory(gpu_count=gpus, **kwargs), price_amount=price)


def place(**kwargs) -> Order:
    values = {
        "buyer": buyer(),
        "placed_by": None,
        "gpu_count": 8,
        "hours": 10,
        "max_price_amount": 3_000,
        "start_by": timezone.now() + dt.timedelta(days=2),
        "accepted_models": [gpu("nvidia-h800-sxm")],
    }
    order, _created = order_create(**{**values, **kwargs})
    order.refresh_from_db()
    return order


def test_a_standing_order_fills_across_three_offers_over_time():
    with time_machine.travel(T0, tick=False):
        # given a good-till order for 8 H800 at most ¥30.00 and one 2-GPU offer at ¥21.00
        first = h800_offer(gpus=2, price=2_100)
        order = place(good_till=T0 + dt.timedelta(days=1))
        order_match(order_id=order.pk)  # the task its placing queued
        order.refresh_from_db()
        # then it takes those 2 at once and stands on the book for the other 6
        assert (order.status, order.gpus_filled) == (Order.Status.PARTIALLY_FILLED, 2)

    with time_machine.travel(T0 + dt.timedelta(hours=3), tick=False):
        # when a 4-GPU offer at ¥24.50 arrives three hours later, the round fills 4 more
        second = h800_offer(gpus=4, price=2_450)
        h800_offer(gpus=8, price=3_001)  # above the bid: never taken
        match_round()
        order.refresh_from_db()
        assert (order.status, order.gpus_filled) == (Order.Status.PARTIALLY_FILLED, 6)

    with time_machine.travel(T0 + dt.timedelta(hours=7), tick=False):
        # and a third offer (¥29.99) completes it
        third = h800_offer(gpus=8, price=2_999)
        match_round()

    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.FILLED, 8)
    leases = list(Lease.objects.filter(order=order).order_by("starts_at"))
    assert [(lease.offer_id, lease.gpu_count, lease.price_amount) for lease in leases] == [
        (first.pk, 2, 2_100),
        (second.pk, 4, 2_450),
        (third.pk, 2, 2_999),
    ]
    assert [lease.starts_at for lease in leases] == [
        T0,
        T0 + dt.timedelta(hours=3),
        T0 + dt.timedelta(hours=7),
    ]
    # each lease names the model it delivers, and the order accepted it; the cost to the fen
    assert {lease.node.gpu_model.slug for lease in leases} == {"nvidia-h800-sxm"}
    assert (
        sum(lease.gpu_count * lease.price_amount * 10 for lease in leases) == 199_980
    )  # ¥420.00 + ¥980.00 + ¥599.80
    third.refresh_from_db()
    assert third.gpus_available == 6


def test_good_till_leaves_the_book_when_it_passes():
    with time_machine.travel(T0, tick=False):
        order = place(good_till=T0 + dt.timedelta(hours=2))
        assert order.status == Order.Status.OPEN
    with time_machine.travel(T0 + dt.timedelta(hours=2), tick=False):
        h800_offer(gpus=8, price=2_000)
        match_round()  # the order no longer stands: not matched
        assert orders_expire() == 1
    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.EXPIRED, 0)
    assert not Lease.objects.exists()


def test_immediate_or_cancel_takes_what_is_there_and_releases_the_rest():
    # given 3 GPUs on offer for an 8-GPU order
    offer = h800_offer(gpus=3, price=2_200)

    ioc = place(time_in_force=Order.TimeInForce.IMMEDIATE_OR_CANCEL)

    # then it is matched in the call itself and the unfilled 5 are released
    assert (ioc.status, ioc.gpus_filled, ioc.gpus_unfilled) == (Order.Status.EXPIRED, 3, 5)
    assert ioc.events.last().reason == "immediate or cancel: unfilled GPUs released"
    lease = Lease.objects.get(order=ioc)
    assert (lease.offer_id, lease.gpu_count, lease.price_amount) == (offer.pk, 3, 2_200)
    # and a later offer does not reach it, whereas a good-till order waits for it
    good_till = place()
    assert (good_till.status, good_till.gpus_filled) == (Order.Status.OPEN, 0)
    later = h800_offer(gpus=8, price=2_100)
    match_round()
    ioc.refresh_from_db()
    good_till.refresh_from_db()
    assert ioc.gpus_filled == 3
    assert (good_till.status, good_till.gpus_filled) == (Order.Status.FILLED, 8)
    assert Lease.objects.get(order=good_till).offer_id == later.pk


def test_immediate_or_cancel_with_nothing_on_offer_stores_an_expired_order():
    ioc = place(time_in_force=Order.TimeInForce.IMMEDIATE_OR_CANCEL)
    assert (ioc.status, ioc.gpus_filled) == (Order.Status.EXPIRED, 0)
    h800_offer(gpus=8, price=2_000)
    match_round()
    assert not Lease.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"good_till": T0 - dt.timedelta(hours=1)}, "good_till"),
        ({"good_till": T0 + dt.timedelta(days=3)}, "good_till"),  # past start-by
        (
            {"time_in_force": "ioc", "good_till": T0 + dt.timedelta(hours=1)},
            "good_till",
        ),
        ({"time_in_force": "fok"}, "time_in_force"),
    ],
)
def test_a_bad_time_in_force_is_refused_and_nothing_stored(kwargs, field):
    from core.errors import ApplicationError

    with time_machine.travel(T0, tick=False), pytest.raises(ApplicationError) as refused:
        place(start_by=T0 + dt.timedelta(days=2), **kwargs)
    assert field in refused.value.errors
    assert not Order.objects.exists()


def test_a_quote_lists_each_excluded_offer_with_its_reasons():
    h800, h20 = gpu("nvidia-h800-sxm"), gpu("nvidia-h20")
    green = SiteFactory(green_share=Decimal("0.800"))
    grey = SiteFactory(green_share=Decimal("0.200"))
    used = h800_offer(gpus=4, price=2_000, site=green)
    other_model = OfferFactory(node=NodeFactory(site=green, gpu_model=h20), price_amount=900)
    too_dear = h800_offer(gpus=8, price=3_500, site=green)
    too_grey = h800_offer(gpus=8, price=1_800, site=grey)
    too_late = OfferFactory(
        node=NodeFactory(site=green),
        price_amount=1_900,
        available_from=timezone.now() + dt.timedelta(days=3),
        available_until=timezone.now() + dt.timedelta(days=9),
    )
    spare = h800_offer(gpus=8, price=2_600, site=green)
    offline = h800_offer(gpus=8, price=1_500, site=green, state="offline")
    second = h800_offer(gpus=8, price=2_500, site=green)

    quote = order_quote_explain(
        model_ids=frozenset({h800.pk}),
        gpu_count=8,
        hours=10,
        currency="CNY",
        start_by=timezone.now() + dt.timedelta(days=1),
        now=timezone.now(),
        max_price_amount=3_000,
        min_green_share=Decimal("0.5"),
    )

    assert [(f.offer_id, f.gpus, f.price_amount) for f in quote.fills] == [
        (used.pk, 4, 2_000),
        (second.pk, 4, 2_500),
    ]
    assert quote.gpus == 8
    assert {e.offer_id: e.reasons for e in quote.excluded} == {
        other_model.pk: ("model",),
        too_dear.pk: ("price",),
        too_grey.pk: ("green_share",),
        too_late.pk: ("window",),
        spare.pk: ("not_needed",),
        offline.pk: ("capacity",),
    }
    # nothing was placed or held
    assert not Lease.objects.exists()
    used.refresh_from_db()
    assert used.gpus_available == 4


def test_a_gang_quote_says_which_sites_cannot_hold_the_order():
    small, big = SiteFactory(), SiteFactory()
    cheap_small = h800_offer(gpus=4, price=1_800, site=small)
    whole = h800_offer(gpus=8, price=2_200, site=big)

    quote = order_quote_explain(
        model_ids=frozenset({gpu("nvidia-h800-sxm").pk}),
        gpu_count=8,
        hours=4,
        currency="CNY",
        start_by=timezone.now() + dt.timedelta(days=1),
        now=timezone.now(),
        gang=True,
    )

    assert [(f.offer_id, f.gpus) for f in quote.fills] == [(whole.pk, 8)]
    assert [(e.offer_id, e.reasons) for e in quote.excluded] == [(cheap_small.pk, ("gang_site",))]


def test_a_quote_explains_the_cheapest_offers_left_out_as_the_whole_book_would():
    # given a book of a dozen offers, ties at one price, one offline node and
    # another model among them; the quote explains only the 2 cheapest left out
    h800 = gpu("nvidia-h800-sxm")
    for price in (1_000, 1_200, 1_200, 1_200, 1_500, 1_800, 2_000, 2_000, 2_600):
        h800_offer(gpus=4, price=price)
    h800_offer(gpus=8, price=1_200, state="offline")
    OfferFactory(node=NodeFactory(gpu_model=gpu("huawei-ascend-910b3")), price_amount=900)
    ask = {
        "model_ids": frozenset({h800.pk}),
        "gpu_count": 6,
        "hours": 10,
        "currency": "CNY",
        "start_by": timezone.now() + dt.timedelta(days=1),
        "now": timezone.now(),
        "max_price_amount": 2_500,
    }

    # when
    cheapest = order_quote_explain(**ask, explained=2)
    whole = order_quote_explain(**ask, explained=1_000)

    # then the same fills, the same first two exclusions, the same total
    assert [(f.offer_id, f.gpus) for f in cheapest.fills] == [
        (f.offer_id, f.gpus) for f in whole.fills
    ]
    assert cheapest.gpus == 6
    assert cheapest.excluded[:2] == whole.excluded[:2]
    assert len(cheapest.excluded) < len(whole.excluded) == 9  # 11 live, 2 in the quote
    assert cheapest.excluded_total == whole.excluded_total == 9
    assert [e.reasons for e in whole.excluded[:4]] == [
        ("model",),  # ¥9
        ("not_needed",),  # the two ¥12 offers the quote did not need
        ("not_needed",),
        ("capacity",),  # ¥12 on the offline node
    ]
