"""Payout files: the operator downloads a run's bank batch file; a provider
downloads the statement of its own payouts and nothing of anyone else's."""

import csv
import datetime as dt
import io

import pytest

from accounts.models import Organisation
from billing.models import Invoice, Payout, PayoutAccount, PayoutMethod, PayoutRun
from billing.payouts import payout_run_execute
from billing.settlement import invoice_mark_paid, invoice_settle
from tests.billing.conftest import JUNE, MAY, make_lease
from tests.factories import OrganisationFactory, UsageRecordFactory, UserFactory, member_of

pytestmark = pytest.mark.django_db

BOM = b"\xef\xbb\xbf"


def _bank_provider(name: str, account_number: str) -> Organisation:
    provider = OrganisationFactory(kind=Organisation.Kind.PROVIDER, legal_name=name)
    PayoutAccount.objects.create(
        provider=provider,
        method=PayoutMethod.BANK_TRANSFER,
        account_number=account_number,
        account_name=name,
        bank_name="中国工商银行庆阳分行",
        bank_code="102826000015",
        province="甘肃",
        city="庆阳",
    )
    return provider


def _sell(buyer, provider, *, price_amount: int) -> None:
    lease = make_lease(
        buyer=buyer,
        provider=provider,
        price_amount=price_amount,
        gpu_count=1,
        starts_at=MAY + dt.timedelta(days=2),
        hours=10,
    )
    UsageRecordFactory(
        lease=lease,
        window_start=lease.starts_at,
        window_end=lease.ends_at,
        gpu_seconds_delivered=36_000,
    )


@pytest.fixture
def run(buyer_org, settings):
    """A completed run paying two bank providers for one paid May invoice:
    10 GPU-hours at ¥20.00 and at ¥15.00, less the 5 % platform fee."""
    settings.PAYOUT_BANK_ACCOUNT = "1234500001"
    qingyang = _bank_provider("庆阳绿色算力有限公司", "6222021234567890123")
    ningxia = _bank_provider("宁夏中卫云计算有限公司", "6222029876543210987")
    _sell(buyer_org, qingyang, price_amount=2_000)
    _sell(buyer_org, ningxia, price_amount=1_500)
    invoice = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    invoice_mark_paid(
        invoice=invoice, amount=invoice.buyer_amount, business_key=f"test:paid:{invoice.pk}"
    )
    return payout_run_execute(key="payouts 2026/06/02"), invoice, qingyang, ningxia


def _rows(content: bytes) -> list[list[str]]:
    assert content.startswith(BOM)
    return list(csv.reader(io.StringIO(content[len(BOM) :].decode("utf-8"))))


def test_staff_download_the_runs_bank_batch_file_with_a_bom_and_the_run_key(client, run):
    # given
    payout_run, invoice, _qingyang, _ningxia = run
    client.force_login(UserFactory(username="operator", is_staff=True))

    # when
    response = client.get(f"/billing/payout-runs/{payout_run.pk}/bank-batch.csv")

    # then the stored file, byte for byte after the BOM
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="bank-batch-payouts-2026-06-02.csv"'
    )
    assert response.content == BOM + payout_run.bank_batch_csv.encode("utf-8")
    rows = _rows(response.content)
    assert [(row[4], row[9]) for row in rows[1:]] == [
        ("庆阳绿色算力有限公司", "190.00"),
        ("宁夏中卫云计算有限公司", "142.50"),
    ]
    assert rows[1][12] == invoice.number


def test_the_payouts_page_links_staff_to_each_runs_bank_batch_file(client, run):
    payout_run, *_ = run
    client.force_login(UserFactory(username="operator", is_staff=True))

    body = client.get("/billing/payouts/").content.decode()

    assert f"/billing/payout-runs/{payout_run.pk}/bank-batch.csv" in body
    assert "payouts 2026/06/02" in body and "¥332.50" in body


