import json

import httpx
import pytest

from agent.client import MAX_SAMPLES_PER_POST, Outcome, PostResult, TelemetryClient

SAMPLE = {"seq": 1, "ts": 1.0, "gpu": 0, "util": 1.0, "mem_used_mib": 1, "power_w": 1.0,
          "temp_c": 1.0, "ecc_errors": 0, "xid_errors": 0, "missing": False}  # fmt: skip


def client_answering(handler) -> TelemetryClient:
    return TelemetryClient(url="http://exchange.test/", token="12.AbCd",
                           transport=httpx.MockTransport(handler))  # fmt: skip


def test_post_sends_the_contract_request():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"accepted": 1, "duplicates": 0})

    result = client_answering(handler).post([SAMPLE])

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "http://exchange.test/api/v1/telemetry/"
    assert request.headers["Authorization"] == "Node 12.AbCd"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"samples": [SAMPLE]}
    assert result == PostResult(Outcome.ACCEPTED, accepted=1, duplicates=0, status=200)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, Outcome.REJECTED),
        (413, Outcome.REJECTED),
        (401, Outcome.UNAUTHORIZED),
        (403, Outcome.UNAUTHORIZED),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_answers_are_classified_by_status(status, outcome):
    client = client_answering(lambda request: httpx.Response(status, json={"detail": "no"}))

    assert client.post([SAMPLE]).outcome is outcome


def test_a_rejection_carries_the_servers_field_errors():
    body = {"detail": "invalid samples", "errors": {"samples": {"0": {"util": ["> 100"]}}}}
    client = client_answering(lambda request: httpx.Response(400, json=body))

    result = client.post([SAMPLE])

    assert "invalid samples" in result.detail
    assert "> 100" in result.detail


def test_retry_after_is_read_from_a_429():
    client = client_answering(
        lambda request: httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")
    )

    result = client.post([SAMPLE])

    assert result.retry_after == 7.0
    assert "slow down" in result.detail


def test_a_connection_error_is_retried():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = client_answering(handler).post([SAMPLE])

    assert result.outcome is Outcome.RETRY
    assert "connection refused" in result.detail


def test_more_than_the_contract_allows_in_one_post_is_refused_before_sending():
    client = client_answering(lambda request: pytest.fail("must not send"))

    with pytest.raises(ValueError):
        client.post([SAMPLE] * (MAX_SAMPLES_PER_POST + 1))
