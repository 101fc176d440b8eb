from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

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
    from knox.models import AuthToken

    return AuthToken.objects.filter(user=user).order_by("-created")
