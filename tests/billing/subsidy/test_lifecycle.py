"""Vouchers through their lives: issue, apply, expire, revoke, hold, claw back."""

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from billing.ledger import account_get, ledger_is_balanced
from billing.models import (
    LedgerAccount,
    Redemption,
    SubsidyProgramme,
    Voucher,
    VoucherApplication,
)
from billing.subsidy.accounts import voucher_balance
from billing.subsidy.redemption import (
    invoice_redeem_vouchers,
    redemption_claw_back,
    redemption_hold,
    redemption_release,
)
from billing.subsidy.selectors import programme_budget
from billing.subsidy.services import (
    application_approve,
    application_create,
    application_reject,
    voucher_revoke,
    vouchers_expire_due,
)
from core.errors import ApplicationError, Conflict
from tests.billing.subsidy.factories import invoice_with_lines, programme, usage_line_spec, voucher

pytestmark = pytest.mark.django_db


def test_issuing_reserves_budget_and_the_budget_identity_holds(authority_org, buyer_org):
    prog = programme(authority_org, budget_amount=1_000_000)

    voucher(prog, buyer_org, 400_000)

    assert programme_budget(programme=prog) == programme_budget(programme=prog)
    budget = programme_budget(programme=prog)
    assert (budget.left, budget.committed, budget.spent) == (600_000, 400_000, 0)
    assert budget.holds


def test_an_unverified_buyer_cannot_hold_a_voucher_of_a_verified_only_programme(
    authority_org, buyer_org
):
    buyer_org.verified = False
    buyer_org.save()
    prog = programme(authority_org)

    with pytest.raises(ApplicationError) as raised:
        voucher(prog, buyer_org, 100_000)

    assert "holder" in raised.value.errors
    assert not Voucher.objects.exists()


def test_expiry_returns_the_unused_balance_to_the_programme(authority_org, buyer_org, provider_org):
    prog = programme(authority_org, budget_amount=1_000_000)
    v = voucher(prog, buyer_org, 500_000, valid_until=timezone.now() + dt.timedelta(days=5))
    invoice_redeem_vouchers(
        invoice=invoice_with_lines(
            buyer_org, [usage_line_spec(provider=provider_org, amount=100_000)]
        )
    )

    with time_machine.travel(timezone.now() + dt.timedelta(days=6)):
        result = vouchers_expire_due()
        again = vouchers_expire_due()

    assert result["expired"] == 1 and again["expired"] == 0
    assert Voucher.objects.get(pk=v.pk).status == Voucher.Status.EXPIRED
    assert voucher_balance(voucher=v) == 0
    budget = programme_budget(programme=prog)
    assert (budget.left, budget.committed, budget.spent) == (970_000, 0, 30_000)
    assert list(v.events.values_list("to_status", flat=True)) == ["active", "expired"]


def test_revoking_returns_the_balance_and_needs_a_reason(authority_org, buyer_org, authority):
    prog = programme(authority_org, budget_amount=1_000_000)
    v = voucher(prog, buyer_org, 500_000)

    with pytest.raises(ApplicationError):
        voucher_revoke(voucher=v, actor=authority, reason=" ")
    voucher_revoke(voucher=v, actor=authority, reason="company dissolved")

    assert programme_budget(programme=prog).left == 1_000_000
    with pytest.raises(Conflict):
        voucher_revoke(voucher=v, actor=authority, reason="again")


def test_an_approved_application_issues_a_voucher_of_the_approved_amount(
    authority_org, buyer_org, buyer, authority
):
    prog = programme(authority_org)
    application = application_create(
        applicant=buyer_org,
        programme=prog,
        purpose="Fine-tune a 7B model for legal documents",
        expected_gpu_hours=2_000,
        requested_amount=800_000,
        actor=buyer,
    )

    issued = application_approve(application=application, amount=600_000, actor=authority)

    application.refresh_from_db()
    assert application.status == VoucherApplication.Status.APPROVED
    assert issued.application == application and issued.face_amount == 600_000
    assert voucher_balance(voucher=issued) == 600_000
    with pytest.raises(Conflict):
        application_reject(application=application, reason="late", actor=authority)


def test_approving_more_than_requested_is_refused_and_writes_nothing(authority_org, buyer_org):
    prog = programme(authority_org)
    application = application_create(
        applicant=buyer_org, programme=prog, purpose="x", expected_gpu_hours=1, requested_amount=100
    )

    with pytest.raises(ApplicationError):
        application_approve(application=application, amount=101)

    application.refresh_from_db()
    assert application.status == VoucherApplication.Status.PENDING
    assert not Voucher.objects.exists()


