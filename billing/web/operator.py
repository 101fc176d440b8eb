"""The operator's overview page (Django staff only)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.models import Organisation
from billing import interim, selectors
from billing.operator_overview import OPEN_ORDER_STATES, operator_overview
from billing.payout_accounts import payouts_waiting_for_an_account
from core.errors import ApplicationError
from core.money import format_money


def _admin(changelist: str, query: str) -> str:
    return f"{reverse(f'admin:{changelist}_changelist')}?{query}"


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied
    links = {
        "unverified": _admin("accounts_organisation", "verified__exact=0"),
        "degraded": _admin("market_node", "state__exact=degraded"),
        "offline": _admin("market_node", "state__exact=offline"),
        "awaiting": _admin("market_node", "state__exact=awaiting_agent"),
        "tasks": reverse("admin:core_scheduledtaskstatus_changelist"),
        "orders": _admin("market_order", "status__in=" + ",".join(OPEN_ORDER_STATES)),
        "invoices": _admin("billing_invoice", "status__exact=open"),
        "flags": _admin("billing_fraudflag", "status__exact=open"),
        "ledger": reverse("admin:billing_ledgeraccount_changelist"),
        "outbox": _admin("core_outboxmessage", "completed_at__isempty=1"),
    }
    context = {
        "overview": operator_overview(),
        "links": links,
        "waiting": payouts_waiting_for_an_account(),
        "uninvoiced": selectors.buyers_with_uninvoiced_usage(),
    }
    return render(request, "billing/operator.html", context)


@login_required
@require_POST
def buyer_settle_now(request: HttpRequest, pk: int) -> HttpResponse:
    """Staff issue a buyer's invoice now (an interim invoice of what is metered)."""
    if not request.user.is_staff:
        raise PermissionDenied
    buyer = Organisation.objects.filter(pk=pk, kind=Organisation.Kind.BUYER).first()
    if buyer is None:
        raise Http404
    try:
        invoice, _created = interim.invoice_settle_now(buyer=buyer, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("Invoice %(number)s issued to %(buyer)s: %(amount)s for the buyer to pay.")
            % {
                "number": invoice.number,
                "buyer": buyer.legal_name,
                "amount": format_money(invoice.buyer_amount, invoice.currency),
            },
        )
    return redirect("operator-overview")
