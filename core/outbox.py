"""The transactional outbox: work that moves money or capacity survives a lost broker.

`outbox_enqueue` writes the task as a row in the caller's transaction, so the
task exists exactly when the change that needs it was committed. After commit
the row is published to Celery with the row's own task id; a worker that runs
the task to the end marks the row completed (`task_postrun`, below). The relay
(`outbox_relay`, on the beat schedule) publishes again every row that is not
completed once its `available_at` has passed: rows whose publish failed (broker
down: the caller gets its answer anyway, the failure is logged) and rows a
broker lost after accepting them (Redis killed without persistence, a message
left unacked). Tasks are idempotent, so a republish duplicates no effect.

In the embedded mode (eager Celery) publishing runs the task in-process right
after commit, as `transaction.on_commit(task.delay)` did.

Coalescing (`coalesce=`): work that one task run can do for many rows at once
(matching the orders placed meanwhile) publishes after commit only when no run
is pending under that name - a flag in the cache set with the publish, cleared
by the run as it starts (`outbox_coalesced_start`), which then takes every
waiting row of its kind (`outbox_claim_waiting`). However fast rows arrive, at
most one run waits in the queue; a row whose run was lost is still published
on its own by the relay.
"""

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import current_app, states
from celery.signals import task_failure, task_postrun
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Min, Q

from core import clock
from core.models import OutboxMessage

logger = logging.getLogger(__name__)

TASK_ID_PREFIX = "outbox:"
# A new row waits this long for its own after-commit publish before the relay may
# take it (a process that died between commit and publish leaves it to the relay).
FIRST_PUBLISH_GRACE = dt.timedelta(seconds=30)
# Publishing gives up quickly: the relay tries again, and the caller is waiting.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}


# How long a pending coalesced run holds its flag: should its message be lost,
# the next row publishes again after this (and the relay has the rows anyway).
COALESCE_FLAG_SECONDS = 30


def _flag(name: str) -> str:
    return f"outbox:pending:{name}"


def outbox_enqueue(
    *,
    task_name: str,
    args: Sequence[Any] = (),
    key: str,
    coalesce: str | None = None,
    coalesce_seconds: float = 0,
    fresh: bool = False,
) -> OutboxMessage:
    """Write `task_name(*args)` to the outbox in the current transaction and
    publish it after commit. `key` names the work (e.g. `order-match:42`): while
    a row with that key waits, enqueueing it again publishes that row again
    instead of adding another (a Stripe retry of an event still unprocessed).
    With `coalesce`, the publish after commit is skipped while a run of that
    name is pending (module docstring); `coalesce_seconds`: the run it
    publishes starts that much later, taking every row that arrived meanwhile.
    `fresh`: the key names something this transaction created (a new order's
    id), so no row can wait under it yet: the row is inserted without looking
    for one first."""
    new_row = {
        "task_name": task_name,
        "args": list(args),
        "key": key,
        "task_id": f"{TASK_ID_PREFIX}{uuid.uuid4()}",
        "available_at": clock.now() + FIRST_PUBLISH_GRACE,
    }
    waiting: OutboxMessage | None
    if fresh:
        waiting = OutboxMessage.objects.create(**new_row)
    else:
        waiting = OutboxMessage.objects.filter(key=key, completed_at__isnull=True).first()
    if waiting is None:
        try:
            with transaction.atomic():  # a savepoint: a racing equal key loses quietly
                waiting = OutboxMessage.objects.create(**new_row)
        except IntegrityError:
            waiting = OutboxMessage.objects.get(key=key, completed_at__isnull=True)
    message_id = waiting.pk
    if coalesce is None:
        transaction.on_commit(lambda: outbox_publish(message_id=message_id, force=True))
    else:
        transaction.on_commit(
            lambda: _publish_coalesced(
                message_id=message_id, name=coalesce, countdown=coalesce_seconds
            )
        )
    return waiting


def _publish_coalesced(*, message_id: int, name: str, countdown: float) -> None:
    if not cache.add(_flag(name), 1, timeout=COALESCE_FLAG_SECONDS):
        return  # a run is pending: it takes this row too
    if not outbox_publish(message_id=message_id, force=True, countdown=countdown):
        cache.delete(_flag(name))


def outbox_coalesced_start(name: str) -> None:
    """A coalesced run starts: rows committed from now on publish a next run."""
    cache.delete(_flag(name))


def outbox_claim_waiting(*, task_name: str, limit: int = 1000) -> list[OutboxMessage]:
    """Lock and return the waiting rows of `task_name`, oldest first, skipping
    rows another run holds (call inside the transaction that does their work,
    then `outbox_complete` them in it)."""
    return list(
        OutboxMessage.objects.select_for_update(skip_locked=True)
        .filter(task_name=task_name, completed_at__isnull=True)
        .order_by("pk")[:limit]
    )


