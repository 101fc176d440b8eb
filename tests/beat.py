"""Celery beat's schedule played on a moved clock, for tests.

Only the tasks of settings.CELERY_BEAT_SCHEDULE run — nothing by hand — each
when due, in-process (eager, as `celery beat` would queue them to a worker),
while time_machine moves the clock in steps. A task whose interval is shorter
than the step runs once per step. Every task any of them queues is counted.
"""

import datetime as dt
from datetime import timedelta

import time_machine
from celery import current_app
from celery.signals import task_prerun
from django.conf import settings


def _interval(schedule) -> timedelta:
    if isinstance(schedule, int | float):
        return timedelta(seconds=schedule)
    if isinstance(schedule, timedelta):
        return schedule
    return schedule.run_every


class BeatClock:
    """`with BeatClock(start=...) as beat: beat.play(until=...)`; then read
    `beat.started` (every task run, scheduled or queued by another) and
    `beat.failures` (scheduled tasks that raised)."""

    def __init__(self, *, start: dt.datetime, step: timedelta = timedelta(seconds=60)) -> None:
        self.now, self.step = start, step
        self.started: list[tuple[str, tuple]] = []  # (task name, args)
        self.failures: list[tuple[str, dt.datetime, str]] = []
        current_app.loader.import_default_modules()
        self.entries = {
            name: (entry["task"], _interval(entry["schedule"]), tuple(entry.get("args", ())))
            for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        }
        self.due = dict.fromkeys(self.entries, start)

    def __enter__(self) -> "BeatClock":
        self.traveller = time_machine.travel(self.now, tick=False)
        self.clock = self.traveller.start()
        task_prerun.connect(self._count, weak=False)
        return self

    def __exit__(self, *exc) -> None:
        task_prerun.disconnect(self._count)
        self.traveller.stop()

    def _count(self, sender=None, args=None, **kwargs) -> None:
        self.started.append((sender.name, tuple(args or ())))

    def play(self, *, until: dt.datetime) -> None:
        """Run what falls due up to `until`, then leave the clock there."""
        while self.now <= until:
            self.clock.move_to(self.now)
            for name, (task_name, interval, args) in self.entries.items():
                if self.now < self.due[name]:
                    continue
                self.due[name] = self.now + interval
                # As a worker runs it: a failure is recorded (signals), not raised.
                result = current_app.tasks[task_name].apply(args=args, throw=False)
                if result.failed():
                    self.failures.append((task_name, self.now, repr(result.result)))
            self.now += self.step

    def runs_of(self, task_name: str) -> list[tuple]:
        return [args for name, args in self.started if name == task_name]
