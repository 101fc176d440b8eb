"""Claims the authority pays: deduct mode reimburses the platform, reimburse
mode pays the buyer directly; the ledger ends at the true balances."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from accounts.models import Organisation
from billing.invoices import invoice_build_for_period
from billing.ledger import account_get, ledger_is_balanced
from billing.models import LedgerAccount, LedgerTransaction, Redemption, Reimbursement, SubsidyClaim
from billing.settlement import invoice_issue, invoice_mark_paid
from billing.subsidy import invoice_pending_reimbursements, reimbursement_submit
from billing.subsidy.accounts import programme_accounts
from billing.subsidy.claims import claim_approve, claim_mark_paid, claim_reject, claim_submit
from billing.subsidy.redemption import redemption_claw_back
from billing.subsidy.selectors import programme_budget
from core.errors import ApplicationError, Conflict
from tests.billing.subsidy.factories import programme, site_for, spread_organisation, voucher
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    UsageRecordFactory,
    member_of,
)

pytestmark = pytest.mark.django_db
P = LedgerAccount.Purpose
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 6, 5, 9, tzinfo=SHANGHAI)
PAID_AT = dt.datetime(2026, 6, 20, 10, tzinfo=SHANGHAI)


def _bill(buyer, provider, *, start, gpu_seconds):
    """Issue an invoice for one usage record at ¥36.00/GPU-hour (1 GPU-second = 1 fen)."""
    node = NodeFactory(site=site_for(provider))
    lease = LeaseFactory(
        offer=OfferFactory(node=node, price_amount=3_600),
        order=OrderFactory(buyer=buyer),
        price_amount=3_600,
        starts_at=start,
        ends_at=start + dt.timedelta(hours=10),
    )
    UsageRecordFactory(
        lease=lease,
        window_start=start,
        window_end=start + dt.timedelta(hours=1),
        gpu_seconds_delivered=gpu_seconds,
    )
    invoice = invoice_build_for_period(
        buyer=buyer,
        period_start=start - dt.timedelta(hours=1),
        period_end=start + dt.timedelta(days=1),
    )
    return invoice_issue(invoice=invoice)


def _may(authority_org, provider_org, *, present: bool):
    """May 2026: a 30 % deduct programme pays ¥3,000.00 of Zhimo's ¥10,000.00;
    a 20 % reimburse programme owes Vision ¥1,000.00 of its ¥5,000.00 (which
    Vision pays in full and, if `present`, presents for 兑付)."""
    with time_machine.travel(NOW, tick=False):
        zhimo = spread_organisation(Organisation.Kind.BUYER, legal_name="Hangzhou Zhimo AI")
        vision = spread_organisation(Organisation.Kind.BUYER, legal_name="Chengdu Vision Tech")
        deduct = programme(authority_org, name="Deduct", rate_bp=3_000)
        reimburse = programme(
            authority_org, name="Reimburse", rate_bp=2_000, settlement_mode="reimburse"
        )
        voucher(deduct, zhimo, 500_000)
        voucher(reimburse, vision, 500_000)
        zhimo_invoice = _bill(
            zhimo,
            provider_org,
            start=dt.datetime(2026, 5, 10, 10, tzinfo=SHANGHAI),
            gpu_seconds=1_000_000,
        )
        vision_invoice = _bill(
            vision,
            provider_org,
            start=dt.datetime(2026, 5, 12, 10, tzinfo=SHANGHAI),
            gpu_seconds=500_000,
        )
    assert (zhimo_invoice.voucher_amount, zhimo_invoice.buyer_amount) == (300_000, 700_000)
    assert (vision_invoice.voucher_amount, vision_invoice.buyer_amount) == (0, 500_000)
    with time_machine.travel(NOW + dt.timedelta(days=1), tick=False):
        vision_invoice = invoice_mark_paid(
            invoice=vision_invoice, amount=500_000, business_key="test:vision-card"
        )
        if present:
            reimbursement_submit(invoice=vision_invoice)
    return {
        "deduct": deduct,
        "reimburse": reimburse,
        "zhimo": zhimo,
        "vision": vision,
        "vision_invoice": vision_invoice,
    }


@pytest.fixture
def may(authority_org, provider_org):
    return _may(authority_org, provider_org, present=True)


def test_reimburse_mode_claims_only_invoices_the_buyer_presented_for_dui_fu(
    authority_org, provider_org, client
):
    # given: Vision paid its invoice in full; ¥1,000.00 is pending reimbursement
    world = _may(authority_org, provider_org, present=False)
    invoice = world["vision_invoice"]
    (pending,) = invoice_pending_reimbursements(invoice=invoice)
    assert (pending.amount, pending.usage_records, pending.reimbursement) == (100_000, 1, None)
    client.force_login(member_of(world["vision"]))
    page = client.get(reverse("billing-invoice", args=[invoice.pk])).content.decode()
    assert "Subsidy to be reimbursed to you" in page and "¥1,000.00" in page
    assert "pending: present the paid invoice" in page
    # then: nothing to claim for the reimburse programme until it is presented
    with pytest.raises(ApplicationError):
        claim_submit(programme=world["reimburse"], year=2026, month=5)
    # when: Vision presents the paid invoice (兑付) from its invoice page
    response = client.post(reverse("billing-invoice-reimbursement", args=[invoice.pk]))
    assert response.status_code == 302
    reimbursement = Reimbursement.objects.get()
    assert (reimbursement.amount, reimbursement.usage_record_count, reimbursement.status) == (
        100_000,
        1,
        "submitted",
    )
    # then: the authority's claim takes it, and paying it leaves the budget whole
    claim = _pay(claim_submit(programme=world["reimburse"], year=2026, month=5))
    assert (claim.reimburse_amount, claim.status) == (100_000, "paid")
    budget = programme_budget(programme=world["reimburse"])
    assert (budget.spent, budget.paid_out, budget.holds) == (0, 100_000, True)


def _pay(claim, actor=None):
    claim = claim_approve(claim=claim, actor=actor)
    return claim_mark_paid(claim=claim, paid_at=PAID_AT, reference="GK-2026-0601", actor=actor)


def test_a_month_with_a_deduct_and_a_reimburse_programme_is_claimed_and_paid(may, authority):
    # given
    bank = account_get(purpose=P.BANK)
    bank_before = bank.balance

    # when
    deduct_claim = claim_submit(programme=may["deduct"], year=2026, month=5, actor=authority)
    reimburse_claim = claim_submit(programme=may["reimburse"], year=2026, month=5, actor=authority)
    deduct_claim = _pay(deduct_claim, authority)
    reimburse_claim = _pay(reimburse_claim, authority)

    # then: the amounts, by hand
    assert (deduct_claim.deduct_amount, deduct_claim.reimburse_amount) == (300_000, 0)
    assert (reimburse_claim.deduct_amount, reimburse_claim.reimburse_amount) == (0, 100_000)
    assert [(r["beneficiary"], r["mode"], r["amount"]) for r in reimburse_claim.breakdown] == [
        ("Chengdu Vision Tech", "reimburse", 100_000)
    ]
    assert deduct_claim.status == reimburse_claim.status == SubsidyClaim.Status.PAID
    assert [e.to_status for e in deduct_claim.events.all()] == ["submitted", "approved", "paid"]
    # the entries: deduct Dr bank / Cr spent; reimburse Dr buyer's payable / Cr spent
    deduct_legs = sorted(
        (p.account.purpose, p.amount) for p in deduct_claim.ledger_transaction.postings.all()
    )
    assert deduct_legs == [("bank", 300_000), ("subsidy_receivable", -300_000)]
    reimburse_legs = sorted(
        (p.account.purpose, p.account.organisation_id, p.amount)
        for p in reimburse_claim.ledger_transaction.postings.all()
    )
    assert reimburse_legs == [
        ("subsidy_payable", may["vision"].pk, 100_000),
        ("subsidy_receivable", may["reimburse"].authority_id, -100_000),
    ]
    # and every account is at its true balance
    bank.refresh_from_db()
    assert bank.balance - bank_before == 300_000
    for prog in (may["deduct"], may["reimburse"]):
        assert programme_accounts(programme=prog).spent.balance == 0
    assert account_get(purpose=P.SUBSIDY_RECEIVABLE).balance == 0  # settlement clearing
    payable = account_get(
        purpose=P.SUBSIDY_PAYABLE,
        organisation=may["vision"],
        reference=may["reimburse"].reference,
    )
    assert payable.balance == 0
    assert ledger_is_balanced()


def test_paying_a_claim_twice_posts_once(may, authority):
    # given
    claim = _pay(claim_submit(programme=may["deduct"], year=2026, month=5), authority)
    before = LedgerTransaction.objects.count()

    # when
    again = claim_mark_paid(claim=claim, paid_at=PAID_AT, reference="GK-again")

    # then
    assert LedgerTransaction.objects.count() == before
    assert LedgerTransaction.objects.filter(business_key=f"claim:{claim.pk}:paid").count() == 1
    assert again.payment_reference == "GK-2026-0601"
    assert programme_accounts(programme=may["deduct"]).spent.balance == 0


def test_a_second_claim_for_the_same_month_is_refused(may):
    # given
    claim_submit(programme=may["deduct"], year=2026, month=5)

    # when
    with pytest.raises(ApplicationError) as caught:
        claim_submit(programme=may["deduct"], year=2026, month=5)

    # then
    assert "month" in caught.value.errors
    assert SubsidyClaim.objects.count() == 1


def test_a_rejected_month_can_be_claimed_again(may):
    # given
    first = claim_submit(programme=may["deduct"], year=2026, month=5)
    claim_reject(claim=first, reason="missing delivery evidence")

    # when
    second = claim_submit(programme=may["deduct"], year=2026, month=5)

    # then
    first.refresh_from_db()
    assert (first.status, first.rejection_reason) == ("rejected", "missing delivery evidence")
    assert second.status == "submitted" and second.deduct_amount == 300_000


def test_a_claim_cannot_be_paid_before_approval_and_nothing_is_posted(may):
    claim = claim_submit(programme=may["deduct"], year=2026, month=5)
    before = LedgerTransaction.objects.count()

    with pytest.raises(Conflict):
        claim_mark_paid(claim=claim, paid_at=PAID_AT, reference="GK-1")

    assert LedgerTransaction.objects.count() == before
    claim.refresh_from_db()
    assert claim.status == "submitted"


def test_a_claw_back_before_approval_blocks_the_claim(may, authority):
    claim = claim_submit(programme=may["deduct"], year=2026, month=5)
    redemption_claw_back(redemption=Redemption.objects.get(programme=may["deduct"]), reason="audit")

    with pytest.raises(Conflict):
        claim_approve(claim=claim, actor=authority)

    claim.refresh_from_db()
    assert claim.status == "submitted"


def test_a_claw_back_after_payment_is_flagged_on_the_claim(may, authority, client):
    # given
    claim = _pay(claim_submit(programme=may["deduct"], year=2026, month=5), authority)

    # when
    redemption_claw_back(redemption=Redemption.objects.get(programme=may["deduct"]), reason="audit")

    # then: the authority overpaid ¥3,000.00, and the receivable says so
    claim.refresh_from_db()
    assert claim.clawed_back_after_payment == 300_000
    assert programme_accounts(programme=may["deduct"]).spent.balance == -300_000
    assert ledger_is_balanced()
    client.force_login(authority)
    body = client.get(f"/subsidy/programmes/{may['deduct'].pk}/").content.decode()
    assert "clawed back after payment:" in body and "¥3,000.00" in body


def test_the_authority_submits_approves_and_pays_from_the_programme_page(may, authority, client):
    client.force_login(authority)
    prog = may["deduct"]

    client.post(f"/subsidy/programmes/{prog.pk}/claims/2026/5/submit/")
    claim = SubsidyClaim.objects.get(programme=prog)
    client.post(f"/subsidy/claims/{claim.pk}/approve/")
    response = client.post(
        f"/subsidy/claims/{claim.pk}/pay/", {"paid_on": "2026-06-20", "reference": "GK-9"}
    )

    assert response.status_code == 302
    claim.refresh_from_db()
    assert (claim.status, claim.payment_reference) == ("paid", "GK-9")
    page = client.get(f"/subsidy/programmes/{prog.pk}/").content.decode()
    assert "GK-9" in page


def test_others_cannot_touch_the_claims(may, client, buyer, authority_org):
    # given: a buyer, and another authority
    prog = may["deduct"]
    other = member_of(spread_organisation(Organisation.Kind.AUTHORITY), "other-authority")
    claim = claim_submit(programme=prog, year=2026, month=5)

    # when / then
    client.force_login(buyer)
    assert client.post(f"/subsidy/programmes/{prog.pk}/claims/2026/5/submit/").status_code == 404
    assert client.post(f"/subsidy/claims/{claim.pk}/approve/").status_code == 404
    client.force_login(other)
    assert client.post(f"/subsidy/programmes/{prog.pk}/claims/2026/5/submit/").status_code == 404
    assert client.post(f"/subsidy/claims/{claim.pk}/approve/").status_code == 404
    claim.refresh_from_db()
    assert claim.status == "submitted"
    assert SubsidyClaim.objects.count() == 1
