"""Affiliation is a fact about ownership (declared parents and shareholders,
staff-verified links), never a credit-code prefix; and every rule that zeroes
or reduces a subsidy is recorded on the invoice line and shown, in English
and Chinese, to the buyer and to the authority."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.credit_code import check_character
from accounts.models import Organisation
from accounts.services import relationship_declare, relationship_link
from billing.invoices import invoice_build_for_period
from billing.models import FrameworkAgreement, FraudFlag, Redemption, SubsidyRefusal
from billing.settlement import invoice_issue
from billing.subsidy.fraud import fraud_flags_compute
from billing.subsidy.redemption import invoice_redeem_vouchers
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    site_for,
    spread_organisation,
    usage_line_spec,
    voucher,
)
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
    UsageRecordFactory,
    member_of,
)

pytestmark = pytest.mark.django_db
R = SubsidyRefusal.Reason


def _same_district(org: Organisation, kind: str, legal_name: str) -> Organisation:
    """An unrelated firm registered in the same district: the first 14
    characters of its credit code are the same as `org`'s."""
    first17 = org.credit_code[:14] + "777"
    return OrganisationFactory(
        kind=kind, legal_name=legal_name, credit_code=first17 + check_character(first17)
    )


def _settle(buyer, provider, amount=1_000_000, **spec):
    invoice = invoice_with_lines(buyer, [usage_line_spec(provider=provider, amount=amount, **spec)])
    invoice_redeem_vouchers(invoice=invoice)
    invoice.refresh_from_db()
    return invoice


def test_two_unrelated_firms_sharing_a_14_character_prefix_are_subsidised_and_flagged_for_review(
    authority_org, buyer_org
):
    # given: a 30 % programme forbidding affiliation, and a provider from the same district
    neighbour = _same_district(buyer_org, "provider", "Neighbour Compute Co., Ltd.")
    assert neighbour.credit_code[:14] == buyer_org.credit_code[:14]
    prog = programme(authority_org)
    voucher(prog, buyer_org, 1_000_000)
    # when
    invoice = _settle(buyer_org, neighbour)
    # then: subsidised in full, nothing refused
    assert invoice.voucher_amount == 300_000
    assert not SubsidyRefusal.objects.exists()
    # and the shared prefix is a signal for the authority's review, not a refusal
    fraud_flags_compute()
    flag = FraudFlag.objects.get()
    assert flag.rule == FraudFlag.Rule.SELF_DEALING
    assert flag.details["evidence"] == f"credit codes share the prefix {buyer_org.credit_code[:14]}"
    assert Redemption.objects.get().status == Redemption.Status.APPLIED


def test_a_declared_parent_is_refused_with_the_reason_shown_to_buyer_and_authority(
    client, authority_org, buyer_org
):
    # given: the buyer declares the provider's parent company as its own parent
    group = spread_organisation("provider", legal_name="Group Holdings Co., Ltd.")
    provider = spread_organisation("provider", legal_name="Group Compute Co., Ltd.")
    relationship_declare(
        organisation=buyer_org, kind="parent", related_credit_code=group.credit_code
    )
    relationship_declare(
        organisation=provider, kind="parent", related_credit_code=group.credit_code
    )
    prog = programme(authority_org, name="Hangzhou compute vouchers")
    voucher(prog, buyer_org, 1_000_000)
    # when
    invoice = _settle(buyer_org, provider)
    # then: nothing paid, and the line says why and how much
    assert invoice.voucher_amount == 0
    refusal = SubsidyRefusal.objects.get()
    assert (refusal.reason, refusal.amount, refusal.invoice_line) == (
        R.AFFILIATED,
        300_000,
        invoice.lines.get(),
    )
    assert refusal.detail == f"both are owned or controlled by {group.credit_code}"
    # shown to the buyer on its invoice, in English and in Chinese
    client.force_login(member_of(buyer_org))
    url = reverse("billing-invoice", args=[invoice.pk])
    page = client.get(url).content.decode()
    assert "buyer and provider are affiliated" in page and "¥3,000.00" in page
    page = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "买方与服务商存在关联关系" in page
    # and to the authority on its programme
    client.force_login(member_of(authority_org))
    page = client.get(reverse("subsidy-programme", args=[prog.pk])).content.decode()
    assert "buyer and provider are affiliated" in page and group.credit_code in page


def test_a_staff_verified_link_refuses_and_a_small_shareholding_does_not(
    authority_org, buyer_org, provider_org
):
    prog = programme(authority_org)
    voucher(prog, buyer_org, 5_000_000)
    # a 5 % shareholder is not control: subsidised
    relationship_declare(
        organisation=buyer_org,
        kind="shareholder",
        related_credit_code=provider_org.credit_code,
        share_bp=500,
    )
    assert _settle(buyer_org, provider_org).voucher_amount == 300_000
    # a link staff verified in the registry: refused
    relationship_link(a=provider_org, b=buyer_org, actor=None, note="same legal representative")
    assert _settle(buyer_org, provider_org).voucher_amount == 0
    assert SubsidyRefusal.objects.get().detail == "staff verified a link: same legal representative"


