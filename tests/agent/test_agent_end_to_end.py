"""The real agent, as a subprocess, against a fake exchange on 127.0.0.1."""

import signal

import pytest

pytestmark = pytest.mark.slow

FAST = ("--interval", "0.1", "--max-backoff", "0.3")


def assert_delivered_exactly_once_in_order(exchange, gpus: int = 2) -> list[int]:
    seqs = exchange.record.seqs()
    assert seqs == list(range(1, len(seqs) + 1)), "a sample is missing"
    # Re-sending went oldest first: each seq first reached the exchange in seq order.
    assert exchange.record.first_arrivals == seqs
    stored = exchange.record.stored
    # Each round numbers its GPUs in order, so the seq says which GPU a sample is from.
    assert [stored[s]["gpu"] for s in seqs] == [(s - 1) % gpus for s in seqs]
    assert [stored[s]["ts"] for s in seqs] == sorted(stored[s]["ts"] for s in seqs)
    return seqs


def test_samples_survive_an_outage_and_arrive_exactly_once_in_order(exchange, agent_runner, wait):
    # given an agent reporting normally
    agent = agent_runner.start(*FAST)
    wait(lambda: len(exchange.record.stored) >= 6, what="first samples")

    # when the exchange goes away (connections refused) ...
    exchange.stop()
    delivered_before_outage = len(exchange.record.stored)
    wait(lambda: agent_runner.log().count("Connection refused") >= 3, what="failed posts")
    # ... comes back overloaded (503 and 429) ...
    exchange.record.script = [503, 429, 503]
    exchange.start()
    wait(lambda: not exchange.record.script, what="scripted errors answered")
    # ... and then recovers
    wait(lambda: len(exchange.record.stored) >= delivered_before_outage + 20, what="catch-up")
    agent.send_signal(signal.SIGTERM)

    # then the agent stops cleanly, and what it had buffered goes with its next run
    assert agent.wait(timeout=10) == 0
    assert agent_runner.run("--once") == 0
    assert agent_runner.buffered() == 0
    seqs = assert_delivered_exactly_once_in_order(exchange)
    assert len(seqs) > delivered_before_outage + 20
    assert "exchange unavailable (HTTP 503" in agent_runner.log()


def test_seq_continues_after_a_restart(exchange, agent_runner):
    assert agent_runner.run("--once") == 0
    assert agent_runner.run("--once") == 0

    assert exchange.record.requests == [[1, 2], [3, 4]]


def test_a_rejected_batch_is_dropped_not_retried(exchange, agent_runner):
    exchange.record.script = [400]

    assert agent_runner.run("--once") == 1
    assert agent_runner.run("--once") == 0

    assert exchange.record.requests == [[1, 2], [3, 4]]
    assert exchange.record.seqs() == [3, 4]
    assert "rejected 2 samples (seq 1-2), dropped: HTTP 400: scripted 400" in agent_runner.log()


def test_a_running_agent_drops_a_rejected_batch_and_carries_on(exchange, agent_runner, wait):
    exchange.record.script = [400]

    assert agent_runner.run(*FAST, "--duration", "1") == 0

    posted = [seq for request in exchange.record.requests for seq in request]
    assert posted.count(1) == 1
    # The first batch (the samples buffered when the sending thread first posted) was
    # rejected and dropped, never re-sent; everything after it arrived, in order.
    rejected = exchange.record.requests[0]
    assert rejected[0] == 1 and len(rejected) % 2 == 0
    seqs = exchange.record.seqs()
    assert seqs == list(range(len(rejected) + 1, len(seqs) + len(rejected) + 1))
    assert len(seqs) >= 6


def test_a_refused_token_exits_non_zero_and_keeps_the_samples(exchange, agent_runner):
    agent_runner.token = "12.Wrong"

    assert agent_runner.run("--once") == 3

    assert "exchange refused the node token" in agent_runner.log()
    assert agent_runner.buffered() == 2
    agent_runner.token = exchange.record.token
    assert agent_runner.run("--once") == 0
    assert exchange.record.seqs() == [1, 2, 3, 4]


def test_sigterm_while_the_exchange_is_down_keeps_everything_for_the_next_run(
    exchange, agent_runner, wait
):
    exchange.stop()
    agent = agent_runner.start(*FAST)
    wait(lambda: agent_runner.buffered() >= 4, what="samples buffered")

    agent.send_signal(signal.SIGTERM)

    assert agent.wait(timeout=10) == 0
    buffered = agent_runner.buffered()
    assert buffered >= 4
    exchange.start()
    assert agent_runner.run("--once") == 0
    assert len(assert_delivered_exactly_once_in_order(exchange)) == buffered + 2


def test_silence_fault_stops_reports_for_its_window(exchange, agent_runner):
    assert agent_runner.run(*FAST, "--duration", "1.5", "--fault", "silence@0.3:0.5") == 0

    times = sorted(s["ts"] for s in exchange.record.stored.values())
    since_start = [t - times[0] for t in times]
    assert any(t < 0.3 for t in since_start)
    assert not any(0.35 < t < 0.75 for t in since_start)
    assert any(t >= 0.8 for t in since_start)


def test_bad_flags_exit_with_a_usage_error(agent_runner):
    assert agent_runner.run("--fault", "meltdown@3") == 2
    assert "kind must be one of" in agent_runner.log()
