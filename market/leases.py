"""Lease lifecycle (pending → active → completed; pending/active → cancelled).

Failure and migration belong to the telemetry part. Capacity accounting: a
lease holds its node's GPUs while pending or active (market.matching counts
them), so ending a lease frees the node by itself; the offer's
`gpus_available` gets the GPUs back here, unless the offer was withdrawn.
"""

import datetime as dt
from collections import defaultdict

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from core.outbox import outbox_enqueue
from market.models import Lease, LeaseEvent, Offer


def _offers_give_back(returned: dict[int, int]) -> None:
    """Return GPUs to their offers, rows locked in primary-key order (the
    matching engine's lock order for offers)."""
    if not returned:
        return
    live = (
        Offer.objects.select_for_update(no_key=True)
        .filter(id__in=returned)
        .exclude(status=Offer.Status.WITHDRAWN)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for offer_id in list(live):
        Offer.objects.filter(pk=offer_id).update(
            gpus_available=F("gpus_available") + returned[offer_id]
        )


def _transition(
    leases: list[Lease], *, to: str, reason: str, actor: AbstractBaseUser | None, now: dt.datetime
) -> list[Lease]:
    """Move each lease from its current status to `to`, only if it is still in
    that status; appends one event per lease moved."""
    moved = []
    for lease in leases:
        fields = {"status": to}
        if to in (Lease.Status.COMPLETED, Lease.Status.CANCELLED):
            fields["ended_at"] = min(now, lease.ends_at)
        if Lease.objects.filter(pk=lease.pk, status=lease.status).update(**fields) == 1:
            moved.append(lease)
    LeaseEvent.objects.bulk_create(
        [
            LeaseEvent(
                lease=lease, from_status=lease.status, to_status=to, actor=actor, reason=reason
            )
            for lease in moved
        ]
    )
    for lease in moved:
        lease.status = to
    return moved


def leases_advance(*, now: dt.datetime | None = None) -> tuple[int, int]:
    """Activate pending leases whose start has come and complete active leases
    whose end has passed. Returns (activated, completed). Safe to run twice at
    once: rows being moved by another run are skipped."""
    now = now or timezone.now()
    with transaction.atomic():
        starting = list(
            Lease.objects.select_for_update(skip_locked=True)
            .filter(status=Lease.Status.PENDING, starts_at__lte=now)
            .order_by("id")
        )
        activated = _transition(
            starting, to=Lease.Status.ACTIVE, reason="start time reached", actor=None, now=now
        )
    with transaction.atomic():
        ending = list(
            Lease.objects.select_for_update(skip_locked=True)
            .filter(status=Lease.Status.ACTIVE, ends_at__lte=now)
            .order_by("id")
        )
        completed = _transition(
            ending, to=Lease.Status.COMPLETED, reason="end time reached", actor=None, now=now
        )
        returned: dict[int, int] = defaultdict(int)
        for lease in completed:
            returned[lease.offer_id] += lease.gpu_count
        _offers_give_back(returned)
        _leases_completed_notify([lease.pk for lease in completed])
    return len(activated), len(completed)


def _leases_completed_notify(lease_ids: list[int]) -> None:
    """Queue the subscribers of lease completion (settings.LEASE_COMPLETED_TASKS),
    e.g. billing refreshing the buyer's draft invoice, through the outbox in the
    transaction that completed the leases."""
    for dotted in settings.LEASE_COMPLETED_TASKS:
        task_name = import_string(dotted).name
        for lease_id in lease_ids:
            outbox_enqueue(
                task_name=task_name, args=[lease_id], key=f"lease-completed:{lease_id}:{task_name}"
            )


def leases_cancel(
    *, leases: list[Lease], actor: AbstractBaseUser | None, reason: str
) -> list[Lease]:
    """Cancel pending or active leases (caller holds the order's lock) and give
    their GPUs back to the offers."""
    now = timezone.now()
    cancellable = [
        lease for lease in leases if lease.status in (Lease.Status.PENDING, Lease.Status.ACTIVE)
    ]
    cancelled = _transition(
        cancellable, to=Lease.Status.CANCELLED, reason=reason, actor=actor, now=now
    )
    returned: dict[int, int] = defaultdict(int)
    for lease in cancelled:
        returned[lease.offer_id] += lease.gpu_count
    _offers_give_back(returned)
    return cancelled
