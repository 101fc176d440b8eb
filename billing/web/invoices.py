"""Pages: a buyer's invoices, printing and paying them."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.permissions import page_check_can_change
from accounts.selectors import organisation_for_user
from billing import interim, payments, selectors
from billing.subsidy import invoice_pending_reimbursements, reimbursement_submit
from core.errors import ApplicationError

TEST_CARDS = [
    ("pm_card_visa", "Visa 4242 (succeeds)"),
    ("pm_card_visa_chargeDeclined", "Visa 0002 (declined)"),
]


def _buyer(request: HttpRequest):
    organisation = organisation_for_user(request.user)
    if organisation is None or not organisation.is_buyer:
        raise Http404
    page_check_can_change(request)  # a read-only member looks, never pays
    return organisation


def _invoice(request: HttpRequest, pk: int):
    invoice = selectors.invoice_get(buyer=_buyer(request), pk=pk)
    if invoice is None:
        raise Http404
    return invoice


@login_required
def invoice_list(request: HttpRequest) -> HttpResponse:
    invoices = selectors.invoice_list(buyer=_buyer(request))
    return render(request, "billing/invoices.html", {"invoices": invoices})


@login_required
def invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice(request, pk)
    return render(
        request,
        "billing/invoice.html",
        {
            "invoice": invoice,
            "test_cards": TEST_CARDS,
            "reimbursements": invoice_pending_reimbursements(invoice=invoice),
        },
    )


@login_required
@require_POST
def invoice_reimbursement(request: HttpRequest, pk: int) -> HttpResponse:
    """兑付: the buyer presents its paid invoice for the reimburse-mode subsidy."""
    invoice = _invoice(request, pk)
    try:
        reimbursement_submit(invoice=invoice, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("The paid invoice is presented for reimbursement (兑付)."))
    return redirect("billing-invoice", pk=invoice.pk)


@login_required
def invoice_print(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "billing/invoice_print.html", {"invoice": _invoice(request, pk)})


@login_required
@require_POST
def invoice_pay(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice(request, pk)
    method = request.POST.get("payment_method", "")
    if method not in dict(TEST_CARDS):
        method = None
    try:
        payment = payments.invoice_pay_start(invoice=invoice, payment_method=method)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("Payment %(status)s. The invoice is marked paid when Stripe confirms it.")
            % {"status": payment.get_status_display()},
        )
    return redirect("billing-invoice", pk=invoice.pk)


@login_required
@require_POST
def invoice_settle_now(request: HttpRequest) -> HttpResponse:
    """Settle now: the buyer's interim invoice of everything metered so far."""
    try:
        invoice, _created = interim.invoice_settle_now(buyer=_buyer(request), actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("billing-invoices")
    messages.success(request, _("Interim invoice %(number)s issued.") % {"number": invoice.number})
    return redirect("billing-invoice", pk=invoice.pk)
