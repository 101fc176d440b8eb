"""The operator's overview page (Django staff only)."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from billing.operator_overview import OPEN_ORDER_STATES, operator_overview
from billing.payout_accounts import payouts_waiting_for_an_account


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
    }
    return render(request, "billing/operator.html", context)
