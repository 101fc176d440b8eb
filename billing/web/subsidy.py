"""Pages of the subsidy part: the authority's dashboard, programme, claims and
reviews; the buyer's vouchers, applications and invoice splits. Thin views."""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.models import Organisation, SmeDeclaration
from accounts.permissions import authority_page, buyer_page
from billing.models import FraudFlag, Redemption, SubsidyProgramme, VoucherApplication
from billing.subsidy import (
    budget_burn_down_svg,
    claim_csv,
    claim_export_get,
    claim_export_request,
    claim_months,
    claim_rows,
    claim_summary,
    claims_by_month,
    fraud,
)
from billing.subsidy import redemption as vouchers
from billing.subsidy import selectors as subsidy_selectors
from billing.subsidy import services as subsidy_services
from billing.web.forms import ApproveForm, ReasonForm, VoucherApplyForm, VoucherIssueForm
from core import clock
from core.errors import ApplicationError
from core.pages import flash_error

# --- authority ------------------------------------------------------------------


@authority_page
def dashboard(request: HttpRequest, authority) -> HttpResponse:
    programmes = list(subsidy_selectors.programmes_for(organisation=authority))
    rows = [(p, subsidy_selectors.programme_budget(programme=p)) for p in programmes]
    applications = subsidy_selectors.applications_for(organisation=authority).filter(
        status=VoucherApplication.Status.PENDING
    )
    flags = subsidy_selectors.flags_for_authority(
        authority=authority, status=FraudFlag.Status.OPEN
    )[:50]
    return render(
        request,
        "billing/subsidy_dashboard.html",
        {
            "rows": rows,
            "applications": applications,
            "flags": flags,
            "approve_form": ApproveForm(),
            "reason_form": ReasonForm(),
            "sme_waiting": subsidy_selectors.sme_declarations_for(organisation=authority)
            .filter(status=SmeDeclaration.Status.PENDING)
            .count(),
            "reimbursements_waiting": subsidy_selectors.reimbursements_to_review(
                authority=authority
            ).count(),
        },
    )


def programme_of(authority: Organisation, pk: int) -> SubsidyProgramme:
    """The authority's own programme, or 404."""
    return get_object_or_404(subsidy_selectors.programmes_for(organisation=authority), pk=pk)


@authority_page
def programme_detail(request: HttpRequest, authority, pk: int) -> HttpResponse:
    programme = programme_of(authority, pk)
    breakdowns = {
        label: subsidy_selectors.subsidy_breakdown(programme=programme, by=by)
        for by, label in [
            ("region", _("Region")),
            ("hub", _("Hub")),
            ("provider", _("Provider")),
            ("gpu_vendor", _("GPU vendor")),
            ("domestic", _("Domestic accelerator")),
        ]
    }
    redemptions = (
        subsidy_selectors.redemptions_for_authority(authority=authority)
        .filter(programme=programme)
        .order_by("-pk")[:50]
    )
    issued = list(
        subsidy_selectors.vouchers_for(organisation=authority)
        .filter(programme=programme)
        .order_by("-pk")[:50]
    )
    balances = subsidy_selectors.voucher_balances(vouchers=issued)
    applications = subsidy_selectors.applications_for(organisation=authority).filter(
        programme=programme, status=VoucherApplication.Status.PENDING
    )
    return render(
        request,
        "billing/subsidy_programme.html",
        {
            "programme": programme,
            "budget": subsidy_selectors.programme_budget(programme=programme),
            "chart": mark_safe(budget_burn_down_svg(programme=programme)),  # noqa: S308 - pygal output
            "breakdowns": breakdowns,
            "redemptions": redemptions,
            "refusals": subsidy_selectors.refusals_for_programme(programme=programme)[:50],
            "against_index": subsidy_selectors.prices_against_index(
                programme=programme, now=clock.now()
            ),
            "index_days": subsidy_selectors.INDEX_WINDOW_DAYS,
            "months": claim_months(programme=programme),
            "claims": claims_by_month(
                programme=programme, months=claim_months(programme=programme)
            ),
            "vouchers": [(v, balances[v.pk]) for v in issued],
            "applications": applications,
            "issue_form": VoucherIssueForm(programme=programme),
            "export": claim_export_get(token=request.GET["export"], programme=programme)
            if request.GET.get("export")
            else None,
        },
    )


@authority_page
def claim_page(request: HttpRequest, authority, pk: int, year: int, month: int) -> HttpResponse:
    programme = programme_of(authority, pk)
    rows = claim_rows(programme=programme, year=year, month=month)
    return render(
        request,
        "billing/subsidy_claim.html",
        {
            "programme": programme,
            "year": year,
            "month": month,
            "rows": rows,
            "groups": claim_summary(rows),
            "total_gross": sum(r.gross_amount for r in rows),
            "total_subsidy": sum(r.subsidy_amount for r in rows),
        },
    )


