"""The agent's loop: sample on a schedule, buffer durably, send in order, back off on failure."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agent.buffer import SampleBuffer
from agent.client import MAX_SAMPLES_PER_POST, Outcome, PostResult, TelemetryClient
from agent.readings import GpuReader

log = logging.getLogger(__name__)

# A server asking for more than this is more likely misconfigured than overloaded.
MAX_RETRY_AFTER_S = 300.0


class AuthFailed(RuntimeError):
    """The exchange refused the node token (401/403): no sample will ever be accepted."""


class Stopper(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class StopFlag:
    """A stop flag safe to set from a signal handler.

    threading.Event is not: its set() takes a lock that the interrupted main thread may be
    holding inside Event.wait(), which deadlocks. A self-pipe wakes select() instead.
    """

    def __init__(self) -> None:
        self._set = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)

    def set(self) -> None:
        self._set = True
        # A full pipe means a wake-up is already pending.
        with contextlib.suppress(BlockingIOError):
            os.write(self._write_fd, b"\0")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if not self._set:
            select.select([self._read_fd], [], [], max(0.0, timeout))
        return self._set

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with jitter, so a fleet of agents does not hammer a recovering
    exchange in lockstep."""

    base: float
    cap: float
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        self.failures += 1
        ceiling: float = min(self.cap, self.base * 2.0 ** (self.failures - 1))
        delay = ceiling * self.rng.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
        return delay

    def reset(self) -> None:
        self.failures = 0


class Agent:
    def __init__(
        self,
        *,
        reader: GpuReader,
        buffer: SampleBuffer,
        client: TelemetryClient,
        stop: Stopper,
        interval: float,
        sample_every: float | None = None,
        max_backoff: float = 60.0,
        max_batch: int = MAX_SAMPLES_PER_POST,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        send_in_background: bool = False,
    ) -> None:
        self._reader = reader
        self._buffer = buffer
        self._client = client
        self._stop = stop
        self._interval = interval
        self._sample_every = sample_every or interval
        self._max_batch = min(max_batch, MAX_SAMPLES_PER_POST)
        self._clock = clock
        self._wall_clock = wall_clock
        self._backoff = Backoff(
            base=min(interval, max_backoff), cap=max_backoff, rng=rng or random.Random()
        )
        self._retry_after: float | None = None
        self._last_error = ""
        self._send_in_background = send_in_background
        self._sender_failed: BaseException | None = None
        self._finished = threading.Event()
        self.rejected = 0

    def sample(self) -> int:
        """Read every GPU once and store the readings; returns how many were stored."""
        readings = self._reader.read()
        self._buffer.append(readings, ts=self._wall_clock())
        return len(readings)

    def send(self) -> bool:
        """Send the buffer oldest first until empty; False if the exchange is unavailable."""
        while not self._stop.is_set():
            batch = self._buffer.oldest(self._max_batch)
            if not batch:
                return True
            result = self._client.post(batch)
            span = f"seq {batch[0]['seq']}-{batch[-1]['seq']}"
            if result.outcome is Outcome.RETRY:
                self._retry_after = result.retry_after
                self._last_error = result.detail
                return False
            if result.outcome is Outcome.UNAUTHORIZED:
                raise AuthFailed(f"exchange refused the node token: {result.detail}")
            self._buffer.remove(batch)
            self._log_delivery(result, len(batch), span)
        return True

    def _log_delivery(self, result: PostResult, count: int, span: str) -> None:
        if result.outcome is Outcome.REJECTED:
            # Re-sending would get the same answer forever; the log is the only trace left.
            self.rejected += count
            log.error("exchange rejected %d samples (%s), dropped: %s", count, span, result.detail)
        else:
            log.info(
                "posted %d samples (%s): accepted=%d duplicates=%d buffered=%d",
                count,
                span,
                result.accepted,
                result.duplicates,
                len(self._buffer),
            )

    def run_once(self) -> int:
        """One round: sample, send what the buffer holds. Exit status 1 if a batch was
        rejected, so a cron job or a test notices."""
        self.sample()
        if not self.send():
            log.warning(
                "exchange unavailable (%s); %d samples buffered for the next run",
                self._last_error,
                len(self._buffer),
            )
        return 1 if self.rejected else 0

    def run(self, duration: float | None = None) -> int:
        """Sample and send on their own schedules until `duration` or a stop.

        With `send_in_background` the sending runs on a thread of its own, so a
        slow or hanging post (up to the HTTP timeout, then backoff) never delays
        a sample: a late sample is a gap the exchange meters as lost GPU time,
        billed to the provider as a fault it did not have."""
        start = self._clock()
        deadline = start + duration if duration is not None else math.inf
        sender = None
        if self._send_in_background:
            sender = threading.Thread(target=self._send_loop, name="agent-sender", daemon=True)
            sender.start()
        next_sample = start
        next_send = math.inf if sender else start
        try:
            while not self._stop.is_set() and self._sender_failed is None:
                now = self._clock()
                if now >= deadline:
                    break
                if now >= next_sample:
                    self.sample()
                    next_sample = _next_tick(next_sample, self._sample_every, now)
                if now >= next_send:
                    next_send = self._after_send(next_send, now)
                self._stop.wait(min(next_sample, next_send, deadline) - self._clock())
        finally:
            if sender is not None:
                self._finished.set()
                # A post in flight ends within the HTTP timeout; on a signal do not wait long.
                sender.join(timeout=None if not self._stop.is_set() else 1.0)
        if self._sender_failed is not None:
            raise self._sender_failed
        if not self._stop.is_set():
            # A bounded run ends with one last attempt so it leaves little behind.
            self.send()
        # On a signal the samples are already on disk: exit now, the next start sends them.
        return 0

    def _send_loop(self) -> None:
        next_send = self._clock()
        try:
            while not self._stop.is_set() and not self._finished.is_set():
                now = self._clock()
                if now >= next_send:
                    next_send = self._after_send(next_send, now)
                # Wake at least every half second to notice the end of a bounded run.
                self._stop.wait(min(next_send - self._clock(), 0.5))
        except BaseException as exc:  # noqa: BLE001 - handed to the sampling thread to raise
            self._sender_failed = exc
            self._stop_sampling()

    def _stop_sampling(self) -> None:
        # The sampling thread waits on the stop flag; a failed sender must wake it. A real
        # StopFlag is woken by set(); a test double without one is polled on its next tick.
        wake = getattr(self._stop, "set", None)
        if callable(wake):
            wake()

    def _after_send(self, scheduled: float, now: float) -> float:
        if self.send():
            self._backoff.reset()
            return _next_tick(scheduled, self._interval, now)
        delay = self._backoff.next_delay(self._retry_after)
        log.warning(
            "exchange unavailable (%s); %d samples buffered, retrying in %.1f s",
            self._last_error,
            len(self._buffer),
            delay,
        )
        return now + delay


def _next_tick(scheduled: float, period: float, now: float) -> float:
    """Keep to the schedule; after falling behind (a slow post) skip ticks, do not burst."""
    tick = scheduled + period
    return tick if tick > now else now + period
