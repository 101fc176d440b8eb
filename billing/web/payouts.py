"""Pages: a provider's payouts, statements and staff's bank batch files."""

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy
from django.views.decorators.http import require_POST

from accounts.permissions import page_check_can_change
from accounts.selectors import organisation_for_user
from billing import payout_files, selectors
from billing.models import PayoutAccount, PayoutRun
from billing.payout_accounts import (
    BankAccount,
    payout_account_set_bank,
    payouts_waiting_for_an_account,
)
from billing.payouts import payout_run_request
from billing.web.forms import BankAccountForm
from core.errors import ApplicationError
from core.models import OutboxMessage
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
        if key := request.GET.get("run"):
            context["progress"] = _run_progress(key)
    return render(request, "billing/payouts.html", context)


# A payout run started from the page, as its progress card tells it.
RUN_STATES = {
    "queued": pgettext_lazy("payout run progress", "queued"),
    "running": pgettext_lazy("payout run progress", "running"),
    "done": pgettext_lazy("payout run progress", "done"),
}


@dataclass(frozen=True)
class RunProgress:
    key: str
    state: str  # queued (waiting for a worker), running, done
    payouts: int  # prepared so far (running), paid out (done)
    amount: int
    retrying: bool  # the worker's last attempt failed; the outbox tries again
    run_pk: int | None
    bank_batch: bool

    @property
    def label(self) -> str:
        return str(RUN_STATES[self.state])


def _run_progress(key: str) -> RunProgress | None:
    """Where a payout run stands: its outbox message waits for a worker (queued),
    the worker has begun it (running), or it is completed (done)."""
    run = selectors.payout_run_list().filter(key=key).first()
    message = OutboxMessage.objects.filter(key=f"payout-run:{key}").order_by("-pk").first()
    if run is None and message is None:
        return None
    done = run is not None and run.status == PayoutRun.Status.COMPLETED
    return RunProgress(
        key=key,
        state="done" if done else "running" if run is not None else "queued",
        payouts=run.payout_count if run is not None else 0,
        amount=(run.total_amount or 0) if run is not None else 0,
        retrying=bool(
            not done and message is not None and message.completed_at is None and message.last_error
        ),
        run_pk=run.pk if run is not None else None,
        bank_batch=bool(done and run is not None and run.bank_batch_csv),
    )


@login_required
@require_POST
def payout_run_start(request: HttpRequest) -> HttpResponse:
    """Staff start a payout run now: a worker runs it (it may send many
    transfers); the payouts page follows its progress."""
    if not request.user.is_staff:
        raise Http404
    key = payout_run_request(requested_by=request.user)
    messages.success(request, _("Payout run %(key)s started: a worker pays it out.") % {"key": key})
    return redirect(f"{reverse('billing-payouts')}?run={key}")


@login_required
def payout_run_status(request: HttpRequest, key: str) -> HttpResponse:
    """The run's progress card, small: the payouts page polls it (htmx) until
    the run is done; a done run's card carries no trigger, so the poll stops."""
    if not request.user.is_staff:
        raise Http404
    progress = _run_progress(key)
    if progress is None:
        raise Http404
    return render(request, "billing/_payout_run_progress.html", {"progress": progress})


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
