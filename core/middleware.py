"""Request filters that run before any view."""

import zoneinfo
from collections.abc import Callable
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext as _


def _has_nul(request: HttpRequest) -> bool:
    query = unquote(request.META.get("QUERY_STRING", ""), errors="replace")
    return "\x00" in request.path_info or "\x00" in query


def refuse_nul_characters(get_response: Callable[[HttpRequest], HttpResponse]):
    """Answer 400 to a path or query string holding a NUL character.

    Django hands `%00` through to views, and PostgreSQL refuses NUL in any
    text value, so a lookup with it was a 500. No address of the exchange
    needs one; forms and serializers refuse NUL in bodies themselves."""

    def middleware(request: HttpRequest) -> HttpResponse:
        if _has_nul(request):
            message = _("The address contains a NUL character.")
            if request.path_info.startswith("/api/"):
                return JsonResponse({"detail": message, "errors": {}}, status=400)
            return HttpResponseBadRequest(message)
        return get_response(request)

    return middleware


def viewer_time_zone(get_response: Callable[[HttpRequest], HttpResponse]):
    """Show times in the viewer's time zone: the browser names it in the `tz`
    cookie (static/js/site.js); an unknown or missing name keeps TIME_ZONE."""

    def middleware(request: HttpRequest) -> HttpResponse:
        name = request.COOKIES.get("tz", "")
        zone = _zone(name) if name else None
        if zone is None:
            return get_response(request)
        with timezone.override(zone):
            return get_response(request)

    return middleware


def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    if len(name) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
