"""Run the Celery beat schedule inside the web process, for the embedded mode.

With no broker (REDIS_URL unset) there is no `celery beat`; the demo server
starts this thread so that matching, metering, settlement and the outbox relay
(core.outbox_relay, which re-runs a task that failed after its commit) still
happen on their schedule. Production runs `celery beat` instead and never uses this.
"""

import logging
import threading
import time
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import close_old_connections

from core import clock

logger = logging.getLogger(__name__)


def _interval_seconds(schedule) -> float:
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    run_every = getattr(schedule, "run_every", None)
    if isinstance(run_every, timedelta):
        return run_every.total_seconds()
    return 60.0


# On the fast clock a frequent task (matching, health) still runs at most this
# often in real time, as the agents report: the web requests keep the database.
SIMULATED_FLOOR_SECONDS = 5.0


class InProcessBeat(threading.Thread):
    def __init__(self, *, tick: float = 1.0) -> None:
        super().__init__(name="in-process-beat", daemon=True)
        self.tick = tick
        self.stopped = threading.Event()

    def run(self) -> None:
        # A worker imports every app's tasks module at start; do the same here,
        # or the scheduled names are unknown to the app.
        current_app.loader.import_default_modules()
        if clock.simulated():
            return self._run_simulated()
        entries = {
            name: (entry["task"], _interval_seconds(entry["schedule"]), entry.get("args", ()))
            for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        }
        due = dict.fromkeys(entries, 0.0)
        while not self.stopped.wait(self.tick):
            now = time.monotonic()
            for name, (task_name, interval, args) in entries.items():
                if now < due[name]:
                    continue
                due[name] = now + interval
                self._apply(task_name, args)

    def _run_simulated(self) -> None:
        """On the demo's accelerated clock the schedule is in simulated time
        (daily work at 03:00 Beijing time), as the simulator plays it, each
        task at most once every SIMULATED_FLOOR_SECONDS of real time."""
        from demo.simulation import Beat

        beat = Beat(start=clock.now(), floor=SIMULATED_FLOOR_SECONDS)
        while not self.stopped.wait(self.tick):
            for task_name, args in beat.due(clock.now()):
                self._apply(task_name, args)

    def _apply(self, task_name: str, args) -> None:
        try:
            current_app.tasks[task_name].apply(args=args)
        except Exception:
            logger.exception("scheduled task failed", extra={"task": task_name})
        finally:
            close_old_connections()

    def stop(self) -> None:
        self.stopped.set()
