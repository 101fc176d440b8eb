"""Vouchers through billing.settlement's seam: build, issue, the split, the books."""

import datetime as dt

import pytest
from django.utils import timezone

from billing.invoices import invoice_build_for_period
from billing.ledger import account_get, ledger_is_balanced
from billing.models import LedgerAccount, Redemption
from billing.settlement import invoice_invariants_hold, invoice_issue
from billing.subsidy.accounts import voucher_balance
from billing.subsidy.redemption import redemption_claw_back
from billing.subsidy.selectors import programme_budget
from tests.billing.subsidy.factories import programme, site_for, voucher
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    UsageRecordFactory,
)

pytestmark = pytest.mark.django_db
P = LedgerAccount.Purpose


def _usage(buyer, provider, *, start, gpu_seconds, price_amount=3_600, lost=0):
    node = NodeFactory(site=site_for(provider))
    lease = LeaseFactory(
        offer=OfferFactory(node=node, price_amount=price_amount),
        order=OrderFactory(buyer=buyer),
        price_amount=price_amount,
        starts_at=start,
        ends_at=start + dt.timedelta(hours=10),
    )
    return UsageRecordFactory(
        lease=lease,
        window_start=start,
        window_end=start + dt.timedelta(hours=1),
        gpu_seconds_delivered=gpu_seconds,
        gpu_seconds_lost=lost,
    )


def test_issuing_an_invoice_lets_the_voucher_pay_its_share_and_the_books_balance(
    authority_org, buyer_org, provider_org, authority
):
    # given: ¥20,000.00 of usage (plus an hour lost to a fault) and a ¥5,000.00 voucher at 30 %
    start = timezone.now() - dt.timedelta(days=5)
    _usage(buyer_org, provider_org, start=start, gpu_seconds=2_000_000, lost=3_600)
    prog = programme(authority_org, rate_bp=3_000)
    v = voucher(prog, buyer_org, 500_000)
    invoice = invoice_build_for_period(
        buyer=buyer_org, period_start=start - dt.timedelta(days=1), period_end=timezone.now()
    )

    # when
    invoice = invoice_issue(invoice=invoice)

    # then
    invoice.refresh_from_db()
    assert (invoice.total_amount, invoice.voucher_amount, invoice.buyer_amount) == (
        2_000_000,
        500_000,
        1_500_000,
    )
    assert invoice.lines.get(kind="usage").voucher_amount == 500_000
    assert invoice_invariants_hold(invoice)
    assert voucher_balance(voucher=v) == 0
    assert account_get(purpose=P.SUBSIDY_RECEIVABLE).balance == 0  # settlement clearing nets out
    assert programme_budget(programme=prog).spent == 500_000
    assert ledger_is_balanced()

    # and a claw-back makes the buyer owe the ¥5,000.00
    receivable = account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org)
    before = receivable.normal_balance
    redemption_claw_back(redemption=Redemption.objects.get(), actor=authority, reason="audit")
    receivable.refresh_from_db()
    assert receivable.normal_balance - before == 500_000
    assert account_get(purpose=P.SUBSIDY_RECEIVABLE).balance == 0
    assert ledger_is_balanced()
