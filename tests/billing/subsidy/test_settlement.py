"""Hand-computed settlement cases: what the vouchers pay, to the fen."""

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from billing.ledger import ledger_is_balanced
from billing.models import LedgerTransaction, Redemption, Voucher
from billing.subsidy.accounts import voucher_balance
from billing.subsidy.redemption import invoice_redeem_vouchers
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    site_for,
    usage_line_spec,
    voucher,
)

pytestmark = pytest.mark.django_db


def test_a_30_percent_voucher_of_5000_pays_5000_of_a_20000_invoice(
    authority_org, buyer_org, provider_org
):
    # given
    prog = programme(authority_org, rate_bp=3_000)
    v = voucher(
        prog,
        buyer_org,
        500_000,
    )
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=2_000_000)]
    )

    # when
    paid = invoice_redeem_vouchers(invoice=invoice)

    # then
    invoice.refresh_from_db()
    assert paid == 500_000
    assert (invoice.voucher_amount, invoice.buyer_amount) == (500_000, 1_500_000)
    assert invoice.lines.get().voucher_amount == 500_000
    assert voucher_balance(voucher=v) == 0
    assert Voucher.objects.get(pk=v.pk).status == Voucher.Status.EXHAUSTED
    redemption = Redemption.objects.get()
    assert redemption.amount == 500_000
    assert list(redemption.usage_records.all()) == list(invoice.lines.get().usage_records.all())
    assert ledger_is_balanced()


def test_rate_30_percent_of_10000_pays_3000(authority_org, buyer_org, provider_org):
    prog = programme(authority_org, rate_bp=3_000)
    v = voucher(
        prog,
        buyer_org,
        2_000_000,
    )
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=1_000_000)]
    )

    assert invoice_redeem_vouchers(invoice=invoice) == 300_000

    invoice.refresh_from_db()
    assert invoice.buyer_amount == 700_000
    assert voucher_balance(voucher=v) == 1_700_000


def test_domestic_bonus_rate_applies_only_to_domestic_gpu_lines(
    authority_org, buyer_org, provider_org
):
    prog = programme(authority_org, rate_bp=3_000, domestic_rate_bp=5_000)
    voucher(
        prog,
        buyer_org,
        10_000_000,
    )
    invoice = invoice_with_lines(
        buyer_org,
        [
            usage_line_spec(provider=provider_org, amount=1_000_000, gpu_slug="nvidia-h800-sxm"),
            usage_line_spec(
                provider=provider_org, amount=1_000_000, gpu_slug="huawei-ascend-910b3"
            ),
        ],
    )

    assert invoice_redeem_vouchers(invoice=invoice) == 800_000

    imported, domestic = invoice.lines.order_by("pk")
    assert (imported.voucher_amount, domestic.voucher_amount) == (300_000, 500_000)
    assert sorted(Redemption.objects.values_list("rate_bp", flat=True)) == [3_000, 5_000]


def test_a_line_in_an_ineligible_region_gets_nothing_from_the_voucher(
    authority_org, buyer_org, provider_org
):
    prog = programme(authority_org, regions=["甘肃"])
    v = voucher(
        prog,
        buyer_org,
        1_000_000,
    )
    shanghai = site_for(provider_org, region="上海", hub="yangtze")
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, site=shanghai, amount=1_000_000)]
    )

    assert invoice_redeem_vouchers(invoice=invoice) == 0

    invoice.refresh_from_db()
    assert invoice.buyer_amount == 1_000_000
    assert voucher_balance(voucher=v) == 1_000_000
    assert not Redemption.objects.exists()
    assert not LedgerTransaction.objects.filter(kind="voucher_redemption").exists()


