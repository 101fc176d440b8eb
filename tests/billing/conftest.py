import datetime as dt
import http.server
import json
import threading
import time
from zoneinfo import ZoneInfo

import pytest

from accounts.models import Organisation
from billing.gateways.localstripe import LocalStripe
from billing.settlement import invoice_settle
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
    SiteFactory,
    UsageRecordFactory,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
MAY = dt.datetime(2026, 5, 1, tzinfo=SHANGHAI)
JUNE = dt.datetime(2026, 6, 1, tzinfo=SHANGHAI)
WEBHOOK_SECRET = "whsec_test_exchange"


class WebhookRelay:
    """Receives localstripe's signed webhook deliveries so a test can hand
    them, byte for byte, to the exchange's endpoint (and deliver them again)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                relay.deliveries.append((body, dict(self.headers)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def wait_for(self, event_type: str, *, object_id: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body, headers in list(self.deliveries):
                event = json.loads(body)
                if event["type"] == event_type and event["data"]["object"]["id"] == object_id:
                    return body, headers
            time.sleep(0.05)
        raise TimeoutError(f"no {event_type} for {object_id}")

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="session")
def _localstripe_server():
    server = LocalStripe().start()
    relay = WebhookRelay()
    server.configure_webhook(url=relay.url, secret=WEBHOOK_SECRET)
    yield server, relay
    relay.stop()
    server.stop()


@pytest.fixture
def eager_tasks():
    """Tasks in-process even in tests marked `integration` (which talk to
    localstripe, not to a Celery worker)."""
    from config.celery import app

    before = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


@pytest.fixture
def localstripe(_localstripe_server, settings, eager_tasks):
    """localstripe on 127.0.0.1 with the SDK pointed at it; its webhooks go to
    `localstripe.relay`. Its store is emptied for every test."""
    server, relay = _localstripe_server
    server.flush()
    relay.deliveries.clear()
    settings.STRIPE_API_BASE = server.api_base
    settings.STRIPE_CONNECT_ENABLED = False
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    server.relay = relay
    return server


def make_lease(*, buyer, provider, price_amount, gpu_count, starts_at, hours):
    node = NodeFactory(site=SiteFactory(provider=provider))
    offer = OfferFactory(node=node, price_amount=price_amount)
    return LeaseFactory(
        offer=offer,
        order=OrderFactory(buyer=buyer),
        gpu_count=gpu_count,
        price_amount=price_amount,
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(hours=hours),
    )


def open_invoice(*, buyer, provider=None, gpu_seconds=36_000, price_amount=2_000):
    """An open May invoice of the buyer: by default 10 GPU-hours at ¥20.00 = ¥200.00."""
    provider = provider or OrganisationFactory(kind=Organisation.Kind.PROVIDER)
    lease = make_lease(
        buyer=buyer,
        provider=provider,
        price_amount=price_amount,
        gpu_count=1,
        starts_at=MAY + dt.timedelta(days=1),
        hours=max(1, gpu_seconds // 3600),
    )
    UsageRecordFactory(
        lease=lease,
        window_start=lease.starts_at,
        window_end=lease.ends_at,
        gpu_seconds_delivered=gpu_seconds,
    )
    return invoice_settle(buyer=buyer, period_start=MAY, period_end=JUNE)


@pytest.fixture
def catalogue(db):
    """The GPU catalogue, reloaded if a transactional test emptied the tables
    (they run after the others and flush the data migrations' rows)."""
    from market.catalogue import gpu_models_load
    from market.models import GPUModel

    if not GPUModel.objects.exists():
        gpu_models_load()


@pytest.fixture
def fake_stripe(settings):
    """The in-repo fake for Connect transfers and idempotency keys (tests only)."""
    from tests.billing.fake_stripe import FakeStripe

    fake = FakeStripe()
    settings.STRIPE_API_BASE = fake.api_base
    settings.STRIPE_CONNECT_ENABLED = True
    yield fake
    fake.stop()


def stripe_event_deliver(
    localstripe, capture_on_commit, *, object_id: str, event: str = "payment_intent.succeeded"
):
    """Wait for localstripe's signed `event` about `object_id`, post it to the
    exchange's webhook as Stripe would, and run what its commit queued."""
    from django.test import Client

    body, headers = localstripe.relay.wait_for(event, object_id=object_id)
    with capture_on_commit(execute=True):
        return Client().post(
            "/api/v1/stripe/webhook/",
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=headers["Stripe-Signature"],
        )
