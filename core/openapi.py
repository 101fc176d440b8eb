"""The OpenAPI schema tells the truth about errors, in one place.

Every 4xx the API answers has the one error shape of `core.api`:
`{"detail": "...", "errors": {"field": ["..."]}}`. `ExchangeAutoSchema` (DRF's
DEFAULT_SCHEMA_CLASS) documents it on each operation for the statuses that
follow from the view's own configuration:

- 400 when the operation takes a body (POST/PUT/PATCH) or query parameters;
- 401 when the view authenticates (a bad token is refused even where
  anonymous callers are welcome);
- 403 when a permission class can refuse a signed-in caller, or session
  authentication checks CSRF on an unsafe method;
- 404 when the path names an object, or the list is paginated (a page past
  the end is a 404);
- 429 with `Retry-After` when the view is throttled.

Optional query parameters are marked `allowEmptyValue`: DRF, django-filter and
the paginator all take `?name=` as not given.

Statuses a service raises that the view's configuration cannot show (409 when
a state changed under the caller, 404 for "not yet registered", 403 for a
node posting for another node) are declared on the view with `errors(...)`.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated

ERROR_DESCRIPTIONS = {
    400: "Invalid input or a broken business rule; `errors` names the fields.",
    401: "Missing, unknown or expired credentials.",
    403: "Signed in, but not allowed to do this.",
    404: "No such object (another organisation's objects are not found either).",
    409: "The object is no longer in a state that allows this.",
    429: "Too many requests; retry after `Retry-After` seconds.",
}
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_WITH_BODY = {"POST", "PUT", "PATCH"}


class ErrorOutput(serializers.Serializer):
    """The one error format of the API (core.api.exception_handler)."""

    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Field name to a list of messages (nested objects for nested input); "
        "`non_field_errors` for the request as a whole. Empty when no field is at fault.",
    )


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Responses for `extend_schema(responses={...})`: error statuses a service
    can answer that the view's configuration does not show."""
    return {
        status: OpenApiResponse(ErrorOutput, description=ERROR_DESCRIPTIONS[status])
        for status in statuses
    }


class ExchangeAutoSchema(AutoSchema):
    def _get_parameters(self) -> list[dict[str, Any]]:
        parameters = super()._get_parameters()
        for parameter in parameters:
            # DRF serializers (HTML-input rules), django-filter and the paginator all
            # read an optional query parameter given empty (`?vendor=`) as not given.
            if parameter.get("in") == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return parameters

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for status in self._error_statuses():
            code = str(status)
            if code in responses:
                continue
            responses[code] = self._get_response_for_code(errors(status)[status], code)
            if status == 429:
                responses[code]["headers"] = {
                    "Retry-After": {
                        "schema": {"type": "integer"},
                        "description": "Seconds to wait before trying again.",
                    }
                }
        return dict(sorted(responses.items()))

    def _error_statuses(self) -> list[int]:
        view, method = self.view, self.method
        statuses = []
        query = [p for p in self._get_parameters() if p.get("in") == "query"]
        if method in _WITH_BODY or query:
            statuses.append(400)
        authenticators = view.get_authenticators()
        if authenticators:
            statuses.append(401)
        permissions = view.get_permissions()
        if any(not isinstance(p, (AllowAny, IsAuthenticated)) for p in permissions) or (
            method in _UNSAFE and any(isinstance(a, SessionAuthentication) for a in authenticators)
        ):
            statuses.append(403)
        if "{" in self.path or (self._is_list_view() and self._get_paginator()):
            statuses.append(404)
        if view.get_throttles():
            statuses.append(429)
        return statuses
