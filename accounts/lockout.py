"""The answer to a sign-in the lockout refused (django-axes calls `lockout_response`,
settings.AXES_LOCKOUT_CALLABLE): the API gets 429 with the one error format, the log-in
page is shown again with the reason; both say when to retry (Retry-After)."""

import math

from axes.helpers import get_cool_off
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import ngettext


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    cool_off = get_cool_off(request)
    seconds = max(1, math.ceil(cool_off.total_seconds())) if cool_off else 0
    minutes = max(1, math.ceil(seconds / 60))
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(
            {
                "detail": f"Too many failed sign-ins for this account from this address; "
                f"try again in {minutes} minutes.",
                "errors": {},
            },
            status=429,
        )
    else:
        message = ngettext(
            "Too many failed log-ins for this account. Try again in %(minutes)d minute.",
            "Too many failed log-ins for this account. Try again in %(minutes)d minutes.",
            minutes,
        ) % {"minutes": minutes}
        response = render(
            request,
            "accounts/login.html",
            {
                "form": AuthenticationForm(request),
                "locked_out": message,
                "next": request.POST.get("next", ""),
            },
            status=429,
        )
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
