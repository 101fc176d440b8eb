"""Celery tasks of the voucher part (beat's, and the claim export a page asks for): thin wrappers over services."""

from celery import shared_task

from billing.subsidy.claim_export import claim_export_run as _claim_export_run
from billing.subsidy.fraud import fraud_flags_compute as _fraud_flags_compute
from billing.subsidy.services import vouchers_expire_due as _vouchers_expire_due


@shared_task(name="billing.vouchers_expire_due", acks_late=True, reject_on_worker_lost=True)
def vouchers_expire_due() -> dict:
    """Activate and expire vouchers; unused balances go back to programmes."""
    return _vouchers_expire_due()


@shared_task(name="billing.fraud_flags_compute")
def fraud_flags_compute() -> int:
    return _fraud_flags_compute()


@shared_task(name="billing.claim_export")
def claim_export(token: str) -> int:
    """Build a claim month's CSV that the authority's page asked for."""
    return _claim_export_run(token=token)
