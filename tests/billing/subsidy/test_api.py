"""The REST API: authorities manage; buyers see their own and apply."""

import datetime as dt

import pytest
from django.utils import timezone

from accounts.models import Organisation
from billing.models import Redemption, SubsidyProgramme, Voucher, VoucherApplication
from billing.subsidy.redemption import invoice_redeem_vouchers
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    spread_organisation,
    usage_line_spec,
    voucher,
)
from tests.factories import member_of

pytestmark = pytest.mark.django_db


def _programme_payload(**overrides):
    now = timezone.now()
    payload = {
        "name": "Qingyang compute vouchers 2026",
        "budget_amount": 10_000_000,
        "rate_bp": 3_000,
        "domestic_rate_bp": 5_000,
        "cap_per_enterprise_amount": 2_000_000,
        "valid_from": now.isoformat(),
        "valid_until": (now + dt.timedelta(days=365)).isoformat(),
        "regions": ["甘肃"],
        "settlement_mode": "deduct",
    }
    payload.update(overrides)
    return payload


def test_an_authority_creates_a_programme_and_sees_its_budget(authority_client):
    response = authority_client.post("/api/v1/programmes/", _programme_payload(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["budget"] == {
        "total_amount": 10_000_000,
        "left_amount": 10_000_000,
        "committed_amount": 0,
        "spent_amount": 0,
        "paid_out_amount": 0,
        "pool_entitlements_amount": 0,
    }
    listed = authority_client.get("/api/v1/programmes/").json()
    assert [row["id"] for row in listed["results"]] == [body["id"]]


def test_a_buyer_cannot_create_a_programme(buyer_client):
    response = buyer_client.post("/api/v1/programmes/", _programme_payload(), format="json")

    assert response.status_code == 403
    assert not SubsidyProgramme.objects.exists()


def test_a_bad_programme_gets_field_errors_and_nothing_is_stored(authority_client):
    payload = _programme_payload(rate_bp=0, valid_until=timezone.now().isoformat())
    payload["valid_from"] = (timezone.now() + dt.timedelta(days=1)).isoformat()

    response = authority_client.post("/api/v1/programmes/", payload, format="json")

    assert response.status_code == 400
    assert "rate_bp" in response.json()["errors"]
    assert not SubsidyProgramme.objects.exists()


def test_a_buyer_applies_the_authority_approves_and_the_buyer_sees_the_balance(
    authority_org, authority_client, buyer_client
):
    prog = programme(authority_org)

    applied = buyer_client.post(
        "/api/v1/voucher-applications/",
        {
            "programme": prog.pk,
            "purpose": "Train a speech model",
            "expected_gpu_hours": 5_000,
            "requested_amount": 3_000_000,
        },
        format="json",
    )
    assert applied.status_code == 201, applied.json()
    approved = authority_client.post(
        f"/api/v1/voucher-applications/{applied.json()['id']}/approve/",
        {"amount": 2_500_000},
        format="json",
    )
    assert approved.status_code == 201, approved.json()

    mine = buyer_client.get("/api/v1/vouchers/").json()["results"]
    assert [(v["face_amount"], v["balance_amount"], v["status"]) for v in mine] == [
        (2_500_000, 2_500_000, "active")
    ]
    applications = buyer_client.get("/api/v1/voucher-applications/").json()["results"]
    assert applications[0]["status"] == "approved"
    assert applications[0]["voucher"] == mine[0]["id"]


def test_a_rejection_needs_a_reason(authority_org, authority_client, buyer_org):
    prog = programme(authority_org)
    application = VoucherApplication.objects.create(
        programme=prog, applicant=buyer_org, purpose="x", expected_gpu_hours=1, requested_amount=1
    )

    response = authority_client.post(
        f"/api/v1/voucher-applications/{application.pk}/reject/", {}, format="json"
    )

    assert response.status_code == 400
    application.refresh_from_db()
    assert application.status == "pending"


def test_other_organisations_vouchers_are_invisible(authority_org, buyer_org, client_for):
    prog = programme(authority_org)
    voucher(prog, buyer_org, 100_000)
    stranger = spread_organisation(Organisation.Kind.BUYER)
    other_authority = spread_organisation(Organisation.Kind.AUTHORITY)

    stranger_client = client_for(member_of(stranger, "stranger"))
    other_authority_client = client_for(member_of(other_authority, "other-authority"))

    assert stranger_client.get("/api/v1/vouchers/").json()["results"] == []
    assert other_authority_client.get("/api/v1/vouchers/").json()["results"] == []
    assert other_authority_client.get(f"/api/v1/programmes/{prog.pk}/").status_code == 404
    revoke = other_authority_client.post(
        f"/api/v1/vouchers/{Voucher.objects.get().pk}/revoke/", {"reason": "x"}, format="json"
    )
    assert revoke.status_code == 404


def test_the_authority_claws_back_a_redemption_through_the_api(
    authority_org, authority_client, buyer_org, provider_org
):
    prog = programme(authority_org)
    voucher(prog, buyer_org, 1_000_000)
    invoice_redeem_vouchers(
        invoice=invoice_with_lines(
            buyer_org, [usage_line_spec(provider=provider_org, amount=100_000)]
        )
    )
    redemption = Redemption.objects.get()

    held = authority_client.post(f"/api/v1/redemptions/{redemption.pk}/hold/", {}, format="json")
    clawed = authority_client.post(
        f"/api/v1/redemptions/{redemption.pk}/claw-back/", {"reason": "idle"}, format="json"
    )

    assert (held.status_code, clawed.status_code) == (200, 200)
    assert clawed.json()["status"] == "clawed_back"


def test_the_voucher_list_costs_a_fixed_number_of_queries(
    authority_org, buyer_org, buyer_client, django_assert_max_num_queries
):
    prog = programme(authority_org)
    for _ in range(5):
        voucher(prog, buyer_org, 100_000)

    with django_assert_max_num_queries(8):
        response = buyer_client.get("/api/v1/vouchers/")

    assert len(response.json()["results"]) == 5
