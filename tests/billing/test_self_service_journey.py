"""Every role serves itself: the lifecycle through the API only, with beat's
schedule the only thing that runs by itself (tests/beat.py plays it in-process)
and Stripe answered by localstripe with its signed webhook.

Sign-ups by API, staff verify and invite the authority, which accepts; order
(one, for an Idempotency-Key sent twice) → lease → telemetry → the buyer ends
the lease early → interim invoice with the voucher's 30 % → card payment →
webhook → the provider gives its bank account → payout. Every amount to the
fen, the ledger balanced. No admin, no shell, no hand-run task.
"""

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from billing.ledger import ledger_is_balanced
from core.money import amount_for_gpu_seconds, apply_basis_points
from tests.beat import BeatClock
from tests.factories import make_credit_code
from tests.market.telemetry.conftest import sample

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

PRICE = 2_400  # ¥24.00 per GPU-hour
PASSWORD = "Quiet-river-stone-2026"
PROVIDER_NAME = "宁夏中卫绿色算力有限公司"


def _client(token: str | None = None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:400])
    return response.json()


def _sign_up(kind: str, username: str, legal_name: str, seed: int) -> dict:
    return _ok(
        _client().post(
            "/api/v1/auth/sign-up/",
            {
                "username": username,
                "email": f"{username}@example.com",
                "password": PASSWORD,
                "kind": kind,
                "legal_name": legal_name,
                # codes far apart: affiliated buyers and providers get no voucher share
                "credit_code": make_credit_code(seed),
                "region": "宁夏",
            },
            format="json",
        ),
        201,
    )


def _report(agent: APIClient, *, node: dict, start: float, end: float, seq: list[int]) -> None:
    """What the node's agent posts: both GPUs every 5 s in [start, end)."""
    samples, t = [], start
    while t < end:
        for gpu in range(node["gpu_count"]):
            samples.append(sample(seq[0], ts=t, gpu=gpu, power_w=500.0))
            seq[0] += 1
        t += 5
    for i in range(0, len(samples), 2_000):
        _ok(agent.post("/api/v1/telemetry/", {"samples": samples[i : i + 2_000]}, format="json"))


