"""Who may use a page or an API view, by organisation kind. Object visibility is done by the
selectors (querysets filtered to the caller's organisation), so another
organisation's object is a 404, never a 403 that leaks its existence."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Membership, Organisation
from accounts.selectors import organisation_for_user, role_for_user

READ_ONLY_MESSAGE = "Your role in the organisation is read-only: you can look, not change."


def _read_only_refused(request) -> bool:
    """A read-only member asks to change something (any unsafe method)."""
    return (
        request.method not in SAFE_METHODS
        and role_for_user(request.user) == Membership.Role.READ_ONLY
    )


def page_check_can_change(request: HttpRequest) -> None:
    """Pages: a read-only member's POST is refused (403), whatever the page."""
    if request.method not in SAFE_METHODS and (
        role_for_user(request.user) == Membership.Role.READ_ONLY
    ):
        raise DjangoPermissionDenied(READ_ONLY_MESSAGE)


class _OrganisationKind(BasePermission):
    kind: str = ""
    kinds: tuple[str, ...] = ()  # several kinds may; `kind` when empty
    message = "This needs an organisation of another kind."

    def has_permission(self, request, view) -> bool:
        organisation = organisation_for_user(request.user)
        if organisation is None or organisation.kind not in (self.kinds or (self.kind,)):
            return False
        if _read_only_refused(request):
            self.message = READ_ONLY_MESSAGE
            return False
        return True


class IsProvider(_OrganisationKind):
    kind = Organisation.Kind.PROVIDER
    message = "Only compute providers can do this."


class IsBuyer(_OrganisationKind):
    kind = Organisation.Kind.BUYER
    message = "Only enterprise buyers can do this."


class IsAuthority(_OrganisationKind):
    kind = Organisation.Kind.AUTHORITY
    message = "Only the subsidy authority can do this."


class IsBuyerOrAuthority(_OrganisationKind):
    kinds = (Organisation.Kind.BUYER, Organisation.Kind.AUTHORITY)
    message = "Only enterprise buyers and the subsidy authority can do this."


class HasOrganisation(BasePermission):
    message = "Register your organisation first."

    def has_permission(self, request, view) -> bool:
        if organisation_for_user(request.user) is None:
            return False
        if _read_only_refused(request):
            self.message = READ_ONLY_MESSAGE
            return False
        return True


def organisation_page(kind: str) -> Callable:
    """Page decorator: the signed-in user's organisation must be of `kind`.

    The view gets it as its second argument. Anyone else gets a 404, as the API
    answers for another organisation's objects: a page for another kind of
    organisation does not exist for them."""

    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            organisation = organisation_for_user(request.user)
            if organisation is None or organisation.kind != kind:
                raise Http404
            page_check_can_change(request)
            return view(request, organisation, *args, **kwargs)

        return wrapper

    return decorator


provider_page = organisation_page(Organisation.Kind.PROVIDER)
buyer_page = organisation_page(Organisation.Kind.BUYER)
authority_page = organisation_page(Organisation.Kind.AUTHORITY)
