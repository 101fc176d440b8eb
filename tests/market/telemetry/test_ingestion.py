import datetime as dt

import orjson
import pytest
import time_machine
from rest_framework.test import APIClient

from market.models import TelemetrySample
from tests.market.telemetry.conftest import node_with_token, sample

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
        ({"missing": None}, "missing", "Expected true or false."),
        ({"mem_used_mib": "61440"}, "mem_used_mib", "Expected an integer."),
        ({"mem_used_mib": 61440.0}, "mem_used_mib", "Expected an integer."),
        ({"util": "87.5"}, "util", "Expected a number."),
        ({"ecc_errors": True}, "ecc_errors", "Expected an integer."),
        ({"power_w": True}, "power_w", "Expected a number."),
        ({"seq": 2**63}, "seq", "Too large."),
        ({"mem_used_mib": 2**31}, "mem_used_mib", "Too large."),
        ({"ts": 0}, "ts", "Expected seconds since the epoch (UTC)."),
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


def test_a_seq_repeated_inside_a_batch_is_stored_once(node_and_token):
    # given: samples 0, 1, 1, 2
    node, token = node_and_token
    body = batch(0, 3)
    body["samples"].insert(2, dict(body["samples"][1]))
    # when
    status, answer = post(token, body)
    # then
    assert (status, answer) == (200, {"accepted": 3, "duplicates": 1})
    assert list(TelemetrySample.objects.filter(node=node).values_list("seq", flat=True)) == [
        0,
        1,
        2,
    ]


def test_a_batch_without_samples_is_accepted_and_stores_nothing(node_and_token):
    node, token = node_and_token
    assert post(token, {"samples": []}) == (200, {"accepted": 0, "duplicates": 0})
    assert not TelemetrySample.objects.exists()


@pytest.mark.postgres
def test_a_copy_colliding_with_samples_stored_meanwhile_falls_back_to_on_conflict(
    node_and_token, monkeypatch
):
    # given: 4 of the batch's samples were stored after the range probe ran
    # (simulated: the probe sees nothing, as it would before a concurrent commit)
    node, token = node_and_token
    post(token, batch(0, 4))
    monkeypatch.setattr(
        "market.telemetry.ingest._STORED_IN_RANGE_SQL",
        "SELECT 1 WHERE %s < 0 AND %s < 0 AND %s < 0 AND %s IS NULL AND %s IS NULL",
    )
    # when
    status, answer = post(token, batch(0, 10))
    # then: COPY hit the unique key, rolled back to its savepoint, ON CONFLICT stored the rest
    assert (status, answer) == (200, {"accepted": 6, "duplicates": 4})
    assert list(TelemetrySample.objects.filter(node=node).values_list("seq", flat=True)) == list(
        range(10)
    )


@pytest.mark.postgres
def test_the_copy_path_stores_exactly_what_the_insert_path_stores(node_and_token):
    # given: the same readings, once through COPY (a fresh range), once re-sent
    # after deleting them so the ON CONFLICT path stores them (a stored neighbour
    # in the range sends the batch there)
    node, token = node_and_token
    readings = [
        sample(1, ts=T0 + 0.1234565, gpu=1, util=0, power_w=0.5, temp_c=1e-3, missing=True),
        sample(2, ts=T0 + 1.0000005, util=100, mem_used_mib=2**31 - 1, ecc_errors=7),
        sample(3, ts=int(T0), xid_errors=2**31 - 1, temp_c=12),
    ]
    columns = [
        "seq",
        "gpu_index",
        "ts",
        "utilisation",
        "memory_used_mib",
        "power_w",
        "temperature_c",
        "ecc_errors",
        "xid_errors",
        "missing",
    ]
    stored = TelemetrySample.objects.filter(node=node).order_by("seq")
    post(token, {"samples": readings})
    copied = list(stored.values_list(*columns))
    TelemetrySample.objects.filter(node=node).delete()
    post(token, {"samples": [sample(0, ts=T0)]})
    # when
    status, answer = post(token, {"samples": [sample(0, ts=T0), *readings]})
    # then
    assert (status, answer) == (200, {"accepted": 3, "duplicates": 1})
    assert list(stored.values_list(*columns))[1:] == copied
    assert copied[2][2] == dt.datetime.fromtimestamp(int(T0), tz=dt.UTC)


@pytest.mark.parametrize(
    "nul_at",
    ["an extra field of a sample", "an extra field of the batch", "a field's name"],
)
def test_a_resent_batch_with_a_nul_character_is_answered_never_a_server_error(
    node_and_token, nul_at
):
    """PostgreSQL's jsonb refuses \\u0000; the re-sent (slow) path must not
    hand it the client's bytes, or an agent retrying on 5xx is stuck for good."""
    # given: a batch whose fields are all valid, with a NUL in a string beside them
    node, token = node_and_token
    body = batch(0, 6)
    if nul_at == "an extra field of a sample":
        body["samples"][3]["note"] = "gpu\u0000fan"
    elif nul_at == "an extra field of the batch":
        body["agent"] = "v1\u0000"
    else:
        body["samples"][0]["\u0000"] = 1
    first = post(token, body)
    # when: the agent re-sends it, overlapping two new samples
    body["samples"] += batch(6, 2)["samples"]
    again = post(token, body)
    # then
    assert first == (200, {"accepted": 6, "duplicates": 0})
    assert again == (200, {"accepted": 2, "duplicates": 6})
    assert TelemetrySample.objects.filter(node=node).count() == 8


def test_a_nul_character_where_a_number_belongs_is_a_400_naming_the_field(node_and_token):
    # given
    node, token = node_and_token
    post(token, batch(0, 4))
    body = batch(0, 4)
    body["samples"][2]["util"] = "\u0000"
    # when: re-sent, so the batch would take the slow path
    status, answer = post(token, body)
    # then
    assert status == 400
    assert answer["errors"] == {"samples": {"2": {"util": ["Expected a number."]}}}
    assert TelemetrySample.objects.filter(node=node).count() == 4
