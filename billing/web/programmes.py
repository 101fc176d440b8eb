"""The authority's pages to set up a programme and to issue a voucher
directly. Thin: the forms parse, billing.subsidy.services decides."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.permissions import authority_page
from billing.subsidy import services as subsidy_services
from billing.web.forms import ProgrammeForm, VoucherIssueForm
from billing.web.subsidy import programme_of
from core.errors import ApplicationError
from core.pages import form_errors_apply


@authority_page
def programme_new(request: HttpRequest, authority) -> HttpResponse:
    form = ProgrammeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            programme = subsidy_services.programme_create(
                authority=authority, **form.service_arguments()
            )
        except ApplicationError as exc:
            form_errors_apply(form, exc, ProgrammeForm.SERVICE_FIELDS)
        else:
            messages.success(request, _("Programme created; its budget is funded."))
            return redirect("subsidy-programme", pk=programme.pk)
    return render(request, "billing/subsidy_programme_new.html", {"form": form})


@authority_page
def voucher_issue(request: HttpRequest, authority, pk: int) -> HttpResponse:
    programme = programme_of(authority, pk)
    form = VoucherIssueForm(request.POST or None, programme=programme)
    if request.method == "POST" and form.is_valid():
        try:
            voucher = subsidy_services.voucher_issue(
                programme=programme, actor=request.user, **form.cleaned_data
            )
        except ApplicationError as exc:
            form_errors_apply(form, exc, {})
        else:
            messages.success(
                request,
                _("Voucher %(pk)s issued to %(holder)s.")
                % {"pk": voucher.pk, "holder": voucher.holder.legal_name},
            )
            return redirect("subsidy-programme", pk=programme.pk)
    return render(
        request, "billing/subsidy_voucher_issue.html", {"programme": programme, "form": form}
    )
