"""Read-only traffic to a PostgreSQL streaming replica, with read-your-writes.

When `DATABASE_REPLICA_URL` is set, the views marked `@replica_reads` (the
public board and search, charts, reports: reads a few seconds stale are
fine there) read from the replica; everything else, every write and every
read of accounts, sessions and tokens stays on the primary. A user who has
just written (any successful POST/PUT/PATCH/DELETE) reads from the primary for
REPLICA_PIN_SECONDS, longer than the replica's usual lag, so they always see
what they did: a cookie for the browser, a cache key for an API token.
Without a replica nothing changes.
"""

import contextvars
import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from core import clock

REPLICA = "replica"
PIN_COOKIE = "exchange_wrote"
# Always the primary: who the caller is must never lag behind a log-in or a new token.
PRIMARY_APPS = frozenset({"auth", "accounts", "sessions", "knox", "axes", "contenttypes"})
_reading: contextvars.ContextVar[Any] = contextvars.ContextVar("replica_reads", default=None)


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def replica_reads(view: Callable) -> Callable:
    """Mark a read-only view (function view or an APIView's `get`)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        request = next((a for a in args if hasattr(a, "COOKIES")), None)
        token = _reading.set(request if request is not None else True)
        try:
            return view(*args, **kwargs)
        finally:
            _reading.reset(token)

    return wrapper


def _pin_key(user_id: int) -> str:
    return f"replica-pin:{user_id}"


def _pinned(request: Any) -> bool:
    if request is True:
        return False
    wrote = request.COOKIES.get(PIN_COOKIE, "")
    if wrote.isdigit() and clock.now().timestamp() - int(wrote) < settings.REPLICA_PIN_SECONDS:
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and cache.get(_pin_key(user.pk)))


class ReplicaRouter:
    def db_for_read(self, model, **hints) -> str | None:
        request = _reading.get()
        if request is None or not replica_configured():
            return None
        if model._meta.app_label in PRIMARY_APPS or _pinned(request):
            return None
        return REPLICA

    def db_for_write(self, model, **hints) -> str | None:
        return "default"

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        return True  # one database, two copies

    def allow_migrate(self, db, app_label, **hints) -> bool | None:
        return db == "default"


def replica_pin(get_response: Callable[[HttpRequest], HttpResponse]):
    """Middleware: after a successful write, the writer reads from the primary
    for REPLICA_PIN_SECONDS."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if (
            replica_configured()
            and request.method not in ("GET", "HEAD", "OPTIONS")
            and response.status_code < 400
        ):
            seconds = settings.REPLICA_PIN_SECONDS
            response.set_cookie(
                PIN_COOKIE,
                str(int(clock.now().timestamp())),
                max_age=seconds,
                httponly=True,
                samesite="Lax",
            )
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                cache.set(_pin_key(user.pk), 1, timeout=seconds)
        return response

    return middleware
