"""Random sequences of issue / redeem / expire / revoke / hold / claw back keep
the books right: budget = spent + committed-unspent + left, balances ≥ 0, no
enterprise above its caps, the ledger balanced, the invoices agreeing."""

import datetime as dt

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Organisation
from billing.ledger import account_balance_from_postings, ledger_is_balanced
from billing.models import InvoiceLine, LedgerAccount, Redemption, Voucher
from billing.subsidy.redemption import (
    invoice_redeem_vouchers,
    redemption_claw_back,
    redemption_hold,
)
from billing.subsidy.selectors import programme_budget, voucher_balances
from billing.subsidy.services import voucher_expire, voucher_revoke
from core.errors import ApplicationError
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    spread_organisation,
    usage_line_spec,
    voucher,
)

operation = st.one_of(
    st.tuples(st.just("issue"), st.integers(0, 1), st.integers(1, 400_000)),
    st.tuples(
        st.just("redeem"),
        st.integers(0, 1),
        st.lists(st.integers(1, 900_000), min_size=1, max_size=3),
    ),
    st.tuples(st.just("expire"), st.integers(0, 9)),
    st.tuples(st.just("revoke"), st.integers(0, 9)),
    st.tuples(st.just("hold"), st.integers(0, 9)),
    st.tuples(st.just("claw_back"), st.integers(0, 9)),
)


def _check(prog, buyers) -> None:
    budget = programme_budget(programme=prog)
    assert budget.holds, budget
    assert min([budget.left, budget.committed, budget.spent, budget.pool_entitlements]) >= 0
    assert all(b >= 0 for b in voucher_balances(vouchers=prog.vouchers.all()).values())
    for buyer in buyers:
        live = (
            Redemption.objects.filter(
                programme=prog, beneficiary=buyer, status__in=("applied", "held")
            ).aggregate(total=Sum("amount"))["total"]
            or 0
        )
        assert live <= prog.cap_per_enterprise_amount
    assert ledger_is_balanced()
    for account in LedgerAccount.objects.all():
        assert account.balance == account_balance_from_postings(account)
    for line in InvoiceLine.objects.all():
        deducted = (
            line.redemptions.filter(status__in=("applied", "held")).aggregate(total=Sum("amount"))[
                "total"
            ]
            or 0
        )
        assert line.voucher_amount == deducted <= line.amount


def _apply(op, prog, buyers, provider, authority_user) -> None:
    vouchers = list(Voucher.objects.filter(programme=prog).order_by("pk"))
    redemptions = list(Redemption.objects.filter(programme=prog).order_by("pk"))
    kind = op[0]
    try:
        if kind == "issue":
            voucher(prog, buyers[op[1]], op[2])
        elif kind == "redeem":
            specs = [usage_line_spec(provider=provider, amount=amount) for amount in op[2]]
            invoice_redeem_vouchers(invoice=invoice_with_lines(buyers[op[1]], specs))
        elif kind in ("expire", "revoke") and vouchers:
            target = vouchers[op[1] % len(vouchers)]
            if kind == "expire":
                voucher_expire(voucher=target, now=target.valid_until + dt.timedelta(seconds=1))
            else:
                voucher_revoke(voucher=target, actor=authority_user, reason="property test")
        elif kind == "hold" and redemptions:
            redemption_hold(redemption=redemptions[op[1] % len(redemptions)])
        elif kind == "claw_back" and redemptions:
            target = redemptions[op[1] % len(redemptions)]
            redemption_claw_back(redemption=target, reason="property test")
    except ApplicationError:
        pass  # refused (over budget, wrong state): refusals must leave the books as they were


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(operation, min_size=1, max_size=8),
    funding=st.sampled_from(["reserved", "pool"]),
    rate_bp=st.sampled_from([1_000, 3_000, 5_000, 10_000]),
    cap=st.integers(50_000, 600_000),
    budget_amount=st.integers(100_000, 1_000_000),
)
def test_random_voucher_histories_keep_the_books_right(
    ops, funding, rate_bp, cap, budget_amount, authority_org
):
    with transaction.atomic():
        prog = programme(
            authority_org,
            funding=funding,
            rate_bp=rate_bp,
            budget_amount=budget_amount,
            cap_per_enterprise_amount=cap,
        )
        buyers = [spread_organisation(Organisation.Kind.BUYER) for _ in range(2)]
        provider = spread_organisation(Organisation.Kind.PROVIDER)
        for op in ops:
            _apply(op, prog, buyers, provider, None)
            _check(prog, buyers)
        transaction.set_rollback(True)
