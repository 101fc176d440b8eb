"""Issue 10 item 9: a programme settles only in a currency the exchange
supports, and a window wholly in the past is refused; nothing is stored."""

import datetime as dt

import pytest
from django.utils import timezone

from billing.models import LedgerAccount, LedgerTransaction, SubsidyProgramme

pytestmark = pytest.mark.django_db


def _payload(**overrides) -> dict:
    now = timezone.now()
    return {
        "name": "Qingyang compute vouchers",
        "budget_amount": 10_000_000,
        "rate_bp": 3_000,
        "valid_from": now.isoformat(),
        "valid_until": (now + dt.timedelta(days=365)).isoformat(),
    } | overrides


def _nothing_stored() -> bool:
    return not (
        SubsidyProgramme.objects.exists()
        or LedgerTransaction.objects.exists()
        or LedgerAccount.objects.exists()
    )


@pytest.mark.parametrize("currency", ["\x01\x02\x03", "cny", "USD", "XXX", "CNYX", ""])
def test_a_programme_in_a_currency_the_exchange_does_not_settle_is_refused(
    authority_client, currency
):
    response = authority_client.post(
        "/api/v1/programmes/", _payload(currency=currency), format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["currency"]
    assert _nothing_stored()


def test_a_currency_the_settings_list_is_accepted(settings, authority_client):
    settings.EXCHANGE_CURRENCIES = ["CNY", "USD"]

    response = authority_client.post("/api/v1/programmes/", _payload(currency="USD"), format="json")

    assert response.status_code == 201, response.json()
    assert SubsidyProgramme.objects.get().currency == "USD"


def test_the_service_refuses_a_currency_too(authority_org):
    from billing.subsidy.services import programme_create
    from core.errors import ApplicationError

    now = timezone.now()
    with pytest.raises(ApplicationError) as refused:
        programme_create(
            authority=authority_org,
            name="x",
            currency="\x00AB",
            budget_amount=1_000,
            rate_bp=3_000,
            valid_from=now,
            valid_until=now + dt.timedelta(days=30),
        )

    assert list(refused.value.errors) == ["currency"]
    assert _nothing_stored()


def test_a_window_wholly_in_the_past_is_refused(authority_client):
    now = timezone.now()
    past = _payload(
        valid_from=(now - dt.timedelta(days=400)).isoformat(),
        valid_until=(now - dt.timedelta(days=35)).isoformat(),
    )

    response = authority_client.post("/api/v1/programmes/", past, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["valid_until"]
    assert _nothing_stored()


def test_a_window_that_began_in_the_past_and_runs_on_is_accepted(authority_client):
    now = timezone.now()
    running = _payload(
        valid_from=(now - dt.timedelta(days=30)).isoformat(),
        valid_until=(now + dt.timedelta(days=30)).isoformat(),
    )

    response = authority_client.post("/api/v1/programmes/", running, format="json")

    assert response.status_code == 201, response.json()


def test_a_window_longer_than_the_limit_is_refused(authority_client):
    now = timezone.now()
    endless = _payload(valid_until=(now + dt.timedelta(days=365 * 200)).isoformat())

    response = authority_client.post("/api/v1/programmes/", endless, format="json")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["valid_until"]
    assert _nothing_stored()


def test_the_programme_page_refuses_a_window_in_the_past(client, authority):
    client.force_login(authority)
    form = {
        "name": "Old vouchers",
        "budget": "1000",
        "funding": "reserved",
        "rate": "30",
        "valid_from": "2020-01-01T00:00",
        "valid_until": "2020-12-31T23:59",
        "settlement_mode": "deduct",
        "beneficiary": "buyers",
    }

    response = client.post("/subsidy/programmes/new/", form)

    assert response.status_code == 200
    assert "valid_until" in response.context["form"].errors
    assert _nothing_stored()


@pytest.mark.parametrize(
    ("method", "tail"),
    [
        ("get", "claims/2026/13/"),
        ("get", "claims/2026/0/"),
        ("get", "claims/99999/1/"),
        ("get", "claims/0/1/"),
        ("get", "claims/2026/13.csv"),
        ("post", "claims/2026/13/submit/"),
    ],
)
def test_a_claim_of_a_month_that_does_not_exist_is_a_404(
    client, authority, authority_org, method, tail
):
    from billing.models import SubsidyClaim
    from tests.billing.subsidy.factories import programme

    prog = programme(authority_org)
    client.force_login(authority)

    response = getattr(client, method)(f"/subsidy/programmes/{prog.pk}/{tail}")

    assert response.status_code == 404
    assert not SubsidyClaim.objects.exists()


def test_a_claim_page_of_a_real_month_still_answers(client, authority, authority_org):
    from tests.billing.subsidy.factories import programme

    prog = programme(authority_org)
    client.force_login(authority)

    assert client.get(f"/subsidy/programmes/{prog.pk}/claims/2026/5/").status_code == 200
    assert client.get(f"/subsidy/programmes/{prog.pk}/claims/2026/05.csv").status_code == 200


def test_a_voucher_whose_validity_already_ended_is_refused(authority_client, authority_org):
    from accounts.models import Organisation
    from billing.models import Voucher
    from tests.billing.subsidy.factories import programme, spread_organisation

    prog = programme(authority_org)  # began 60 days ago
    holder = spread_organisation(Organisation.Kind.BUYER)
    now = timezone.now()
    before = LedgerTransaction.objects.count()

    response = authority_client.post(
        "/api/v1/vouchers/",
        {
            "programme": prog.pk,
            "holder": holder.pk,
            "face_amount": 10_000,
            "valid_from": (now - dt.timedelta(days=50)).isoformat(),
            "valid_until": (now - dt.timedelta(days=20)).isoformat(),
        },
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["valid_until"]
    assert not Voucher.objects.exists()
    assert LedgerTransaction.objects.count() == before
