from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from knox.settings import knox_settings

from accounts.selectors import organisation_for_user, user_tokens
from accounts.services import (
    api_token_create,
    api_token_revoke,
    organisation_competing_claims,
    user_sign_up,
)
from accounts.throttles import SignUpThrottle, TokenCreateThrottle
from accounts.web.forms import SignUpForm
from core.errors import ApplicationError, NotFound
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
    return render(
        request,
        "accounts/account.html",
        {
            "tokens": user_tokens(user=request.user),
            "new_token": request.session.pop("new_token", None),
            "token_ttl_days": knox_settings.TOKEN_TTL.days,
            "token_limit": knox_settings.TOKEN_LIMIT_PER_USER,
        },
    )


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
