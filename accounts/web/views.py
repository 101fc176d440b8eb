from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from knox.settings import knox_settings

from accounts import webhooks
from accounts.invitations import (
    authority_invite,
    invitation_for_token,
    membership_check_manager,
    membership_role_set,
)
from accounts.invitations import (
    invitation_accept as accept,
)
from accounts.invitations import (
    invitation_create as invite,
)
from accounts.models import Membership, Organisation, WebhookDelivery
from accounts.permissions import page_check_can_change
from accounts.selectors import (
    authorities_with_invitations,
    invitations_of,
    memberships_of,
    organisation_for_user,
    role_for_user,
    user_tokens,
)
from accounts.services import (
    api_token_create,
    api_token_revoke,
    organisation_competing_claims,
    user_sign_up,
)
from accounts.throttles import SignUpThrottle, TokenCreateThrottle, WebhookThrottle
from accounts.web.forms import (
    AuthorityInviteForm,
    InvitationAcceptForm,
    InvitationForm,
    MemberRoleForm,
    SignUpForm,
    WebhookEndpointForm,
)
from core.errors import ApplicationError, NotFound
from core.pages import form_errors_apply
from core.throttles import page_throttled


def sign_up(request: HttpRequest) -> HttpResponse:
    if throttled := page_throttled(request, SignUpThrottle):
        return throttled
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_sign_up(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
            kind=form.cleaned_data["kind"],
            legal_name=form.cleaned_data["legal_name"],
            credit_code=form.cleaned_data["credit_code"],
            region=form.cleaned_data["region"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(
            request,
            _(
                "Welcome! Your organisation is registered. It can trade once staff have "
                "verified its credit code against the business registry."
            ),
        )
        if organisation_competing_claims(organisation=organisation_for_user(user)).exists():
            messages.warning(
                request,
                _(
                    "Another organisation has also registered this credit code. Staff will "
                    "check both claims and verify the company the code belongs to."
                ),
            )
        return redirect("home")
    return render(request, "accounts/sign_up.html", {"form": form})


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/account.html", _account_context(request))


def _account_context(request: HttpRequest, *, webhook_form=None) -> dict:
    organisation = organisation_for_user(request.user)
    manager = role_for_user(request.user) in Membership.MANAGERS
    return {
        "tokens": user_tokens(user=request.user),
        "new_token": request.session.pop("new_token", None),
        "token_ttl_days": knox_settings.TOKEN_TTL.days,
        "token_limit": knox_settings.TOKEN_LIMIT_PER_USER,
        "role": role_for_user(request.user),
        "manager": manager,
        "members": memberships_of(organisation).order_by("pk") if organisation else [],
        "invitations": invitations_of(organisation)[:50] if manager else [],
        "invitation_form": InvitationForm(),
        "new_invitation_link": request.session.pop("new_invitation_link", None),
        "roles": MemberRoleForm.base_fields["role"].choices,
        **(
            _webhooks_context(request, organisation, form=webhook_form)
            if manager and organisation
            else {}
        ),
    }


def _webhooks_context(request: HttpRequest, organisation: Organisation, form=None) -> dict:
    endpoints = list(webhooks.endpoints_of(organisation))
    return {
        "webhook_endpoints": endpoints,
        "webhook_deliveries": WebhookDelivery.objects.filter(endpoint__in=endpoints)
        .select_related("endpoint")
        .order_by("-pk")[:10],
        "webhook_form": form or WebhookEndpointForm(),
        "new_webhook_secret": request.session.pop("new_webhook_secret", None),
    }


def _managed_organisation(request: HttpRequest) -> Organisation:
    organisation = organisation_for_user(request.user)
    if organisation is None:
        raise Http404
    page_check_can_change(request)
    try:
        membership_check_manager(user=request.user, organisation=organisation)
    except ApplicationError as exc:
        raise DjangoPermissionDenied(exc.message) from exc
    return organisation


@login_required
@require_POST
def webhook_create(request: HttpRequest) -> HttpResponse:
    """An owner or admin adds a webhook endpoint; its signing secret is shown once."""
    organisation = _managed_organisation(request)
    if throttled := page_throttled(request, WebhookThrottle):
        return throttled
    form = WebhookEndpointForm(request.POST)
    if form.is_valid():
        try:
            endpoint = webhooks.endpoint_create(
                organisation=organisation, by=request.user, **form.cleaned_data
            )
        except ApplicationError as exc:
            form_errors_apply(form, exc)
        else:
            request.session["new_webhook_secret"] = endpoint.secret
            messages.success(request, _("Webhook endpoint added."))
            return redirect(f"{reverse('account')}#webhooks")
    return render(
        request, "accounts/account.html", _account_context(request, webhook_form=form), status=400
    )


WEBHOOK_ACTIONS = ("test", "on", "off", "rotate", "delete")


@login_required
@require_POST
def webhook_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    organisation = _managed_organisation(request)
    if action not in WEBHOOK_ACTIONS:
        raise Http404
    if throttled := page_throttled(request, WebhookThrottle):
        return throttled
    endpoint = get_object_or_404(webhooks.endpoints_of(organisation), pk=pk)
    try:
        if action == "test":
            webhooks.endpoint_test(endpoint=endpoint, by=request.user)
            messages.success(request, _("Test event queued; its outcome shows below."))
        elif action in ("on", "off"):
            webhooks.endpoint_update(endpoint=endpoint, active=action == "on")
            messages.success(
                request,
                _("Webhook endpoint turned %(state)s.")
                % {"state": _("on") if action == "on" else _("off")},
            )
        elif action == "rotate":
            webhooks.endpoint_secret_rotate(endpoint=endpoint)
            request.session["new_webhook_secret"] = endpoint.secret
        else:
            webhooks.endpoint_remove(endpoint=endpoint)
            messages.success(request, _("Webhook endpoint removed."))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(f"{reverse('account')}#webhooks")


@login_required
@require_POST
def invitation_create(request: HttpRequest) -> HttpResponse:
    """An owner or admin invites someone into the organisation: the link is shown once."""
    organisation = organisation_for_user(request.user)
    if organisation is None:
        raise Http404
    page_check_can_change(request)
    form = InvitationForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Enter an e-mail address and a role."))
        return redirect("account")
    try:
        _invitation, token = invite(
            organisation=organisation, invited_by=request.user, **form.cleaned_data
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        request.session["new_invitation_link"] = request.build_absolute_uri(
            reverse("invitation_accept", args=[token])
        )
    return redirect("account")


@login_required
def authority_invite_page(request: HttpRequest) -> HttpResponse:
    """Staff register a subsidy authority and invite its first administrator; the
    signed link is shown once, to hand to the invitee (who sets a password and
    lands in the authority's home)."""
    if not request.user.is_staff:
        raise Http404
    form = AuthorityInviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _invitation, token = authority_invite(invited_by=request.user, **form.cleaned_data)
        except ApplicationError as error:
            form_errors_apply(form, error)
        else:
            request.session["new_authority_link"] = request.build_absolute_uri(
                reverse("invitation_accept", args=[token])
            )
            messages.success(
                request,
                _("%(name)s is registered as a subsidy authority.")
                % {"name": form.cleaned_data["legal_name"]},
            )
            return redirect("authority_invite")
    return render(
        request,
        "accounts/authority_invite.html",
        {
            "form": form,
            "new_link": request.session.pop("new_authority_link", None),
            "authorities": authorities_with_invitations(),
        },
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    organisation = organisation_for_user(request.user)
    if organisation is None:
        raise Http404
    membership = get_object_or_404(memberships_of(organisation), pk=pk)
    form = MemberRoleForm(request.POST)
    try:
        if not form.is_valid():
            raise ApplicationError(_("Choose a role."))
        membership_role_set(membership=membership, role=form.cleaned_data["role"], by=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Role changed."))
    return redirect("account")


HOMES = {
    Organisation.Kind.AUTHORITY: "subsidy-dashboard",
    Organisation.Kind.BUYER: "market:orders",
    Organisation.Kind.PROVIDER: "market:capacity",
}


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The invitee sets a username and password, joins and lands in the home of
    its organisation's kind (the authority's dashboard for an authority)."""
    if throttled := page_throttled(request, SignUpThrottle):
        return throttled
    try:
        invitation = invitation_for_token(token)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except ApplicationError as error:
        return render(request, "accounts/invitation.html", {"refused": error.message}, status=410)
    form = InvitationAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = accept(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except ApplicationError as error:
            form_errors_apply(form, error, fields={"password": "password1"})
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request,
                _("Welcome to %(organisation)s.") % {"organisation": invitation.organisation},
            )
            return redirect(HOMES[invitation.organisation.kind])
    return render(request, "accounts/invitation.html", {"form": form, "invitation": invitation})


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    if throttled := page_throttled(request, TokenCreateThrottle):
        return throttled
    try:
        _instance, key = api_token_create(user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        # Shown once on the next page, then gone: only its digest is stored.
        request.session["new_token"] = key
    return redirect("account")


@login_required
@require_POST
def token_revoke(request: HttpRequest, prefix: str) -> HttpResponse:
    try:
        api_token_revoke(user=request.user, token_key=prefix)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    messages.success(request, _("Token revoked."))
    return redirect("account")
