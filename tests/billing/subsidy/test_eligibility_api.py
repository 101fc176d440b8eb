"""The eligibility API: a buyer declares its parent company, shareholders and
start-up / SME status; a subsidy authority decides the SME declaration, and
an accepted one earns the programme's SME rate on the buyer's next invoice."""

import threading

import pytest
from django.db import connection

from accounts.models import Membership, Organisation, OrganisationRelationship, SmeDeclaration
from billing.subsidy.redemption import invoice_redeem_vouchers
from core import limits
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    spread_organisation,
    usage_line_spec,
    voucher,
)
from tests.factories import MembershipFactory, UserFactory, make_credit_code, member_of

pytestmark = pytest.mark.django_db

RELATIONSHIPS = "/api/v1/relationships/"
DECLARATIONS = "/api/v1/sme-declarations/"
PARENT_CODE = make_credit_code(880_001)
FUND_CODE = make_credit_code(880_002)
EVIDENCE = "38 staff, revenue ¥12M in 2025, founded 2023; registry extract attached"


def _decide(pk: int) -> str:
    return f"{DECLARATIONS}{pk}/decide/"


def _declare_sme(client, evidence: str = EVIDENCE):
    return client.post(DECLARATIONS, {"evidence": evidence}, format="json")


def _invoice_subsidy(buyer: Organisation, provider: Organisation) -> int:
    """The voucher share of the buyer's next invoice: one ¥10,000.00 line."""
    invoice = invoice_with_lines(buyer, [usage_line_spec(provider=provider, amount=1_000_000)])
    invoice_redeem_vouchers(invoice=invoice)
    invoice.refresh_from_db()
    return invoice.voucher_amount


# --- parent company and shareholders ----------------------------------------------------


def test_a_buyer_declares_its_parent_and_declaring_the_same_code_again_updates_it(
    buyer_org, buyer_client, client_for
):
    # when: the parent, then the same code again with its registered name
    first = buyer_client.post(
        RELATIONSHIPS,
        {"kind": "parent", "related_credit_code": PARENT_CODE.lower()},
        format="json",
    )
    again = buyer_client.post(
        RELATIONSHIPS,
        {"kind": "parent", "related_credit_code": PARENT_CODE, "related_name": "Zhimo Holdings"},
        format="json",
    )

    # then: one declaration, with the code normalised and the name of the second
    assert first.status_code == 201, first.json()
    assert again.status_code == 201, again.json()
    assert again.json()["id"] == first.json()["id"]
    listed = buyer_client.get(RELATIONSHIPS).json()["results"]
    assert listed == [
        {
            "id": first.json()["id"],
            "kind": "parent",
            "related_credit_code": PARENT_CODE,
            "related_name": "Zhimo Holdings",
            "share_bp": None,
            "verified": False,
        }
    ]
    # and another buyer sees none of it
    other = member_of(spread_organisation(Organisation.Kind.BUYER))
    assert client_for(other).get(RELATIONSHIPS).json()["results"] == []


@pytest.mark.parametrize("share_bp", [0, -1, limits.MAX_BASIS_POINTS + 1, 2**63])
def test_a_shareholder_share_past_its_bounds_is_a_400_and_nothing_is_stored(buyer_client, share_bp):
    response = buyer_client.post(
        RELATIONSHIPS,
        {"kind": "shareholder", "related_credit_code": FUND_CODE, "share_bp": share_bp},
        format="json",
    )

    assert response.status_code == 400
    assert "share_bp" in response.json()["errors"]
    assert not OrganisationRelationship.objects.exists()


