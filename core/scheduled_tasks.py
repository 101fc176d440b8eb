"""The scheduled tasks' last outcomes, recorded through Celery's signals.

Every task named in settings.CELERY_BEAT_SCHEDULE has one ScheduledTaskStatus
row: a task that ends well sets `last_success_at`, one that raises (or runs
out of time) sets `last_failure_at` and the error. Core knows the tasks by
name only, from the settings; it imports no app of ours.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from celery.signals import task_failure, task_success
from django.conf import settings
from django.db.models import F

from core import clock
from core.models import ScheduledTaskStatus

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


def scheduled_task_names() -> dict[str, float]:
    """The scheduled tasks and their intervals in seconds (the shortest, if
    a task is scheduled twice)."""
    names: dict[str, float] = {}
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        schedule = entry["schedule"]
        seconds = (
            float(schedule)
            if isinstance(schedule, int | float)
            else getattr(schedule, "run_every", dt.timedelta(hours=1)).total_seconds()
        )
        names[entry["task"]] = min(seconds, names.get(entry["task"], seconds))
    return names


def _update(name: str, **fields) -> None:
    """One UPDATE in the usual case; the row is created on a task's first end."""
    if ScheduledTaskStatus.objects.filter(name=name).update(**fields):
        return
    ScheduledTaskStatus.objects.get_or_create(name=name)
    ScheduledTaskStatus.objects.filter(name=name).update(**fields)


def scheduled_task_record_success(*, name: str, at: dt.datetime) -> None:
    _update(name, last_success_at=at, failures_in_a_row=0)


def scheduled_task_record_failure(*, name: str, at: dt.datetime, error: str) -> None:
    _update(
        name,
        last_failure_at=at,
        last_error=error[:MAX_ERROR_CHARS],
        failures_in_a_row=F("failures_in_a_row") + 1,
    )


@dataclass(frozen=True)
class ScheduledTask:
    name: str
    interval_seconds: float
    status: ScheduledTaskStatus | None  # None: it never ended since it was scheduled

    @property
    def failing(self) -> bool:
        return self.status is not None and self.status.failing


def scheduled_tasks() -> list[ScheduledTask]:
    """Every scheduled task with its last outcomes, failing ones first."""
    names = scheduled_task_names()
    statuses = {row.name: row for row in ScheduledTaskStatus.objects.filter(name__in=names)}
    tasks = [
        ScheduledTask(name=name, interval_seconds=seconds, status=statuses.get(name))
        for name, seconds in names.items()
    ]
    return sorted(tasks, key=lambda task: (not task.failing, task.name))


def _on_success(sender=None, **kwargs) -> None:
    name = getattr(sender, "name", None)
    if name not in scheduled_task_names():
        return
    try:
        scheduled_task_record_success(name=name, at=clock.now())
    except Exception:
        logger.exception("could not record the success of %s", name)


def _on_failure(sender=None, exception=None, **kwargs) -> None:
    name = getattr(sender, "name", None)
    if name not in scheduled_task_names():
        return
    try:
        error = f"{type(exception).__name__}: {exception}"
        scheduled_task_record_failure(name=name, at=clock.now(), error=error)
    except Exception:
        logger.exception("could not record the failure of %s", name)


def connect() -> None:
    """Called once by CoreConfig.ready()."""
    task_success.connect(_on_success, weak=False, dispatch_uid="core.scheduled_task_success")
    task_failure.connect(_on_failure, weak=False, dispatch_uid="core.scheduled_task_failure")