def outbox_complete(*, message_ids: Sequence[int]) -> None:
    """Rows whose work was done by another row's run (coalescing)."""
    OutboxMessage.objects.filter(pk__in=message_ids, completed_at__isnull=True).update(
        completed_at=clock.now(), last_error=""
    )


def outbox_publish(
    *,
    message_id: int,
    force: bool = False,
    now: dt.datetime | None = None,
    countdown: float = 0,
) -> bool:
    """Publish one waiting row. Claims it first (moves `available_at` past the
    redelivery delay) so that two relays never send the same row at once;
    `force` claims it even before it is due. Never raises: a failure is logged
    and left to the relay."""
    now = now or clock.now()
    claim = OutboxMessage.objects.filter(pk=message_id, completed_at__isnull=True)
    if not force:
        claim = claim.filter(available_at__lte=now)
    claimed = claim.update(
        published_at=now,
        attempts=F("attempts") + 1,
        available_at=now + dt.timedelta(seconds=settings.OUTBOX_REDELIVER_SECONDS),
    )
    if not claimed:
        return False
    message = OutboxMessage.objects.get(pk=message_id)
    try:
        _task(message.task_name).apply_async(
            args=message.args,
            task_id=message.task_id,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
            countdown=countdown or None,
        )
    except Exception as exc:
        # Broker down (or, in the embedded mode, the task itself failed).
        logger.exception(
            "outbox publish failed",
            extra={"task": message.task_name, "key": message.key, "attempts": message.attempts},
        )
        OutboxMessage.objects.filter(pk=message_id, completed_at__isnull=True).update(
            available_at=now + _backoff(message.attempts), last_error=repr(exc)[:2000]
        )
        return False
    return True


def outbox_relay(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Publish every waiting row that is due, oldest first; forget completed
    rows older than OUTBOX_RETENTION_DAYS. Returns how many were published."""
    now = now or clock.now()
    due = list(
        OutboxMessage.objects.filter(completed_at__isnull=True, available_at__lte=now)
        .order_by("available_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    published = sum(outbox_publish(message_id=pk, now=now) for pk in due)
    OutboxMessage.objects.filter(
        completed_at__lt=now - dt.timedelta(days=settings.OUTBOX_RETENTION_DAYS)
    ).delete()
    return published


@dataclass(frozen=True)
class OutboxBacklog:
    waiting: int
    oldest_at: dt.datetime | None  # created_at of the oldest row not yet completed
    failing: int  # waiting rows whose last attempt raised

    def age(self, *, now: dt.datetime | None = None) -> dt.timedelta | None:
        return (now or clock.now()) - self.oldest_at if self.oldest_at else None


def outbox_backlog() -> OutboxBacklog:
    """What the outbox still has to deliver (for the operator overview)."""
    row = OutboxMessage.objects.filter(completed_at__isnull=True).aggregate(
        waiting=Count("pk"),
        oldest_at=Min("created_at"),
        failing=Count("pk", filter=~Q(last_error="")),
    )
    return OutboxBacklog(waiting=row["waiting"], oldest_at=row["oldest_at"], failing=row["failing"])


_IMPORTING = threading.Lock()


def _task(name: str):
    tasks = current_app.tasks
    if name not in tasks:
        # The web process has not imported the apps' task modules yet (a worker has).
        # One thread imports them; another asking meanwhile waits for it, rather
        # than finding the registry half-filled (two webhooks at once did).
        with _IMPORTING:
            if name not in tasks:
                current_app.loader.import_default_modules()
    return tasks[name]


def _backoff(attempts: int) -> dt.timedelta:
    seconds = min(settings.OUTBOX_REDELIVER_SECONDS, 5 * 2 ** min(attempts, 10))
    return dt.timedelta(seconds=seconds)


@task_postrun.connect
def _outbox_task_done(*, task_id: str | None = None, state: str | None = None, **_kwargs) -> None:
    if task_id and task_id.startswith(TASK_ID_PREFIX) and state == states.SUCCESS:
        OutboxMessage.objects.filter(task_id=task_id, completed_at__isnull=True).update(
            completed_at=clock.now(), last_error=""
        )


@task_failure.connect
def _outbox_task_failed(
    *, task_id: str | None = None, exception: BaseException | None = None, **_kwargs
) -> None:
    if task_id and task_id.startswith(TASK_ID_PREFIX):
        OutboxMessage.objects.filter(task_id=task_id, completed_at__isnull=True).update(
            last_error=repr(exception)[:2000]
        )
