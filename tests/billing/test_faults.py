"""Faults with real processes on PostgreSQL: our own redis-server (no
persistence) killed with -9, Celery workers SIGKILLed mid-settlement and
mid-matching, a webhook answered while the broker is down. After each, orders,
leases, invoices and payments are as if nothing had happened, the ledger
balances, and no effect happened twice; the outbox relay (the beat's
`core.outbox_relay`, called here directly) brings back what the broker lost."""

import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from billing.ledger import account_balance_from_postings, ledger_is_balanced
from billing.models import Invoice, LedgerAccount, LedgerTransaction, Payment, StripeEvent
from billing.tasks import invoices_settle_closed_period
from core.models import OutboxMessage
from core.outbox import outbox_relay
from market.models import Lease, Offer, Order
from tests.billing.conftest import JUNE, MAY, WEBHOOK_SECRET, make_lease
from tests.billing.test_stripe import _deliver, _pay_and_catch_the_webhook
from tests.factories import OfferFactory, OrganisationFactory, UsageRecordFactory
from tests.market.test_api import order_payload
from tests.support import RedisServer, celery_broker, celery_worker_start

ROOT = Path(__file__).resolve().parents[2]
LATER = dt.timedelta(seconds=django_settings.OUTBOX_REDELIVER_SECONDS + 1)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


# --- processes -----------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(log=tmp_path / "redis.log").start()
    yield server
    server.kill()


def _worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    db = django_settings.DATABASES["default"]
    return os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis_url,
        # a killed worker's unacked task comes back after 4 s instead of minutes
        "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(
            {"visibility_timeout": 4, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}
        ),
        **extra,
    }