def test_a_shareholder_holding_everything_is_stored_with_its_share(buyer_org, buyer_client):
    response = buyer_client.post(
        RELATIONSHIPS,
        {
            "kind": "shareholder",
            "related_credit_code": FUND_CODE,
            "related_name": "Angel Fund LP",
            "share_bp": limits.MAX_BASIS_POINTS,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    stored = OrganisationRelationship.objects.get()
    assert (stored.organisation, stored.kind, stored.share_bp) == (
        buyer_org,
        "shareholder",
        10_000,
    )


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("91440300MA5ABCDE", "has 18 characters"),
        (PARENT_CODE[:17] + ("0" if PARENT_CODE[17] != "0" else "1"), "check character"),
        ("own", "own credit code"),
    ],
    ids=["short", "check character", "own code"],
)
def test_a_bad_credit_code_is_refused_on_its_field(buyer_org, buyer_client, code, problem):
    code = buyer_org.credit_code if code == "own" else code

    response = buyer_client.post(
        RELATIONSHIPS, {"kind": "parent", "related_credit_code": code}, format="json"
    )

    assert response.status_code == 400
    assert problem in " ".join(response.json()["errors"]["related_credit_code"])
    assert not OrganisationRelationship.objects.exists()


def test_a_staff_link_is_not_the_buyers_to_declare_and_providers_may_not_use_it(
    buyer_client, provider_client
):
    staff_link = buyer_client.post(
        RELATIONSHIPS, {"kind": "staff_link", "related_credit_code": FUND_CODE}, format="json"
    )
    as_provider = provider_client.post(
        RELATIONSHIPS, {"kind": "parent", "related_credit_code": FUND_CODE}, format="json"
    )

    assert staff_link.status_code == 400 and "kind" in staff_link.json()["errors"]
    assert as_provider.status_code == 403
    assert provider_client.get(RELATIONSHIPS).status_code == 403
    assert not OrganisationRelationship.objects.exists()


# --- start-up / SME status ----------------------------------------------------------------


def test_an_accepted_sme_declaration_earns_the_sme_rate_on_the_next_invoice(
    authority_org, buyer_org, provider_org, buyer_client, authority_client
):
    # given: Shenzhen-like rates, 50 % and 60 % for start-ups / SMEs
    prog = programme(authority_org, rate_bp=5_000, sme_rate_bp=6_000)
    voucher(prog, buyer_org, 5_000_000)
    # when: the buyer declares with its evidence
    declared = _declare_sme(buyer_client)
    # then: it waits for the authority, and the base rate still applies
    assert declared.status_code == 201, declared.json()
    body = declared.json()
    assert (body["status"], body["evidence"], body["decided_at"]) == ("pending", EVIDENCE, None)
    assert (body["organisation"], body["credit_code"]) == (
        buyer_org.legal_name,
        buyer_org.credit_code,
    )
    assert _invoice_subsidy(buyer_org, provider_org) == 500_000  # ¥5,000.00 of ¥10,000.00
    # when: the authority finds it in its list and accepts it
    listed = authority_client.get(DECLARATIONS).json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    accepted = authority_client.post(_decide(body["id"]), {"accept": True}, format="json")
    # then: the buyer is a start-up / SME and its next invoice gets 60 %
    assert accepted.status_code == 200, accepted.json()
    assert accepted.json()["status"] == "accepted" and accepted.json()["decided_at"]
    buyer_org.refresh_from_db()
    assert buyer_org.is_sme is True
    assert _invoice_subsidy(buyer_org, provider_org) == 600_000  # ¥6,000.00
    # and deciding it again is a conflict that changes nothing
    again = authority_client.post(
        _decide(body["id"]), {"accept": False, "reason": "late"}, format="json"
    )
    assert again.status_code == 409
    assert SmeDeclaration.objects.get().status == "accepted"
    buyer_org.refresh_from_db()
    assert buyer_org.is_sme is True


def test_a_second_declaration_while_one_waits_is_a_409(buyer_org, buyer_client):
    assert _declare_sme(buyer_client).status_code == 201

    second = _declare_sme(buyer_client, "now 40 staff")

    assert second.status_code == 409
    assert second.json()["detail"] == "A declaration is already waiting for the authority."
    assert SmeDeclaration.objects.filter(organisation=buyer_org).count() == 1


def test_another_buyer_sees_no_declaration_but_its_own(buyer_client, client_for):
    mine = _declare_sme(buyer_client).json()
    other_org = spread_organisation(Organisation.Kind.BUYER)
    other = client_for(member_of(other_org))

    assert other.get(DECLARATIONS).json()["results"] == []
    assert [row["id"] for row in buyer_client.get(DECLARATIONS).json()["results"]] == [mine["id"]]
    # and it can decide nothing, its own or another's
    assert other.post(_decide(mine["id"]), {"accept": True}, format="json").status_code == 403


