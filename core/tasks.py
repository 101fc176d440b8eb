"""Celery tasks every app shares."""

from celery import shared_task

from core import outbox


@shared_task(name="core.outbox_relay")
def outbox_relay() -> int:
    """Publish outbox rows whose publish failed or whose message a broker lost."""
    return outbox.outbox_relay()
