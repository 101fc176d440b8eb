"""One Celery queue per domain, routed in settings; every task has its queue."""

from celery import current_app
from django.conf import settings

EXPECTED = {
    "market.match_order": "matching",
    "market.match_round": "matching",
    "market.orders_expire": "matching",
    "market.leases_failover": "matching",
    "market.nodes_health_check": "telemetry",
    "market.leases_meter": "telemetry",
    "billing.invoice_drafts_refresh": "billing",
    "billing.vouchers_expire_due": "billing",
    "billing.stripe_event_process": "payments",
    "billing.stripe_events_reconcile": "payments",
    "billing.payout_run_execute": "payouts",
    "core.outbox_relay": "celery",
}


def _queue(name: str) -> str:
    route = current_app.amqp.router.route({}, name)
    return route["queue"].name


def test_tasks_go_to_their_domains_queue():
    current_app.loader.import_default_modules()
    assert {name: _queue(name) for name in EXPECTED} == EXPECTED


def test_every_task_of_ours_lands_on_a_queue_a_worker_consumes():
    current_app.loader.import_default_modules()
    ours = [n for n in current_app.tasks if n.split(".")[0] in ("core", "market", "billing")]
    assert ours
    assert {_queue(name) for name in ours} <= set(settings.EXCHANGE_CELERY_QUEUES)
