import random

import pytest

from agent.buffer import SampleBuffer
from agent.client import Outcome, PostResult
from agent.readings import Reading
from agent.runner import Agent, AuthFailed, Backoff


class ScriptedClient:
    """Answers posts from a script of outcomes, then accepts everything."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.script = list(outcomes)
        self.posts: list[list[int]] = []

    def post(self, samples):
        self.posts.append([s["seq"] for s in samples])
        outcome = self.script.pop(0) if self.script else Outcome.ACCEPTED
        return PostResult(outcome, accepted=len(samples), detail=f"scripted {outcome.value}")


class TwoGpus:
    def read(self):
        return [Reading(gpu=0), Reading(gpu=1)]

    def close(self):
        pass


class NeverStop:
    def is_set(self):
        return False

    def wait(self, timeout):
        return False


@pytest.fixture
def buffer(tmp_path):
    with SampleBuffer(tmp_path, max_samples=1000) as buffer:
        yield buffer


def make_agent(buffer, client, max_batch=2):
    return Agent(reader=TwoGpus(), buffer=buffer, client=client, stop=NeverStop(),
                 interval=1.0, max_batch=max_batch)  # fmt: skip


def test_send_posts_the_buffer_oldest_first_in_batches(buffer):
    client = ScriptedClient()
    agent = make_agent(buffer, client)
    agent.sample()
    agent.sample()

    assert agent.send() is True
    assert client.posts == [[1, 2], [3, 4]]
    assert len(buffer) == 0


def test_an_unavailable_exchange_keeps_everything_buffered(buffer):
    client = ScriptedClient(Outcome.ACCEPTED, Outcome.RETRY)
    agent = make_agent(buffer, client)
    for _ in range(3):
        agent.sample()

    assert agent.send() is False
    assert [s["seq"] for s in buffer.oldest(10)] == [3, 4, 5, 6]

    assert agent.send() is True
    assert client.posts == [[1, 2], [3, 4], [3, 4], [5, 6]]


def test_a_rejected_batch_is_dropped_and_the_rest_still_goes(buffer):
    client = ScriptedClient(Outcome.REJECTED)
    agent = make_agent(buffer, client)
    agent.sample()
    agent.sample()

    assert agent.send() is True
    assert agent.send() is True
    assert client.posts == [[1, 2], [3, 4]]
    assert agent.rejected == 2


def test_a_refused_token_stops_the_agent_and_keeps_the_samples(buffer):
    agent = make_agent(buffer, ScriptedClient(Outcome.UNAUTHORIZED))
    agent.sample()

    with pytest.raises(AuthFailed):
        agent.send()
    assert len(buffer) == 2


def test_backoff_grows_with_jitter_up_to_the_cap():
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(3))

    delays = [backoff.next_delay() for _ in range(6)]

    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_backoff_honours_retry_after_within_reason():
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(3))

    assert backoff.next_delay(retry_after=30.0) == 30.0
    assert backoff.next_delay(retry_after=86400.0) == 300.0