class Workers:
    """Celery workers started (and always stopped) by one test."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.processes: list[subprocess.Popen] = []

    def start(self, env: dict[str, str]) -> subprocess.Popen:
        process = celery_worker_start(env=env, log=self.log, name="fault")
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the whole worker: main process and pool children."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            self.kill(process)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def workers(tmp_path):
    running = Workers(tmp_path / "worker.log")
    yield running
    running.stop_all()


def _wait(predicate, *, timeout: float, what) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError(what() if callable(what) else what)


def _outbox_done() -> bool:
    return not OutboxMessage.objects.filter(completed_at__isnull=True).exists()


# --- the world before the fault ----------------------------------------------------


def _may_usage(provider, buyers) -> None:
    """Ten GPU-hours at ¥20.00 in May for each buyer: ¥200.00 to invoice each."""
    for buyer in buyers:
        lease = make_lease(
            buyer=buyer,
            provider=provider,
            price_amount=2_000,
            gpu_count=1,
            starts_at=MAY + dt.timedelta(days=3),
            hours=10,
        )
        UsageRecordFactory(
            lease=lease,
            window_start=lease.starts_at,
            window_end=lease.ends_at,
            gpu_seconds_delivered=36_000,
        )


def _place_order(client) -> Order:
    response = client.post("/api/v1/orders/", order_payload(), format="json")
    assert response.status_code == 201, response.content
    return Order.objects.get(pk=response.json()["id"])


# --- what must hold after every fault ----------------------------------------------


def _offers_available() -> dict[int, int]:
    return dict(Offer.objects.values_list("pk", "gpus_available"))


def _assert_order_filled_once(order: Order, available_before: dict[int, int]) -> None:
    """8 GPUs leased, at or under the bid, each taken off its offer exactly once."""
    order.refresh_from_db()
    assert (order.status, order.gpus_filled) == ("filled", 8)
    taken: Counter[int] = Counter()
    for lease in Lease.objects.filter(order=order):
        assert lease.price_amount <= order.max_price_amount
        taken[lease.offer_id] += lease.gpu_count
    assert sum(taken.values()) == 8
    assert _offers_available() == {
        pk: available - taken[pk] for pk, available in available_before.items()
    }


def _assert_settled_once(buyers) -> None:
    for buyer in buyers:
        invoice = Invoice.objects.get(buyer=buyer)
        assert (invoice.status, invoice.total_amount, invoice.buyer_amount) == (
            Invoice.Status.OPEN,
            20_000,
            20_000,
        )
        issued = LedgerTransaction.objects.filter(business_key=f"invoice:{invoice.pk}:issue")
        assert issued.count() == 1


def _assert_paid_once(invoice: Invoice) -> None:
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_amount, invoice.outstanding_amount) == (
        Invoice.Status.PAID,
        20_000,
        0,
    )
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.status, payment.captured_amount) == (Payment.Status.SUCCEEDED, 20_000)
    assert LedgerTransaction.objects.filter(kind="invoice_payment").count() == 1
    assert StripeEvent.objects.get().processed_at is not None


def _assert_ledger_sound() -> None:
    assert ledger_is_balanced()
    for account in LedgerAccount.objects.all():
        assert account.balance == account_balance_from_postings(account)


# --- the faults ------------------------------------------------------------------------


def test_redis_killed_with_payment_settlement_and_matching_queued_loses_and_doubles_nothing(
    localstripe, catalogue, buyer_org, buyer_client, redis_server, workers
):
    # given a paid card payment whose webhook is still to come, an offer that
    # fits an order, and three buyers with May usage to settle
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)
    OfferFactory(node__site__green_share="0.700", price_amount=2_100)
    provider = OrganisationFactory(kind="provider")
    buyers = [OrganisationFactory(kind="buyer") for _ in range(3)]
    _may_usage(provider, buyers)
    available_before = _offers_available()

    with celery_broker(redis_server.url):
        # when, with no worker running, the webhook, the order and the period close
        # each queue their work on Redis ...
        assert _deliver(Client(), body, headers).status_code == 200
        order = _place_order(buyer_client)
        invoices_settle_closed_period.apply(
            kwargs={"at": (JUNE + dt.timedelta(hours=1)).isoformat()}
        )
        assert redis_server.queued() == 1 + 1 + 3
        # ... and Redis dies (kill -9, nothing on disk) and comes back empty
        redis_server.kill()
        redis_server.start()
        assert redis_server.queued() == 0
        env = _worker_env(redis_server.url, STRIPE_API_BASE=localstripe.api_base)
        env |= {"STRIPE_CONNECT_ENABLED": "false", "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
        workers.start(env)

    with celery_broker(redis_server.url):  # the connections of before are dead
        # then nothing happened (the work was lost with Redis) ...
        order.refresh_from_db()
        assert (order.status, Invoice.objects.filter(status=Invoice.Status.OPEN).count()) == (
            "open",
            1,
        )
        # ... until the relay publishes what is not done, once
        assert outbox_relay(now=timezone.now() + LATER) == 5
        _wait(_outbox_done, timeout=45, what=workers.tail)
        assert outbox_relay(now=timezone.now() + LATER) == 0

    # and everything is as if Redis had never died
    _assert_order_filled_once(order, available_before)
    _assert_settled_once(buyers)
    _assert_paid_once(invoice)
    _assert_ledger_sound()
    assert list(OutboxMessage.objects.values_list("attempts", flat=True)) == [2] * 5


def test_a_worker_sigkilled_mid_settlement_settles_every_buyer_once(
    catalogue, redis_server, workers, tmp_path
):
    # given three buyers with May usage, and settlement that pauses inside its transaction
    provider = OrganisationFactory(kind="provider")
    buyers = [OrganisationFactory(kind="buyer") for _ in range(3)]
    _may_usage(provider, buyers)
    markers = tmp_path / "markers"
    markers.mkdir()
    env = _worker_env(
        redis_server.url,
        BILLING_SETTLEMENT_HOOKS="tests.billing.hooks.pause_mid_settlement",
        BILLING_TEST_MARKER_DIR=str(markers),
        BILLING_TEST_PAUSE_SECONDS="1.5",
    )
    worker = workers.start(env)

    with celery_broker(redis_server.url):
        # when the period closes and the whole worker is SIGKILLed mid-settlement
        invoices_settle_closed_period.apply(
            kwargs={"at": (JUNE + dt.timedelta(hours=1)).isoformat()}
        )
        _wait(lambda: any(markers.iterdir()), timeout=30, what=workers.tail)
        workers.kill(worker)
        assert Invoice.objects.exclude(status=Invoice.Status.DRAFT).count() < 3
        # and a new worker starts; the relay runs as the beat would
        workers.start(env)
        outbox_relay(now=timezone.now() + LATER)
        _wait(_outbox_done, timeout=45, what=workers.tail)

    # then
    _assert_settled_once(buyers)
    assert LedgerTransaction.objects.filter(kind="invoice_issue").count() == 3
    _assert_ledger_sound()


def test_a_worker_sigkilled_mid_matching_leases_the_gpus_once(
    catalogue, buyer_client, redis_server, workers
):
    # given an offer that fits, and an order whose matching will block inside its
    # transaction: the test holds the offer's row lock
    offer = OfferFactory(node__site__green_share="0.700", price_amount=2_100)
    available_before = _offers_available()
    db = connection.settings_dict
    holder = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=False
    )
    env = _worker_env(redis_server.url)
    try:
        holder.execute("SELECT id FROM market_offer WHERE id = %s FOR UPDATE", [offer.pk])
        worker = workers.start(env)
        with celery_broker(redis_server.url):
            order = _place_order(buyer_client)

            # when the worker is SIGKILLed while matching waits for the offer
            _wait(lambda: _backends_waiting_for_a_lock() > 0, timeout=30, what=workers.tail)
            workers.kill(worker)
    finally:
        holder.rollback()
        holder.close()
    assert not Lease.objects.exists()

    # and a new worker starts (Redis gives back the unacked task; the relay too)
    with celery_broker(redis_server.url):
        workers.start(env)
        outbox_relay(now=timezone.now() + LATER)
        _wait(_outbox_done, timeout=45, what=workers.tail)
        _wait(lambda: Lease.objects.exists(), timeout=30, what=workers.tail)

    # then the order holds its 8 GPUs exactly once
    _assert_order_filled_once(order, available_before)


def _backends_waiting_for_a_lock() -> int:
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as probe:
        return probe.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0]


def test_a_webhook_answered_while_redis_is_down_pays_the_invoice_once_later(
    localstripe, catalogue, buyer_org, buyer_client, redis_server, workers
):
    invoice, body, headers = _pay_and_catch_the_webhook(localstripe, buyer_client, buyer_org)
    redis_server.kill()

    # when Stripe's webhook arrives while Redis is down
    with celery_broker(redis_server.url):
        response = _deliver(Client(), body, headers)

    # then Stripe gets its 200 and the event waits, recorded
    assert response.status_code == 200
    assert StripeEvent.objects.get().processed_at is None
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN

    # when Redis and a worker are back and the relay runs
    redis_server.start()
    env = _worker_env(redis_server.url, STRIPE_API_BASE=localstripe.api_base)
    env |= {"STRIPE_CONNECT_ENABLED": "false", "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    workers.start(env)
    with celery_broker(redis_server.url):
        assert outbox_relay(now=timezone.now() + LATER) == 1
        _wait(_outbox_done, timeout=45, what=workers.tail)
        # and Stripe, which had its 200, never sends it again; a duplicate would change nothing
        assert _deliver(Client(), body, headers).json()["duplicate"] is True

    # then the invoice is paid once
    _assert_paid_once(invoice)
    _assert_ledger_sound()
