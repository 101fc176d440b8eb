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


class FakeTime:
    """A clock that only moves when the agent waits: run() becomes deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def is_set(self) -> bool:
        return False

    def wait(self, timeout: float) -> bool:
        self.now += max(0.0, timeout)
        return False


def test_run_samples_and_posts_on_their_own_schedules(buffer):
    time = FakeTime()
    client = ScriptedClient()
    agent = Agent(reader=TwoGpus(), buffer=buffer, client=client, stop=time, interval=1.0,
                  sample_every=0.5, clock=time.clock, wall_clock=time.clock)  # fmt: skip

    assert agent.run(duration=3.0) == 0

    # Samples at 0, 0.5, ... 2.5 s; posts at 0, 1 and 2 s and a last one at the end.
    assert client.posts == [[1, 2], [3, 4, 5, 6], [7, 8, 9, 10], [11, 12]]
    assert len(buffer) == 0


def test_run_keeps_sampling_while_backing_off(buffer):
    time = FakeTime()
    client = ScriptedClient(Outcome.RETRY, Outcome.RETRY)
    agent = Agent(reader=TwoGpus(), buffer=buffer, client=client, stop=time, interval=1.0,
                  max_backoff=4.0, clock=time.clock, wall_clock=time.clock,
                  rng=random.Random(1))  # fmt: skip

    agent.run(duration=10.0)

    # Two failures back off (0.5-1 s, then 1-2 s); then the backlog goes in one post.
    assert client.posts[:2] == [[1, 2], [1, 2]]
    assert client.posts[2][0] == 1
    assert len(client.posts[2]) > 2
    assert len(buffer) == 0
    assert buffer.next_seq == 21  # ten rounds of two GPUs, none skipped


class SlowClient(ScriptedClient):
    """An exchange that takes `delay` seconds to answer each post, as a loaded one does."""

    def __init__(self, delay: float, *outcomes: Outcome) -> None:
        super().__init__(*outcomes)
        self.delay = delay
        self.sample_times: list[float] = []

    def post(self, samples):
        import time

        self.sample_times += [s["ts"] for s in samples]
        time.sleep(self.delay)
        return super().post(samples)


def _longest_gap(times: list[float]) -> float:
    distinct = sorted(set(times))
    return max(b - a for a, b in zip(distinct, distinct[1:], strict=False))


@pytest.mark.parametrize(
    ("in_background", "expect_gap_over"), [(True, None), (False, 0.9)], ids=["thread", "inline"]
)
def test_a_slow_post_does_not_delay_sampling(buffer, in_background, expect_gap_over):
    from agent.runner import StopFlag

    client = SlowClient(delay=1.0)
    agent = Agent(reader=TwoGpus(), buffer=buffer, client=client, stop=StopFlag(),
                  interval=0.5, sample_every=0.1, send_in_background=in_background)  # fmt: skip

    assert agent.run(duration=2.5) == 0

    # Every sample reached the exchange, in order, none twice.
    sent = [seq for post in client.posts for seq in post]
    assert sent == sorted(set(sent)) == list(range(1, buffer.next_seq))
    gap = _longest_gap(client.sample_times)
    if expect_gap_over is None:
        # Samples kept their 0.1 s rhythm while each post took a second: no gap to meter.
        assert gap < 0.5
    else:
        # Sampling on the posting thread waits for the post: the gap the thread removes.
        assert gap > expect_gap_over


def test_a_refused_token_on_the_sending_thread_stops_the_agent(buffer):
    from agent.runner import StopFlag

    client = ScriptedClient(Outcome.UNAUTHORIZED)
    agent = Agent(reader=TwoGpus(), buffer=buffer, client=client, stop=StopFlag(),
                  interval=0.2, sample_every=0.1, send_in_background=True)  # fmt: skip

    with pytest.raises(AuthFailed):
        agent.run(duration=30.0)
    assert len(buffer) >= 2  # what was sampled stays buffered for a corrected token
