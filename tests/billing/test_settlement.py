import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from accounts.models import Organisation
from billing.invoices import invoice_build_for_period, period_bounds
from billing.ledger import account_balance_from_postings, account_get, ledger_is_balanced
from billing.models import Invoice, InvoiceLine, LedgerAccount, LedgerTransaction, SlaCredit
from billing.settlement import invoice_invariants_hold, invoice_issue, invoice_settle, invoice_void
from core.errors import Conflict
from core.money import amount_for_gpu_seconds
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    OrganisationFactory,
    SiteFactory,
    UsageRecordFactory,
)

P = LedgerAccount.Purpose
SHANGHAI = ZoneInfo("Asia/Shanghai")
MAY = dt.datetime(2026, 5, 1, tzinfo=SHANGHAI)
JUNE = dt.datetime(2026, 6, 1, tzinfo=SHANGHAI)
JULY = dt.datetime(2026, 7, 1, tzinfo=SHANGHAI)


def _provider(name: str) -> Organisation:
    return OrganisationFactory(kind=Organisation.Kind.PROVIDER, legal_name=name)


def _lease(*, buyer, provider, price_amount, gpu_count, starts_at, hours):
    node = NodeFactory(site=SiteFactory(provider=provider))
    offer = OfferFactory(node=node, price_amount=price_amount)
    return LeaseFactory(
        offer=offer,
        order=OrderFactory(buyer=buyer),
        gpu_count=gpu_count,
        price_amount=price_amount,
        starts_at=starts_at,
        ends_at=starts_at + dt.timedelta(hours=hours),
    )