def test_every_rule_that_reduces_a_subsidy_is_recorded_on_the_line(authority_org, buyer_org):
    listed = spread_organisation("provider", legal_name="Listed Compute")
    unlisted = spread_organisation("provider", legal_name="Unlisted Compute")
    # not listed: refused, the 30 % it would have paid recorded
    prog = programme(authority_org, eligible_providers=[listed], cap_per_enterprise_amount=400_000)
    voucher(prog, buyer_org, 5_000_000)
    line = _settle(buyer_org, unlisted).lines.get()
    assert [(r.reason, r.amount) for r in line.subsidy_refusals.all()] == [(R.NOT_LISTED, 300_000)]
    # fault time: not billed, so not subsidised, and said so (1 h at ¥36.00 × 30 %)
    line = _settle(buyer_org, listed, gpu_seconds_lost=3_600).lines.get()
    assert line.voucher_amount == 300_000
    assert [(r.reason, r.amount) for r in line.subsidy_refusals.all()] == [(R.FAULT_TIME, 1_080)]
    # cap reached: ¥4,000.00 per enterprise, ¥3,000.00 used, so ¥1,000.00 of ¥3,000.00 paid
    line = _settle(buyer_org, listed).lines.get()
    assert line.voucher_amount == 100_000
    assert [(r.reason, r.amount) for r in line.subsidy_refusals.all()] == [(R.CAP_REACHED, 200_000)]


def test_a_second_claim_on_a_contract_and_an_empty_pool_are_recorded(authority_org, buyer_org):
    provider = spread_organisation("provider")
    # a pool of ¥1,000.00 pays ¥1,000.00 of the ¥3,000.00 the line qualifies for
    pool = programme(authority_org, funding="pool", budget_amount=100_000)
    voucher(pool, buyer_org, 1_000_000)
    line = _settle(buyer_org, provider).lines.get()
    assert line.voucher_amount == 100_000
    assert [(r.reason, r.amount) for r in line.subsidy_refusals.all()] == [
        (R.BUDGET_EXHAUSTED, 200_000)
    ]


def _order_leases(buyer, provider, *, n: int, order=None):
    """`n` one-GPU leases of one order (an order matched into several leases),
    each metered for 10 hours at ¥36.00 three days ago."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=3)
    order = order or OrderFactory(buyer=buyer)
    leases = []
    for _ in range(n):
        node = NodeFactory(site=site_for(provider))
        lease = LeaseFactory(
            offer=OfferFactory(node=node, price_amount=3_600),
            order=order,
            gpu_count=1,
            price_amount=3_600,
            starts_at=start,
            ends_at=start + dt.timedelta(hours=10),
        )
        UsageRecordFactory(lease=lease, window_start=start, window_end=lease.ends_at)
        leases.append(lease)
    return order, start


def _issue(buyer, start):
    invoice = invoice_build_for_period(
        buyer=buyer,
        period_start=start - dt.timedelta(days=1),
        period_end=start + dt.timedelta(days=1),
    )
    return invoice_issue(invoice=invoice)


@pytest.mark.parametrize("framework", [False, True])
def test_one_claim_per_contract_counts_the_order_or_its_framework_agreement_not_the_lease(
    authority_org, buyer_org, provider_org, framework
):
    # given: one contract — an order matched into two leases, or two orders
    # under one framework agreement — and two vouchers of a one-claim programme
    prog = programme(authority_org, one_claim_per_contract=True, rate_bp=5_000)
    # the first (expiring first) pays half of the first lease's ¥360.00 and is used up
    voucher(prog, buyer_org, 18_000, valid_until=timezone.now() + dt.timedelta(days=100))
    voucher(prog, buyer_org, 1_000_000)
    if framework:
        first, start = _order_leases(buyer_org, provider_org, n=1)
        second, _start = _order_leases(buyer_org, provider_org, n=1)
        agreement = FrameworkAgreement.objects.create(
            buyer=buyer_org,
            provider=provider_org,
            reference="FA-2026-001",
            signed_at=start - dt.timedelta(days=10),
            term_start=start - dt.timedelta(days=10),
            term_end=start + dt.timedelta(days=80),
        )
        agreement.orders.set([first, second])
        key = f"framework:{agreement.pk}"
    else:
        order, start = _order_leases(buyer_org, provider_org, n=2)
        key = f"order:{order.pk}"
    # when
    invoice = _issue(buyer_org, start)
    # then: the first voucher's claim on the contract keeps the second one off
    # every lease of it, and the refused line says so
    lines = list(invoice.lines.order_by("pk"))
    assert [line.voucher_amount for line in lines] == [18_000, 0]
    assert Redemption.objects.get().contract_key == key
    refusal = SubsidyRefusal.objects.get(reason=R.SECOND_CLAIM)
    assert (refusal.invoice_line, refusal.amount) == (lines[1], 18_000)
    assert key in refusal.detail


def test_sme_status_is_declared_by_the_buyer_and_decided_by_the_authority(
    authority_org, buyer_org, provider_org
):
    from accounts.models import SmeDeclaration
    from accounts.services import sme_decide, sme_declare
    from core.errors import PermissionDenied

    # given: Shenzhen-like rates, 50 % and 60 % for start-ups / SMEs
    prog = programme(authority_org, rate_bp=5_000, sme_rate_bp=6_000)
    voucher(prog, buyer_org, 5_000_000)
    buyer_user = member_of(buyer_org)
    # when: the buyer declares with evidence; the buyer cannot decide for itself
    declaration = sme_declare(
        organisation=buyer_org, evidence="38 staff, revenue ¥12M, founded 2023", actor=buyer_user
    )
    with pytest.raises(PermissionDenied):
        sme_decide(declaration=declaration, accept=True, actor=buyer_user)
    # while pending, the base rate applies
    assert _settle(buyer_org, provider_org).voucher_amount == 500_000
    # when: the authority accepts
    sme_decide(declaration=declaration, accept=True, actor=member_of(authority_org))
    # then: the SME rate applies
    buyer_org.refresh_from_db()
    assert buyer_org.is_sme and declaration.status == SmeDeclaration.Status.ACCEPTED
    assert _settle(buyer_org, provider_org).voucher_amount == 600_000
