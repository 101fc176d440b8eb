"""The whole lifecycle through HTTP only, as API clients would run it, with no
operator at the admin, no shell and no `celery call`:

gunicorn on PostgreSQL, a real Celery worker and `celery beat` on their own
Redis, localstripe delivering signed webhooks to the exchange, and a real
agent process (`python -m agent --simulate`) posting telemetry. Sign-ups by
API, staff verify and invite the authority, the authority's programme and
voucher, site → node → offer, an order sent twice with one Idempotency-Key,
the lease ended early by the buyer, an interim invoice with the voucher share,
a card payment and its webhook, the provider's bank account and a payout run.
Every amount is checked to the fen against the usage the exchange metered,
and the ledger balances.

The clock is the real one; metering windows are one minute (settings from the
environment) so that a lease of a few minutes spans several windows.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from billing.gateways.localstripe import LocalStripe
from billing.ledger import ledger_is_balanced
from tests.factories import make_credit_code
from tests.support import RedisServer, celery_worker_start, free_port, wait_for_http

pytestmark = [
    pytest.mark.xdist_group("real-stack"),  # one heavy stack at a time on a 2-core CI machine
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(settings.BASE_DIR)
PASSWORD = "Quiet-river-stone-2026"
WEBHOOK_SECRET = "whsec_journey_" + uuid.uuid4().hex
PRICE = 30_000  # ¥300.00 per GPU-hour
GPUS = 8
FEE_BP = 500  # the platform fee the worker runs with (settings' default)
RATE_BP = 3_000  # the programme subsidises 30 %


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _fen(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _wait(what: str, check, *, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Stack:
    """The processes of a production deployment, on loopback ports of their own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.processes: list[subprocess.Popen] = []
        self.redis = RedisServer(log=tmp / "redis.log").start()
        self.stripe = LocalStripe().start()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": self.redis.url,
            "DEBUG": "false",
            "STRIPE_API_BASE": self.stripe.api_base,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_CONNECT_ENABLED": "false",
            "PAYOUT_BANK_ACCOUNT": "1234500001",
            "PLATFORM_FEE_BASIS_POINTS": str(FEE_BP),
            # the agent samples every second (and posts from a thread of its own, so a
            # slow post never delays a sample); a gap counts as lost only past 3
            # intervals (18 s). A window is metered 20 s after it closes: on a loaded
            # 2-core CI machine a post can take seconds, and samples that reach the
            # exchange after their window was metered would be metered as lost (CI saw
            # 112 GPU-seconds lost with 5 s); production waits 120 s.
            "TELEMETRY_INTERVAL_SECONDS": "6",
            "AGENT_STARTUP_GRACE_INTERVALS": "2",
            "METERING_WINDOW_SECONDS": "60",
            "METERING_GRACE_SECONDS": "20",
        }
        self.env.pop("EXCHANGE_CLOCK", None)
        self.stripe.configure_webhook(
            url=f"{self.url}/api/v1/stripe/webhook/", secret=WEBHOOK_SECRET
        )
        self._start(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "config.wsgi:application"]
            + ["--bind", f"127.0.0.1:{self.port}", "--workers", "2", "--threads", "4"],
        )
        wait_for_http(f"{self.url}/healthz", process=self.processes[-1])
        self.processes.append(
            celery_worker_start(env=self.env, log=tmp / "worker.log", name="journey")
        )
        self._start(
            "beat",
            [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"]
            + ["--schedule", str(tmp / "beat-schedule")],
        )

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        with open(self.tmp / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def agent(self, *, token: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "agent", "--url", self.url, "--simulate"]
        argv += ["--gpus", str(GPUS), "--interval", "1", "--seed", "7"]
        argv += ["--state-dir", str(self.tmp / "agent")]
        # the token in the environment, as the node page tells providers to do
        return self._start("agent", argv, env={**self.env, "EXCHANGE_NODE_TOKEN": token})

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.stripe.stop()
        self.redis.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n" + path.read_text(errors="replace")[-4000:]
            for path in sorted(self.tmp.glob("*.log"))
        )


@pytest.fixture
def stack(tmp_path):
    running = Stack(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _client(stack: Stack, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Token {token}"} if token else {}
    return httpx.Client(base_url=f"{stack.url}/api/v1", headers=headers, timeout=30)


def _ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, (response.request.url, response.text)
    return response.json()


def _sign_up(anonymous: httpx.Client, *, kind: str, username: str, legal_name: str) -> dict:
    return _ok(
        anonymous.post(
            "/auth/sign-up/",
            json={
                "username": username,
                "email": f"{username}@example.cn",
                "password": PASSWORD,
                "kind": kind,
                "legal_name": legal_name,
                "credit_code": make_credit_code(),
                "region": "甘肃",
            },
        ),
        201,
    )


def test_a_whole_lifecycle_through_http_only(stack):
    get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)
    anonymous = _client(stack)
    staff = _client(
        stack,
        _ok(anonymous.post("/auth/token/", json={"username": "ops", "password": PASSWORD}), 201)[
            "token"
        ],
    )

    # --- sign-ups by API; staff verify both organisations ---------------------------
    provider_up = _sign_up(
        anonymous, kind="provider", username="qy.ops", legal_name="庆阳绿色算力有限公司"
    )
    buyer_up = _sign_up(
        anonymous, kind="buyer", username="zhang.wei", legal_name="杭州智语科技有限公司"
    )
    provider, buyer = _client(stack, provider_up["token"]), _client(stack, buyer_up["token"])
    waiting = _ok(staff.get("/organisations/", params={"verified": "false"}))["results"]
    assert {row["legal_name"] for row in waiting} == {
        "庆阳绿色算力有限公司",
        "杭州智语科技有限公司",
    }
    for row in waiting:
        assert _ok(staff.post(f"/organisations/{row['id']}/verify/"))["verified"] is True
    buyer_id = _ok(buyer.get("/organisations/me/"))["id"]

    # --- staff invite the authority; its admin accepts and sets a password -----------
    invitation = _ok(
        staff.post(
            "/authorities/",
            json={
                "legal_name": "庆阳市数据局",
                "credit_code": make_credit_code(),
                "region": "甘肃",
                "email": "li.na@qy.gov.cn",
            },
        ),
        201,
    )
    joined = _ok(
        anonymous.post(
            "/invitations/accept/",
            json={"token": invitation["token"], "username": "li.na", "password": PASSWORD},
        ),
        201,
    )
    authority = _client(stack, joined["token"])
    now = dt.datetime.now(dt.UTC)
    programme = _ok(
        authority.post(
            "/programmes/",
            json={
                "name": "庆阳算力券 2026",
                "budget_amount": 100_000_000,
                "rate_bp": RATE_BP,
                "valid_from": (now - dt.timedelta(days=1)).isoformat(),
                "valid_until": (now + dt.timedelta(days=365)).isoformat(),
                "settlement_mode": "deduct",
            },
        ),
        201,
    )
    voucher = _ok(
        authority.post(
            "/vouchers/",
            json={"programme": programme["id"], "holder": buyer_id, "face_amount": 5_000_000},
        ),
        201,
    )
    assert voucher["balance_amount"] == 5_000_000

    # --- the provider lists a node; its agent connects ------------------------------
    site = _ok(
        provider.post(
            "/sites/",
            json={
                "name": "庆阳东数西算一号",
                "region": "甘肃",
                "hub": "gansu",
                "green_share": "0.80",
                "pue": "1.20",
                "carbon_intensity_g_per_kwh": 120,
            },
        ),
        201,
    )
    node = _ok(
        provider.post(
            "/nodes/",
            json={
                "site": site["id"],
                "name": "qy-h800-01",
                "gpu_model": "nvidia-h800-sxm",
                "gpu_count": GPUS,
            },
        ),
        201,
    )
    assert node["state"] == "awaiting_agent"
    stack.agent(token=node["agent_token"])
    _wait(
        "the node to come online",
        lambda: _ok(provider.get(f"/nodes/{node['id']}/"))["state"] == "online",
        timeout=90,
    )
    offer = _ok(
        provider.post(
            "/offers/",
            json={
                "site": site["id"],
                "node": node["id"],
                "gpus_total": GPUS,
                "price_amount": PRICE,
                "available_from": now.isoformat(),
                "available_until": (now + dt.timedelta(days=2)).isoformat(),
            },
        ),
        201,
    )

    # --- the buyer orders; the same Idempotency-Key twice places one order ---------
    order_body = {
        "gpu_count": GPUS,
        "hours": 1,
        "max_price_amount": PRICE,
        "accepted_models": ["nvidia-h800-sxm"],
        "start_by": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat(),
    }
    key = {"Idempotency-Key": f"journey-{uuid.uuid4()}"}
    first = buyer.post("/orders/", json=order_body, headers=key)
    again = buyer.post("/orders/", json=order_body, headers=key)
    order = _ok(first, 201)
    assert (again.status_code, again.json()["id"]) == (200, order["id"])  # the first order, again
    assert _ok(buyer.get("/orders/"))["count"] == 1
    (lease,) = _wait(
        "the order to fill",
        lambda: _ok(buyer.get(f"/orders/{order['id']}/"))["leases"],
        timeout=60,
    )
    assert (lease["offer"], lease["gpu_count"], lease["price_amount"]) == (
        offer["id"],
        GPUS,
        PRICE,
    )
    _wait(
        "the lease to start",
        lambda: _ok(buyer.get(f"/leases/{lease['id']}/"))["status"] == "active",
        timeout=60,
    )

    # --- telemetry flows for a while; then the buyer ends the lease early -----------
    _wait(
        "usage records of the running lease",
        lambda: _ok(buyer.get("/usage-records/", params={"lease": lease["id"]}))["count"] >= 1,
        timeout=150,
        every=3,
    )
    ended = _ok(buyer.post(f"/leases/{lease['id']}/end/", json={"reason": "training converged"}))
    assert ended["status"] == "completed"
    assert "training converged" in ended["ended_reason"]
    assert buyer.post(f"/leases/{lease['id']}/end/", json={}).status_code == 409
    ended_at = dt.datetime.fromisoformat(ended["ended_at"])
    starts_at = dt.datetime.fromisoformat(ended["starts_at"])

    def metered_to_the_end():
        rows = _ok(buyer.get("/usage-records/", params={"lease": lease["id"], "page_size": 200}))[
            "results"
        ]
        last = max((dt.datetime.fromisoformat(r["window_end"]) for r in rows), default=None)
        return rows if last == ended_at else None

    records = _wait("metering to close at the end", metered_to_the_end, timeout=180, every=3)
    delivered = sum(r["gpu_seconds_delivered"] for r in records)
    lost = sum(r["gpu_seconds_lost"] for r in records)
    grace = sum(r["gpu_seconds_grace"] for r in records)
    # every GPU-second from start to the second it ended is accounted for once
    # (to the second: GPU-seconds are whole, the lease's start has microseconds)
    assert abs(delivered + lost + grace - GPUS * (ended_at - starts_at).total_seconds()) < 1
    assert lost == 0 and delivered > 0
    assert grace <= GPUS * 12  # the agent's start-up grace: two reporting intervals

    # --- the buyer settles now: an interim invoice with the voucher share -----------
    invoice = _ok(buyer.post("/invoices/settle-now/", json={}), 201)
    gross = _fen(Decimal(delivered) * PRICE / 3600)
    vouchers = _fen(Decimal(gross) * RATE_BP / 10_000)
    assert (invoice["status"], invoice["gross_amount"]) == ("open", gross)
    assert invoice["voucher_amount"] == vouchers
    assert invoice["buyer_amount"] == gross - vouchers
    (line,) = invoice["lines"]
    assert line["lease"] == lease["id"]
    assert _ok(buyer.get("/vouchers/"))["results"][0]["balance_amount"] == 5_000_000 - vouchers

    # --- card payment on the local Stripe; the signed webhook marks it paid ---------
    paid = _ok(
        buyer.post(f"/invoices/{invoice['id']}/pay/", json={"payment_method": "pm_card_visa"}),
        201,
    )
    assert paid["amount"] == gross - vouchers
    _wait(
        "the webhook to mark the invoice paid",
        lambda: _ok(buyer.get(f"/invoices/{invoice['id']}/"))["status"] == "paid",
        timeout=60,
    )

    # --- the provider gives its bank account; staff run the payouts -----------------
    _ok(
        provider.put(
            "/payout-account/",
            json={
                "account_number": "6222021234567890123",
                "account_name": "庆阳绿色算力有限公司",
                "bank_name": "中国工商银行庆阳分行",
                "bank_code": "102826000015",
                "province": "甘肃",
                "city": "庆阳",
            },
        )
    )
    run = _ok(staff.post("/payout-runs/"), 202)
    payouts = _wait(
        "the payout run",
        lambda: _ok(provider.get("/payouts/"))["results"],
        timeout=60,
    )
    (payout,) = payouts
    fee = _fen(Decimal(gross) * FEE_BP / 10_000)
    assert (payout["run"], payout["amount"], payout["method"]) == (
        run["key"],
        gross - fee,
        "bank_transfer",
    )
    assert payout["status"] == "sent"
    assert ledger_is_balanced()
