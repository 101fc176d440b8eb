"""Rate limits: DRF's SimpleRateThrottle, one scope per limited action.

Rates are `settings.THROTTLE_RATES` (read at request time, so a test or an operator's
override applies at once); the counts live in the default cache, which is Redis as soon
as there is one, so every web process shares them. Only writes are counted: reading a
list behind the same view never uses up the budget for placing orders.

A page (not an API view) uses the same throttles through `page_throttled`.
"""

import logging
import math

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import RedisError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from core import clock

logger = logging.getLogger(__name__)


class WriteRateThrottle(SimpleRateThrottle):
    """One scope's rate, counted per `ident` (subclasses say whose) over unsafe methods."""

    scope = ""

    def timer(self) -> float:
        # The exchange's clock, not the wall clock: a simulated market day
        # (minutes of real time) is limited per simulated minute, as production is.
        return clock.now().timestamp()

    def get_rate(self) -> str:
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(f"No throttle rate for scope {self.scope!r}")
        return rates[self.scope]

    def ident(self, request) -> str | None:
        """Whom this request counts against, or None for not counted."""
        raise NotImplementedError

    def get_cache_key(self, request, view) -> str | None:
        if request.method in SAFE_METHODS:
            return None
        ident = self.ident(request)
        if ident is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view) -> bool:
        # An unreachable cache must not turn every order or telemetry batch into a 500:
        # the limit lapses (and says so in the log) until the cache is back.
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError):
            logger.warning("throttle cache unavailable; %s not limited", self.scope, exc_info=True)
            return True


class ClientAddressThrottle(WriteRateThrottle):
    """Counted per client address (X-Forwarded-For behind TRUSTED_PROXY_COUNT proxies)."""

    def ident(self, request) -> str | None:
        return self.get_ident(request)


class UserThrottle(WriteRateThrottle):
    """Counted per signed-in user."""

    def ident(self, request) -> str | None:
        user = request.user
        return str(user.pk) if user.is_authenticated else None


def page_throttled(
    request: HttpRequest, throttle_class: type[WriteRateThrottle]
) -> HttpResponse | None:
    """For a page: None when the request is within its rate, else the 429 page
    (with Retry-After) to answer instead."""
    throttle = throttle_class()
    if throttle.allow_request(request, None):
        return None
    seconds = max(1, math.ceil(throttle.wait() or 1))
    response: HttpResponse = render(request, "429.html", {"seconds": seconds}, status=429)
    response["Retry-After"] = str(seconds)
    return response
