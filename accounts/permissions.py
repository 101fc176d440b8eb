"""API permissions by organisation kind. Object visibility is done by the
selectors (querysets filtered to the caller's organisation), so another
organisation's object is a 404, never a 403 that leaks its existence."""

from rest_framework.permissions import BasePermission

from accounts.models import Organisation
from accounts.selectors import organisation_for_user


class _OrganisationKind(BasePermission):
    kind: str = ""
    message = "This needs an organisation of another kind."

    def has_permission(self, request, view) -> bool:
        organisation = organisation_for_user(request.user)
        return organisation is not None and organisation.kind == self.kind


class IsProvider(_OrganisationKind):
    kind = Organisation.Kind.PROVIDER
    message = "Only compute providers can do this."


class IsBuyer(_OrganisationKind):
    kind = Organisation.Kind.BUYER
    message = "Only enterprise buyers can do this."


class IsAuthority(_OrganisationKind):
    kind = Organisation.Kind.AUTHORITY
    message = "Only the subsidy authority can do this."


class HasOrganisation(BasePermission):
    message = "Register your organisation first."

    def has_permission(self, request, view) -> bool:
        return organisation_for_user(request.user) is not None
