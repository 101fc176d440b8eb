"""The eligibility pages: the buyer declares its owners and start-up / SME
status and sees the authority's decisions, in English and Chinese; the
authority's review queue decides SME declarations and rejects 兑付
presentations; nobody else finds these pages."""

import datetime as dt

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from accounts.models import Organisation, OrganisationRelationship, SmeDeclaration
from accounts.services import sme_decide, sme_declare
from billing.models import Invoice, Reimbursement, SubsidyClaim
from billing.subsidy.redemption import invoice_redeem_vouchers
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    spread_organisation,
    usage_line_spec,
    voucher,
)
from tests.factories import make_credit_code

pytestmark = pytest.mark.django_db

ELIGIBILITY = "/vouchers/eligibility/"
REVIEWS = "/subsidy/reviews/"
PARENT_CODE = make_credit_code(770_001)


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _paid_invoice(buyer: Organisation, number: str) -> Invoice:
    now = timezone.now()
    return Invoice.objects.create(
        number=number,
        buyer=buyer,
        period_start=now - dt.timedelta(days=40),
        period_end=now - dt.timedelta(days=10),
        status=Invoice.Status.PAID,
        gross_amount=500_000,
        total_amount=500_000,
        buyer_amount=500_000,
        paid_amount=500_000,
        issued_at=now - dt.timedelta(days=9),
        paid_at=now - dt.timedelta(days=8),
    )


def _presented(prog, buyer: Organisation, number: str, amount: int = 100_000) -> Reimbursement:
    """A paid invoice the buyer presented to `prog` for 兑付."""
    return Reimbursement.objects.create(
        invoice=_paid_invoice(buyer, number),
        programme=prog,
        amount=amount,
        usage_record_count=3,
        submitted_at=timezone.now() - dt.timedelta(days=2),
    )


# --- the buyer's page ---------------------------------------------------------------------


def test_the_buyer_declares_on_its_page_and_sees_the_authoritys_decision_in_both_languages(
    client, buyer, buyer_org, authority
):
    client.force_login(buyer)
    # the vouchers page leads to it
    assert ELIGIBILITY in client.get("/vouchers/").content.decode()

    # when: a parent, a 15.5 % shareholder and the start-up / SME declaration
    parent = client.post(
        ELIGIBILITY,
        {
            "action": "relationship",
            "kind": "parent",
            "related_credit_code": PARENT_CODE,
            "related_name": "Eastern Holdings",
        },
    )
    fund = client.post(
        ELIGIBILITY,
        {
            "action": "relationship",
            "kind": "shareholder",
            "related_credit_code": make_credit_code(770_002),
            "related_name": "Angel Fund LP",
            "share": "15.5",
        },
    )
    sme = client.post(ELIGIBILITY, {"action": "sme", "evidence": "38 staff, founded 2023"})

    # then: stored, and the page shows them waiting for the authority
    assert [r.status_code for r in (parent, fund, sme)] == [302, 302, 302]
    assert "Declaration sent to the subsidy authority." in _messages(sme)
    assert sorted(OrganisationRelationship.objects.values_list("kind", "share_bp")) == [
        ("parent", None),
        ("shareholder", 1_550),
    ]
    page = client.get(ELIGIBILITY).content.decode()
    assert "parent company" in page and PARENT_CODE in page and "Eastern Holdings" in page
    assert "15.5%" in page and "Angel Fund LP" in page
    assert "awaiting the authority" in page and "38 staff, founded 2023" in page
    assert "not recognised as a start-up / SME" in page
    assert "Your declaration is waiting for the subsidy authority" in page
    assert 'value="sme"' not in page  # no second declaration while one waits
    chinese = client.get(ELIGIBILITY, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "补贴资格" in chinese and "母公司" in chinese and "等待主管部门决定" in chinese

    # when: the authority rejects it with a reason
    declaration = SmeDeclaration.objects.get()
    sme_decide(declaration=declaration, accept=False, actor=authority, reason="营业收入超标")

    # then: the buyer sees the decision and the reason, and may declare again
    page = client.get(ELIGIBILITY).content.decode()
    assert "rejected" in page and "营业收入超标" in page and 'value="sme"' in page
    chinese = client.get(ELIGIBILITY, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "已驳回" in chinese and "未认定为初创 / 中小企业" in chinese


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("related_credit_code", "91440300MA5ABCDE12", "check character"),
        ("related_credit_code", "OWN", "own credit code"),
        ("share", "100.01", "less than or equal to 100"),
        ("share", "0", "greater than or equal to 0.01"),
        ("share", "1e30", ""),
    ],
)
def test_a_bad_declaration_is_shown_on_its_field_and_nothing_is_stored(
    client, buyer, buyer_org, field, value, error
):
    client.force_login(buyer)
    value = buyer_org.credit_code if value == "OWN" else value
    data = {"action": "relationship", "kind": "shareholder", "related_credit_code": PARENT_CODE}

    response = client.post(ELIGIBILITY, data | {field: value})

    assert response.status_code == 200
    errors = response.context["relationship_form"].errors
    assert field in errors and error in " ".join(errors[field])
    assert not OrganisationRelationship.objects.exists()


