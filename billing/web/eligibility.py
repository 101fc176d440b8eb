"""Pages of subsidy eligibility: the buyer declares its parent company,
shareholders and start-up / SME status; the authority decides SME
declarations and sees the 兑付 queue (paid invoices presented for
reimbursement). Thin views over accounts' services and billing.subsidy."""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts import services as accounts_services
from accounts.models import SmeDeclaration
from accounts.permissions import authority_page, buyer_page
from billing.subsidy import reimbursement_reject
from billing.subsidy import selectors as subsidy_selectors
from billing.web.forms import RelationshipForm, SmeDeclareForm
from core.errors import ApplicationError
from core.pages import flash_error, form_errors_apply

DECIDED_SHOWN = 20  # recently decided declarations listed under the queue

# --- buyer ------------------------------------------------------------------------


@buyer_page
def my_eligibility(request: HttpRequest, buyer) -> HttpResponse:
    """Declare a parent / shareholder or start-up / SME status (POST `action`)."""
    relationship_form, sme_form = RelationshipForm(), SmeDeclareForm()
    if request.method == "POST":
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
    relationships = subsidy_selectors.relationships_of(organisation=buyer)
    declarations = list(subsidy_selectors.sme_declarations_for(organisation=buyer))
    context = {
        "relationships": relationships,
        "declarations": declarations,
        "waiting": any(d.status == SmeDeclaration.Status.PENDING for d in declarations),
        "relationship_form": relationship_form,
        "sme_form": sme_form,
        "buyer": buyer,
    }
    return render(request, "billing/my_eligibility.html", context)


def _declare_relationship(request: HttpRequest, buyer, form: RelationshipForm) -> bool:
    if not form.is_valid():
        return False
    data = form.cleaned_data
    try:
        accounts_services.relationship_declare(
            organisation=buyer,
            kind=data["kind"],
            related_credit_code=data["related_credit_code"],
            related_name=data["related_name"],
            share_bp=data["share"],  # PercentField: basis points
            actor=request.user,
        )
    except ApplicationError as exc:
        form_errors_apply(form, exc, fields={"share_bp": "share"})
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
            "pending": declarations.filter(status=SmeDeclaration.Status.PENDING),
            "decided": declarations.exclude(status=SmeDeclaration.Status.PENDING).order_by(
                "-decided_at", "-pk"
            )[:DECIDED_SHOWN],
            "reimbursements": subsidy_selectors.reimbursements_to_review(authority=authority),
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
        messages.success(
            request,
            _("%(name)s is recognised as a start-up / SME.")
            % {"name": declaration.organisation.legal_name}
            if decision == "accept"
            else _("Declaration of %(name)s rejected.")
            % {"name": declaration.organisation.legal_name},
        )
    return redirect("subsidy-reviews")


@authority_page
@require_POST
def reimbursement_refuse(request: HttpRequest, authority, pk: int) -> HttpResponse:
    """Reject a 兑付 presentation (with a reason): it stays out of the claim."""
    reimbursement = get_object_or_404(
        subsidy_selectors.reimbursements_for_authority(authority=authority), pk=pk
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
