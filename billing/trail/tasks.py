"""Celery tasks of the subsidy trail (registered by billing/apps.py)."""

import logging

from celery import shared_task

from billing.trail import heads, log

logger = logging.getLogger(__name__)


@shared_task(name="billing.trail_sign_tree_head")
def trail_sign_tree_head() -> int:
    """Beat, hourly: log the new evidence and sign a tree head; returns its size."""
    return heads.tree_head_sign().tree_size


class TrailTampered(Exception):
    """The trail's self-verification failed: logged evidence was rewritten or
    deleted. The failing scheduled task is the operator page's tamper alarm."""


@shared_task(name="billing.trail_check")
def trail_check() -> int:
    """Recompute every logged record's leaf; log each one that no longer
    matches and fail (the tamper alarm) when any does. Returns 0 when clean."""
    found = log.trail_check()
    for mismatch in found:
        logger.error(
            "trail: %s %s (leaf %s) was %s after it was logged",
            mismatch.kind,
            mismatch.record_id,
            mismatch.index,
            mismatch.problem,
        )
    if found:
        shown = ", ".join(f"{m.kind} {m.record_id} {m.problem}" for m in found[:10])
        raise TrailTampered(
            f"{len(found)} logged records no longer match the trail: {shown}"
            + (" …" if len(found) > 10 else "")
        )
    return 0
