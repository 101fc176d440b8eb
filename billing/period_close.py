"""Period close that cannot miss anyone: the sweep and the invariant check.

The close (`billing.invoices_settle_closed_period`, hourly) settles every
buyer of the period that just closed. Two scheduled tasks stand behind it:

- the sweep (`billing.invoices_sweep`, hourly) settles whatever a close left
  behind, whatever the timing: a draft whose period has closed is issued, and
  a buyer with usage of a closed period on no issued invoice, who has no
  issued invoice up to the last closed period's end, is settled for that
  period (older orphans come along as adjustment lines);
- the check (`billing.closed_periods_check`, hourly) asserts the invariant
  "every usage record of a closed period is on an issued invoice" once the
  close and the sweep have had CLOSE_ALARM_AFTER to run, and fails loudly
  (a failing scheduled task, an alarm on the operator page) when it does not
  hold.

Usage metered after its period's invoice was issued (later than the
metering grace) is *late*: it goes on the buyer's next invoice as an
adjustment line and is counted, not alarmed, until that next close is due.
Invoices are issued exactly once whoever settles them: `invoice_settle` is
keyed and locks the buyer.
"""

import datetime as dt
from dataclasses import dataclass

from django.conf import settings

from billing.invoices import S, period_to_close
from billing.models import Invoice
from market.models import UsageRecord

# The close runs hourly and the sweep too: after this much past a period's
# close, usage of the period on no issued invoice is an alarm.
CLOSE_ALARM_AFTER = dt.timedelta(hours=3)
ISSUED = (S.OPEN, S.PAID)


@dataclass(frozen=True)
class ClosedPeriodsCheck:
    closed_until: dt.datetime  # end of the last period the check holds to account
    missed_records: int  # usage of closed periods on no issued invoice, and not late
    missed_buyer_ids: tuple[int, ...]
    late_records: int  # metered after the buyer's invoice: on its next invoice
    drafts_past_close: int  # drafts whose period has closed

    @property
    def holds(self) -> bool:
        return not self.missed_records and not self.drafts_past_close


def _unbilled(*, until: dt.datetime):
    return (
        UsageRecord.objects.filter(window_end__lte=until, lease__currency=settings.DEFAULT_CURRENCY)
        .exclude(invoice_link__line__invoice__status__in=ISSUED)
        .order_by()
    )


def _covered_buyers(*, until: dt.datetime):
    """Buyers whose issued invoices already reach `until`."""
    return Invoice.objects.filter(
        currency=settings.DEFAULT_CURRENCY, status__in=ISSUED, period_end__gte=until
    ).values("buyer_id")


def _drafts_past_close(*, until: dt.datetime):
    """Period drafts (not on-demand) of closed periods that hold usage."""
    holding = Invoice.objects.filter(
        status=S.DRAFT, on_demand=False, period_end__lte=until, lines__usage_links__isnull=False
    ).values("pk")
    return Invoice.objects.filter(pk__in=holding)


def closed_periods_check(*, now: dt.datetime) -> ClosedPeriodsCheck:
    """The invariant, read: every usage record of a period closed at least
    CLOSE_ALARM_AFTER ago is on an issued invoice, or is late usage waiting
    for the buyer's next invoice; no draft outlives its period's close."""
    _start, closed_end = period_to_close(at=now - CLOSE_ALARM_AFTER)
    unbilled = _unbilled(until=closed_end)
    covered = _covered_buyers(until=closed_end)
    missed = unbilled.exclude(lease__buyer_id__in=covered)
    missed_buyers = missed.values_list("lease__buyer_id", flat=True).distinct()
    return ClosedPeriodsCheck(
        closed_until=closed_end,
        missed_records=missed.count(),
        missed_buyer_ids=tuple(sorted(set(missed_buyers))),
        late_records=unbilled.filter(lease__buyer_id__in=covered).count(),
        drafts_past_close=_drafts_past_close(until=closed_end).count(),
    )


@dataclass(frozen=True)
class SettleJob:
    buyer_id: int
    period_start: dt.datetime
    period_end: dt.datetime


def sweep_jobs(*, now: dt.datetime) -> list[SettleJob]:
    """What the sweep settles now: every draft whose period has closed, and
    every buyer with usage of a closed period on no issued invoice whose
    issued invoices do not reach the last closed period's end. Each buyer and
    period once."""
    closed_start, closed_end = period_to_close(at=now)
    jobs: dict[tuple[int, dt.datetime], SettleJob] = {}
    for draft in _drafts_past_close(until=closed_end).order_by("period_start", "pk"):
        key = (draft.buyer_id, draft.period_start)
        jobs[key] = SettleJob(draft.buyer_id, draft.period_start, draft.period_end)
    orphans = (
        _unbilled(until=closed_end)
        .exclude(lease__buyer_id__in=_covered_buyers(until=closed_end))
        .values_list("lease__buyer_id", flat=True)
        .distinct()
    )
    for buyer_id in sorted(set(orphans)):
        jobs.setdefault((buyer_id, closed_start), SettleJob(buyer_id, closed_start, closed_end))
    return list(jobs.values())
