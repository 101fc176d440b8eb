import datetime as dt

import orjson
import pytest
import time_machine
from rest_framework.test import APIClient

from market.models import TelemetrySample
from tests.telemetry.conftest import node_with_token, sample

NOW = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)
T0 = NOW.timestamp() - 60

pytestmark = pytest.mark.django_db


def post(token: str | None, body) -> tuple[int, dict]:
    client = APIClient()
    headers = {"HTTP_AUTHORIZATION": f"Node {token}"} if token else {}
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with time_machine.travel(NOW, tick=False):
        response = client.post(
            "/api/v1/telemetry/", data=raw, content_type="application/json", **headers
        )
    return response.status_code, response.json()


def batch(first_seq: int, count: int) -> dict:
    return {
        "samples": [
            sample(first_seq + i, ts=T0 + (first_seq + i) // 2 * 5, gpu=(first_seq + i) % 2)
            for i in range(count)
        ]
    }


def test_a_batch_is_stored_with_the_node_heartbeat(node_and_token):
    # given
    node, token = node_and_token
    # when
    status, answer = post(token, batch(0, 10))
    # then
    assert (status, answer) == (200, {"accepted": 10, "duplicates": 0})
    stored = TelemetrySample.objects.filter(node=node).order_by("seq")
    assert list(stored.values_list("seq", flat=True)) == list(range(10))
    first = stored.first()
    assert first.ts == dt.datetime.fromtimestamp(T0, tz=dt.UTC)
    assert (first.gpu_index, first.utilisation, first.memory_used_mib) == (0, 87.5, 61_440)
    assert (first.power_w, first.temperature_c, first.missing) == (600.0, 64.0, False)
    node.refresh_from_db()
    assert node.last_seen_at == NOW


def test_a_resent_batch_stores_nothing_twice_and_counts_duplicates(node_and_token):
    # given
    node, token = node_and_token
    post(token, batch(0, 10))
    # when: the same batch again, then one overlapping the first by 4 samples
    again = post(token, batch(0, 10))
    overlap = post(token, batch(6, 10))
    # then
    assert again == (200, {"accepted": 0, "duplicates": 10})
    assert overlap == (200, {"accepted": 6, "duplicates": 4})
    assert TelemetrySample.objects.filter(node=node).count() == 16


def test_a_token_posting_for_another_node_is_forbidden_and_nothing_is_stored(db):
    # given
    node_a, token_a = node_with_token()
    node_b, _token_b = node_with_token()
    # when
    status, answer = post(token_a, {"node": node_b.pk, **batch(0, 4)})
    # then
    assert status == 403
    assert answer["detail"] == "This token may post telemetry for its own node only."
    assert not TelemetrySample.objects.exists()
    node_a.refresh_from_db()
    assert node_a.last_seen_at is None


def test_a_token_naming_its_own_node_is_accepted(node_and_token):
    node, token = node_and_token
    assert post(token, {"node": node.pk, **batch(0, 2)}) == (
        200,
        {"accepted": 2, "duplicates": 0},
    )


@pytest.mark.parametrize("header_token", [None, "1.not-a-real-secret", ""])
def test_a_missing_or_unknown_token_is_unauthorised(node_and_token, header_token):
    status, _answer = post(header_token, batch(0, 2))
    assert status == 401
    assert not TelemetrySample.objects.exists()


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        ({"gpu": 2}, "gpu", "This node has GPUs 0-1."),
        ({"power_w": -1.0}, "power_w", "Must not be negative."),
        ({"util": 100.5}, "util", "Must be at most 100."),
        ({"ts": NOW.timestamp() + 3600}, "ts", "Too far in the future; check the node's clock."),
        ({"seq": "seven"}, "seq", "Expected an integer."),
        ({"xid_errors": None}, "xid_errors", "Expected an integer."),
        ({"missing": "yes"}, "missing", "Expected true or false."),
    ],
)
def test_a_malformed_batch_is_refused_naming_the_sample_and_nothing_is_stored(
    node_and_token, bad, field, message
):
    # given: a batch whose third sample is bad
    node, token = node_and_token
    body = batch(0, 5)
    body["samples"][2].update(bad)
    # when
    status, answer = post(token, body)
    # then
    assert status == 400
    assert answer["errors"] == {"samples": {"2": {field: [message]}}}
    assert answer["detail"] == "1 invalid sample(s); nothing from this batch was stored."
    assert not TelemetrySample.objects.exists()
    node.refresh_from_db()
    assert node.last_seen_at is None


def test_a_body_that_is_not_json_is_refused(node_and_token):
    _node, token = node_and_token
    status, answer = post(token, b"{samples: nope")
    assert status == 400
    assert list(answer["errors"]) == ["body"]


def test_more_than_five_thousand_samples_are_refused(node_and_token):
    _node, token = node_and_token
    status, answer = post(token, batch(0, 5001))
    assert status == 400
    assert answer["errors"] == {"samples": ["At most 5000 samples per request."]}
    assert not TelemetrySample.objects.exists()
