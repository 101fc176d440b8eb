"""Settle now: an interim invoice of everything metered so far in the open period.

A buyer (or staff for a buyer) may settle before its period closes. The
interim invoice covers the buyer's part of the current period that no issued
invoice covers yet (`settle_window_for`), up to the end of the last usage
record metered so far, and is issued at once through `invoice_settle` — the
same build, the same voucher redemption and the same ledger posting as a
period close, so vouchers apply as at close. The period's later invoice (the
draft refresh and the close) continues from its end; a usage record is linked
to one invoice line at most (a one-to-one key), so nothing is billed twice.

Issued once: the buyer's row is locked while settling, so two requests at the
same moment give one invoice — the second finds nothing left (a Conflict) or,
with the same Idempotency-Key, the first one's invoice.
"""

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext as _

from accounts.models import Organisation
from billing.invoices import S, period_bounds, settle_window_for
from billing.models import Invoice
from billing.settlement import invoice_settle
from core import clock
from core.errors import Conflict
from market.models import UsageRecord

ISSUED = (S.OPEN, S.PAID)


def metered_until(*, buyer: Organisation, now: dt.datetime) -> dt.datetime | None:
    """The end of the buyer's last usage record metered by `now` that no issued
    invoice holds (None: everything metered is invoiced)."""
    return (
        UsageRecord.objects.filter(
            lease__buyer=buyer, lease__currency=settings.DEFAULT_CURRENCY, window_end__lte=now
        )
        .exclude(invoice_link__line__invoice__status__in=ISSUED)
        .aggregate(until=Max("window_end"))["until"]
    )


def invoice_settle_now(
    *, buyer: Organisation, actor: User | None = None, idempotency_key: str | None = None
) -> tuple[Invoice, bool]:
    """Issue the buyer's interim invoice of usage metered so far; returns
    (invoice, created). The same Idempotency-Key again returns the invoice it
    issued (created=False); nothing left to settle is a Conflict."""
    with transaction.atomic():
        Organisation.objects.select_for_update().filter(pk=buyer.pk).first()
        if idempotency_key:
            earlier = Invoice.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
            if earlier is not None:
                return earlier, False
        now = clock.now()
        period_start, period_end = period_bounds(at=now)
        window = settle_window_for(buyer=buyer, period_start=period_start, period_end=period_end)
        until = metered_until(buyer=buyer, now=now)
        if window is None or until is None or until <= window[0]:
            raise Conflict(
                _("Nothing metered is left to settle: every usage record so far is invoiced."),
                errors={"usage": [_("Nothing new was metered since the last invoice.")]},
            )
        invoice = invoice_settle(
            buyer=buyer,
            period_start=window[0],
            period_end=until,
            on_demand=True,
            actor=actor,
            idempotency_key=idempotency_key,
        )
        if invoice is None:  # records ending after the window's start, none on it
            raise Conflict(_("Nothing metered is left to settle."))
    return invoice, True
