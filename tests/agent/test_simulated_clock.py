"""A simulated agent stamps its samples on the demo's accelerated clock."""

import datetime as dt

from agent.cli import simulated_wall_clock


def test_the_agent_reads_the_exchanges_accelerated_clock(monkeypatch):
    monkeypatch.setattr("time.time", lambda: 1_000.0 + 10)
    wall = simulated_wall_clock("sim:2026-03-02T22:30:00+08:00@1000.000x90.000000")

    assert wall() == dt.datetime(2026, 3, 2, 14, 45, tzinfo=dt.UTC).timestamp()  # + 900 s


def test_without_a_simulated_clock_the_agent_keeps_the_real_one():
    assert simulated_wall_clock("") is None
    assert simulated_wall_clock("step:redis://127.0.0.1:6379/0") is None
