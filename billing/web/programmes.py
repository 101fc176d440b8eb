"""The authority's pages to set up a programme and to issue a voucher
directly. Thin: the forms parse, billing.subsidy.services decides."""

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from billing.subsidy import services as subsidy_services
from billing.web.forms import ProgrammeForm, VoucherIssueForm
from billing.web.subsidy import _own_programme, authority_only
from core.errors import ApplicationError


def _errors_onto(form: forms.Form, exc: ApplicationError, fields: dict[str, str]) -> None:
    """Put a service's field errors on the form's inputs (unknown ones on top)."""
    for name, field_errors in exc.errors.items():
        field = fields.get(name, name)
        for message in field_errors:
            form.add_error(field if field in form.fields else None, message)
    if not exc.errors:
        form.add_error(None, exc.message)


@authority_only
def programme_new(request: HttpRequest) -> HttpResponse:
    form = ProgrammeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            programme = subsidy_services.programme_create(
                authority=request.organisation, **form.service_arguments()
            )
        except ApplicationError as exc:
            _errors_onto(form, exc, ProgrammeForm.SERVICE_FIELDS)
        else:
            messages.success(request, _("Programme created; its budget is funded."))
            return redirect("subsidy-programme", pk=programme.pk)
    return render(request, "billing/subsidy_programme_new.html", {"form": form})


@authority_only
def voucher_issue(request: HttpRequest, pk: int) -> HttpResponse:
    programme = _own_programme(request, pk)
    form = VoucherIssueForm(request.POST or None, programme=programme)
    if request.method == "POST" and form.is_valid():
        try:
            voucher = subsidy_services.voucher_issue(
                programme=programme, actor=request.user, **form.cleaned_data
            )
        except ApplicationError as exc:
            _errors_onto(form, exc, {})
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
