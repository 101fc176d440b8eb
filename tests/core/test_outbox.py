"""The transactional outbox (core/outbox.py): work written with the change,
published after commit, republished by the relay until it has run once."""

import datetime as dt
import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.utils import timezone

from core.models import OutboxMessage
from core.outbox import outbox_backlog, outbox_relay
from market.models import Lease, Order
from tests.factories import OfferFactory, UserFactory
from tests.market.test_api import order_payload
from tests.support import celery_broker, unused_redis_url

pytestmark = pytest.mark.django_db

LATER = dt.timedelta(seconds=settings.OUTBOX_REDELIVER_SECONDS + 1)


def test_an_order_placed_while_the_broker_is_down_answers_201_and_the_relay_matches_it_once(
    buyer_client, buyer_org, django_capture_on_commit_callbacks
):
    # given an offer that fits, and a broker nobody answers on
    offer = OfferFactory(node__site__green_share="0.700", price_amount=2_100)

    # when the buyer places an order
    with celery_broker(unused_redis_url()), django_capture_on_commit_callbacks(execute=True):
        response = buyer_client.post("/api/v1/orders/", order_payload(), format="json")

    # then it is committed and answered 201, unmatched for now; the failure is logged
    assert response.status_code == 201, response.content
    order = Order.objects.get()
    assert (order.status, order.gpus_filled) == ("open", 0)
    assert not Lease.objects.exists()
    message = OutboxMessage.objects.get()
    assert (message.task_name, message.args, message.completed_at) == (
        "market.match_order",
        [order.pk],
        None,
    )
    assert "Connection refused" in message.last_error
    assert outbox_backlog().waiting == 1

    # when the broker is back (tasks in-process) and the relay runs, twice
    assert outbox_relay(now=timezone.now() + LATER) == 1
    assert outbox_relay(now=timezone.now() + LATER) == 0

    # then the order is matched at the ask, once
    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == ("filled", 8)
    lease = Lease.objects.get()
    assert (lease.offer, lease.price_amount, lease.gpu_count) == (offer, 2_100, 8)
    assert OutboxMessage.objects.get().completed_at is not None
    assert outbox_backlog().waiting == 0


def test_the_relay_leaves_alone_a_row_published_recently(
    buyer_client, django_capture_on_commit_callbacks
):
    OfferFactory(node__site__green_share="0.700", price_amount=2_100)
    with celery_broker(unused_redis_url()), django_capture_on_commit_callbacks(execute=True):
        buyer_client.post("/api/v1/orders/", order_payload(), format="json")

    # a failed publish backs off a little before the relay tries again
    assert outbox_relay() == 0
    assert not Lease.objects.exists()
    assert outbox_relay(now=timezone.now() + LATER) == 1
    assert Lease.objects.count() == 1


def test_republishing_a_task_that_already_ran_duplicates_nothing(
    buyer_client, django_capture_on_commit_callbacks
):
    # given an order matched at once (embedded mode) ...
    OfferFactory(node__site__green_share="0.700", price_amount=2_100)
    with django_capture_on_commit_callbacks(execute=True):
        buyer_client.post("/api/v1/orders/", order_payload(), format="json")
    assert Lease.objects.count() == 1
    # ... whose completion mark was lost (a worker killed between commit and ack)
    OutboxMessage.objects.update(completed_at=None, available_at=timezone.now())

    # when the relay publishes it again
    assert outbox_relay() == 1

    # then the match ran again and found nothing left to do
    assert Lease.objects.count() == 1
    assert Order.objects.get().gpus_filled == 8
    assert OutboxMessage.objects.get().completed_at is not None


def test_a_task_that_fails_stays_in_the_outbox_with_its_error_until_it_succeeds(
    buyer_client, django_capture_on_commit_callbacks, monkeypatch
):
    OfferFactory(node__site__green_share="0.700", price_amount=2_100)

    def broken(*, order_ids):
        raise RuntimeError("matching engine unavailable")

    with monkeypatch.context() as patch:
        patch.setattr("market.matching.orders_match", broken)
        with django_capture_on_commit_callbacks(execute=True):
            response = buyer_client.post("/api/v1/orders/", order_payload(), format="json")

    assert response.status_code == 201
    message = OutboxMessage.objects.get()
    assert message.completed_at is None and "matching engine unavailable" in message.last_error
    backlog = outbox_backlog()
    assert (backlog.waiting, backlog.failing) == (1, 1)

    assert outbox_relay(now=timezone.now() + LATER) == 1
    assert Lease.objects.count() == 1
    message.refresh_from_db()
    assert (message.completed_at is not None, message.last_error) == (True, "")


def test_completed_rows_are_forgotten_after_the_retention_period(
    buyer_client, django_capture_on_commit_callbacks
):
    OfferFactory(node__site__green_share="0.700", price_amount=2_100)
    with django_capture_on_commit_callbacks(execute=True):
        buyer_client.post("/api/v1/orders/", order_payload(), format="json")

    outbox_relay(now=timezone.now() + dt.timedelta(days=settings.OUTBOX_RETENTION_DAYS - 1))
    assert OutboxMessage.objects.count() == 1
    outbox_relay(now=timezone.now() + dt.timedelta(days=settings.OUTBOX_RETENTION_DAYS + 1))
    assert not OutboxMessage.objects.exists()


def test_the_operator_overview_shows_the_outbox_backlog(
    client, buyer_client, django_capture_on_commit_callbacks
):
    client.force_login(UserFactory(username="operator", is_staff=True))
    assert "all delivered" in client.get("/operator/").content.decode()

    OfferFactory(node__site__green_share="0.700", price_amount=2_100)
    with celery_broker(unused_redis_url()), django_capture_on_commit_callbacks(execute=True):
        for key in ("k-1", "k-2"):
            buyer_client.post(
                "/api/v1/orders/", order_payload(), format="json", HTTP_IDEMPOTENCY_KEY=key
            )
    OutboxMessage.objects.filter(pk=OutboxMessage.objects.first().pk).update(
        created_at=timezone.now() - dt.timedelta(minutes=42)
    )

    response = client.get("/operator/")

    backlog = response.context["overview"].outbox
    assert (backlog.waiting, backlog.failing) == (2, 2)
    assert dt.timedelta(minutes=42) <= backlog.age() < dt.timedelta(minutes=43)
    body = response.content.decode()
    assert "Tasks waiting in the outbox" in body and "oldest waiting 42" in body
    assert "2 failing" in body
    assert "/admin/core/outboxmessage/?completed_at__isempty=1" in body


def test_the_relay_is_on_the_beat_schedule_and_registered():
    from celery import current_app

    current_app.loader.import_default_modules()
    entry = settings.CELERY_BEAT_SCHEDULE["core-outbox-relay"]
    assert entry["task"] == "core.outbox_relay" and entry["task"] in current_app.tasks
    assert entry["schedule"] < settings.OUTBOX_REDELIVER_SECONDS


def _settings_in_a_fresh_process(**env: str) -> dict:
    code = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps([s.CELERY_BROKER_TRANSPORT_OPTIONS, s.OUTBOX_REDELIVER_SECONDS]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=True,
    )
    return json.loads(result.stdout)


def test_the_visibility_timeout_and_the_redelivery_follow_the_task_time_limit():
    # a crashed worker's money task comes back a minute after the longest a task may run
    assert _settings_in_a_fresh_process() == [{"visibility_timeout": 240}, 240]
    assert _settings_in_a_fresh_process(
        CELERY_TASK_TIME_LIMIT="600", CELERY_TASK_SOFT_TIME_LIMIT="540"
    ) == [{"visibility_timeout": 660}, 660]
