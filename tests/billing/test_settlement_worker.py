"""A real Celery worker, SIGKILLed in the middle of settlement."""

import datetime as dt
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from billing.ledger import account_balance_from_postings, ledger_is_balanced
from billing.models import Invoice, LedgerAccount, LedgerTransaction
from billing.tasks import invoices_settle_closed_period
from tests.billing.conftest import JUNE, MAY, make_lease
from tests.factories import OrganisationFactory, UsageRecordFactory
from tests.support import celery_worker_start

ROOT = Path(__file__).resolve().parents[2]


def _start_worker(env: dict, log: Path) -> subprocess.Popen:
    return celery_worker_start(env=env, log=log, name="billing-kill")


def _wait(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError(what)


def _markers(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_settlement_settles_every_invoice_exactly_once_after_restart(
    catalogue, tmp_path
):
    if not django_settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    import redis

    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()
    # given four buyers with May usage
    provider = OrganisationFactory(kind="provider")
    buyers = [OrganisationFactory(kind="buyer") for _ in range(4)]
    for buyer in buyers:
        lease = make_lease(
            buyer=buyer,
            provider=provider,
            price_amount=2_000,
            gpu_count=1,
            starts_at=MAY + dt.timedelta(days=3),
            hours=10,
        )
        UsageRecordFactory(
            lease=lease,
            window_start=lease.starts_at,
            window_end=lease.ends_at,
            gpu_seconds_delivered=36_000,
        )
    markers = tmp_path / "markers"
    markers.mkdir()
    db = django_settings.DATABASES["default"]
    env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "BILLING_SETTLEMENT_HOOKS": "tests.billing.hooks.pause_mid_settlement",
        "BILLING_TEST_MARKER_DIR": str(markers),
        "BILLING_TEST_PAUSE_SECONDS": "1.5",
        "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(
            {"visibility_timeout": 4, "unacked_restore_interval": 1, "unacked_restore_throttle": 1}
        ),
    }
    log = tmp_path / "worker.log"
    worker = _start_worker(env, log)
    workers = [worker]
    try:
        # when the period closes and the pool process is SIGKILLed mid-settlement
        invoices_settle_closed_period.delay(at=(JUNE + dt.timedelta(hours=1)).isoformat())
        first = _wait(lambda: _markers(markers), timeout=60, what="settlement never started")
        child_pid = int(sorted(first)[0].rsplit("-", 1)[1])
        os.kill(child_pid, signal.SIGKILL)
        # and then, mid-settlement again, the whole worker (main process too)
        seen = _markers(markers)
        _wait(lambda: _markers(markers) - seen, timeout=60, what="no retry after the kill")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        assert Invoice.objects.exclude(status=Invoice.Status.DRAFT).count() < 4
        # and a fresh worker starts
        workers.append(_start_worker(env, log))

        # then every buyer's May invoice is issued exactly once
        _wait(
            lambda: Invoice.objects.filter(status=Invoice.Status.OPEN).count() == 4,
            timeout=90,
            what="not every invoice was settled: " + log.read_text(errors="replace")[-2000:],
        )
    finally:
        for process in workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        redis.Redis.from_url(django_settings.REDIS_URL).flushdb()

    for buyer in buyers:
        invoice = Invoice.objects.get(buyer=buyer)
        assert (invoice.total_amount, invoice.buyer_amount) == (20_000, 20_000)
        assert (
            LedgerTransaction.objects.filter(business_key=f"invoice:{invoice.pk}:issue").count()
            == 1
        )
    assert LedgerTransaction.objects.filter(kind="invoice_issue").count() == 4
    assert len(_markers(markers)) >= 6  # 4 settlements + the 2 that were killed
    assert ledger_is_balanced()
    for account in LedgerAccount.objects.all():
        assert account.balance == account_balance_from_postings(account)
