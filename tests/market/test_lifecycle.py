import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from market.leases import leases_advance
from market.matching import order_match
from market.models import Lease, Offer, Order
from market.orders import orders_expire
from market.tasks import leases_advance as leases_advance_task
from market.tasks import match_round as match_round_task
from tests.factories import OfferFactory, OrderFactory, gpu

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@time_machine.travel(T0, tick=False)
def test_a_lease_goes_pending_active_completed_and_gives_its_gpus_back():
    offer = OfferFactory()
    order = OrderFactory(accepted_models=[gpu("nvidia-h800-sxm")], gpu_count=8, hours=2)
    (lease,) = order_match(order_id=order.pk)
    assert (lease.status, lease.starts_at, lease.ends_at) == (
        "pending",
        T0,
        T0 + dt.timedelta(hours=2),
    )

    assert leases_advance() == (1, 0)
    lease.refresh_from_db()
    assert lease.status == "active"

    with time_machine.travel(T0 + dt.timedelta(hours=2, seconds=1), tick=False):
        assert leases_advance_task.delay().get() == [0, 1]

    lease.refresh_from_db()
    offer.refresh_from_db()
    assert (lease.status, lease.ended_at) == ("completed", T0 + dt.timedelta(hours=2))
    assert offer.gpus_available == 8
    assert list(lease.events.values_list("from_status", "to_status")) == [
        ("", "pending"),
        ("pending", "active"),
        ("active", "completed"),
    ]


@time_machine.travel(T0, tick=False)
def test_a_lease_on_a_withdrawn_offer_does_not_revive_it():
    offer = OfferFactory()
    order = OrderFactory(accepted_models=[gpu("nvidia-h800-sxm")], gpu_count=4, hours=1)
    order_match(order_id=order.pk)
    Offer.objects.filter(pk=offer.pk).update(status="withdrawn", gpus_available=0)

    with time_machine.travel(T0 + dt.timedelta(hours=2), tick=False):
        leases_advance()

    offer.refresh_from_db()
    assert offer.gpus_available == 0
    assert Lease.objects.get().status == "completed"


def test_orders_expire_at_their_start_by_and_release_the_unfilled_part():
    OfferFactory()  # 8 GPUs
    order = OrderFactory(
        accepted_models=[gpu("nvidia-h800-sxm")],
        gpu_count=12,
        start_by=timezone.now() + dt.timedelta(hours=1),
    )
    untouched = OrderFactory(start_by=timezone.now() + dt.timedelta(hours=5))
    order_match(order_id=order.pk)

    with time_machine.travel(timezone.now() + dt.timedelta(hours=2)):
        assert orders_expire() == 1
        assert match_round_task.delay().get() == 0

    order.refresh_from_db()
    untouched.refresh_from_db()
    assert (order.status, order.gpus_filled) == (Order.Status.EXPIRED, 8)
    assert untouched.status == Order.Status.OPEN
    assert order.events.last().reason.startswith("start-by deadline or good-till passed")
    assert Lease.objects.get().status == "pending"  # the filled part runs on


def test_the_matching_task_is_idempotent():
    OfferFactory()
    order = OrderFactory(accepted_models=[gpu("nvidia-h800-sxm")], gpu_count=8)

    from market.tasks import match_order

    assert match_order.delay(order.pk).get() == 1
    assert match_order.delay(order.pk).get() == 0
    assert Lease.objects.count() == 1
