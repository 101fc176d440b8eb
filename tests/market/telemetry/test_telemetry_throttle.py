"""Telemetry batches per node are rate-limited: enough for a real agent (a batch every
5 s, a buffer drained after an outage), not for a flood."""

import datetime as dt

import orjson
import pytest
import time_machine
from django.conf import settings
from rest_framework.test import APIClient

from market.models import TelemetrySample
from tests.market.telemetry.conftest import node_with_token, sample

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)


def _post(token: str, samples: list[dict]):
    return APIClient().post(
        "/api/v1/telemetry/",
        data=orjson.dumps({"samples": samples}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Node {token}",
    )


def _batch(first_seq: int, count: int, *, gpus: int, t0: float) -> list[dict]:
    return [
        sample(seq, ts=t0 + seq // gpus * 0.001, gpu=seq % gpus)
        for seq in range(first_seq, first_seq + count)
    ]


def test_the_default_rate_is_thirty_batches_a_minute_per_node():
    assert settings.THROTTLE_RATES["telemetry"] == "30/min"


@pytest.mark.slow
def test_300000_samples_in_seconds_from_one_node_are_refused_after_thirty_batches():
    # given: an 8-GPU node whose agent floods 60 full batches (300,000 samples) at once
    node, token = node_with_token(gpu_count=8)
    other, other_token = node_with_token(gpu_count=8)
    t0 = NOW.timestamp() - 60
    with time_machine.travel(NOW, tick=False):
        answers = [_post(token, _batch(i * 5000, 5000, gpus=8, t0=t0)) for i in range(60)]
        # another node's agent is not held back by it
        elsewhere = _post(other_token, _batch(0, 8, gpus=8, t0=t0))

    # then: 30 batches stored, the other 30 refused with Retry-After and nothing stored
    assert [a.status_code for a in answers] == [200] * 30 + [429] * 30
    assert {int(a["Retry-After"]) for a in answers[30:]} == {60}
    assert TelemetrySample.objects.filter(node=node).count() == 150_000
    assert elsewhere.status_code == 200


@pytest.mark.slow
def test_a_real_agents_cadence_and_its_catch_up_after_an_outage_are_never_refused():
    node, token = node_with_token(gpu_count=8)
    seq = 0
    answers = []
    # ten minutes of a batch every 5 s (8 samples each)
    for tick in range(120):
        at = NOW + dt.timedelta(seconds=5 * tick)
        with time_machine.travel(at, tick=False):
            answers.append(_post(token, _batch(seq, 8, gpus=8, t0=at.timestamp())).status_code)
        seq += 8
    # a day offline: 138,240 samples buffered, drained in 28 batches back to back
    back = NOW + dt.timedelta(days=1, minutes=10)
    with time_machine.travel(back, tick=False):
        buffered = 24 * 720 * 8
        t0 = back.timestamp() - 86_400
        for first in range(seq, seq + buffered, 5000):
            count = min(5000, seq + buffered - first)
            answers.append(_post(token, _batch(first, count, gpus=8, t0=t0)).status_code)

    assert answers == [200] * (120 + 28)
    assert TelemetrySample.objects.filter(node=node).count() == 120 * 8 + buffered