def test_the_whole_lifecycle_through_the_api_alone(localstripe, settings, django_user_model):
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "sign-up": "100/hour"}
    staff_user = django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True)
    staff = _client()
    staff.force_authenticate(staff_user)  # the operator's own sign-in
    t0 = timezone.now().replace(microsecond=0) + dt.timedelta(seconds=30)

    with BeatClock(start=t0, step=dt.timedelta(seconds=5)) as beat:
        # sign-ups by API; staff verify both claims by API
        provider = _sign_up("provider", "zhongwei", PROVIDER_NAME, 101_007)
        buyer = _sign_up("buyer", "modelworks", "杭州模型工场有限公司", 202_007)
        for signed_up in (provider, buyer):
            _ok(staff.post(f"/api/v1/organisations/{signed_up['organisation']['id']}/verify/"))
        seller, bidder = _client(provider["token"]), _client(buyer["token"])

        # staff invite the authority; it accepts and grants the buyer a 30 % voucher
        invitation = _ok(
            staff.post(
                "/api/v1/authorities/",
                {
                    "legal_name": "宁夏算力券办公室",
                    "credit_code": make_credit_code(303_007),
                    "email": "office@nx.gov.cn",
                },
                format="json",
            ),
            201,
        )
        authority = _client(
            _ok(
                _client().post(
                    "/api/v1/invitations/accept/",
                    {"token": invitation["token"], "username": "nx.office", "password": PASSWORD},
                    format="json",
                ),
                201,
            )["token"]
        )
        programme = _ok(
            authority.post(
                "/api/v1/programmes/",
                {
                    "name": "西部算力券",
                    "budget_amount": 10_000_000,
                    "rate_bp": 3_000,
                    "valid_from": (t0 - dt.timedelta(days=1)).isoformat(),
                    "valid_until": (t0 + dt.timedelta(days=300)).isoformat(),
                },
                format="json",
            ),
            201,
        )
        _ok(
            authority.post(
                "/api/v1/vouchers/",
                {
                    "programme": programme["id"],
                    "holder": buyer["organisation"]["id"],
                    "face_amount": 1_000_000,
                    "valid_from": (t0 - dt.timedelta(days=1)).isoformat(),
                },
                format="json",
            ),
            201,
        )

        # the provider's site, node (its agent token, once) and offer
        site = _ok(
            seller.post(
                "/api/v1/sites/",
                {
                    "name": "中卫一号",
                    "region": "宁夏",
                    "hub": "ningxia",
                    "green_share": "0.800",
                    "pue": "1.15",
                    "carbon_intensity_g_per_kwh": 480,
                },
                format="json",
            ),
            201,
        )
        node = _ok(
            seller.post(
                "/api/v1/nodes/",
                {
                    "site": site["id"],
                    "name": "zw-01",
                    "gpu_model": "nvidia-h800-sxm",
                    "gpu_count": 2,
                },
                format="json",
            ),
            201,
        )
        agent = APIClient()
        agent.credentials(HTTP_AUTHORIZATION=f"Node {node['agent_token']}")
        seq = [0]
        _report(agent, node=node, start=t0.timestamp() - 60, end=t0.timestamp(), seq=seq)
        _ok(
            seller.post(
                "/api/v1/offers/",
                {
                    "site": site["id"],
                    "node": node["id"],
                    "gpus_total": 2,
                    "price_amount": PRICE,
                    "available_from": t0.isoformat(),
                    "available_until": (t0 + dt.timedelta(days=30)).isoformat(),
                },
                format="json",
            ),
            201,
        )

        # the buyer's order, its Idempotency-Key sent twice: one order
        order_body = {
            "accepted_models": ["nvidia-h800-sxm"],
            "gpu_count": 2,
            "hours": 4,
            "max_price_amount": 3_000,
            "start_by": (t0 + dt.timedelta(hours=1)).isoformat(),
        }
        first = _ok(
            bidder.post("/api/v1/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="o-1"),
            201,
        )
        again = _ok(
            bidder.post("/api/v1/orders/", order_body, format="json", HTTP_IDEMPOTENCY_KEY="o-1")
        )
        assert again["id"] == first["id"]
        (lease,) = _ok(bidder.get(f"/api/v1/orders/{first['id']}/"))["leases"]

        # the lease runs 23 min 17 s while the agent reports, then the buyer ends it
        end = dt.datetime.fromisoformat(lease["starts_at"]) + dt.timedelta(minutes=23, seconds=17)
        clock = t0
        while clock < end:  # a batch every 10 s, as the agent posts them
            step = min(clock + dt.timedelta(seconds=10), end)
            _report(agent, node=node, start=clock.timestamp(), end=step.timestamp(), seq=seq)
            beat.play(until=step)
            clock = step
        beat.clock.move_to(end)  # the buyer's click, at 23 min 17 s
        ended = _ok(bidder.post(f"/api/v1/leases/{lease['id']}/end/", {"reason": "trained"}))
        assert ended["status"] == "completed"
        assert dt.datetime.fromisoformat(ended["ended_at"]) == end
        seen = _ok(seller.get(f"/api/v1/leases/{lease['id']}/"))
        assert seen["ended_reason"] == "ended early by the buyer: trained"

        # metering closes the last window; the buyer settles now
        beat.play(until=end + dt.timedelta(minutes=8))
        records = _ok(bidder.get(f"/api/v1/usage-records/?lease={lease['id']}"))["results"]
        delivered = sum(r["gpu_seconds_delivered"] for r in records)
        assert delivered + sum(r["gpu_seconds_grace"] for r in records) == 2 * (23 * 60 + 17)
        assert sum(r["gpu_seconds_lost"] for r in records) == 0
        interim = _ok(bidder.post("/api/v1/invoices/settle-now/"), 201)

    # the interim invoice: each record billed to the second, 30 % from the voucher
    gross = sum(
        amount_for_gpu_seconds(gpu_seconds=r["gpu_seconds_delivered"], price_amount=PRICE)
        for r in records
    )
    assert interim["gross_amount"] == interim["total_amount"] == gross
    # the voucher pays 30 % of each line, rounded by the one rule
    voucher_share = sum(
        apply_basis_points(amount=line["amount"], basis_points=3_000) for line in interim["lines"]
    )
    assert [line["voucher_amount"] for line in interim["lines"]] == [
        apply_basis_points(amount=line["amount"], basis_points=3_000) for line in interim["lines"]
    ]
    assert interim["voucher_amount"] == voucher_share
    assert interim["buyer_amount"] == gross - voucher_share

    # card payment, Stripe's signed webhook
    paid = _ok(
        bidder.post(
            f"/api/v1/invoices/{interim['id']}/pay/",
            {"payment_method": "pm_card_visa"},
            format="json",
        ),
        201,
    )
    assert paid["amount"] == gross - voucher_share
    body, headers = localstripe.relay.wait_for(
        "payment_intent.succeeded", object_id=paid["payment_intent"]
    )
    webhook = Client().post(
        "/api/v1/stripe/webhook/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=headers["Stripe-Signature"],
    )
    assert webhook.status_code == 200
    assert _ok(bidder.get(f"/api/v1/invoices/{interim['id']}/"))["status"] == "paid"

    # the provider's share waits for its account, which it gives; beat pays it out
    net = sum(line["provider_net_amount"] for line in interim["lines"])
    fee = sum(line["fee_amount"] for line in interim["lines"])
    assert net + fee <= gross
    waiting = _ok(seller.get("/api/v1/payout-account/"))
    assert (waiting["configured"], waiting["waiting_amount"]) == (False, net)
    _ok(
        seller.put(
            "/api/v1/payout-account/",
            {
                "account_number": "6222 0212 3456 7890 123",
                "account_name": PROVIDER_NAME,
                "bank_name": "中国工商银行中卫分行",
                "bank_code": "102872000013",
            },
            format="json",
        )
    )
    settings.PAYOUT_BANK_ACCOUNT = "1234500001"
    # today's payout run went out before the invoice was paid; the next day's pays it
    start = timezone.now()
    with BeatClock(start=start, step=dt.timedelta(minutes=30)) as beat:
        beat.play(until=start + dt.timedelta(days=1, minutes=30))
    (payout,) = _ok(seller.get("/api/v1/payouts/"))["results"]
    assert (payout["amount"], payout["method"]) == (net, "bank_transfer")
    assert [line["amount"] for line in payout["lines"]] == [net]
    assert _ok(seller.get("/api/v1/payout-account/"))["waiting_amount"] == 0
    assert [failure[0] for failure in beat.failures] == []
    assert ledger_is_balanced()