def test_the_refusal_is_in_chinese_on_a_chinese_page(client, buyer, buyer_org):
    client.force_login(buyer)

    response = client.post(
        ELIGIBILITY,
        {"action": "relationship", "kind": "parent", "related_credit_code": buyer_org.credit_code},
        HTTP_ACCEPT_LANGUAGE="zh-hans",
    )

    assert "这是本单位自己的统一社会信用代码。" in response.content.decode()


def test_a_declaration_without_evidence_is_refused_on_the_form(client, buyer):
    client.force_login(buyer)

    response = client.post(ELIGIBILITY, {"action": "sme", "evidence": "   "})

    assert response.status_code == 200
    assert "evidence" in response.context["sme_form"].errors
    assert not SmeDeclaration.objects.exists()


def test_another_kind_of_organisation_finds_no_eligibility_page(client, provider, authority):
    client.force_login(provider)
    assert client.get(ELIGIBILITY).status_code == 404
    assert client.get(REVIEWS).status_code == 404
    client.force_login(authority)
    assert client.get(ELIGIBILITY).status_code == 404


# --- the authority's review queue ---------------------------------------------------------


@pytest.fixture
def queue(authority_org, buyer_org):
    """A pending SME declaration and two 兑付 presentations to the authority's
    reimburse-mode programme; another authority's presentation too."""
    prog = programme(authority_org, name="Langfang reimbursement", settlement_mode="reimburse")
    declaration = sme_declare(organisation=buyer_org, evidence="120 staff, revenue ¥80M")
    presented = _presented(prog, buyer_org, "INV-Q-001", amount=123_456)
    second = _presented(prog, buyer_org, "INV-Q-002")
    elsewhere = programme(spread_organisation(Organisation.Kind.AUTHORITY), name="Elsewhere")
    foreign = _presented(elsewhere, buyer_org, "INV-Q-003")
    return prog, declaration, presented, second, foreign


