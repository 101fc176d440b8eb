"""Celery tasks of the subsidy trail (registered by billing/apps.py)."""

import logging

from celery import shared_task

from billing.trail import heads, log

logger = logging.getLogger(__name__)


@shared_task(name="billing.trail_sign_tree_head")
def trail_sign_tree_head() -> int:
    """Beat, hourly: log the new evidence and sign a tree head; returns its size."""
    return heads.tree_head_sign().tree_size


@shared_task(name="billing.trail_check")
def trail_check() -> int:
    """Recompute every logged record's leaf; log each one that no longer matches."""
    found = log.trail_check()
    for mismatch in found:
        logger.error(
            "trail: %s %s (leaf %s) was %s after it was logged",
            mismatch.kind,
            mismatch.record_id,
            mismatch.index,
            mismatch.problem,
        )
    return len(found)
