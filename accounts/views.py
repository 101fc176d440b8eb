from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.forms import SignUpForm
from accounts.selectors import user_tokens
from accounts.services import api_token_create, api_token_revoke, user_sign_up
from core.errors import NotFound


def sign_up(request: HttpRequest) -> HttpResponse:
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
        messages.success(request, _("Welcome! Your organisation is registered."))
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
        },
    )


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    _instance, key = api_token_create(user=request.user)
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
