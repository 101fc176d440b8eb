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


def authorities_with_invitations():
    """Subsidy authorities, newest first, with their members and invitations (for
    the staff page that registers them)."""
    from django.db.models import Prefetch

    from accounts.models import Invitation

    return (
        Organisation.objects.filter(kind=Organisation.Kind.AUTHORITY)
        .prefetch_related(
            Prefetch("invitations", queryset=Invitation.objects.order_by("-created_at")),
            Prefetch("memberships", queryset=Membership.objects.select_related("user")),
        )
        .order_by("-pk")[:100]
    )


def user_tokens(*, user: User):
    """The user's API tokens that still work, newest first."""
    from knox.models import AuthToken

    live = Q(expiry__isnull=True) | Q(expiry__gt=clock.now())
    return AuthToken.objects.filter(live, user=user).order_by("-created")


# A shareholder this large (or of unknown size) makes the two affiliated.
AFFILIATION_MIN_SHARE_BP = 2_500


def _owners(organisation: Organisation) -> dict[str, str]:
    """Credit codes that own or control `organisation` → how it was declared."""
    from accounts.models import OrganisationRelationship as R

    owners: dict[str, str] = {}
    rows = R.objects.filter(organisation=organisation, kind__in=[R.Kind.PARENT, R.Kind.SHAREHOLDER])
    for row in rows:
        if row.kind == R.Kind.SHAREHOLDER and (row.share_bp or 10_000) < AFFILIATION_MIN_SHARE_BP:
            continue
        owners[row.related_credit_code] = row.get_kind_display()
    return owners


def declared_affiliation(*, a: Organisation, b: Organisation) -> str:
    """Why `a` and `b` are related parties ('' when nothing declared says so):
    the same organisation or credit code; one declares the other as parent or
    as a shareholder of at least AFFILIATION_MIN_SHARE_BP; both declare the
    same parent or controlling shareholder; or staff recorded a verified link
    between them. Facts about ownership only — a shared credit-code prefix is
    a fraud signal for review (billing.subsidy.fraud), not an affiliation."""
    from accounts.models import OrganisationRelationship as R

    if a.pk == b.pk or a.credit_code == b.credit_code:
        return "same organisation"
    owners_a, owners_b = _owners(a), _owners(b)
    if b.credit_code in owners_a:
        return f"{a.legal_name} declares {b.legal_name} ({b.credit_code}) as its {owners_a[b.credit_code]}"
    if a.credit_code in owners_b:
        return f"{b.legal_name} declares {a.legal_name} ({a.credit_code}) as its {owners_b[a.credit_code]}"
    common = sorted(set(owners_a) & set(owners_b))
    if common:
        return f"both are owned or controlled by {common[0]}"
    link = (
        R.objects.filter(kind=R.Kind.STAFF_LINK)
        .filter(
            Q(organisation=a, related_credit_code=b.credit_code)
            | Q(organisation=b, related_credit_code=a.credit_code)
        )
        .first()
    )
    if link:
        return f"staff verified a link: {link.note or link.related_credit_code}"
    return ""
