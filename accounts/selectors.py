from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q
from django.utils import timezone

from accounts.models import Membership, Organisation


def organisation_for_user(user: AbstractBaseUser | AnonymousUser) -> Organisation | None:
    """The organisation a signed-in user acts for, or None."""
    if not user.is_authenticated:
        return None
    cached = getattr(user, "_organisation_cache", False)
    if cached is not False:
        return cached
    membership = Membership.objects.select_related("organisation").filter(user=user).first()
    organisation = membership.organisation if membership else None
    user._organisation_cache = organisation
    return organisation


def user_tokens(*, user: AbstractBaseUser):
    """The user's API tokens that still work, newest first."""
    from knox.models import AuthToken

    live = Q(expiry__isnull=True) | Q(expiry__gt=timezone.now())
    return AuthToken.objects.filter(live, user=user).order_by("-created")
