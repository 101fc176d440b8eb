"""Settle now: an interim invoice of everything metered so far.

A buyer (or staff for a buyer) may settle before the period closes. The
interim invoice covers the buyer's part of the current period not yet on an
issued invoice, up to the end of the last usage record metered so far; it is
issued at once, so vouchers apply as at close (the same settlement hooks).
The period's later invoice continues from its end (`settle_window_for`),
and a usage record is on one invoice line only (a one-to-one key), so
nothing is billed twice. Asking again with nothing new metered is a Conflict.
"""

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from accounts.models import Organisation
from billing.invoices import period_bounds, settle_window_for
from billing.models import Invoice
from billing.settlement import invoice_settle
from core import clock
from core.errors import Conflict
from market.models import UsageRecord


def invoice_settle_now(*, buyer: Organisation, actor: User | None = None) -> Invoice:
    """Issue the buyer's interim invoice of usage metered so far this period."""
    now = clock.now()
    period_start, period_end = period_bounds(at=now)
    with transaction.atomic():
        Organisation.objects.select_for_update().filter(pk=buyer.pk).first()
        window = settle_window_for(buyer=buyer, period_start=period_start, period_end=period_end)
        metered_until = (
            UsageRecord.objects.filter(
                lease__buyer=buyer,
                lease__currency=settings.DEFAULT_CURRENCY,
                window_end__lte=now,
            )
            .exclude(invoice_line__invoice__status__in=[Invoice.Status.OPEN, Invoice.Status.PAID])
            .aggregate(until=Max("window_end"))["until"]
        )
        if window is None or metered_until is None or metered_until <= window[0]:
            raise Conflict(
                "Nothing metered is left to settle: every usage record so far is on an "
                "issued invoice.",
                errors={"usage": ["Nothing new metered since the last invoice."]},
            )
        invoice = invoice_settle(buyer=buyer, period_start=window[0], period_end=metered_until)
        if invoice is None:
            raise Conflict("Nothing metered is left to settle.")
        Invoice.objects.filter(pk=invoice.pk).update(on_demand=True)
        invoice.on_demand = True
    return invoice
