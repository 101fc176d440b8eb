"""The authority's claim buttons on the programme page. Thin views."""

import datetime as dt

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.permissions import authority_page
from billing.models import SubsidyClaim
from billing.subsidy import claims as claim_services
from billing.web.forms import ClaimPayForm, ReasonForm
from billing.web.subsidy import programme_of
from core.errors import ApplicationError
from core.pages import flash_error


@authority_page
@require_POST
def claim_submit(request: HttpRequest, authority, pk: int, year: int, month: int) -> HttpResponse:
    programme = programme_of(authority, pk)
    try:
        claim_services.claim_submit(programme=programme, year=year, month=month, actor=request.user)
        messages.success(request, _("Claim submitted."))
    except ApplicationError as exc:
        flash_error(request, exc)
    return redirect("subsidy-programme", pk=programme.pk)


@authority_page
@require_POST
def claim_decide(request: HttpRequest, authority, pk: int, action: str) -> HttpResponse:
    claim = get_object_or_404(SubsidyClaim.objects.filter(programme__authority=authority), pk=pk)
    try:
        if action == "approve":
            claim_services.claim_approve(claim=claim, actor=request.user)
        elif action == "reject":
            form = ReasonForm(request.POST)
            reason = form.cleaned_data["reason"] if form.is_valid() else ""
            claim_services.claim_reject(claim=claim, reason=reason, actor=request.user)
        elif action == "pay":
            form = ClaimPayForm(request.POST)
            if not form.is_valid():
                messages.error(request, _("Check the form: %s") % form.errors.as_text())
                return redirect("subsidy-programme", pk=claim.programme_id)
            paid_at = dt.datetime.combine(
                form.cleaned_data["paid_on"], dt.time(), tzinfo=timezone.get_current_timezone()
            )
            claim_services.claim_mark_paid(
                claim=claim,
                paid_at=paid_at,
                reference=form.cleaned_data["reference"],
                actor=request.user,
            )
        else:
            raise Http404
        messages.success(request, _("Claim updated."))
    except ApplicationError as exc:
        flash_error(request, exc)
    return redirect("subsidy-programme", pk=claim.programme_id)