def test_a_rejection_records_the_reason_the_buyer_sees_it_and_may_declare_again(
    buyer_org, buyer_client, authority_client
):
    declaration = _declare_sme(buyer_client).json()

    # a rejection without a reason is refused on its field
    bare = authority_client.post(_decide(declaration["id"]), {"accept": False}, format="json")
    assert bare.status_code == 400 and "reason" in bare.json()["errors"]
    assert SmeDeclaration.objects.get().status == "pending"

    rejected = authority_client.post(
        _decide(declaration["id"]),
        {"accept": False, "reason": "  Revenue exceeds the SME threshold.  "},
        format="json",
    )

    assert rejected.status_code == 200, rejected.json()
    (seen,) = buyer_client.get(DECLARATIONS).json()["results"]
    assert (seen["status"], seen["decision_reason"]) == (
        "rejected",
        "Revenue exceeds the SME threshold.",
    )
    buyer_org.refresh_from_db()
    assert buyer_org.is_sme is False
    assert _declare_sme(buyer_client, "revenue ¥9M after the spin-off").status_code == 201


def test_buyers_and_providers_cannot_decide_and_no_one_declares_but_a_buyer(
    buyer_client, provider_client, authority_client
):
    declaration = _declare_sme(buyer_client).json()

    by_buyer = buyer_client.post(_decide(declaration["id"]), {"accept": True}, format="json")
    by_provider = provider_client.post(_decide(declaration["id"]), {"accept": True}, format="json")

    assert (by_buyer.status_code, by_provider.status_code) == (403, 403)
    assert SmeDeclaration.objects.get().status == "pending"
    assert _declare_sme(provider_client).status_code == 403
    assert _declare_sme(authority_client).status_code == 403
    assert provider_client.get(DECLARATIONS).status_code == 403
    assert SmeDeclaration.objects.count() == 1


def test_an_unknown_declaration_is_a_404_to_the_authority(authority_client):
    response = authority_client.post(_decide(987_654), {"accept": True}, format="json")

    assert response.status_code == 404


def test_a_read_only_member_of_the_buyer_cannot_declare(buyer_org, client_for):
    reader = UserFactory()
    MembershipFactory(organisation=buyer_org, user=reader, role=Membership.Role.READ_ONLY)
    client = client_for(reader)

    response = _declare_sme(client)

    assert response.status_code == 403
    assert "read-only" in response.json()["detail"]
    assert client.get(DECLARATIONS).status_code == 200
    assert not SmeDeclaration.objects.exists()


def _at_once(calls) -> list[int]:
    """Run the calls in parallel threads (each on its own connection); their statuses."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = []

    def run(call):
        try:
            barrier.wait()
            statuses.append(call().status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_declarations_and_decisions_sent_at_once_make_one_and_the_rest_are_409s(
    buyer_org, buyer, authority_org, client_for
):
    # when: eight declarations of the same buyer at the same moment
    clients = [client_for(buyer) for _ in range(8)]
    declared = _at_once([lambda c=c: _declare_sme(c) for c in clients])
    # then: one waits for the authority, the others are told so (never a 500)
    assert declared == [201] + [409] * 7
    declaration = SmeDeclaration.objects.get()
    # when: two members of authorities decide it at the same moment
    deciders = [client_for(member_of(authority_org)) for _ in range(2)]
    decided = _at_once(
        [
            lambda: deciders[0].post(_decide(declaration.pk), {"accept": True}, format="json"),
            lambda: deciders[1].post(
                _decide(declaration.pk), {"accept": False, "reason": "no"}, format="json"
            ),
        ]
    )
    # then: one decision stands, and the buyer's status follows it
    assert decided == [200, 409]
    declaration.refresh_from_db()
    buyer_org.refresh_from_db()
    assert buyer_org.is_sme is (declaration.status == "accepted")
