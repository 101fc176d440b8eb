from typing import Any, cast

from django.contrib.auth.models import User
from django.db.models import Q

from accounts.models import Membership, Organisation
from core import clock

_UNSET = object()


def organisation_for_user(user: Any) -> Organisation | None:
    """The organisation a signed-in user acts for, or None (cached on the user
    object for the rest of the request)."""
    if not user.is_authenticated:
        return None
    cached = getattr(user, "_organisation_cache", _UNSET)
    if cached is not _UNSET:
        return cast(Organisation | None, cached)
    membership = Membership.objects.select_related("organisation").filter(user_id=user.pk).first()
    organisation = membership.organisation if membership else None
    setattr(user, "_organisation_cache", organisation)  # noqa: B010 - a cache on a lazy proxy
    setattr(user, "_role_cache", membership.role if membership else None)  # noqa: B010
    return organisation


def role_for_user(user: Any) -> str | None:
    """The user's role in its organisation (Membership.Role), or None."""
    if organisation_for_user(user) is None:
        return None
    return cast(str | None, getattr(user, "_role_cache", None))


def memberships_of(organisation: Organisation):
    return Membership.objects.filter(organisation=organisation).select_related("user")


def invitations_of(organisation: Organisation):
    from accounts.models import Invitation

    return Invitation.objects.filter(organisation=organisation).order_by("-created_at")


def user_tokens(*, user: User):
    """The user's API tokens that still work, newest first."""
    from knox.models import AuthToken

    live = Q(expiry__isnull=True) | Q(expiry__gt=clock.now())
    return AuthToken.objects.filter(live, user=user).order_by("-created")
