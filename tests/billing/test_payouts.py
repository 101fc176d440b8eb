import csv
import datetime as dt
import io

import pytest

from accounts.models import Organisation
from billing import payments
from billing.ledger import account_get, ledger_is_balanced
from billing.models import (
    Invoice,
    LedgerAccount,
    LedgerTransaction,
    Payment,
    Payout,
    PayoutAccount,
    PayoutLine,
    PayoutMethod,
)
from billing.payouts import payout_run_execute
from billing.settlement import invoice_mark_paid, invoice_settle
from tests.billing.conftest import JUNE, MAY, make_lease, open_invoice
from tests.factories import OrganisationFactory, UsageRecordFactory

P = LedgerAccount.Purpose
JULY = JUNE + dt.timedelta(days=30)


def _paid(invoice: Invoice) -> Invoice:
    return invoice_mark_paid(
        invoice=invoice, amount=invoice.buyer_amount, business_key=f"test:paid:{invoice.pk}"
    )


@pytest.fixture
def providers():
    connect = OrganisationFactory(kind=Organisation.Kind.PROVIDER, legal_name="Connect Compute")
    PayoutAccount.objects.create(
        provider=connect, method=PayoutMethod.STRIPE_CONNECT, stripe_account_id="acct_connect1"
    )
    bank = OrganisationFactory(kind=Organisation.Kind.PROVIDER, legal_name="庆阳绿色算力有限公司")
    PayoutAccount.objects.create(
        provider=bank,
        method=PayoutMethod.BANK_TRANSFER,
        account_number="6222021234567890123",
        account_name="庆阳绿色算力有限公司",
        bank_name="中国工商银行庆阳分行",
        bank_code="102826000015",
        province="甘肃",
        city="庆阳",
    )
    return connect, bank


def _two_provider_invoice(buyer, connect, bank) -> Invoice:
    for provider, price in ((connect, 2_000), (bank, 1_500)):
        lease = make_lease(
            buyer=buyer,
            provider=provider,
            price_amount=price,
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
    return invoice_settle(buyer=buyer, period_start=MAY, period_end=JUNE)


@pytest.mark.django_db
def test_a_payout_run_executed_twice_pays_once(buyer_org, providers, fake_stripe, settings):
    # given a paid invoice: ¥200.00 from the Connect provider, ¥150.00 from the bank one
    settings.PAYOUT_BANK_ACCOUNT = "1234500001"
    connect, bank = providers
    invoice = _paid(_two_provider_invoice(buyer_org, connect, bank))

    # when the same run executes twice, then a later run executes too
    first = payout_run_execute(key="payouts-2026-06-02")
    second = payout_run_execute(key="payouts-2026-06-02")
    later = payout_run_execute(key="payouts-2026-06-03")

    # then each provider is paid its net once: 20,000 − 5 % and 15,000 − 5 %
    assert first.pk == second.pk
    assert sorted(Payout.objects.values_list("provider__legal_name", "amount", "status")) == [
        ("Connect Compute", 19_000, "paid"),
        ("庆阳绿色算力有限公司", 14_250, "sent"),
    ]
    assert later.payouts.count() == 0
    transfers = fake_stripe.objects["transfers"]
    assert [(t["amount"], t["destination"], t["transfer_group"]) for t in transfers] == [
        (19_000, "acct_connect1", f"invoice-{invoice.number}")
    ]
    assert LedgerTransaction.objects.filter(kind="provider_payout").count() == 2
    assert account_get(purpose=P.PROVIDER_PAYABLE, organisation=connect).normal_balance == 0
    assert account_get(purpose=P.PROVIDER_PAYABLE, organisation=bank).normal_balance == 0
    assert account_get(purpose=P.STRIPE_CLEARING).normal_balance == 35_000 - 19_000
    assert account_get(purpose=P.BANK).normal_balance == -14_250
    assert ledger_is_balanced()
    # and the bank batch file has the one bank payout, in yuan
    rows = list(csv.reader(io.StringIO(first.bank_batch_csv)))
    assert rows[0][:7] == [
        "序号",
        "业务参考号",
        "付款账号",
        "收款账号",
        "收款户名",
        "收款开户行",
        "联行号",
    ]
    assert rows[1] == [
        "1",
        Payout.objects.get(provider=bank).reference,
        "1234500001",
        "6222021234567890123",
        "庆阳绿色算力有限公司",
        "中国工商银行庆阳分行",
        "102826000015",
        "甘肃",
        "庆阳",
        "142.50",
        "人民币",
        "算力服务结算",
        invoice.number,
    ]
    assert len(rows) == 2


@pytest.mark.django_db
def test_unpaid_invoices_and_providers_without_payout_details_wait(buyer_org, fake_stripe):
    provider = OrganisationFactory(kind=Organisation.Kind.PROVIDER)
    unpaid = open_invoice(buyer=buyer_org, provider=provider)
    assert unpaid.status == Invoice.Status.OPEN

    run = payout_run_execute(key="r1")

    assert run.payouts.count() == 0
    assert not PayoutLine.objects.exists()
    assert account_get(purpose=P.PROVIDER_PAYABLE, organisation=provider).normal_balance == 19_000


@pytest.mark.django_db
def test_a_credit_note_is_netted_before_the_connect_transfers(
    buyer_org, providers, fake_stripe, settings
):
    # given May (¥200.00, 30 lost minutes → a ¥50.00 credit at 5×) and June, both paid
    settings.SLA_CREDIT_MULTIPLE = 5
    connect, _bank = providers
    may_lease = make_lease(
        buyer=buyer_org, provider=connect, price_amount=2_000, gpu_count=1, starts_at=MAY, hours=11
    )
    UsageRecordFactory(
        lease=may_lease,
        window_start=MAY,
        window_end=may_lease.ends_at,
        gpu_seconds_delivered=36_000,
        gpu_seconds_lost=1_800,
    )
    may = _paid(invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE))
    june_lease = make_lease(
        buyer=buyer_org, provider=connect, price_amount=2_000, gpu_count=1, starts_at=JUNE, hours=10
    )
    UsageRecordFactory(
        lease=june_lease,
        window_start=JUNE,
        window_end=june_lease.ends_at,
        gpu_seconds_delivered=36_000,
    )
    june = _paid(invoice_settle(buyer=buyer_org, period_start=JUNE, period_end=JULY))
    # May: 20,000 − 1,000 fee = 19,000; June: 20,000 − 1,000 − credit 5 × 1,000 = 14,000
    assert june.credit_amount == 5_000

    run = payout_run_execute(key="r-net")

    payout = run.payouts.get()
    assert payout.amount == 33_000
    assert sorted(payout.lines.values_list("invoice__number", "amount", "transferred_amount")) == [
        (may.number, 19_000, 19_000),
        (june.number, 14_000, 14_000),
    ]
    assert sum(t["amount"] for t in fake_stripe.objects["transfers"]) == 33_000


