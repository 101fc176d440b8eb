"""Celery tasks of billing: thin, idempotent, primary keys in, services called.

Money-moving tasks set acks_late + reject_on_worker_lost: a worker killed in
the middle leaves the message to be delivered again, and the service it calls
is all-or-nothing and keyed, so running it again settles exactly once. They
are queued through the outbox (core/outbox.py), never with a bare `.delay`, so
a broker that loses their message loses no work: the relay publishes it again.
"""

import datetime as dt
import logging

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from accounts.models import Organisation
from billing import invoices, period_close, prepaid, settlement
from core import clock
from core.outbox import outbox_enqueue

logger = logging.getLogger(__name__)

MONEY = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(name="billing.invoices_settle_closed_period")
def invoices_settle_closed_period(at: str | None = None) -> int:
    """Fan out one settlement task per buyer for the period that just closed."""
    now = dt.datetime.fromisoformat(at) if at else clock.now()
    previous_start, previous_end = invoices.period_to_close(at=now)
    buyer_ids = invoices.buyers_to_close(period_start=previous_start, period_end=previous_end)
    with transaction.atomic():
        for buyer_id in buyer_ids:
            outbox_enqueue(
                task_name="billing.invoice_settle_buyer",
                args=[buyer_id, previous_start.isoformat(), previous_end.isoformat()],
                key=f"invoice-settle:{buyer_id}:{previous_start.isoformat()}",
            )
    return len(buyer_ids)


@shared_task(name="billing.invoices_sweep")
def invoices_sweep() -> int:
    """Settle whatever a close left behind: drafts of closed periods, buyers
    with usage of a closed period on no issued invoice (billing.period_close)."""
    jobs = period_close.sweep_jobs(now=clock.now())
    with transaction.atomic():
        for job in jobs:
            start, end = job.period_start.isoformat(), job.period_end.isoformat()
            outbox_enqueue(
                task_name="billing.invoice_settle_buyer",
                args=[job.buyer_id, start, end],
                key=f"invoice-settle:{job.buyer_id}:{start}",
            )
    if jobs:
        logger.warning("the sweep settles %s buyer periods a close left behind", len(jobs))
    return len(jobs)


class ClosedPeriodUnbilled(Exception):
    """Usage of a closed period is on no issued invoice (an alarm)."""


@shared_task(name="billing.closed_periods_check")
def closed_periods_check() -> int:
    """The invariant of the close, checked on schedule: it fails (a failing
    scheduled task on the operator page) when usage of a closed period is on
    no issued invoice or a draft outlived its period's close."""
    check = period_close.closed_periods_check(now=clock.now())
    if not check.holds:
        raise ClosedPeriodUnbilled(
            f"{check.missed_records} usage records of periods closed by "
            f"{check.closed_until.isoformat()} are on no issued invoice "
            f"(buyers {list(check.missed_buyer_ids[:10])}); "
            f"{check.drafts_past_close} drafts past their close"
        )
    return check.late_records


@shared_task(name="billing.invoice_settle_buyer", **MONEY)
def invoice_settle_buyer(buyer_id: int, period_start: str, period_end: str) -> int | None:
    buyer = Organisation.objects.filter(pk=buyer_id).first()
    if buyer is None:
        return None
    window = invoices.settle_window_for(
        buyer=buyer,
        period_start=dt.datetime.fromisoformat(period_start),
        period_end=dt.datetime.fromisoformat(period_end),
    )
    if window is None:
        return None
    invoice = settlement.invoice_settle(buyer=buyer, period_start=window[0], period_end=window[1])
    return invoice.pk if invoice else None


@shared_task(name="billing.invoice_refresh_for_lease")
def invoice_refresh_for_lease(lease_id: int) -> int | None:
    """On lease completion: refresh the buyer's running draft for this period."""
    from market.models import Lease

    lease = Lease.objects.filter(pk=lease_id).select_related("buyer").first()
    if lease is None:
        return None
    return invoices.invoice_draft_refresh(buyer=lease.buyer)


class DraftsRefreshIncomplete(Exception):
    """Some buyers' drafts could not be refreshed (the others were)."""


@shared_task(name="billing.invoice_drafts_refresh")
def invoice_drafts_refresh() -> int:
    result = invoices.invoice_drafts_refresh(now=clock.now())
    if result.failed_buyer_ids:
        raise DraftsRefreshIncomplete(
            f"the drafts of buyers {list(result.failed_buyer_ids[:10])} could not be refreshed; "
            f"{result.refreshed} others were"
        )
    return result.refreshed


@shared_task(name="billing.stripe_event_process", **MONEY)
def stripe_event_process(event_pk: int) -> None:
    from billing import payments
    from billing.models import StripeEvent

    event = StripeEvent.objects.filter(pk=event_pk).first()
    if event is None:
        return
    payments.stripe_event_process(event=event)


@shared_task(name="billing.stripe_events_reconcile")
def stripe_events_reconcile() -> int:
    from billing import payments

    return payments.stripe_events_reconcile()


@shared_task(name="billing.payout_run_scheduled")
def payout_run_scheduled(key: str | None = None) -> str:
    """The daily payout run, written to the outbox (key = the local date, so a
    re-run is a no-op) and executed by `payout_run_execute`."""
    key = key or f"payouts-{timezone.localdate():%Y-%m-%d}"
    with transaction.atomic():
        outbox_enqueue(task_name="billing.payout_run_execute", args=[key], key=f"payout-run:{key}")
    return key


@shared_task(name="billing.payout_run_execute", **MONEY)
def payout_run_execute(key: str) -> int:
    from billing import payouts

    return payouts.payout_run_execute(key=key).pk


@shared_task(name="billing.funding_sweep", **MONEY)
def funding_sweep() -> int:
    """Every minute: buyers' available funds against their terms (billing.prepaid).
    It may start an automatic top-up and end leases; a second run does neither twice
    (one top-up per crossing, a lease already ended is skipped)."""
    return prepaid.funding_sweep()
