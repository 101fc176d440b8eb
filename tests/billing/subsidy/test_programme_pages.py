"""The authority sets up a programme, issues vouchers and decides applications
from its pages; the forms parse, the services decide, bad input stores nothing."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import Organisation
from billing.models import LedgerTransaction, SubsidyProgramme, Voucher, VoucherApplication
from billing.subsidy.selectors import programme_budget
from billing.subsidy.services import application_create
from tests.billing.subsidy.factories import programme, spread_organisation
from tests.factories import member_of

pytestmark = pytest.mark.django_db

NEW = "/subsidy/programmes/new/"


def _form(**overrides) -> dict:
    data = {
        "name": "Qingyang compute vouchers 2026",
        "description": "Half a year of subsidised inference",
        "budget": "1234567.89",
        "funding": "pool",
        "rate": "30",
        "domestic_rate": "45.5",
        "sme_rate": "40",
        "cap_per_enterprise": "50000",
        "cap_per_enterprise_year": "20000.05",
        "valid_from": "2026-07-01T00:00",
        "valid_until": "2026-12-31T23:59",
        "regions": "甘肃，宁夏、甘肃",
        "hubs": ["gansu", "ningxia"],
        "gpu_vendors": ["Huawei", "Moore Threads"],
        "domestic_only": "on",
        "min_green_share": "65.5",
        "buyer_must_be_verified": "on",
        "max_contract_days": "365",
        "one_claim_per_contract": "on",
        "settlement_mode": "reimburse",
        "beneficiary": "buyers",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def _nothing_created() -> bool:
    return not SubsidyProgramme.objects.exists() and not LedgerTransaction.objects.exists()


def test_an_authority_creates_a_programme_with_every_setting_from_the_form(
    client, authority, authority_org, provider_org
):
    # given
    client.force_login(authority)

    # when
    response = client.post(NEW, _form(eligible_providers=[provider_org.pk]))

    # then the programme holds exactly what was typed, in fen, basis points and fractions
    prog = SubsidyProgramme.objects.get()
    assert response.status_code == 302 and response.url == f"/subsidy/programmes/{prog.pk}/"
    assert prog.authority == authority_org
    assert (prog.name, prog.description) == (
        "Qingyang compute vouchers 2026",
        "Half a year of subsidised inference",
    )
    assert prog.budget_amount == 123_456_789
    assert (prog.rate_bp, prog.domestic_rate_bp, prog.sme_rate_bp) == (3_000, 4_550, 4_000)
    assert prog.cap_per_enterprise_amount == 5_000_000
    assert prog.cap_per_enterprise_year_amount == 2_000_005
    shanghai = dt.timezone(dt.timedelta(hours=8))
    assert prog.valid_from == dt.datetime(2026, 7, 1, tzinfo=shanghai)
    assert prog.valid_until == dt.datetime(2026, 12, 31, 23, 59, tzinfo=shanghai)
    assert prog.regions == ["甘肃", "宁夏"]
    assert prog.hubs == ["gansu", "ningxia"]
    assert list(prog.eligible_providers.all()) == [provider_org]
    assert prog.gpu_vendors == ["Huawei", "Moore Threads"]
    assert prog.domestic_only is True
    assert prog.min_green_share == Decimal("0.655")
    assert prog.buyer_must_be_verified is True
    assert prog.forbid_affiliated is False  # unticked
    assert prog.max_contract_days == 365
    assert prog.one_claim_per_contract is True
    assert prog.settlement_mode == SubsidyProgramme.SettlementMode.REIMBURSE
    assert prog.funding == SubsidyProgramme.Funding.POOL
    assert prog.beneficiary == SubsidyProgramme.Beneficiary.BUYERS
    # and the service funded the budget in the ledger
    assert programme_budget(programme=prog).left == 123_456_789
    assert LedgerTransaction.objects.get().kind == "programme_fund"


def test_empty_optional_settings_mean_no_limit(client, authority):
    client.force_login(authority)

    client.post(
        NEW,
        _form(
            domestic_rate="",
            sme_rate="",
            cap_per_enterprise="",
            cap_per_enterprise_year="",
            regions="",
            hubs=None,
            gpu_vendors=None,
            domestic_only=None,
            min_green_share="",
            buyer_must_be_verified=None,
            max_contract_days="",
            one_claim_per_contract=None,
        ),
    )

    prog = SubsidyProgramme.objects.get()
    assert (prog.domestic_rate_bp, prog.sme_rate_bp) == (None, None)
    assert (prog.cap_per_enterprise_amount, prog.cap_per_enterprise_year_amount) == (None, None)
    assert (prog.regions, prog.hubs, prog.gpu_vendors) == ([], [], [])
    assert prog.min_green_share == Decimal("0")
    assert prog.max_contract_days is None
    assert not prog.domestic_only and not prog.buyer_must_be_verified
    assert not prog.one_claim_per_contract


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("budget", "1000.001"),  # a tenth of a fen
        ("budget", "-5"),
        ("budget", "ten thousand"),
        ("rate", "30.125"),  # finer than a basis point
        ("cap_per_enterprise", "0.009"),
        ("min_green_share", "65.55"),
        ("valid_from", "next week"),
        ("max_contract_days", "0"),
    ],
)
def test_unparseable_input_shows_a_field_error_and_stores_nothing(client, authority, field, value):
    client.force_login(authority)

    response = client.post(NEW, _form(**{field: value}))

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert _nothing_created()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rate", "150", "A rate is between 1 and 10,000 basis points"),
        ("domestic_rate", "0", "A rate is between 1 and 10,000 basis points"),
        ("valid_until", "2026-06-30T00:00", "The programme must end after it starts."),
        ("min_green_share", "120", "A share is between 0 and 1."),
    ],
)
def test_the_services_rules_come_back_on_the_right_field_and_nothing_is_stored(
    client, authority, field, value, message
):
    client.force_login(authority)

    response = client.post(NEW, _form(**{field: value}))

    assert response.status_code == 200
    assert any(message in error for error in response.context["form"].errors[field])
    assert message in response.content.decode()
    assert _nothing_created()


def test_only_authority_users_may_open_or_post_the_new_programme_form(client, buyer, provider):
    for user in (buyer, provider):
        client.force_login(user)
        assert client.get(NEW).status_code == 404
        assert client.post(NEW, _form()).status_code == 404
    client.logout()
    assert client.get(NEW).status_code == 302  # to the login page
    assert _nothing_created()


def test_the_dashboard_links_to_the_new_programme_form(client, authority):
    client.force_login(authority)

    body = client.get("/subsidy/").content.decode()

    assert f'href="{NEW}"' in body
    assert client.get(NEW).status_code == 200


# --- issuing vouchers ---------------------------------------------------------------


def _issue_url(prog) -> str:
    return f"/subsidy/programmes/{prog.pk}/vouchers/new/"


def test_the_authority_issues_a_voucher_to_a_buyer_from_the_programme_page(
    client, authority, authority_org, buyer_org
):
    # given a ¥10,000.00 programme
    prog = programme(authority_org, budget_amount=1_000_000)
    client.force_login(authority)
    assert (
        'action="' + _issue_url(prog) + '"'
        in client.get(f"/subsidy/programmes/{prog.pk}/").content.decode()
    )

    # when ¥2,500.50 is issued to the buyer
    response = client.post(_issue_url(prog), {"holder": buyer_org.pk, "face_amount": "2500.50"})

    # then
    voucher = Voucher.objects.get()
    assert response.status_code == 302 and response.url == f"/subsidy/programmes/{prog.pk}/"
    assert (voucher.holder, voucher.face_amount, voucher.issued_by) == (
        buyer_org,
        250_050,
        authority,
    )
    assert voucher.status == Voucher.Status.ACTIVE
    assert voucher.valid_until == prog.valid_until
    budget = programme_budget(programme=prog)
    assert (budget.left, budget.committed) == (749_950, 250_050)
    page = client.get(f"/subsidy/programmes/{prog.pk}/").content.decode()
    assert "¥2,500.50" in page and buyer_org.legal_name in page


def test_a_voucher_above_the_budget_left_shows_the_error_and_stores_nothing(
    client, authority, authority_org, buyer_org
):
    prog = programme(authority_org, budget_amount=100_000)  # ¥1,000.00
    client.force_login(authority)
    before = LedgerTransaction.objects.count()

    response = client.post(_issue_url(prog), {"holder": buyer_org.pk, "face_amount": "1000.01"})

    assert response.status_code == 200
    assert "Only 100000 is left to commit." in response.context["form"].errors["face_amount"]
    assert not Voucher.objects.exists()
    assert LedgerTransaction.objects.count() == before
    assert programme_budget(programme=prog).left == 100_000


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"face_amount": "100.001"}, "face_amount"),
        ({"face_amount": "0"}, "face_amount"),
        ({"valid_until": "2000-01-01T00:00"}, "valid_until"),
    ],
)
def test_a_bad_voucher_form_stores_nothing(
    client, authority, authority_org, buyer_org, data, field
):
    prog = programme(authority_org)
    client.force_login(authority)

    response = client.post(_issue_url(prog), {"holder": buyer_org.pk, "face_amount": "10", **data})

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not Voucher.objects.exists()


def test_a_voucher_goes_only_to_the_kind_the_programme_subsidises(
    client, authority, authority_org, provider_org
):
    prog = programme(authority_org)  # a demand-side programme
    client.force_login(authority)

    response = client.post(_issue_url(prog), {"holder": provider_org.pk, "face_amount": "10"})

    assert "holder" in response.context["form"].errors
    assert not Voucher.objects.exists()


def test_an_unverified_buyer_gets_the_services_reason_and_no_voucher(
    client, authority, authority_org
):
    prog = programme(authority_org)
    unverified = spread_organisation(Organisation.Kind.BUYER, verified=False)
    client.force_login(authority)

    response = client.post(_issue_url(prog), {"holder": unverified.pk, "face_amount": "10"})

    assert response.context["form"].errors["holder"] == [
        "This programme grants vouchers to verified organisations only."
    ]
    assert not Voucher.objects.exists()


def test_another_authoritys_programme_and_other_users_get_no_voucher_form(
    client, authority_org, buyer, buyer_org
):
    prog = programme(authority_org)
    other = member_of(spread_organisation(Organisation.Kind.AUTHORITY), "other-authority")

    client.force_login(other)
    assert client.get(_issue_url(prog)).status_code == 404
    assert (
        client.post(_issue_url(prog), {"holder": buyer_org.pk, "face_amount": "10"}).status_code
        == 404
    )
    client.force_login(buyer)
    assert (
        client.post(_issue_url(prog), {"holder": buyer_org.pk, "face_amount": "10"}).status_code
        == 404
    )
    assert not Voucher.objects.exists()


# --- deciding applications from the programme page -------------------------------


@pytest.fixture
def pending(authority_org, buyer_org):
    prog = programme(authority_org, budget_amount=10_000_000)
    application = application_create(
        applicant=buyer_org,
        programme=prog,
        purpose="Fine-tuning a legal model",
        expected_gpu_hours=400,
        requested_amount=2_000_000,
    )
    return prog, application


def _decide(application, decision: str) -> str:
    return f"/subsidy/applications/{application.pk}/{decision}/"


def test_the_programme_page_approves_an_application_with_an_amount(client, authority, pending):
    prog, application = pending
    client.force_login(authority)
    page = f"/subsidy/programmes/{prog.pk}/"
    assert _decide(application, "approve") in client.get(page).content.decode()

    response = client.post(_decide(application, "approve"), {"amount": "12345.67", "next": page})

    assert response.status_code == 302 and response.url == page
    application.refresh_from_db()
    assert (application.status, application.approved_amount) == ("approved", 1_234_567)
    assert Voucher.objects.get(application=application).face_amount == 1_234_567
    assert programme_budget(programme=prog).left == 10_000_000 - 1_234_567


def test_the_programme_page_rejects_an_application_with_a_reason(client, authority, pending):
    prog, application = pending
    client.force_login(authority)

    client.post(
        _decide(application, "reject"),
        {"reason": "Purpose outside the programme", "next": f"/subsidy/programmes/{prog.pk}/"},
    )

    application.refresh_from_db()
    assert (application.status, application.decision_reason) == (
        "rejected",
        "Purpose outside the programme",
    )
    assert not Voucher.objects.exists()


@pytest.mark.parametrize(
    ("decision", "data"),
    [
        ("approve", {"amount": "100.005"}),
        ("approve", {"amount": "20000.01"}),  # more than requested
        ("reject", {"reason": ""}),
    ],
)
def test_a_bad_decision_leaves_the_application_pending(client, authority, pending, decision, data):
    prog, application = pending
    client.force_login(authority)

    client.post(_decide(application, decision), data)

    application.refresh_from_db()
    assert application.status == VoucherApplication.Status.PENDING
    assert application.approved_amount is None
    assert not Voucher.objects.exists()
    assert programme_budget(programme=prog).left == 10_000_000


def test_a_decision_never_redirects_off_site(client, authority, pending):
    _prog, application = pending
    client.force_login(authority)

    response = client.post(
        _decide(application, "reject"), {"reason": "No", "next": "https://evil.example/"}
    )

    assert response.url == "/subsidy/"


def test_a_voucher_is_issued_now_when_no_start_is_given(
    client, authority, authority_org, buyer_org, time_machine
):
    time_machine.move_to(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC), tick=False)
    prog = programme(authority_org)
    client.force_login(authority)

    client.post(
        _issue_url(prog),
        {"holder": buyer_org.pk, "face_amount": "88", "valid_until": "2026-04-01T00:00"},
    )

    voucher = Voucher.objects.get()
    assert voucher.valid_from == timezone.now()
    assert voucher.valid_until == dt.datetime(2026, 3, 31, 16, 0, tzinfo=dt.UTC)
