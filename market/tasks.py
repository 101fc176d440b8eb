"""Celery tasks of the market: thin wrappers that take ids and call the engine.

All are idempotent: matching re-checks capacity under row locks, lease and
order transitions only move rows still in their old status.
"""

from celery import shared_task
from django.db import transaction

from core import clock
from core.outbox import outbox_claim_waiting, outbox_coalesced_start, outbox_complete
from market import index, leases, maintenance, matching, orders
from market import leases as failover


@shared_task(name="market.match_order", acks_late=True, reject_on_worker_lost=True)
def match_order(order_id: int) -> int:
    """Match a newly placed order at once (queued after its commit), and with
    it every other order placed since the last run: their outbox rows are
    coalesced into this run (core.outbox) and completed with its commit."""
    outbox_coalesced_start("market.match_order")
    with transaction.atomic():
        waiting = outbox_claim_waiting(task_name="market.match_order")
        order_ids = {order_id} | {int(m.args[0]) for m in waiting if m.args}
        leases = matching.orders_match(order_ids=order_ids)
        outbox_complete(message_ids=[m.pk for m in waiting])
    # what is still short may pre-empt interruptible capacity, with notice
    leases += matching.orders_preempt(order_ids=order_ids)
    return len(leases)


@shared_task(name="market.match_round", acks_late=True, reject_on_worker_lost=True)
def match_round() -> int:
    """The beat's periodic round over every open order; then the orders still
    short may pre-empt interruptible capacity, with notice."""
    created = matching.match_round().leases_created
    return created + len(matching.orders_preempt())


@shared_task(name="market.leases_advance", acks_late=True, reject_on_worker_lost=True)
def leases_advance() -> list[int]:
    return list(leases.leases_advance())


@shared_task(name="market.orders_expire", acks_late=True, reject_on_worker_lost=True)
def orders_expire() -> int:
    return orders.orders_expire()


@shared_task(name="market.leases_failover", acks_late=True, reject_on_worker_lost=True)
def leases_failover() -> int:
    return failover.leases_failover(now=clock.now())


@shared_task(name="market.nodes_drain_due", acks_late=True, reject_on_worker_lost=True)
def nodes_drain_due() -> int:
    """Nodes whose maintenance notice has run out go into maintenance."""
    return maintenance.nodes_drain_due()


@shared_task(name="market.price_index_publish", acks_late=True, reject_on_worker_lost=True)
def price_index_publish() -> int | None:
    """Publish yesterday's price index once (later runs find it published)."""
    snapshot = index.index_publish_due()
    return None if snapshot is None else snapshot.seq
