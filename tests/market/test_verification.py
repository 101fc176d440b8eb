"""Host verification: a self-test verifies or de-verifies a node, new XID/ECC
errors de-verify it, offers show it, and an order can require it."""

import datetime as dt

import httpx
import pytest
from django.utils import timezone

from agent.selftest import self_test_post, simulated_self_test
from core.cache import generation_bump
from market.matching import order_match, order_quote_explain
from market.models import Lease, Node, NodeSelfTest
from market.models.capacity import BOARD_CACHE
from market.verification import node_self_test_record
from tests.factories import NodeFactory, OfferFactory, OrderFactory, gpu
from tests.market.telemetry.conftest import node_with_token
from tests.market.telemetry.test_health_and_failover import at, check, ingest, tick

pytestmark = pytest.mark.django_db


def post_self_test(api_client, token: str, **body):
    return api_client.post(
        "/api/v1/telemetry/self-test/", body, format="json", HTTP_AUTHORIZATION=f"Node {token}"
    )


def test_a_passing_self_test_verifies_the_node_and_its_offer_shows_it(api_client):
    node, token = node_with_token(gpu_count=8)
    offer = OfferFactory(node=node)

    response = post_self_test(
        api_client, token, gpus_seen=8, memory_gb="79.65", bandwidth_gb_s="2900.0", tflops="742.0"
    )

    assert response.status_code == 200, response.json()
    assert response.json() == {"passed": True, "verified": True, "reason": "self-test passed"}
    node.refresh_from_db()
    assert (node.verified, node.verification_reason) == (True, "self-test passed")
    test = NodeSelfTest.objects.get(node=node)
    assert (str(test.memory_gb), str(test.tflops), test.simulated) == ("79.65", "742.00", False)
    listed = api_client.get("/api/v1/offers/").json()["results"]
    assert [(o["id"], o["verified"]) for o in listed] == [(offer.pk, True)]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"gpus_seen": 7, "memory_gb": "80", "tflops": "742"}, "saw 7 GPUs; the node has 8"),
        ({"gpus_seen": 8, "memory_gb": "40", "tflops": "742"}, "40.00 GB per GPU"),
        ({"gpus_seen": 8, "memory_gb": "80", "tflops": "300"}, "300.00 dense TFLOPS; at least 594"),
        ({"gpus_seen": 8, "memory_gb": "80"}, "no compute burst was measured"),
    ],
)
def test_a_failing_self_test_de_verifies_the_node_with_the_reason(api_client, body, why):
    node, token = node_with_token(gpu_count=8, verified=True)

    answer = post_self_test(api_client, token, **body).json()

    assert (answer["passed"], answer["verified"]) == (False, False)
    assert why in answer["reason"]
    node.refresh_from_db()
    assert node.verified is False and why in node.verification_reason


def test_new_xid_errors_de_verify_a_node_and_a_self_test_cannot_verify_it_for_a_day():
    node, _ = node_with_token(gpu_count=2)
    node_self_test_record(node=node, gpus_seen=2, memory_gb=80, tflops=742, now=at(0))
    node.refresh_from_db()
    assert node.verified
    ingest(node, tick(node, 0, at(0)), at=at(0))
    check(at(1))
    ingest(node, tick(node, 2, at(5), xid_errors=3), at=at(5))

    check(at(6))

    node.refresh_from_db()
    assert (node.state, node.verified) == (Node.State.DEGRADED, False)
    assert node.verification_reason.startswith("de-verified: new XID errors on GPU 0")
    retest = node_self_test_record(node=node, gpus_seen=2, memory_gb=80, tflops=742, now=at(60))
    assert not retest.passed and "errors in the last 24 h" in retest.reason
    later = at(60) + dt.timedelta(hours=25)
    assert node_self_test_record(node=node, gpus_seen=2, memory_gb=80, tflops=742, now=later).passed


def test_an_order_requiring_verified_capacity_skips_unverified_nodes():
    h800 = gpu("nvidia-h800-sxm")
    cheap_unverified = OfferFactory(price_amount=1_500)
    verified = OfferFactory(node=NodeFactory(verified=True), price_amount=2_000)
    order = OrderFactory(accepted_models=[h800], gpu_count=8, verified_only=True)

    [lease] = order_match(order_id=order.pk)

    assert (lease.offer_id, lease.price_amount) == (verified.pk, 2_000)
    quote = order_quote_explain(
        model_ids=frozenset({h800.pk}),
        gpu_count=8,
        hours=2,
        currency="CNY",
        start_by=timezone.now() + dt.timedelta(days=1),
        now=timezone.now(),
        verified_only=True,
    )
    assert {e.offer_id: e.reasons for e in quote.excluded}[cheap_unverified.pk] == ("unverified",)
    plain = OrderFactory(accepted_models=[h800], gpu_count=8)
    assert [x.offer_id for x in order_match(order_id=plain.pk)] == [cheap_unverified.pk]
    assert Lease.objects.count() == 2


def test_a_pool_offer_is_verified_only_when_every_node_of_its_model_there_is(api_client):
    first = NodeFactory(verified=True)
    NodeFactory(site=first.site, verified=False)
    OfferFactory(node=None, site=first.site, gpu_model=first.gpu_model, gpus_total=16)
    assert [o["verified"] for o in api_client.get("/api/v1/offers/").json()["results"]] == [False]
    Node.objects.update(verified=True)
    generation_bump(BOARD_CACHE)  # as node_self_test_record does: search pages are cached
    assert [o["verified"] for o in api_client.get("/api/v1/offers/").json()["results"]] == [True]


def test_the_agent_simulated_self_test_reports_the_card_it_plays():
    seen = []

    def exchange(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"passed": True, "verified": True, "reason": "ok"})

    report = simulated_self_test(gpus=4, speed=0.5)
    status, answer = self_test_post(
        url="http://x/", token="7.secret", report=report, transport=httpx.MockTransport(exchange)
    )

    assert (status, answer["verified"]) == (200, True)
    assert str(seen[0].url) == "http://x/api/v1/telemetry/self-test/"
    assert seen[0].headers["Authorization"] == "Node 7.secret"
    assert report.as_json() == {
        "gpus_seen": 4,
        "gpu_name": "Simulated 80GB GPU",
        "memory_gb": "80.00",
        "bandwidth_gb_s": "1450.0",
        "tflops": "371.0",
        "simulated": True,
    }


def test_a_simulated_self_test_verifies_nothing_where_the_exchange_refuses_them(settings):
    node = NodeFactory(gpu_count=2)
    settings.NODE_SELF_TEST_ACCEPT_SIMULATED = False

    test = node_self_test_record(
        node=node, gpus_seen=2, memory_gb=80, tflops=742, simulated=True, now=timezone.now()
    )

    assert not test.passed
    assert test.reason == (
        "simulated: a simulated self-test does not verify a node on this exchange"
    )
    node.refresh_from_db()
    assert node.verified is False
