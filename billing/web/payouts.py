"""Pages: a provider's payouts, statements and staff's bank batch files."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from accounts.permissions import page_check_can_change
from accounts.selectors import organisation_for_user
from billing import payout_files, selectors
from billing.models import PayoutAccount, PayoutRun
from billing.payout_accounts import (
    BankAccount,
    payout_account_set_bank,
    payouts_waiting_for_an_account,
)
from billing.web.forms import BankAccountForm
from core.errors import ApplicationError
from core.pages import form_errors_apply


@login_required
def payout_list(request: HttpRequest) -> HttpResponse:
    """A provider's payouts and sales; for staff (the operator) also every
    payout run with its bank batch file."""
    organisation = organisation_for_user(request.user)
    provider = organisation if organisation is not None and organisation.is_provider else None
    if provider is None and not request.user.is_staff:
        raise Http404
    context: dict = {"provider": provider, "runs": None}
    if provider is not None:
        account = PayoutAccount.objects.filter(provider=provider).first()
        bank_form = BankAccountForm(
            request.POST or None,
            initial={"account_name": provider.legal_name}
            if account is None
            else {f: getattr(account, f) for f in BankAccountForm.base_fields},
        )
        if request.method == "POST":
            page_check_can_change(request)
            if bank_form.is_valid():
                try:
                    payout_account_set_bank(
                        provider=provider, bank=BankAccount(**bank_form.cleaned_data)
                    )
                except ApplicationError as error:
                    form_errors_apply(bank_form, error)
                else:
                    messages.success(request, _("Payout account saved."))
                    return redirect("billing-payouts")
        context.update(
            payouts=selectors.payout_list(provider=provider),
            lines=selectors.provider_invoice_lines(provider=provider)[:200],
            payable=_provider_payable(provider),
            account=account,
            bank_form=bank_form,
            waiting=payouts_waiting_for_an_account(provider=provider),
        )
    elif request.method == "POST":
        raise Http404
    if request.user.is_staff:
        context["runs"] = selectors.payout_run_list()[:100]
        context["waiting_all"] = payouts_waiting_for_an_account()
    return render(request, "billing/payouts.html", context)


def _download(download: payout_files.Download) -> HttpResponse:
    response = HttpResponse(download.content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    return response


@login_required
def payout_run_bank_batch(request: HttpRequest, pk: int) -> HttpResponse:
    """The run's bank batch file: staff only (it holds every provider's bank details)."""
    if not request.user.is_staff:
        raise Http404
    download = payout_files.bank_batch_download(run=get_object_or_404(PayoutRun, pk=pk))
    if download is None:
        raise Http404
    return _download(download)


@login_required
def payout_statement(request: HttpRequest, pk: int) -> HttpResponse:
    """A payout's statement: to its provider, and to staff."""
    payout = selectors.payout_visible_to(user=request.user, pk=pk)
    if payout is None:
        raise Http404
    return _download(payout_files.payout_statement_download(payout=payout))


def _provider_payable(organisation) -> int:
    from billing.ledger import account_get
    from billing.models import LedgerAccount

    return account_get(
        purpose=LedgerAccount.Purpose.PROVIDER_PAYABLE, organisation=organisation
    ).normal_balance
