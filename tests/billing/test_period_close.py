"""Closing a period: who is settled, the draft becoming the issued invoice,
and the draft refresh isolating each buyer."""

import datetime as dt

import pytest
import time_machine

from billing import invoices
from billing.invoices import buyers_to_close, invoice_build_for_period, period_to_close
from billing.models import Invoice
from billing.settlement import invoice_settle
from billing.tasks import DraftsRefreshIncomplete, invoice_drafts_refresh
from tests.billing.conftest import JUNE, MAY, make_lease
from tests.factories import OrganisationFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db
JULY = JUNE.replace(month=7)
FIVE_MINUTES = dt.timedelta(minutes=5)


def _metered(buyer, *, windows: int, start=MAY + dt.timedelta(days=3), gpu_seconds=600):
    """A 2-GPU lease at ¥36.00/GPU-hour (one fen per GPU-second), metered in 5-minute windows."""
    lease = make_lease(
        buyer=buyer,
        provider=OrganisationFactory(kind="provider"),
        price_amount=3_600,
        gpu_count=2,
        starts_at=start,
        hours=1,
    )
    for i in range(windows):
        UsageRecordFactory(
            lease=lease,
            window_start=start + i * FIVE_MINUTES,
            window_end=start + (i + 1) * FIVE_MINUTES,
            gpu_seconds_delivered=gpu_seconds,
        )
    return lease


def test_the_close_selects_each_buyer_with_usage_on_a_draft_once(buyer_org):
    # given: twelve metered windows, all on the buyer's May draft (one line for
    # the lease, the twelve records its evidence), and a buyer without usage
    _metered(buyer_org, windows=12)
    OrganisationFactory(kind="buyer")
    draft = invoice_build_for_period(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    assert (draft.status, draft.lines.count()) == ("draft", 1)
    assert draft.lines.get().usage_records.count() == 12
    # when / then: the buyer is to settle, once (not once per window)
    assert buyers_to_close(period_start=MAY, period_end=JUNE) == [buyer_org.pk]
    # and once its May invoice is issued, no more
    invoice = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    assert (invoice.pk, invoice.status, invoice.total_amount) == (draft.pk, "open", 7_200)
    assert buyers_to_close(period_start=MAY, period_end=JUNE) == []


def test_settling_takes_the_periods_usage_back_from_the_next_periods_draft(buyer_org):
    # given: May's last window went onto June's draft (refreshed after May ended, before the close)
    _metered(buyer_org, windows=2, start=JUNE - 2 * FIVE_MINUTES)
    _metered(buyer_org, windows=1, start=JUNE + FIVE_MINUTES)
    june_draft = invoice_build_for_period(buyer=buyer_org, period_start=JUNE, period_end=JULY)
    assert june_draft.lines.count() == 2  # May's lease (late) and June's
    # when
    may = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    # then: May's invoice holds both May windows; June's draft gave them up
    assert (may.status, may.total_amount, may.lines.count()) == ("open", 1_200, 1)
    assert may.lines.get().usage_records.count() == 2
    assert not Invoice.objects.filter(pk=june_draft.pk).exists()
    again = invoice_build_for_period(buyer=buyer_org, period_start=JUNE, period_end=JULY)
    assert (again.total_amount, again.lines.count()) == (600, 1)


def test_a_period_is_closed_once_its_last_window_is_metered():
    # the last 5-minute window of May is metered 2 minutes after May ends
    assert period_to_close(at=JUNE + dt.timedelta(minutes=1)) == (
        MAY.replace(month=4),
        MAY,
    )
    assert period_to_close(at=JUNE + dt.timedelta(minutes=8)) == (MAY, JUNE)


def test_one_buyer_whose_draft_fails_never_stops_the_others(monkeypatch, caplog):
    # given: three buyers with unbilled usage of this month; building the second's draft breaks
    now = MAY + dt.timedelta(days=10)
    buyers = [OrganisationFactory(kind="buyer") for _ in range(3)]
    for buyer in buyers:
        _metered(buyer, windows=3)
    real_build = invoices.invoice_build_for_period

    def broken_for_the_second(*, buyer, **kwargs):
        if buyer.pk == buyers[1].pk:
            raise OverflowError("integer out of range")
        return real_build(buyer=buyer, **kwargs)

    monkeypatch.setattr(invoices, "invoice_build_for_period", broken_for_the_second)
    # when
    with time_machine.travel(now, tick=False), pytest.raises(DraftsRefreshIncomplete):
        invoice_drafts_refresh.apply(throw=True)
    # then: the first and third buyers have their drafts to the fen; the second is logged
    for buyer in (buyers[0], buyers[2]):
        draft = Invoice.objects.get(buyer=buyer)
        assert (draft.status, draft.total_amount) == ("draft", 1_800)
    assert not Invoice.objects.filter(buyer=buyers[1]).exists()
    assert f"buyer {buyers[1].pk}" in caplog.text
