"""Closing a period: who is settled, the draft becoming the issued invoice,
and the draft refresh isolating each buyer."""

import datetime as dt

import pytest
import time_machine

from billing import invoices
from billing.invoices import buyers_to_close, invoice_build_for_period, period_to_close
from billing.models import Invoice, LedgerTransaction
from billing.period_close import closed_periods_check
from billing.settlement import invoice_settle
from billing.tasks import ClosedPeriodUnbilled, DraftsRefreshIncomplete, invoice_drafts_refresh
from billing.tasks import closed_periods_check as closed_periods_check_task
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


# --- the sweep and the invariant check -------------------------------------------------


def _sweep(at, capture) -> int:
    from billing.tasks import invoices_sweep

    with time_machine.travel(at, tick=False), capture(execute=True):
        return invoices_sweep.apply(throw=True).get()


def test_a_draft_left_past_the_close_is_issued_by_the_sweep_exactly_once(
    buyer_org, django_capture_on_commit_callbacks
):
    # given: May's draft, refreshed during May, and no close ever ran
    _metered(buyer_org, windows=12)
    draft = invoice_build_for_period(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    later = JUNE + dt.timedelta(hours=4)
    check = closed_periods_check(now=later)
    assert (check.holds, check.drafts_past_close, check.missed_records) == (False, 1, 12)
    # when: the sweep runs, twice
    assert _sweep(later, django_capture_on_commit_callbacks) == 1
    assert _sweep(later + dt.timedelta(hours=1), django_capture_on_commit_callbacks) == 0
    # then: the draft became the issued May invoice, issued (and posted) once
    invoice = Invoice.objects.get(buyer=buyer_org)
    assert (invoice.pk, invoice.status, invoice.total_amount) == (draft.pk, "open", 7_200)
    assert LedgerTransaction.objects.filter(business_key=f"invoice:{invoice.pk}:issue").count() == 1
    assert closed_periods_check(now=later).holds


def test_usage_metered_after_the_invoice_goes_on_the_next_one_and_is_alarmed_if_it_does_not(
    buyer_org, django_capture_on_commit_callbacks
):
    # given: May issued, then a May window metered late (after the close)
    _metered(buyer_org, windows=2, start=MAY + dt.timedelta(days=3))
    may = invoice_settle(buyer=buyer_org, period_start=MAY, period_end=JUNE)
    late = _metered(buyer_org, windows=1, start=MAY + dt.timedelta(days=20))
    # then: in June it is late usage, waiting for June's invoice: no alarm
    check = closed_periods_check(now=JUNE + dt.timedelta(days=2))
    assert (check.holds, check.late_records, check.missed_records) == (True, 1, 0)
    # but once June has closed and no invoice took it, it is an alarm
    check = closed_periods_check(now=JULY + dt.timedelta(hours=4))
    assert (check.holds, check.missed_records, check.missed_buyer_ids) == (
        False,
        1,
        (buyer_org.pk,),
    )
    with (
        time_machine.travel(JULY + dt.timedelta(hours=4), tick=False),
        pytest.raises(ClosedPeriodUnbilled, match="1 usage records"),
    ):
        closed_periods_check_task.apply(throw=True)
    # when: the sweep runs
    _sweep(JULY + dt.timedelta(hours=4), django_capture_on_commit_callbacks)
    # then: June's invoice carries May's late window as an adjustment line
    june = Invoice.objects.exclude(pk=may.pk).get(buyer=buyer_org)
    assert (june.status, june.period_start, june.total_amount) == ("open", JUNE, 600)
    line = june.lines.get()
    assert line.is_adjustment and line.lease_id == late.pk
    assert closed_periods_check(now=JULY + dt.timedelta(hours=4)).holds


def test_the_operator_page_shows_the_close_alarm(client, buyer_org):
    from tests.factories import UserFactory

    _metered(buyer_org, windows=3)
    client.force_login(UserFactory(username="op-close", is_staff=True))
    with time_machine.travel(JUNE + dt.timedelta(hours=4), tick=False):
        page = client.get("/operator/").content.decode()
    assert "ALARM: usage not invoiced" in page
    assert "3 usage records of closed periods on no issued invoice" in page
