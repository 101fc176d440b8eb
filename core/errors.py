"""Business-rule failures. Services raise these; one handler turns them into 4xx."""

from typing import Any


class ApplicationError(Exception):
    """A request that breaks a business rule. Mapped to HTTP 400 by core.api."""

    status_code = 400

    def __init__(self, message: str, *, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(ApplicationError):
    status_code = 404


class Conflict(ApplicationError):
    status_code = 409


class PermissionDenied(ApplicationError):
    status_code = 403