@pytest.mark.django_db
def test_the_payment_intent_idempotency_key_is_stored_before_the_call_and_reused(
    buyer_org, fake_stripe, monkeypatch
):
    # given Stripe creates the intent but its answer is lost on the way back
    invoice = open_invoice(buyer=buyer_org)
    real = payments.gateway.payment_intent_create

    def lost_answer(**kwargs):
        real(**kwargs)
        raise payments.gateway.GatewayError("connection reset", retryable=True)

    monkeypatch.setattr(payments.gateway, "payment_intent_create", lost_answer)
    with pytest.raises(payments.ApplicationError):
        payments.invoice_pay_start(invoice=invoice)
    payment = Payment.objects.get()
    assert payment.idempotency_key == f"invoice-{invoice.pk}-pay-1"
    assert payment.stripe_payment_intent_id is None

    # when the buyer tries again
    monkeypatch.setattr(payments.gateway, "payment_intent_create", real)
    again = payments.invoice_pay_start(invoice=invoice)

    # then the same key went to Stripe twice and one intent exists
    keys = [key for path, key, _ in fake_stripe.requests if path.endswith("/payment_intents")]
    assert keys == [payment.idempotency_key] * 2
    assert len(fake_stripe.objects["payment_intents"]) == 1
    assert again.pk == payment.pk
    assert again.stripe_payment_intent_id == fake_stripe.objects["payment_intents"][0]["id"]
    sent = [p for path, _k, p in fake_stripe.requests if path.endswith("/payment_intents")][0]
    assert sent["transfer_group"] == invoice.transfer_group
    assert Payment.objects.count() == 1


@pytest.mark.django_db
def test_staff_start_a_payout_run_now_through_the_api(
    buyer_org, providers, fake_stripe, settings, django_capture_on_commit_callbacks
):
    from rest_framework.test import APIClient

    from tests.factories import UserFactory

    # given a paid invoice (¥200.00 Connect, ¥150.00 bank) and no run yet
    settings.PAYOUT_BANK_ACCOUNT = "1234500001"
    connect, bank = providers
    _paid(_two_provider_invoice(buyer_org, connect, bank))
    staff = APIClient()
    staff.force_authenticate(UserFactory(is_staff=True))

    # when staff start a run now (tasks run in-process here, as in the demo)
    with django_capture_on_commit_callbacks(execute=True):
        queued = staff.post("/api/v1/payout-runs/")

    # then the run with that key paid each provider its net, once
    assert queued.status_code == 202
    key = queued.json()["key"]
    (run,) = staff.get("/api/v1/payout-runs/").json()["results"]
    assert (run["key"], run["status"], run["payout_count"]) == (key, "completed", 2)
    assert run["total_amount"] == 19_000 + 14_250
    # a second run right after finds nothing left to pay
    with django_capture_on_commit_callbacks(execute=True):
        staff.post("/api/v1/payout-runs/")
    assert Payout.objects.count() == 2
    assert ledger_is_balanced()
