"""Celery tasks of the market: thin wrappers that take ids and call the engine.

All are idempotent: matching re-checks capacity under row locks, lease and
order transitions only move rows still in their old status.
"""

from celery import shared_task

from core import clock
from market import index, leases, matching, orders
from market import leases as failover


@shared_task(name="market.match_order", acks_late=True, reject_on_worker_lost=True)
def match_order(order_id: int) -> int:
    """Match a newly placed order at once (queued after its commit)."""
    return len(matching.order_match(order_id=order_id))


@shared_task(name="market.match_round", acks_late=True, reject_on_worker_lost=True)
def match_round() -> int:
    """The beat's periodic round over every open order."""
    return matching.match_round().leases_created


@shared_task(name="market.leases_advance", acks_late=True, reject_on_worker_lost=True)
def leases_advance() -> list[int]:
    return list(leases.leases_advance())


@shared_task(name="market.orders_expire", acks_late=True, reject_on_worker_lost=True)
def orders_expire() -> int:
    return orders.orders_expire()


@shared_task(name="market.leases_failover", acks_late=True, reject_on_worker_lost=True)
def leases_failover() -> int:
    return failover.leases_failover(now=clock.now())


@shared_task(name="market.price_index_publish", acks_late=True, reject_on_worker_lost=True)
def price_index_publish() -> int | None:
    """Publish yesterday's price index once (later runs find it published)."""
    snapshot = index.index_publish_due()
    return None if snapshot is None else snapshot.seq