def _usage(lease, *, start, seconds, lost=0, energy_wh=0, carbon_g=0):
    return UsageRecordFactory(
        lease=lease,
        window_start=start,
        window_end=start + dt.timedelta(seconds=(seconds + lost) // lease.gpu_count),
        gpu_seconds_delivered=seconds,
        gpu_seconds_lost=lost,
        energy_wh=energy_wh,
        carbon_g=carbon_g,
    )


def _balance(purpose, organisation=None) -> int:
    return account_get(purpose=purpose, organisation=organisation).normal_balance


@pytest.fixture
def month_of_three_leases(buyer_org):
    """3 leases at different prices in May 2026, two providers."""
    gansu = _provider("Gansu Compute")
    guizhou = _provider("Guizhou Compute")
    day = dt.timedelta(days=1)
    l1 = _lease(
        buyer=buyer_org,
        provider=gansu,
        price_amount=1_234,
        gpu_count=2,
        starts_at=MAY + 2 * day,
        hours=100,
    )
    l2 = _lease(
        buyer=buyer_org,
        provider=guizhou,
        price_amount=2_000,
        gpu_count=8,
        starts_at=MAY + 10 * day,
        hours=37.5,
    )
    l3 = _lease(
        buyer=buyer_org,
        provider=gansu,
        price_amount=987,
        gpu_count=1,
        starts_at=MAY + 20 * day,
        hours=2,
    )
    # L1 metered in two windows of 50 h; L2 in one; L3 delivered 1 h 0 min 1 s.
    _usage(l1, start=l1.starts_at, seconds=2 * 50 * 3600, energy_wh=70_000, carbon_g=38_500)
    _usage(l1, start=l1.starts_at + dt.timedelta(hours=50), seconds=2 * 50 * 3600)
    _usage(l2, start=l2.starts_at, seconds=8 * 135_000, energy_wh=210_000, carbon_g=115_500)
    _usage(l3, start=l3.starts_at, seconds=3_601)
    return {"gansu": gansu, "guizhou": guizhou, "leases": (l1, l2, l3)}


@pytest.mark.django_db
def test_a_month_of_three_leases_gives_lines_totals_fee_and_provider_nets_to_the_fen(
    buyer_org, month_of_three_leases, settings
):
    # given 5 % platform fee
    settings.PLATFORM_FEE_BASIS_POINTS = 500
    gansu, guizhou = month_of_three_leases["gansu"], month_of_three_leases["guizhou"]

    # when
    invoice = invoice_build_for_period(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    invoice = invoice_issue(invoice=invoice)

    # then: one line per lease, GPU-seconds × price / 3600 half-even, once
    lines = list(invoice.lines.order_by("window_start"))
    assert [line.amount for line in lines] == [246_800, 600_000, 987]
    assert [line.fee_amount for line in lines] == [12_340, 30_000, 49]  # 49.35 → 49
    assert [line.provider_net_amount for line in lines] == [234_460, 570_000, 938]
    assert [line.gpu_hours for line in lines] == [
        Decimal("200.0000"),
        Decimal("300.0000"),
        Decimal("1.0003"),
    ]
    assert [line.usage_records.count() for line in lines] == [2, 1, 1]
    assert lines[1].pflops_hours == Decimal("296.8200")  # 300 GPU-h × 989.4 TFLOPS (H800 BF16)
    assert (lines[0].energy_kwh, lines[0].carbon_kg) == (Decimal("70.000"), Decimal("38.500"))
    assert invoice.status == Invoice.Status.OPEN
    assert invoice.number == f"INV-202605010000-{buyer_org.pk:05d}"
    assert invoice.gross_amount == invoice.total_amount == 847_787
    assert invoice.platform_fee_amount == 42_389
    assert invoice.provider_net_amount == 805_398
    assert (invoice.voucher_amount, invoice.buyer_amount, invoice.rounding_amount) == (
        0,
        847_787,
        0,
    )
    assert invoice_invariants_hold(invoice)
    # and the ledger: receivable 8,477.87; payables 2,353.98 and 5,700.00; fee 423.89
    assert _balance(P.BUYER_RECEIVABLE, buyer_org) == 847_787
    assert _balance(P.PROVIDER_PAYABLE, gansu) == 234_460 + 938 == 235_398
    assert _balance(P.PROVIDER_PAYABLE, guizhou) == 570_000
    assert _balance(P.PLATFORM_FEE) == 42_389
    assert LedgerTransaction.objects.get().business_key == f"invoice:{invoice.pk}:issue"
    assert ledger_is_balanced()


@pytest.mark.django_db
def test_one_gpu_second_at_12_34_an_hour_rounds_half_even_once_per_line(buyer_org):
    # given four 15-minute windows of one GPU at ¥12.34 per GPU-hour, and a
    # second lease that delivered 1 GPU-second
    provider = _provider("P")
    lease = _lease(
        buyer=buyer_org, provider=provider, price_amount=1_234, gpu_count=1, starts_at=MAY, hours=2
    )
    for quarter in range(4):
        _usage(lease, start=MAY + dt.timedelta(minutes=15 * quarter), seconds=900)
    tiny = _lease(
        buyer=buyer_org, provider=provider, price_amount=1_234, gpu_count=1, starts_at=MAY, hours=1
    )
    _usage(tiny, start=MAY + dt.timedelta(hours=1), seconds=1)

    # when
    invoice = invoice_build_for_period(buyer=buyer_org, period_start=MAY, period_end=JUNE)

    # then each window alone would be 308.5 fen → 308 (even), 4 × 308 = 1,232;
    # the lease's line is 3,600 GPU-seconds priced once: exactly 1,234
    assert amount_for_gpu_seconds(gpu_seconds=900, price_amount=1_234) == 308
    assert list(invoice.lines.values_list("amount", "gpu_seconds")) == [(1_234, 3_600), (0, 1)]
    assert invoice.lines.first().usage_records.count() == 4
    assert invoice.total_amount == 1_234


@pytest.mark.django_db
def test_lost_minutes_are_not_billed_and_earn_a_credit_of_the_multiple_on_the_next_invoice(
    buyer_org, settings
):
    # given 5× credits and a 4-GPU lease of 3 h at ¥25.00 whose node lost 20 minutes
    settings.SLA_CREDIT_MULTIPLE = 5
    provider = _provider("Flaky Compute")
    may_lease = _lease(
        buyer=buyer_org,
        provider=provider,
        price_amount=2_500,
        gpu_count=4,
        starts_at=MAY + dt.timedelta(days=3),
        hours=3,
    )
    _usage(may_lease, start=may_lease.starts_at, seconds=4 * (3 * 3600 - 1200), lost=4 * 1200)

    # when May closes
    may = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)

    # then only delivered time is billed: 38,400 GPU-s × ¥25 / 3600 = 266.666… → ¥266.67
    line = may.lines.get()
    assert (line.gpu_seconds, line.gpu_seconds_lost, line.amount) == (38_400, 4_800, 26_667)
    # and the provider owes 5 × 4,800 GPU-s × ¥25 / 3600 = 166.666… → ¥166.67
    credit = SlaCredit.objects.get()
    assert (credit.provider, credit.amount, credit.uncapped_amount) == (provider, 16_667, 16_667)
    assert may.credit_amount == 0  # not on the invoice of the fault itself

    # when June (10 GPU-hours at ¥25.00 = ¥250.00 from the same provider) closes
    june_lease = _lease(
        buyer=buyer_org,
        provider=provider,
        price_amount=2_500,
        gpu_count=1,
        starts_at=JUNE + dt.timedelta(days=1),
        hours=10,
    )
    _usage(june_lease, start=june_lease.starts_at, seconds=36_000)
    june = invoice_settle(buyer=buyer_org, period_start=JUNE, period_end=JULY)

    # then a credit note of ¥166.67 charged to the provider's payable
    credit_line = june.lines.get(kind=InvoiceLine.Kind.SLA_CREDIT)
    assert (credit_line.amount, credit_line.fee_amount, credit_line.provider_net_amount) == (
        -16_667,
        0,
        -16_667,
    )
    assert (june.gross_amount, june.credit_amount, june.total_amount) == (25_000, 16_667, 8_333)
    assert (june.platform_fee_amount, june.provider_net_amount) == (1_250, 7_083)
    assert invoice_invariants_hold(june)
    # provider: May 26,667 − 1,333 fee = 25,334; June 25,000 − 1,250 − 16,667 = 7,083
    assert _balance(P.PROVIDER_PAYABLE, provider) == 25_334 + 7_083
    assert _balance(P.BUYER_RECEIVABLE, buyer_org) == 26_667 + 8_333
    assert ledger_is_balanced()


@pytest.mark.django_db
def test_a_credit_is_capped_at_the_buyers_spend_with_that_provider_in_the_period(
    buyer_org, settings
):
    # given 10× and a 1-GPU hour at ¥20.00 of which 30 minutes were lost
    settings.SLA_CREDIT_MULTIPLE = 10
    provider = _provider("Very Flaky")
    lease = _lease(
        buyer=buyer_org, provider=provider, price_amount=2_000, gpu_count=1, starts_at=MAY, hours=1
    )
    _usage(lease, start=MAY, seconds=1_800, lost=1_800)

    # when
    invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)

    # then 10 × 1,800 s × ¥20/h = ¥100.00, capped at the ¥10.00 spent with it
    credit = SlaCredit.objects.get()
    assert (credit.uncapped_amount, credit.amount) == (10_000, 1_000)