@authority_page
@require_POST
def claim_export_start(
    request: HttpRequest, authority, pk: int, year: int, month: int
) -> HttpResponse:
    """Ask a worker for the month's CSV; the programme page follows it."""
    programme = programme_of(authority, pk)
    token = claim_export_request(programme=programme, year=year, month=month)
    return redirect(f"{reverse('subsidy-programme', args=[programme.pk])}?export={token}#claims")


@authority_page
def claim_export_status(request: HttpRequest, authority, pk: int, token: str) -> HttpResponse:
    """The export's card, polled by the programme page (htmx) until it is done."""
    export = claim_export_get(token=token, programme=programme_of(authority, pk))
    if export is None:
        raise Http404
    return render(request, "billing/_claim_export.html", {"export": export})


@authority_page
def claim_export_download(request: HttpRequest, authority, pk: int, token: str) -> HttpResponse:
    export = claim_export_get(token=token, programme=programme_of(authority, pk))
    if export is None or export.state != "done":
        raise Http404
    response = HttpResponse(export.csv, content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    return response


@authority_page
def claim_download(request: HttpRequest, authority, pk: int, year: int, month: int) -> HttpResponse:
    programme = programme_of(authority, pk)
    response = HttpResponse(
        claim_csv(programme=programme, year=year, month=month), content_type="text/csv"
    )
    filename = f"claim-programme-{programme.pk}-{year}-{month:02d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@authority_page
@require_POST
def application_decide(request: HttpRequest, authority, pk: int, decision: str) -> HttpResponse:
    application = get_object_or_404(
        subsidy_selectors.applications_for(organisation=authority), pk=pk
    )
    if decision not in ("approve", "reject"):
        raise Http404
    back = _back_to(request, default="subsidy-dashboard")
    form = ApproveForm(request.POST) if decision == "approve" else ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Check the form: %s") % form.errors.as_text())
        return back
    try:
        if decision == "approve":
            subsidy_services.application_approve(
                application=application, amount=form.cleaned_data["amount"], actor=request.user
            )
        else:
            subsidy_services.application_reject(
                application=application, reason=form.cleaned_data["reason"], actor=request.user
            )
        messages.success(request, _("Decision recorded."))
    except ApplicationError as exc:
        flash_error(request, exc)
    return back


def _back_to(request: HttpRequest, *, default: str) -> HttpResponse:
    """Back to the page the form was on (`next`, same site only), else `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(default)


_REVIEW = {
    "hold": vouchers.redemption_hold,
    "release": vouchers.redemption_release,
    "claw-back": vouchers.redemption_claw_back,
}


@authority_page
@require_POST
def redemption_review(request: HttpRequest, authority, pk: int, action: str) -> HttpResponse:
    if action not in _REVIEW:
        raise Http404
    redemption: Redemption = get_object_or_404(
        subsidy_selectors.redemptions_for_authority(authority=authority), pk=pk
    )
    reason = request.POST.get("reason", "") or _("reviewed by the authority")
    try:
        _REVIEW[action](redemption=redemption, actor=request.user, reason=reason)
        messages.success(request, _("Redemption updated."))
    except ApplicationError as exc:
        flash_error(request, exc)
    return redirect("subsidy-programme", pk=redemption.programme_id)


@authority_page
@require_POST
def flag_review(request: HttpRequest, authority, pk: int) -> HttpResponse:
    flag = get_object_or_404(subsidy_selectors.flags_for_authority(authority=authority), pk=pk)
    try:
        fraud.fraud_flag_review(
            flag=flag,
            status=request.POST.get("status", ""),
            actor=request.user,
            note=request.POST.get("note", ""),
        )
    except ApplicationError as exc:
        flash_error(request, exc)
    return redirect("subsidy-dashboard")


# --- buyer ----------------------------------------------------------------------


@buyer_page
def my_vouchers(request: HttpRequest, buyer) -> HttpResponse:
    form = VoucherApplyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            subsidy_services.application_create(
                applicant=buyer, actor=request.user, **form.cleaned_data
            )
            messages.success(request, _("Application sent to the authority."))
            return redirect("my-vouchers")
        except ApplicationError as exc:
            flash_error(request, exc)
    own = list(subsidy_selectors.vouchers_for(organisation=buyer))
    balances = subsidy_selectors.voucher_balances(vouchers=own)
    return render(
        request,
        "billing/my_vouchers.html",
        {
            "vouchers": [(v, balances[v.pk]) for v in own],
            "applications": subsidy_selectors.applications_for(organisation=buyer),
            "form": form,
        },
    )


@buyer_page
def my_invoice_splits(request: HttpRequest, buyer) -> HttpResponse:
    invoices = subsidy_selectors.invoices_with_split(buyer=buyer)[:24]
    return render(request, "billing/my_invoice_splits.html", {"invoices": invoices})
