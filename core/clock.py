"""The exchange's clock.

Every "now" in the domain comes from :func:`now`, never from ``timezone.now()``
scattered through the code, so that a simulation can run a market day in
minutes and tests can move time without patching each module. The real
source is Django's aware UTC time; :func:`use` swaps in another source (a
simulated clock) for the duration of a ``with`` block.

A simulated clock must reach every process of the exchange (web, Celery
worker, beat, and the node agents, which are not Django at all), so it is
named by one setting, ``EXCHANGE_CLOCK``, that each process reads at start-up
(:func:`install`, called by ``core``'s app config; a system check refuses it in
production):

``sim:<start ISO 8601>@<anchor epoch seconds>x<speed>``
    An *accelerated* clock: ``start + (real now − anchor) × speed``. Every
    process computes the same instant from the same string and its own wall
    clock, with no traffic between them: the demo runs on it (a day of market
    in minutes, agents included).
``step:<redis URL>``
    A *step* clock: the instant is whatever the simulator last published to
    that Redis database (:class:`SteppedClock`). Time stands still while the
    simulator waits for the worker to finish a step, so a simulation with a
    real worker gives the same figures on every run of the same seed.

Installed, a simulated source also answers Django's own ``timezone.now()``, so
``auto_now`` stamps (an order's ``created_at``, a status event's ``at``) agree
with the instants the exchange computes.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.utils import timezone

Source = Callable[[], dt.datetime]

STEP_KEY = "exchange:clock:now"


_django_now = timezone.now


def _real() -> dt.datetime:
    return _django_now()


_source: Source = _real


def now() -> dt.datetime:
    """The current instant, aware, in UTC, from the clock in use."""
    return _source()


@contextmanager
def use(source: Source) -> Iterator[None]:
    """Run the block on another clock (e.g. a simulated one)."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous


class AcceleratedClock:
    """``start + (wall clock − anchor) × speed``: the same instant in every
    process that was given the same three numbers."""

    def __init__(self, *, start: dt.datetime, anchor: float, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated start must carry a UTC offset")
        if not speed > 0:
            raise ValueError("the speed-up must be positive")
        self.start, self.anchor, self.speed = start.astimezone(dt.UTC), anchor, speed

    def __call__(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=(time.time() - self.anchor) * self.speed)

    @property
    def spec(self) -> str:
        return f"sim:{self.start.isoformat()}@{self.anchor:.3f}x{self.speed:f}"


class SteppedClock:
    """An instant that moves only when :meth:`set` is called. With a Redis
    client the instant is shared: the simulator publishes, other processes
    (the Celery worker) read it on every call."""

    def __init__(self, *, redis: Any = None, at: dt.datetime | None = None) -> None:
        self.redis = redis
        self._at = at
        if at is not None:
            self.set(at)

    def set(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("the simulated instant must be aware")
        self._at = at.astimezone(dt.UTC)
        if self.redis is not None:
            self.redis.set(STEP_KEY, repr(self._at.timestamp()))

    def __call__(self) -> dt.datetime:
        if self.redis is not None:
            raw = self.redis.get(STEP_KEY)
            if raw is None:
                raise RuntimeError(f"the step clock has no instant yet ({STEP_KEY} unset)")
            return dt.datetime.fromtimestamp(float(raw), tz=dt.UTC)
        if self._at is None:
            raise RuntimeError("the step clock has no instant yet")
        return self._at


_ACCELERATED = re.compile(r"^sim:(?P<start>[^@]+)@(?P<anchor>[0-9.]+)x(?P<speed>[0-9.]+)$")


def from_spec(spec: str) -> Source:
    """The source an ``EXCHANGE_CLOCK`` value names (see the module's doc)."""
    if match := _ACCELERATED.match(spec):
        return AcceleratedClock(
            start=dt.datetime.fromisoformat(match["start"]),
            anchor=float(match["anchor"]),
            speed=float(match["speed"]),
        )
    if spec.startswith("step:redis://"):
        import redis

        return SteppedClock(redis=redis.Redis.from_url(spec.removeprefix("step:")))
    raise ValueError(
        f"EXCHANGE_CLOCK {spec!r}: expected sim:<start ISO>@<anchor epoch>x<speed>"
        " or step:redis://host:port/db"
    )


def install(source: Source | None) -> None:
    """Make `source` this process's clock for good (None: the real one again),
    Django's ``timezone.now()`` included."""
    global _source
    _source = source or _real
    timezone.now = source or _django_now


def simulated() -> bool:
    """Whether this process runs on a simulated clock."""
    return _source is not _real