def test_the_queue_lists_pending_declarations_and_presented_invoices(
    client, authority, buyer_org, queue
):
    prog, declaration, presented, second, foreign = queue
    client.force_login(authority)
    # the authority's navigation and dashboard lead to it
    dashboard = client.get("/subsidy/").content.decode()
    assert REVIEWS in dashboard
    assert (
        "Reviews: 1 start-up / SME declarations, 2 presented invoices (兑付) waiting" in dashboard
    )

    page = client.get(REVIEWS).content.decode()

    assert buyer_org.legal_name in page and "120 staff, revenue ¥80M" in page
    assert reverse("subsidy-sme-decide", args=[declaration.pk, "accept"]) in page
    assert "INV-Q-001" in page and "¥1,234.56" in page and "Langfang reimbursement" in page
    assert "INV-Q-002" in page and "INV-Q-003" not in page
    chinese = client.get(REVIEWS, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "待审核的初创 / 中小企业申报" in chinese and "已提交兑付的已付账单" in chinese


def test_accepting_from_the_queue_makes_the_buyer_an_sme_and_a_second_decision_is_refused(
    client, authority, buyer_org, queue
):
    _prog, declaration, *_rest = queue
    client.force_login(authority)

    accepted = client.post(reverse("subsidy-sme-decide", args=[declaration.pk, "accept"]))

    assert accepted.status_code == 302 and accepted["Location"] == REVIEWS
    assert f"{buyer_org.legal_name} is recognised as a start-up / SME." in _messages(accepted)
    buyer_org.refresh_from_db()
    declaration.refresh_from_db()
    assert buyer_org.is_sme and declaration.status == "accepted"
    page = client.get(REVIEWS).content.decode()
    assert "No declaration is waiting." in page and "Recently decided" in page
    # a second decision (another tab) changes nothing and says why
    again = client.post(
        reverse("subsidy-sme-decide", args=[declaration.pk, "reject"]), {"reason": "late"}
    )
    assert "The declaration was already decided." in _messages(again)
    declaration.refresh_from_db()
    assert declaration.status == "accepted"


def test_rejecting_a_declaration_needs_a_reason(client, authority, buyer_org, queue):
    _prog, declaration, *_rest = queue
    client.force_login(authority)
    url = reverse("subsidy-sme-decide", args=[declaration.pk, "reject"])

    bare = client.post(url, {"reason": " "})
    rejected = client.post(url, {"reason": "Revenue exceeds the threshold."})

    assert "Say why. A reason is required." in _messages(bare)
    declaration.refresh_from_db()
    assert (declaration.status, declaration.decision_reason) == (
        "rejected",
        "Revenue exceeds the threshold.",
    )
    assert f"Declaration of {buyer_org.legal_name} rejected." in _messages(rejected)
    buyer_org.refresh_from_db()
    assert buyer_org.is_sme is False


def test_rejecting_a_presentation_keeps_it_out_of_the_queue_and_tells_the_reason(
    client, authority, queue
):
    _prog, _declaration, presented, second, foreign = queue
    client.force_login(authority)
    url = reverse("subsidy-reimbursement-reject", args=[presented.pk])

    rejected = client.post(url, {"reason": "The invoice is not the one paid."})

    assert "Presentation rejected: the buyer may present it again." in _messages(rejected)
    presented.refresh_from_db()
    assert (presented.status, presented.rejection_reason) == (
        "rejected",
        "The invoice is not the one paid.",
    )
    page = client.get(REVIEWS).content.decode()
    assert "INV-Q-001" not in page and "INV-Q-002" in page
    # again: refused, with the reason why
    again = client.post(url, {"reason": "twice"})
    assert "The presentation was already rejected." in _messages(again)
    # another authority's presentation does not exist for this one
    response = client.post(
        reverse("subsidy-reimbursement-reject", args=[foreign.pk]), {"reason": "not mine"}
    )
    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == "submitted"


def test_a_presentation_already_in_a_live_claim_is_not_rejected_from_the_queue(
    client, authority, queue
):
    prog, _declaration, presented, _second, _foreign = queue
    # given: its redemptions are in the programme's submitted claim
    voucher(prog, presented.invoice.buyer, 1_000_000)
    invoice = invoice_with_lines(
        presented.invoice.buyer,
        [usage_line_spec(provider=spread_organisation(Organisation.Kind.PROVIDER), amount=100_000)],
    )
    invoice_redeem_vouchers(invoice=invoice)
    Reimbursement.objects.filter(pk=presented.pk).update(invoice=invoice)
    claim = SubsidyClaim.objects.create(programme=prog, year=2026, month=5)
    claim.redemptions.set(invoice.lines.get().redemptions.all())
    client.force_login(authority)

    page = client.get(REVIEWS).content.decode()
    response = client.post(
        reverse("subsidy-reimbursement-reject", args=[presented.pk]), {"reason": "too late"}
    )

    assert invoice.number not in page
    assert (
        "The presentation is already in the programme's claim: reject the claim instead."
        in _messages(response)
    )
    presented.refresh_from_db()
    assert presented.status == "submitted"
    # once the claim is rejected, the presentation is back in the queue
    SubsidyClaim.objects.filter(pk=claim.pk).update(status=SubsidyClaim.Status.REJECTED)
    assert invoice.number in client.get(REVIEWS).content.decode()
