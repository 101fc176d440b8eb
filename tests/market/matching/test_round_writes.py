"""A round's writes on PostgreSQL (binary COPY of the leases and their events)
are the same rows the ORM path writes on any database."""

import datetime as dt

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django.utils import timezone

from market.matching import match_round, store
from market.models import Lease, LeaseEvent, Offer, Order, OrderEvent
from tests.factories import LeaseFactory, NodeFactory, OfferFactory, OrderFactory, SiteFactory, gpu

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
H800 = "nvidia-h800-sxm"

_LEASE_FIELDS = [
    "order_id",
    "offer_id",
    "node_id",
    "buyer_id",
    "provider_id",
    "gpu_count",
    "price_amount",
    "currency",
    "starts_at",
    "ends_at",
    "previous_lease_id",
    "resold_from_id",
    "status",
    "created_at",
    "rearm",
    "ended_at",
    "preempt_at",
    "original_ends_at",
]


def _written(lease_ids: list[int]) -> dict:
    """Everything the writes left, keyed by what does not depend on the ids drawn."""
    leases = {pk: tuple(row) for pk, *row in Lease.objects.values_list("pk", *_LEASE_FIELDS)}
    return {
        "returned": [leases[pk] for pk in lease_ids],
        "leases": sorted(leases.values()),
        "lease_events": sorted(
            (leases[e.lease_id], e.from_status, e.to_status, e.reason, e.at, e.actor_id)
            for e in LeaseEvent.objects.all()
        ),
        "order_events": sorted(
            OrderEvent.objects.values_list("order_id", "from_status", "to_status", "reason", "at")
        ),
        "orders": sorted(Order.objects.values_list("pk", "status", "gpus_filled")),
        "offers": sorted(Offer.objects.values_list("pk", "status", "gpus_available")),
    }


def _both_ways(monkeypatch, write) -> tuple[dict, dict]:
    """`write()` by COPY, rolled back, then through the ORM: what each left."""
    savepoint = transaction.savepoint()
    by_copy = _written(write())
    transaction.savepoint_rollback(savepoint)
    with monkeypatch.context() as patch:
        patch.setattr(store, "_leases_copy", store._leases_create)
        by_orm = _written(write())
    return by_copy, by_orm


@time_machine.travel(T0, tick=False)
def test_a_round_writes_the_same_rows_by_copy_as_through_the_orm(monkeypatch):
    # given two sites' node offers and a pool, orders that fill whole, in part
    # across offers, and a gang order that takes one site's GPUs
    h800 = gpu(H800)
    sites = [SiteFactory(), SiteFactory()]
    for number, site in enumerate(sites):
        for _ in range(2):
            OfferFactory(node=NodeFactory(site=site, gpu_count=8), price_amount=2_000 + number)
    pool_site = SiteFactory()
    for _ in range(2):
        NodeFactory(site=pool_site, gpu_count=8)
    OfferFactory(node=None, site=pool_site, gpu_model=h800, gpus_total=16, price_amount=2_100)
    for gpus, hours, gang in [
        (8, 4, False),
        (12, 2, False),
        (3, 8, False),
        (16, 1, True),
        (9, 3, False),
    ]:
        OrderFactory(accepted_models=[h800], gpu_count=gpus, hours=hours, gang=gang)

    # when the same round is written both ways
    by_copy, by_orm = _both_ways(monkeypatch, lambda: match_round(now=timezone.now()).lease_ids)

    # then
    assert by_copy == by_orm
    assert len(by_copy["leases"]) >= 5
    assert sum(row[5] for row in by_copy["leases"]) == 48  # every GPU of the book placed


@time_machine.travel(T0, tick=False)
def test_lease_rows_with_a_previous_lease_and_a_resold_block_copy_as_the_orm_writes_them(
    monkeypatch,
):
    # given a lease the new ones point back to, and two leases' worth of rows
    old = LeaseFactory()
    order = OrderFactory(accepted_models=[gpu(H800)], gpu_count=4)
    offer = OfferFactory()
    start = T0 + dt.timedelta(hours=1)
    rows = [
        (order.pk, offer.pk, offer.node_id, order.buyer_id, offer.provider_id, 3, 2_001, "CNY",
         start, start + dt.timedelta(hours=5), old.pk, None),
        (order.pk, offer.pk, offer.node_id, order.buyer_id, old.buyer_id, 1, 2_500, "CNY",
         start, start + dt.timedelta(hours=2), None, old.pk),
    ]  # fmt: skip

    # when
    by_copy, by_orm = _both_ways(monkeypatch, lambda: store._leases_insert(rows, now=T0))

    # then
    assert by_copy == by_orm
    assert [row[:12] for row in by_copy["returned"]] == rows


@time_machine.travel(T0, tick=False)
def test_a_lease_row_the_table_refuses_raises_djangos_integrity_error_by_copy():
    order = OrderFactory(accepted_models=[gpu(H800)])
    offer = OfferFactory()
    start = T0 + dt.timedelta(hours=1)
    free = (order.pk, offer.pk, offer.node_id, order.buyer_id, offer.provider_id, 1, 0, "CNY",
            start, start + dt.timedelta(hours=1), None, None)  # fmt: skip

    with pytest.raises(IntegrityError), transaction.atomic():
        store._leases_copy([free], now=T0)

    assert not Lease.objects.exists()
    assert not LeaseEvent.objects.exists()
