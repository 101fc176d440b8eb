"""API plumbing shared by every app: pagination and the one error format.

Errors always look like {"detail": "...", "errors": {"field": ["..."]}}.
"""

import re
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ApplicationError


class Pagination(PageNumberPagination):
    """`?page=` (a page past the end is a 404) and `?page_size=` (capped at
    `max_page_size`; anything but a positive whole number is a 400, where DRF
    would silently fall back to the default)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param, "")
        if raw == "":
            return self.page_size
        if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [_("A whole number of at least 1.")]}
            )
        return min(int(raw), self.max_page_size)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Rows per page, {self.page_size} unless given; "
                    f"at most {self.max_page_size} (a larger number is capped)."
                )
        return parameters


class PaginatedAPIView(APIView):
    """An APIView whose GET answers one page of a list. It declares its
    `pagination_class`, as DRF's generic views do, so that the OpenAPI schema
    documents the page (count, next, previous, results) and not a bare array."""

    pagination_class = Pagination

    def paginated(self, *, queryset, serializer_class) -> Response:
        """One page of `queryset`, serialised, with the count and next/previous links."""
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


def _flatten_errors(data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if key != "detail"}
    if isinstance(data, list):
        return {"non_field_errors": data}
    return {}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, "errors": exc.errors}, status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "detail": "Invalid input.",
            "errors": _flatten_errors(response.data),
        }
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "errors": {}}
    return response
