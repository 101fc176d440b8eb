"""A provider gives its own payout account; what waits for one is shown, never
silently skipped."""

import pytest
from rest_framework.test import APIClient

from accounts.models import Organisation
from billing.models import Payout, PayoutAccount, PayoutMethod
from billing.payouts import payout_run_execute
from billing.settlement import invoice_mark_paid
from tests.billing.conftest import open_invoice
from tests.factories import OrganisationFactory, member_of

pytestmark = pytest.mark.django_db

NAME = "庆阳绿色算力有限公司"
BANK = {
    "account_number": "6222 0212 3456 7890 123",
    "account_name": NAME,
    "bank_name": "中国工商银行庆阳分行",
    "bank_code": "102826000015",
    "province": "甘肃",
    "city": "庆阳",
}


@pytest.fixture
def provider():
    return OrganisationFactory(kind=Organisation.Kind.PROVIDER, legal_name=NAME)


@pytest.fixture
def paid_share(provider, buyer_org):
    """A paid May invoice: 10 GPU-hours at ¥20.00 = ¥200.00, ¥190.00 net of the 5 % fee."""
    invoice = open_invoice(buyer=buyer_org, provider=provider)
    return invoice_mark_paid(
        invoice=invoice, amount=invoice.buyer_amount, business_key=f"test:paid:{invoice.pk}"
    )


def _api(provider) -> APIClient:
    client = APIClient()
    client.force_authenticate(member_of(provider))
    return client


def test_a_share_without_a_payout_account_waits_visibly_then_is_paid_once_one_is_given(
    provider, paid_share, settings, admin_client
):
    settings.PAYOUT_BANK_ACCOUNT = "1234500001"
    api = _api(provider)

    # given: no account, a payout run pays nothing to the provider ...
    run = payout_run_execute(key="2026-06-01")
    assert not Payout.objects.exists()
    # ... and says so to the provider and to the operator
    waiting = api.get("/api/v1/payout-account/").json()
    assert (waiting["configured"], waiting["waiting_amount"], waiting["waiting_invoices"]) == (
        False,
        19_000,
        1,
    )
    assert NAME in admin_client.get("/operator/").content.decode()
    assert "¥190.00" in admin_client.get("/billing/payouts/").content.decode()

    # when: the provider gives its bank account
    saved = api.put("/api/v1/payout-account/", BANK, format="json")

    # then: stored as the bank file needs it, and the next run pays what waited
    assert saved.status_code == 200, saved.content
    assert saved.json()["configured"] is True
    account = PayoutAccount.objects.get(provider=provider)
    assert (account.method, account.account_number) == (
        PayoutMethod.BANK_TRANSFER,
        "6222021234567890123",
    )
    payout_run_execute(key="2026-06-02")
    assert Payout.objects.get(provider=provider).amount == 19_000
    assert api.get("/api/v1/payout-account/").json()["waiting_amount"] == 0
    assert run.key == "2026-06-01"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account_number": "6222-ABC-1234"}, "account_number"),
        ({"account_number": "1234567"}, "account_number"),
        ({"account_name": "Someone Else Ltd."}, "account_name"),
        ({"bank_name": " "}, "bank_name"),
        ({"bank_code": "10282600001"}, "bank_code"),  # 11 digits
        ({"bank_code": "10282600001X"}, "bank_code"),
    ],
)
def test_a_bad_bank_account_names_the_field_and_stores_nothing(provider, change, field):
    response = _api(provider).put("/api/v1/payout-account/", {**BANK, **change}, format="json")

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not PayoutAccount.objects.exists()


def test_the_payouts_page_saves_the_bank_account(provider, client):
    client.force_login(member_of(provider))

    response = client.post("/billing/payouts/", BANK)

    assert response.status_code == 302
    assert PayoutAccount.objects.get(provider=provider).bank_code == "102826000015"
