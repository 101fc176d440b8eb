"""Celery tasks of the accounts room."""

from celery import shared_task
from django.db import transaction

from accounts import webhooks
from core.outbox import outbox_claim_waiting, outbox_coalesced_start, outbox_complete


@shared_task(name="accounts.webhooks_send", acks_late=True, reject_on_worker_lost=True)
def webhooks_send() -> dict[str, int]:
    """Send every webhook delivery that is due: queued after an event's commit
    (its outbox rows coalesced into one run) and on the beat, for retries."""
    outbox_coalesced_start(webhooks.SEND_TASK)
    with transaction.atomic():
        waiting = outbox_claim_waiting(task_name=webhooks.SEND_TASK)
        outbox_complete(message_ids=[m.pk for m in waiting])
    return webhooks.webhooks_send_due()