def test_providers_and_buyers_never_get_the_bank_batch_file(client, run, buyer):
    payout_run, _invoice, qingyang, _ningxia = run
    url = f"/billing/payout-runs/{payout_run.pk}/bank-batch.csv"

    owner = member_of(qingyang, "qingyang-owner")
    for user in (owner, buyer):
        client.force_login(user)
        assert client.get(url).status_code == 404
    client.force_login(owner)
    assert url not in client.get("/billing/payouts/").content.decode()


def test_a_run_that_has_not_completed_has_no_bank_batch_file(client):
    pending = PayoutRun.objects.create(key="half-done")
    client.force_login(UserFactory(username="operator", is_staff=True))

    assert client.get(f"/billing/payout-runs/{pending.pk}/bank-batch.csv").status_code == 404


def test_a_provider_downloads_the_statement_of_its_own_payout(client, run):
    # given
    payout_run, invoice, qingyang, _ningxia = run
    payout = Payout.objects.get(provider=qingyang)
    client.force_login(member_of(qingyang, "qingyang-owner"))
    page = client.get("/billing/payouts/").content.decode()
    assert f"/billing/payouts/{payout.pk}/statement.csv" in page

    # when
    response = client.get(f"/billing/payouts/{payout.pk}/statement.csv")

    # then one row per invoice share and the total, in yuan, and nothing of the other provider
    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="payout-statement-payouts-2026-06-02-{payout.reference}.csv"'
    )
    rows = _rows(response.content)
    assert rows[0][:5] == ["Payout run", "Payout reference", "Method", "Status", "Invoice"]
    common = ["payouts 2026/06/02", payout.reference, "bank transfer (batch file)", "sent"]
    assert rows[1:] == [
        [*common, invoice.number, "2026-05-01", "2026-06-01", "190.00", "", ""],
        [*common, "Total", "", "", "190.00", "", ""],
    ]
    assert "宁夏" not in response.content.decode("utf-8")


def test_a_provider_cannot_download_another_providers_statement(client, run, buyer):
    _run, _invoice, qingyang, ningxia = run
    other = Payout.objects.get(provider=ningxia)
    url = f"/billing/payouts/{other.pk}/statement.csv"

    client.force_login(member_of(qingyang, "qingyang-owner"))
    assert client.get(url).status_code == 404
    client.force_login(buyer)
    assert client.get(url).status_code == 404
    client.force_login(UserFactory(username="operator", is_staff=True))
    assert client.get(url).status_code == 200


def test_a_credit_note_netted_in_a_payout_shows_as_a_negative_share(client, buyer_org):
    # given a payout of ¥9.00: ¥190.00 for May less a ¥181.00 credit note on June
    provider = _bank_provider("庆阳绿色算力有限公司", "6222021234567890123")
    may, june = (
        Invoice.objects.create(
            number=number, buyer=buyer_org, period_start=start, period_end=end, status="paid"
        )
        for number, start, end in (
            ("INV-2026-05-0001", MAY, JUNE),
            ("INV-2026-06-0001", JUNE, JUNE + dt.timedelta(days=30)),
        )
    )
    payout = Payout.objects.create(
        run=PayoutRun.objects.create(key="r-credit", status="completed"),
        provider=provider,
        method=PayoutMethod.BANK_TRANSFER,
        amount=900,
        reference="PO000001000001",
        status=Payout.Status.SENT,
    )
    payout.lines.create(invoice=may, provider=provider, amount=19_000)
    payout.lines.create(invoice=june, provider=provider, amount=-18_100)
    client.force_login(member_of(provider, "owner"))

    # when
    rows = _rows(client.get(f"/billing/payouts/{payout.pk}/statement.csv").content)

    # then
    assert [(row[4], row[7]) for row in rows[1:]] == [
        ("INV-2026-05-0001", "190.00"),
        ("INV-2026-06-0001", "-181.00"),
        ("Total", "9.00"),
    ]


@pytest.mark.parametrize(
    ("fen", "text"),
    [(0, "0.00"), (5, "0.05"), (123_456, "1234.56"), (-150, "-1.50"), (-5, "-0.05")],
)
def test_amounts_in_files_are_exact_yuan_with_the_sign_first(fen, text):
    from core.money import format_major

    assert format_major(fen) == text
