"""Twenty settlements at once against one voucher (or one pool) on PostgreSQL."""

import threading

import pytest
from django.db import connection
from django.db.models import Sum

from billing.ledger import ledger_is_balanced
from billing.models import Redemption
from billing.subsidy.accounts import voucher_balance
from billing.subsidy.redemption import invoice_redeem_vouchers
from billing.subsidy.selectors import programme_budget
from market.catalogue import gpu_models_load
from tests.billing.subsidy.factories import invoice_with_lines, programme, usage_line_spec, voucher


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("funding", "budget_amount", "face_amount"),
    [("reserved", 1_000_000, 100_000), ("pool", 100_000, 1_000_000)],
)
def test_twenty_parallel_settlements_never_overspend_a_voucher_or_the_programme(
    funding, budget_amount, face_amount, authority_org, buyer_org, provider_org
):
    gpu_models_load()  # an earlier transactional test may have flushed the seeded catalogue
    # given: 20 invoices each wanting ¥100.00 (30 % of ¥333.34), ¥1,000.00 to share
    prog = programme(authority_org, funding=funding, budget_amount=budget_amount, rate_bp=3_000)
    v = voucher(prog, buyer_org, face_amount)
    invoices = [
        invoice_with_lines(buyer_org, [usage_line_spec(provider=provider_org, amount=33_334)])
        for _ in range(20)
    ]
    barrier = threading.Barrier(20)
    errors = []

    def settle(invoice):
        try:
            barrier.wait()
            invoice_redeem_vouchers(invoice=invoice)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=settle, args=(invoice,)) for invoice in invoices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: exactly ten invoices got ¥100.00 each, nobody more
    assert errors == []
    assert Redemption.objects.aggregate(total=Sum("amount"))["total"] == 100_000
    assert sorted(Redemption.objects.values_list("amount", flat=True)) == [10_000] * 10
    budget = programme_budget(programme=prog)
    assert budget.holds and budget.spent == 100_000
    assert budget.left >= 0
    assert voucher_balance(voucher=v) == face_amount - 100_000
    assert ledger_is_balanced()