@pytest.mark.django_db
def test_a_credit_larger_than_the_next_invoice_carries_over(buyer_org, settings):
    settings.SLA_CREDIT_MULTIPLE = 5
    provider = _provider("P")
    may_lease = _lease(
        buyer=buyer_org, provider=provider, price_amount=3_600, gpu_count=1, starts_at=MAY, hours=2
    )
    _usage(may_lease, start=MAY, seconds=3_600, lost=3_600)  # credit 5 × ¥36 capped at ¥36
    invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    june_lease = _lease(
        buyer=buyer_org, provider=provider, price_amount=3_600, gpu_count=1, starts_at=JUNE, hours=1
    )
    _usage(june_lease, start=JUNE, seconds=1_000)  # ¥10.00

    june = invoice_settle(buyer=buyer_org, period_start=JUNE, period_end=JULY)

    assert (june.gross_amount, june.credit_amount, june.total_amount) == (1_000, 1_000, 0)
    assert june.status == Invoice.Status.PAID  # nothing left to pay
    july_lease = _lease(
        buyer=buyer_org, provider=provider, price_amount=3_600, gpu_count=1, starts_at=JULY, hours=1
    )
    _usage(july_lease, start=JULY, seconds=3_600)
    july = invoice_settle(
        buyer=buyer_org, period_start=JULY, period_end=dt.datetime(2026, 8, 1, tzinfo=SHANGHAI)
    )
    assert july.credit_amount == 2_600  # the rest of ¥36.00
    assert ledger_is_balanced()


