"""The simulated clocks every process of the exchange can run on (core/clock.py)."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.utils import timezone

from core import clock

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def test_an_accelerated_clock_runs_speed_times_faster_from_its_anchor(monkeypatch):
    source = clock.from_spec(f"sim:{START.isoformat()}@1000.000x60")
    monkeypatch.setattr("time.time", lambda: 1000.0 + 90)

    assert source() == dt.datetime(2026, 3, 2, 2, 30, tzinfo=dt.UTC)  # 09:00+08 + 90 min


def test_a_step_clock_moves_only_when_set():
    source = clock.SteppedClock(at=START)

    with clock.use(source):
        first = clock.now()
        source.set(START + dt.timedelta(minutes=5))
        assert (first, clock.now()) == (START, START + dt.timedelta(minutes=5))


def test_an_installed_clock_stamps_djangos_auto_now_too():
    source = clock.SteppedClock(at=START)
    clock.install(source)
    try:
        assert (clock.now(), timezone.now()) == (START, START)
    finally:
        clock.install(None)
    assert not clock.simulated()
    assert abs(timezone.now() - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


@pytest.mark.parametrize(
    "spec", ["sim:2026-03-02T09:00@1x60", "sim:yesterday@1x60", "step:x", "sim:"]
)
def test_a_clock_spec_that_names_nothing_is_refused(spec):
    with pytest.raises(ValueError):
        clock.from_spec(spec)


def test_production_refuses_a_simulated_clock(settings):
    from core.checks import simulated_clock_not_in_production

    settings.PRODUCTION, settings.EXCHANGE_CLOCK = True, "sim:2026-03-02T09:00+08:00@1x60"
    assert [e.id for e in simulated_clock_not_in_production()] == ["core.E001"]
    settings.PRODUCTION = False
    assert simulated_clock_not_in_production() == []
    assert any(
        f is simulated_clock_not_in_production for f in checks.registry.registry.get_checks()
    )


def test_another_process_started_with_the_setting_runs_on_the_same_clock():
    spec = clock.AcceleratedClock(start=START, anchor=1000.0, speed=1_000_000.0).spec
    code = (
        "import django, time; django.setup(); from core import clock; "
        "time.time = lambda: 1001.0; print(clock.now().isoformat())"
    )
    env = {**os.environ, "EXCHANGE_CLOCK": spec, "DJANGO_SETTINGS_MODULE": "config.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()[-1]  # after the apps' start-up log lines

    assert dt.datetime.fromisoformat(out) == START + dt.timedelta(seconds=1_000_000)