def test_a_rejection_keeps_its_reason(authority_org, buyer_org, authority):
    prog = programme(authority_org)
    application = application_create(
        applicant=buyer_org, programme=prog, purpose="x", expected_gpu_hours=1, requested_amount=100
    )

    application_reject(application=application, reason="Not a registered SME", actor=authority)

    application.refresh_from_db()
    assert (application.status, application.decision_reason) == ("rejected", "Not a registered SME")
    assert not Voucher.objects.exists()


def test_claw_back_reverses_the_redemption_and_the_buyer_owes_it(
    authority_org, buyer_org, provider_org, authority
):
    # given
    prog = programme(authority_org, budget_amount=1_000_000)
    v = voucher(prog, buyer_org, 300_000)
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=1_000_000)]
    )
    invoice_redeem_vouchers(invoice=invoice)
    redemption = Redemption.objects.get()
    receivable = account_get(purpose=LedgerAccount.Purpose.BUYER_RECEIVABLE, organisation=buyer_org)
    receivable_before = receivable.normal_balance

    # when
    redemption_hold(redemption=redemption, actor=authority, reason="idle GPUs")
    redemption_claw_back(redemption=redemption, actor=authority, reason="idle burning confirmed")

    # then
    redemption.refresh_from_db()
    invoice.refresh_from_db()
    receivable.refresh_from_db()
    assert redemption.status == Redemption.Status.CLAWED_BACK
    assert redemption.reversal_transaction.reverses == redemption.ledger_transaction
    assert receivable.normal_balance - receivable_before == 300_000
    assert (invoice.voucher_amount, invoice.buyer_amount) == (0, 1_000_000)
    assert Voucher.objects.get(pk=v.pk).status == Voucher.Status.ACTIVE
    assert voucher_balance(voucher=v) == 300_000
    budget = programme_budget(programme=prog)
    assert (budget.left, budget.committed, budget.spent) == (700_000, 300_000, 0)
    assert ledger_is_balanced()
    assert list(redemption.events.values_list("to_status", flat=True)) == [
        "applied",
        "held",
        "clawed_back",
    ]
    with pytest.raises(Conflict):
        redemption_claw_back(redemption=redemption, actor=authority, reason="twice")


def test_claw_back_on_a_revoked_voucher_returns_the_money_to_the_programme(
    authority_org, buyer_org, provider_org, authority
):
    prog = programme(authority_org, budget_amount=1_000_000)
    v = voucher(prog, buyer_org, 500_000)
    invoice_redeem_vouchers(
        invoice=invoice_with_lines(
            buyer_org, [usage_line_spec(provider=provider_org, amount=1_000_000)]
        )
    )
    voucher_revoke(voucher=v, actor=authority, reason="self-dealing")

    redemption_claw_back(
        redemption=Redemption.objects.get(), actor=authority, reason="self-dealing"
    )

    assert voucher_balance(voucher=v) == 0
    budget = programme_budget(programme=prog)
    assert (budget.left, budget.committed, budget.spent) == (1_000_000, 0, 0)


def test_a_held_redemption_can_be_released(authority_org, buyer_org, provider_org, authority):
    prog = programme(authority_org)
    voucher(prog, buyer_org, 500_000)
    invoice_redeem_vouchers(
        invoice=invoice_with_lines(
            buyer_org, [usage_line_spec(provider=provider_org, amount=100_000)]
        )
    )
    redemption = Redemption.objects.get()

    redemption_hold(redemption=redemption, actor=authority)
    redemption_release(redemption=redemption, actor=authority, reason="utilisation explained")

    redemption.refresh_from_db()
    assert redemption.status == Redemption.Status.APPLIED
    with pytest.raises(Conflict):
        redemption_release(redemption=redemption, actor=authority)


def test_a_closed_programme_issues_no_vouchers(authority_org, buyer_org):
    from billing.subsidy.services import programme_close

    prog = programme(authority_org)
    programme_close(programme=prog)

    with pytest.raises(ApplicationError):
        voucher(prog, buyer_org, 100)
    assert SubsidyProgramme.objects.get().status == "closed"


def test_the_beat_schedule_names_registered_voucher_tasks():
    from django.conf import settings

    from config.celery import app

    for entry in ("vouchers-expire-due", "fraud-flags-compute"):
        assert settings.CELERY_BEAT_SCHEDULE[entry]["task"] in app.tasks