@pytest.mark.django_db
def test_a_closed_period_stays_closed_and_late_usage_goes_on_the_next_invoice(
    buyer_org, month_of_three_leases
):
    # given May issued
    may = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    l1 = month_of_three_leases["leases"][0]
    # when usage of May is metered late
    late = _usage(l1, start=l1.starts_at + dt.timedelta(hours=99), seconds=7_200)

    # then building May again changes nothing, and June takes the late record
    again = invoice_build_for_period(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    assert again.pk == may.pk
    assert again.total_amount == 847_787
    assert again.lines.count() == 3
    # as an adjustment line of its own: May's usage of that lease, on June's invoice
    june = invoice_settle(buyer=buyer_org, period_start=JUNE, period_end=JULY)
    adjustment = june.lines.get()
    assert list(adjustment.usage_records.all()) == [late]
    assert adjustment.is_adjustment and adjustment.description.startswith("Late usage of 2026-05")
    assert adjustment.amount == amount_for_gpu_seconds(gpu_seconds=7_200, price_amount=1_234)
    # and an on-demand invoice overlapping May is refused
    with pytest.raises(Conflict):
        invoice_build_for_period(
            buyer=buyer_org, period_start=MAY + dt.timedelta(days=5), period_end=JUNE
        )
    assert Invoice.objects.count() == 2


@pytest.mark.django_db
def test_settling_twice_issues_and_posts_once(buyer_org, month_of_three_leases):
    first = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    second = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)

    assert first.pk == second.pk
    assert Invoice.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind="invoice_issue").count() == 1


@pytest.mark.django_db
def test_a_buyer_with_no_usage_gets_no_invoice(buyer_org):
    assert invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE) is None
    assert not Invoice.objects.exists()


@pytest.mark.django_db
def test_voiding_an_open_invoice_reverses_its_issue_transaction(buyer_org, month_of_three_leases):
    invoice = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)

    invoice_void(invoice=invoice, reason="billing error")

    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.VOID
    assert _balance(P.BUYER_RECEIVABLE, buyer_org) == 0
    assert _balance(P.PLATFORM_FEE) == 0
    assert list(invoice.events.values_list("from_status", "to_status")) == [
        ("", "draft"),
        ("draft", "open"),
        ("open", "void"),
    ]
    for account in LedgerAccount.objects.all():
        assert account.balance == account_balance_from_postings(account)


@pytest.mark.django_db
def test_settlement_hooks_set_the_voucher_share(buyer_org, month_of_three_leases, settings):
    # given a hook (the subsidy part's seam) that covers ¥1,000.00
    settings.BILLING_SETTLEMENT_HOOKS = ["tests.billing.hooks.cover_one_thousand_yuan"]

    invoice = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)

    assert (invoice.voucher_amount, invoice.buyer_amount) == (100_000, 747_787)
    assert invoice.outstanding_amount == 747_787
    assert invoice_invariants_hold(invoice)
    assert _balance(P.SUBSIDY_RECEIVABLE) == 100_000
    assert _balance(P.BUYER_RECEIVABLE, buyer_org) == 747_787
    assert ledger_is_balanced()


def test_monthly_periods_follow_the_calendar_in_shanghai():
    at = dt.datetime(2026, 5, 31, 17, 0, tzinfo=dt.UTC)  # 1 June 01:00 in Shanghai
    assert period_bounds(at=at, period="monthly") == (JUNE, JULY)
    assert period_bounds(at=at, period="weekly")[0] == dt.datetime(2026, 6, 1, tzinfo=SHANGHAI)
