"""Celery tasks of the telemetry part: thin, idempotent wrappers run by beat."""

from celery import shared_task
from django.utils import timezone

from market import failover, health, metering


@shared_task(name="market.nodes_health_check")
def nodes_health_check() -> int:
    return health.nodes_health_check(now=timezone.now())


@shared_task(name="market.leases_failover", acks_late=True, reject_on_worker_lost=True)
def leases_failover() -> int:
    return failover.leases_failover(now=timezone.now())


@shared_task(name="market.leases_meter", acks_late=True, reject_on_worker_lost=True)
def leases_meter() -> int:
    return metering.leases_meter(now=timezone.now())
