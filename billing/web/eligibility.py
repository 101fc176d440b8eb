"""Pages of subsidy eligibility: the buyer declares its parent company,
shareholders and start-up / SME status; the authority decides SME
declarations and sees the 兑付 queue (paid invoices presented for
reimbursement). Thin views over accounts' services and billing.subsidy."""

from decimal import Decimal

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import services as accounts_services
from accounts.permissions import authority_page, buyer_page, page_check_can_change
from billing.subsidy import reimbursement_reject
from billing.subsidy import selectors as subsidy_selectors
from billing.web.forms import ReasonForm, RelationshipForm, SmeDeclareForm
from core.errors import ApplicationError
from core.pages import flash_error, form_errors_apply

# --- buyer ------------------------------------------------------------------------


@buyer_page
def my_eligibility(request: HttpRequest, buyer) -> HttpResponse:
    """Declare a parent / shareholder or start-up / SME status (POST `action`)."""
    relationship_form, sme_form = RelationshipForm(), SmeDeclareForm()
    if request.method == "POST":
        page_check_can_change(request)
        action = request.POST.get("action")
        if action == "relationship":
            relationship_form = RelationshipForm(request.POST)
            if _declare_relationship(request, buyer, relationship_form):
                return redirect("my-eligibility")
        elif action == "sme":
            sme_form = SmeDeclareForm(request.POST)
            if _declare_sme(request, buyer, sme_form):
                return redirect("my-eligibility")
        else:
            raise Http404
    relationships = list(subsidy_selectors.relationships_of(organisation=buyer))
    for relationship in relationships:  # shown in percent, as every share is
        relationship.share_percent = (  # type: ignore[attr-defined]
            Decimal(relationship.share_bp) / 100 if relationship.share_bp else None
        )
    context = {
        "relationships": relationships,
        "declarations": subsidy_selectors.sme_declarations_for(organisation=buyer),
        "relationship_form": relationship_form,
        "sme_form": sme_form,
        "buyer": buyer,
    }
    return render(request, "billing/my_eligibility.html", context)


def _declare_relationship(request: HttpRequest, buyer, form: RelationshipForm) -> bool:
    if not form.is_valid():
        return False
    data = form.cleaned_data
    share = data["share_percent"]
    try:
        accounts_services.relationship_declare(
            organisation=buyer,
            kind=data["kind"],
            related_credit_code=data["related_credit_code"],
            related_name=data["related_name"],
            share_bp=int(share * 100) if share is not None else None,
            actor=request.user,
        )
    except ApplicationError as exc:
        form_errors_apply(form, exc, fields={"share_bp": "share_percent"})
        return False
    messages.success(request, _("Relationship declared."))
    return True


def _declare_sme(request: HttpRequest, buyer, form: SmeDeclareForm) -> bool:
    if not form.is_valid():
        return False
    try:
        accounts_services.sme_declare(
            organisation=buyer, evidence=form.cleaned_data["evidence"], actor=request.user
        )
    except ApplicationError as exc:
        form_errors_apply(form, exc)
        return False
    messages.success(request, _("Declaration sent to the subsidy authority."))
    return True


# --- authority --------------------------------------------------------------------


@authority_page
def review_queue(request: HttpRequest, authority) -> HttpResponse:
    """SME declarations to decide and paid invoices presented for 兑付."""
    declarations = subsidy_selectors.sme_declarations_for(organisation=authority)
    return render(
        request,
        "billing/subsidy_reviews.html",
        {
            "pending": [d for d in declarations[:200] if d.status == "pending"],
            "decided": [d for d in declarations[:200] if d.status != "pending"][:20],
            "reimbursements": subsidy_selectors.reimbursements_to_review(authority=authority),
            "reason_form": ReasonForm(),
        },
    )


@authority_page
@require_POST
def sme_decide(request: HttpRequest, authority, pk: int, decision: str) -> HttpResponse:
    if decision not in ("accept", "reject"):
        raise Http404
    declaration = get_object_or_404(
        subsidy_selectors.sme_declarations_for(organisation=authority), pk=pk
    )
    try:
        accounts_services.sme_decide(
            declaration=declaration,
            accept=decision == "accept",
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
    except ApplicationError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, _("Decision recorded."))
    return redirect("subsidy-reviews")


@authority_page
@require_POST
def reimbursement_refuse(request: HttpRequest, authority, pk: int) -> HttpResponse:
    reimbursement = get_object_or_404(
        subsidy_selectors.reimbursements_to_review(authority=authority), pk=pk
    )
    try:
        reimbursement_reject(
            reimbursement=reimbursement, reason=request.POST.get("reason", ""), actor=request.user
        )
    except ApplicationError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, _("Presentation rejected: the buyer may present it again."))
    return redirect("subsidy-reviews")
