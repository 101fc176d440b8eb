"""Placing orders never leaves one matching task per order behind: while a run
is queued, orders placed meanwhile publish nothing, and that run matches them
all, in the order they were placed."""

import pytest

from core.models import OutboxMessage
from market.models import Lease, Order
from market.tasks import match_order
from tests.factories import OfferFactory
from tests.market.test_api import order_payload
from tests.support import celery_broker

pytestmark = pytest.mark.django_db


def test_a_burst_of_orders_queues_one_matching_run_that_matches_them_all(
    buyer_client, django_capture_on_commit_callbacks
):
    # given room for three orders of 8 GPUs, and a broker that holds messages
    for price in (2_100, 2_200, 2_300):
        OfferFactory(node__site__green_share="0.700", price_amount=price)
    # when five orders are placed before any worker runs
    with celery_broker("memory://"), django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):
            response = buyer_client.post("/api/v1/orders/", order_payload(), format="json")
            assert response.status_code == 201, response.content
    # then one run was published, the other rows wait for it
    rows = list(OutboxMessage.objects.order_by("pk"))
    assert [row.published_at is not None for row in rows] == [True, False, False, False, False]
    # when that one run runs
    first = Order.objects.order_by("pk").first()
    assert match_order(first.pk) == 3
    # then the three first orders are filled at the cheapest asks in turn, the rest wait
    orders = list(Order.objects.order_by("pk"))
    assert [o.status for o in orders] == ["filled"] * 3 + ["open"] * 2
    assert [Lease.objects.get(order=o).price_amount for o in orders[:3]] == [2_100, 2_200, 2_300]
    # and every row is done: the relay has nothing to send
    assert (
        not OutboxMessage.objects.filter(completed_at__isnull=True).exclude(pk=rows[0].pk).exists()
    )


def test_an_order_placed_after_a_run_started_queues_the_next_run(
    buyer_client, django_capture_on_commit_callbacks
):
    OfferFactory(node__site__green_share="0.700", price_amount=2_100)
    with celery_broker("memory://"):
        with django_capture_on_commit_callbacks(execute=True):
            buyer_client.post("/api/v1/orders/", order_payload(), format="json")
        with django_capture_on_commit_callbacks(execute=True):
            buyer_client.post("/api/v1/orders/", order_payload(), format="json")
        # the first run is still queued: the second order waits for it
        assert OutboxMessage.objects.filter(published_at__isnull=False).count() == 1
        match_order(Order.objects.order_by("pk").first().pk)  # the run starts (and ends)
        with django_capture_on_commit_callbacks(execute=True):
            buyer_client.post("/api/v1/orders/", order_payload(), format="json")
    assert OutboxMessage.objects.filter(published_at__isnull=False).count() == 2


@pytest.mark.parametrize(("window", "countdown"), [(0.2, 0.2), (0, None)])
def test_the_run_starts_a_window_after_the_first_order_and_takes_the_orders_of_that_window(
    buyer_client, django_capture_on_commit_callbacks, monkeypatch, settings, window, countdown
):
    # MATCH_COALESCE_SECONDS: under a stream of placements, one run per window, not per order
    settings.MATCH_COALESCE_SECONDS = window
    published = []
    monkeypatch.setattr(match_order, "apply_async", lambda **kwargs: published.append(kwargs))
    with celery_broker("memory://"), django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            response = buyer_client.post("/api/v1/orders/", order_payload(), format="json")
            assert response.status_code == 201, response.content
    # one run, published with the first order, due once the window has passed
    assert [kwargs["countdown"] for kwargs in published] == [countdown]
    assert published[0]["args"] == [Order.objects.order_by("pk").first().pk]
