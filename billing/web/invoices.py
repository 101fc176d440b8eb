"""Pages: a buyer's invoices, printing and paying them; its prepaid balance
(top-ups by card) and what happens when its funds run out."""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.permissions import page_check_can_change
from accounts.selectors import organisation_for_user
from billing import interim, invoice_files, payments, prepaid, selectors
from billing.subsidy import invoice_pending_reimbursements, reimbursement_submit
from billing.web.forms import FundingTermsForm, TopUpForm
from core.errors import ApplicationError
from core.money import format_major, format_money
from core.pages import form_errors_apply

TEST_CARDS = [
    ("pm_card_visa", gettext_lazy("Visa 4242 (succeeds)")),
    ("pm_card_visa_chargeDeclined", gettext_lazy("Visa 0002 (declined)")),
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


def _terms_initial(terms) -> dict:
    if terms is None:
        return {
            "held": "false",
            "at_zero": "stop_orders",
            "grace_minutes": 60,
            "alert_thresholds": "",
        }
    return {
        "held": "true" if terms.held else "false",
        "at_zero": terms.at_zero,
        "grace_minutes": terms.grace_minutes,
        "alert_thresholds": ", ".join(format_major(amount) for amount in terms.alert_thresholds),
    }


def _invoice_list_page(
    request: HttpRequest, *, top_up_form=None, terms_form=None, status: int = 200
) -> HttpResponse:
    buyer = _buyer(request)
    funding = selectors.funding_get(buyer=buyer)
    return render(
        request,
        "billing/invoices.html",
        {
            "invoices": selectors.invoice_list(buyer=buyer),
            "funding": funding,
            "at_zero_explained": prepaid.at_zero_explained(funding.terms),
            "leases_stop_at": prepaid.leases_stop_at(funding.terms),
            "alerts": selectors.funding_alerts(buyer=buyer),
            "top_ups": selectors.top_up_list(buyer=buyer)[:5],
            "top_up_form": top_up_form
            or TopUpForm(initial={"once": uuid.uuid4().hex}, cards=TEST_CARDS),
            "terms_form": terms_form or FundingTermsForm(initial=_terms_initial(funding.terms)),
        },
        status=status,
    )


@login_required
def invoice_list(request: HttpRequest) -> HttpResponse:
    return _invoice_list_page(request)


@login_required
@require_POST
def funding_top_up(request: HttpRequest) -> HttpResponse:
    """A card top-up from the page; the balance grows when Stripe confirms it."""
    buyer = _buyer(request)
    form = TopUpForm(request.POST, cards=TEST_CARDS)
    if form.is_valid():
        data = form.cleaned_data
        try:
            top_up, _created = prepaid.top_up_start(
                buyer=buyer,
                amount=data["amount"],
                payment_method=data["payment_method"],
                idempotency_key=f"page-{data['once']}",
            )
        except ApplicationError as exc:
            form_errors_apply(form, exc)
        else:
            messages.success(
                request,
                _("Top-up of %(amount)s %(status)s. Your balance grows when Stripe confirms it.")
                % {
                    "amount": format_money(top_up.amount, top_up.currency),
                    "status": top_up.get_status_display(),
                },
            )
            return redirect(f"{reverse('billing-invoices')}#funding")
    return _invoice_list_page(request, top_up_form=form, status=400)


@login_required
@require_POST
def funding_terms(request: HttpRequest) -> HttpResponse:
    """How the buyer pays, what happens at zero and the alert thresholds; an
    automatic top-up set through the API stays as it is."""
    buyer = _buyer(request)
    form = FundingTermsForm(request.POST)
    if form.is_valid():
        terms = prepaid.funding_terms_ensure(buyer=buyer)
        try:
            prepaid.funding_terms_update(
                buyer=buyer,
                **form.cleaned_data,
                auto_top_up=terms.auto_top_up,
                auto_top_up_amount=terms.auto_top_up_amount,
                auto_top_up_below_amount=terms.auto_top_up_below_amount,
                auto_top_up_payment_method=terms.auto_top_up_payment_method,
            )
        except ApplicationError as exc:
            form_errors_apply(form, exc)
        else:
            messages.success(request, _("Your funding terms are saved."))
            return redirect(f"{reverse('billing-invoices')}#funding")
    return _invoice_list_page(request, terms_form=form, status=400)


@login_required
def invoice_detail(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = _invoice(request, pk)
    return render(
        request,
        "billing/invoice.html",
        {
            "invoice": invoice,
            "shares": selectors.invoice_shares(invoice=invoice),
            "history": selectors.invoice_history(invoice=invoice),
            "test_cards": TEST_CARDS,
            "reimbursements": invoice_pending_reimbursements(invoice=invoice),
        },
    )


@login_required
def invoice_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The invoice's payment status, small: the page polls it (htmx) until
    the payment lands, and the fragment of a paid invoice stops the poll."""
    buyer = organisation_for_user(request.user)
    if buyer is None or not buyer.is_buyer:
        raise Http404
    invoice = selectors.invoice_status_get(buyer=buyer, pk=pk)
    if invoice is None:
        raise Http404
    return render(request, "billing/_invoice_status.html", {"invoice": invoice})


def _line(request: HttpRequest, pk: int):
    buyer = organisation_for_user(request.user)
    if buyer is None or not buyer.is_buyer:
        raise Http404
    line = selectors.invoice_line_for_buyer(buyer=buyer, pk=pk)
    if line is None or line.kind != line.Kind.USAGE:
        raise Http404
    return line


@login_required
def invoice_line(request: HttpRequest, pk: int) -> HttpResponse:
    """One line's evidence: the 5-minute usage records it sums."""
    line = _line(request, pk)
    records = selectors.invoice_line_usage_records(line=line)
    return render(request, "billing/invoice_line.html", {"line": line, "records": records})


@login_required
def invoice_line_csv(request: HttpRequest, pk: int) -> HttpResponse:
    return _download(invoice_files.line_usage_csv(line=_line(request, pk)))


@login_required
def invoice_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    """The invoice as a PDF in the reader's language."""
    download = invoice_files.invoice_pdf(invoice=_invoice(request, pk))
    response = _download(download)
    response["Content-Disposition"] = f'inline; filename="{download.filename}"'
    return response


def _download(download: invoice_files.Download) -> HttpResponse:
    response = HttpResponse(download.content, content_type=download.content_type)
    response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    return response


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
    invoice = _invoice(request, pk)
    shares = selectors.invoice_shares(invoice=invoice)
    return render(request, "billing/invoice_print.html", {"invoice": invoice, "shares": shares})


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
