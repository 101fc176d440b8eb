"""One test per anti-fraud rule, plus: a flag never blocks payment."""

import datetime as dt

import pytest
from django.utils import timezone

from accounts.credit_code import check_character
from billing.models import FraudFlag, Redemption
from billing.subsidy.fraud import fraud_flag_review, fraud_flags_compute
from billing.subsidy.redemption import invoice_redeem_vouchers
from core.errors import Conflict
from tests.billing.subsidy.factories import invoice_with_lines, programme, usage_line_spec, voucher
from tests.factories import LeaseFactory, OrganisationFactory, gpu, member_of

pytestmark = pytest.mark.django_db


def _settle(buyer, provider, *, prog=None, **spec):
    invoice = invoice_with_lines(
        buyer, [usage_line_spec(provider=provider, amount=1_000_000, **spec)]
    )
    invoice_redeem_vouchers(invoice=invoice)
    return invoice


@pytest.fixture
def prog(authority_org, buyer_org):
    p = programme(authority_org, forbid_affiliated=False)
    voucher(p, buyer_org, 5_000_000)
    return p


def test_an_ordinary_redemption_raises_no_flag(prog, buyer_org, provider_org):
    _settle(buyer_org, provider_org)

    assert fraud_flags_compute() == 0
    assert not FraudFlag.objects.exists()


def test_idle_gpus_paid_by_a_voucher_are_flagged_but_still_paid(prog, buyer_org, provider_org):
    invoice = _settle(buyer_org, provider_org, utilisation="3.50")

    assert fraud_flags_compute() == 1

    flag = FraudFlag.objects.get()
    assert flag.rule == FraudFlag.Rule.IDLE_BURNING
    assert flag.redemption == Redemption.objects.get()
    assert flag.details["avg_utilisation"] == "3.50"
    invoice.refresh_from_db()
    assert invoice.voucher_amount == 300_000  # never silently blocked
    assert Redemption.objects.get().status == Redemption.Status.APPLIED


def test_a_buyer_and_provider_sharing_a_credit_code_prefix_are_flagged(prog, buyer_org):
    first17 = buyer_org.credit_code[:14] + "999"
    sister = OrganisationFactory(kind="provider", credit_code=first17 + check_character(first17))
    _settle(buyer_org, sister)

    fraud_flags_compute()

    flag = FraudFlag.objects.get()
    assert flag.rule == FraudFlag.Rule.SELF_DEALING
    assert "prefix" in flag.details["evidence"]


def test_a_buyer_and_provider_run_by_the_same_person_are_flagged(prog, buyer_org, provider_org):
    member_of(buyer_org, "founder").__class__.objects.filter(username="founder").update(
        email="wang@zhimo.cn"
    )
    other = member_of(provider_org, "founder-again")
    other.email = "WANG@zhimo.cn"
    other.save()
    _settle(buyer_org, provider_org)

    fraud_flags_compute()

    flag = FraudFlag.objects.get()
    assert flag.rule == FraudFlag.Rule.SELF_DEALING
    assert "wang@zhimo.cn" in flag.details["evidence"].lower()


def test_a_price_far_above_the_market_median_is_flagged(prog, buyer_org, provider_org):
    for _ in range(3):  # the market for H800: ¥36.00 per GPU-hour
        LeaseFactory(offer__node__gpu_model=gpu("nvidia-h800-sxm"), price_amount=3_600)
    _settle(buyer_org, provider_org, price_amount=9_000)

    fraud_flags_compute()

    flag = FraudFlag.objects.get()
    assert flag.rule == FraudFlag.Rule.PRICE_ABOVE_MARKET
    assert flag.details["price_amount"] == 9_000


def test_a_burst_of_redemptions_just_before_expiry_is_flagged(
    authority_org, buyer_org, provider_org
):
    prog = programme(authority_org, rate_bp=5_000)
    soon = timezone.now() + dt.timedelta(days=2)
    v = voucher(prog, buyer_org, 600_000, valid_until=soon)
    _settle(buyer_org, provider_org, window_start=timezone.now() - dt.timedelta(days=1))

    fraud_flags_compute()

    flag = FraudFlag.objects.get()
    assert (flag.rule, flag.voucher) == (FraudFlag.Rule.EXPIRY_BURST, v)
    assert flag.details["redeemed_near_expiry_amount"] == 500_000


def test_flags_are_raised_once_and_reviewed_once(prog, buyer_org, provider_org, authority):
    _settle(buyer_org, provider_org, utilisation="1.00")
    fraud_flags_compute()
    assert fraud_flags_compute() == 0

    flag = fraud_flag_review(
        flag=FraudFlag.objects.get(), status="confirmed", actor=authority, note="checked"
    )

    assert (flag.status, flag.reviewed_by) == ("confirmed", authority)
    with pytest.raises(Conflict):
        fraud_flag_review(flag=flag, status="dismissed", actor=authority)
