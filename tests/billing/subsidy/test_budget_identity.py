"""The budget identity, through random histories (a Hypothesis state machine):

    total = left + committed + spent + paid out

after every approval, direct issue, redemption (deduct or reimburse mode),
hold, release, claw-back, expiry, revocation, and claim submitted, approved
and paid — with the ledger balanced at every step."""

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from accounts.models import Organisation
from billing.ledger import ledger_is_balanced
from billing.models import Invoice, Redemption, SubsidyClaim, Voucher
from billing.subsidy import reimbursement_submit
from billing.subsidy.claims import claim_approve, claim_mark_paid, claim_submit
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
    voucher_expire,
    voucher_revoke,
)
from core.errors import ApplicationError
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    spread_organisation,
    usage_line_spec,
    voucher,
)


class BudgetMachine(RuleBasedStateMachine):
    """One programme, two buyers, one provider; every example in a
    transaction rolled back at its end."""

    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.authority = spread_organisation(Organisation.Kind.AUTHORITY)
        self.buyers = [spread_organisation(Organisation.Kind.BUYER) for _ in range(2)]
        self.provider = spread_organisation(Organisation.Kind.PROVIDER)

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    @initialize(
        funding=st.sampled_from(["reserved", "pool"]),
        mode=st.sampled_from(["deduct", "reimburse"]),
        rate_bp=st.sampled_from([2_000, 3_000, 5_000, 10_000]),
        budget_amount=st.integers(100_000, 2_000_000),
        cap=st.one_of(st.none(), st.integers(50_000, 800_000)),
    )
    def programme(self, funding, mode, rate_bp, budget_amount, cap) -> None:
        self.prog = programme(
            self.authority,
            funding=funding,
            settlement_mode=mode,
            rate_bp=rate_bp,
            budget_amount=budget_amount,
            cap_per_enterprise_amount=cap,
        )

    def _refused(self, action) -> None:
        try:
            with transaction.atomic():
                action()
        except ApplicationError:
            pass  # refused (over budget, wrong state): nothing may have moved

    def _pick(self, rows, index):
        rows = list(rows)
        return rows[index % len(rows)] if rows else None

    @rule(buyer=st.integers(0, 1), amount=st.integers(1, 600_000), approve=st.booleans())
    def apply_for_a_voucher(self, buyer, amount, approve) -> None:
        def act():
            application = application_create(
                applicant=self.buyers[buyer],
                programme=self.prog,
                purpose="training",
                expected_gpu_hours=100,
                requested_amount=amount,
            )
            if approve:
                application_approve(application=application, amount=amount)

        self._refused(act)

    @rule(buyer=st.integers(0, 1), amount=st.integers(1, 600_000))
    def issue(self, buyer, amount) -> None:
        self._refused(lambda: voucher(self.prog, self.buyers[buyer], amount))

    @rule(
        buyer=st.integers(0, 1),
        amounts=st.lists(st.integers(1, 900_000), min_size=1, max_size=3),
    )
    def redeem(self, buyer, amounts) -> None:
        specs = [usage_line_spec(provider=self.provider, amount=a) for a in amounts]
        invoice = invoice_with_lines(self.buyers[buyer], specs)
        invoice_redeem_vouchers(invoice=invoice)
        if self.prog.settlement_mode == "reimburse":
            # the buyer pays in full and presents the paid invoice (兑付)
            Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.PAID)
            self._refused(lambda: reimbursement_submit(invoice=invoice))

    @rule(index=st.integers(0, 20))
    def hold(self, index) -> None:
        target = self._pick(Redemption.objects.filter(programme=self.prog, status="applied"), index)
        if target:
            redemption_hold(redemption=target)

    @rule(index=st.integers(0, 20))
    def release(self, index) -> None:
        target = self._pick(Redemption.objects.filter(programme=self.prog, status="held"), index)
        if target:
            redemption_release(redemption=target)

    @rule(index=st.integers(0, 20))
    def claw_back(self, index) -> None:
        live = Redemption.objects.filter(programme=self.prog, status__in=("applied", "held"))
        target = self._pick(live.order_by("pk"), index)
        if target:
            redemption_claw_back(redemption=target, reason="audit")

    @rule(index=st.integers(0, 20), revoke=st.booleans())
    def close_a_voucher(self, index, revoke) -> None:
        target = self._pick(Voucher.objects.filter(programme=self.prog).order_by("pk"), index)
        if target is None:
            return
        if revoke:
            self._refused(lambda: voucher_revoke(voucher=target, reason="audit"))
        else:
            later = target.valid_until + dt.timedelta(seconds=1)
            self._refused(lambda: voucher_expire(voucher=target, now=later))

    @rule()
    def claim_and_pay(self) -> None:
        """The authority claims the month of the usage, approves and pays it."""
        month = timezone.localtime(timezone.now() - dt.timedelta(days=3))
        live = SubsidyClaim.objects.filter(
            programme=self.prog, year=month.year, month=month.month
        ).exclude(status="rejected")
        if live.exists():
            return  # one live claim per month: later redemptions wait for another month
        try:
            claim = claim_submit(programme=self.prog, year=month.year, month=month.month)
        except ApplicationError:
            return  # nothing to claim
        claim = claim_approve(claim=claim)
        claim_mark_paid(claim=claim, paid_at=timezone.now(), reference="BANK-REF")
        event(f"claim paid ({self.prog.settlement_mode})")

    @invariant()
    def budget_identity(self) -> None:
        if not hasattr(self, "prog"):
            return
        budget = programme_budget(programme=self.prog)
        assert budget.total == budget.left + budget.committed + budget.spent + budget.paid_out
        assert budget.holds, budget
        assert min(budget.left, budget.committed, budget.paid_out) >= 0, budget
        assert ledger_is_balanced()


@pytest.mark.django_db
def test_the_budget_identity_holds_through_random_histories_with_claims_paid():
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        BudgetMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