def test_the_enterprise_cap_stops_payment_across_two_vouchers(
    authority_org, buyer_org, provider_org
):
    # given: a cap of ¥4,000.00 per enterprise, and two vouchers of ¥3,000.00
    prog = programme(authority_org, rate_bp=5_000, cap_per_enterprise_amount=400_000)
    first = voucher(
        prog,
        buyer_org,
        300_000,
        valid_until=timezone.now() + dt.timedelta(days=30),
    )
    second = voucher(
        prog,
        buyer_org,
        300_000,
    )
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=2_000_000)]
    )

    # when: 50 % of ¥20,000.00 would be ¥10,000.00
    paid = invoice_redeem_vouchers(invoice=invoice)

    # then: the first (older expiry) pays 3,000, the second only 1,000 up to the cap
    assert paid == 400_000
    assert voucher_balance(voucher=first) == 0
    assert voucher_balance(voucher=second) == 200_000
    assert list(Redemption.objects.order_by("pk").values_list("voucher_id", "amount")) == [
        (first.pk, 300_000),
        (second.pk, 100_000),
    ]


def test_the_calendar_year_cap_counts_earlier_invoices(authority_org, buyer_org, provider_org):
    prog = programme(authority_org, rate_bp=5_000, cap_per_enterprise_year_amount=250_000)
    voucher(
        prog,
        buyer_org,
        1_000_000,
    )
    first = invoice_with_lines(buyer_org, [usage_line_spec(provider=provider_org, amount=400_000)])
    second = invoice_with_lines(buyer_org, [usage_line_spec(provider=provider_org, amount=400_000)])

    assert invoice_redeem_vouchers(invoice=first) == 200_000
    assert invoice_redeem_vouchers(invoice=second) == 50_000


def test_a_pool_budget_exhausted_mid_invoice_pays_the_rest_of_the_lines_nothing(
    authority_org, buyer_org, provider_org
):
    # given: a pool of ¥5,000.00 and a voucher entitlement of ¥10,000.00
    prog = programme(authority_org, funding="pool", budget_amount=500_000, rate_bp=3_000)
    v = voucher(
        prog,
        buyer_org,
        1_000_000,
    )
    invoice = invoice_with_lines(
        buyer_org,
        [usage_line_spec(provider=provider_org, amount=1_000_000) for _ in range(3)],
    )

    # when: each line's 30 % is ¥3,000.00
    paid = invoice_redeem_vouchers(invoice=invoice)

    # then: 3,000 + 2,000 (the pool runs dry) + 0
    assert paid == 500_000
    assert [line.voucher_amount for line in invoice.lines.order_by("pk")] == [300_000, 200_000, 0]
    assert voucher_balance(voucher=v) == 500_000
    assert ledger_is_balanced()


def test_reserved_budget_never_commits_more_than_the_budget(authority_org, buyer_org):
    from core.errors import ApplicationError

    prog = programme(authority_org, budget_amount=1_000_000)
    voucher(
        prog,
        buyer_org,
        700_000,
    )

    with pytest.raises(ApplicationError, match="budget"):
        voucher(
            prog,
            buyer_org,
            300_001,
        )

    assert Voucher.objects.count() == 1


def test_an_expired_voucher_pays_nothing(authority_org, buyer_org, provider_org):
    prog = programme(authority_org)
    v = voucher(prog, buyer_org, 1_000_000, valid_until=timezone.now() + dt.timedelta(days=1))
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=1_000_000)]
    )

    with time_machine.travel(timezone.now() + dt.timedelta(days=2)):
        paid = invoice_redeem_vouchers(invoice=invoice)

    assert paid == 0
    assert voucher_balance(voucher=v) == 1_000_000
    assert not Redemption.objects.exists()


@pytest.mark.parametrize(
    ("line_amount", "expected"),
    [
        (12_345, 3_704),  # 3,703.5 fen → half-even to the even 3,704
        (12_335, 3_700),  # 3,700.5 fen → half-even to the even 3,700
        (12_341, 3_702),  # 3,702.3 fen → 3,702
    ],
)
def test_rounding_is_half_even_per_line(
    authority_org, buyer_org, provider_org, line_amount, expected
):
    prog = programme(authority_org, rate_bp=3_000)
    voucher(
        prog,
        buyer_org,
        1_000_000,
    )
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=line_amount)]
    )

    assert invoice_redeem_vouchers(invoice=invoice) == expected


