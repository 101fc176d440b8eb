"""Celery tasks of the telemetry part: thin, idempotent wrappers run by beat."""

from celery import shared_task

from core import clock
from market.telemetry import health, metering, reliability, storage


class MeteringIncomplete(Exception):
    """Some leases could not be metered; the others were. Raised after the run
    so that the run is recorded as failing and the operator sees it."""


@shared_task(name="market.nodes_health_check")
def nodes_health_check() -> int:
    return health.nodes_health_check(now=clock.now())


@shared_task(name="market.leases_meter", acks_late=True, reject_on_worker_lost=True)
def leases_meter() -> int:
    now = clock.now()
    result = metering.leases_meter(now=now)
    if result.written:
        reliability.provider_reliability_refresh(now=now)
    if result.failed_lease_ids:
        raise MeteringIncomplete(
            f"{len(result.failed_lease_ids)} lease(s) could not be metered "
            f"({', '.join(map(str, result.failed_lease_ids[:10]))}); "
            f"{result.written} usage records were written for the others"
        )
    return result.written


@shared_task(name="market.telemetry_rollup")
def telemetry_rollup() -> int:
    return storage.telemetry_rollup(now=clock.now())


@shared_task(name="market.telemetry_storage_maintain", acks_late=True, reject_on_worker_lost=True)
def telemetry_storage_maintain() -> dict[str, int]:
    return storage.telemetry_storage_maintain(now=clock.now())