def test_settling_twice_pays_once(authority_org, buyer_org, provider_org):
    prog = programme(authority_org)
    v = voucher(
        prog,
        buyer_org,
        1_000_000,
    )
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=1_000_000)]
    )

    assert invoice_redeem_vouchers(invoice=invoice) == 300_000
    assert invoice_redeem_vouchers(invoice=invoice) == 300_000

    assert Redemption.objects.count() == 1
    assert voucher_balance(voucher=v) == 700_000


def test_a_credit_code_prefix_alone_is_no_affiliation_and_is_subsidised(authority_org, buyer_org):
    from tests.factories import OrganisationFactory

    sister = OrganisationFactory(kind="provider", credit_code=buyer_org.credit_code[:14] + "0019")
    # a valid check character for the sister code
    from accounts.credit_code import check_character

    sister.credit_code = sister.credit_code[:17] + check_character(sister.credit_code[:17])
    sister.save()
    prog = programme(authority_org)
    voucher(
        prog,
        buyer_org,
        1_000_000,
    )
    invoice = invoice_with_lines(buyer_org, [usage_line_spec(provider=sister, amount=1_000_000)])

    # a shared prefix is a fraud signal for review, not an affiliation (issue 16)
    assert invoice_redeem_vouchers(invoice=invoice) == 300_000


def test_one_claim_per_contract_keeps_a_second_voucher_off_the_same_lease(
    authority_org, buyer_org, provider_org
):
    from billing.models import InvoiceLine

    prog = programme(authority_org, one_claim_per_contract=True, rate_bp=5_000)
    first = voucher(
        prog,
        buyer_org,
        100_000,
        valid_until=timezone.now() + dt.timedelta(days=30),
    )
    voucher(
        prog,
        buyer_org,
        1_000_000,
    )
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=1_000_000)]
    )

    assert invoice_redeem_vouchers(invoice=invoice) == 100_000

    line = InvoiceLine.objects.get()
    assert list(line.redemptions.values_list("voucher_id", flat=True)) == [first.pk]


def test_reimburse_mode_leaves_the_buyer_paying_in_full_and_owes_the_subsidy_to_the_buyer(
    authority_org, buyer_org, provider_org
):
    from billing.ledger import account_get
    from billing.models import LedgerAccount

    prog = programme(authority_org, settlement_mode="reimburse")
    voucher(
        prog,
        buyer_org,
        1_000_000,
    )
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=1_000_000)]
    )

    assert invoice_redeem_vouchers(invoice=invoice) == 0

    invoice.refresh_from_db()
    assert invoice.buyer_amount == 1_000_000
    payable = account_get(
        purpose=LedgerAccount.Purpose.SUBSIDY_PAYABLE,
        organisation=buyer_org,
        reference=prog.reference,
    )
    assert payable.normal_balance == 300_000
    assert Redemption.objects.get().settlement_mode == "reimburse"


def test_a_supply_side_voucher_pays_the_provider_and_leaves_the_buyer_share_alone(
    authority_org, buyer_org, provider_org
):
    from billing.ledger import account_get
    from billing.models import LedgerAccount

    prog = programme(authority_org, beneficiary="providers", rate_bp=1_000)
    voucher(
        prog,
        provider_org,
        1_000_000,
    )
    invoice = invoice_with_lines(
        buyer_org, [usage_line_spec(provider=provider_org, amount=1_000_000)]
    )

    assert invoice_redeem_vouchers(invoice=invoice) == 0

    payable = account_get(purpose=LedgerAccount.Purpose.PROVIDER_PAYABLE, organisation=provider_org)
    assert payable.normal_balance == 100_000
    assert Redemption.objects.get().beneficiary == provider_org
