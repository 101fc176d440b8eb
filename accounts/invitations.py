"""Invitations: how a person joins an organisation without staff typing in the admin.

An owner or admin of an organisation (or staff, for any organisation) invites
an e-mail address with a role; staff invite a subsidy authority by creating it
and inviting its first admin. The invitation travels as a link whose token is
signed (django.core.signing, so it cannot be forged or altered) and names a
random nonce stored on the row; it works once, before `expires_at` (read with
core.clock, like every "now"). Accepting sets the invitee's username and
password, makes the user and its membership, and marks the row used, all in
one transaction under the row's lock: a second use is a Conflict.
"""

import datetime as dt
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as UserModel
from django.core import signing
from django.db import transaction

from accounts.credit_code import credit_code_problem, normalise
from accounts.models import Invitation, Membership, Organisation
from accounts.services import user_sign_up_check
from core import clock
from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied

User = get_user_model()

SALT = "accounts.invitation"
INVITABLE_ROLES = (Membership.Role.ADMIN, Membership.Role.MEMBER, Membership.Role.READ_ONLY)


def invitation_token(invitation: Invitation) -> str:
    """The signed token of the invitation's link."""
    return signing.dumps({"i": invitation.pk, "n": invitation.nonce}, salt=SALT)


def membership_check_manager(*, user: UserModel, organisation: Organisation) -> None:
    """Only staff and the organisation's owners and admins manage its members."""
    if user.is_staff:
        return
    if not Membership.objects.filter(
        user=user, organisation=organisation, role__in=Membership.MANAGERS
    ).exists():
        raise PermissionDenied(
            "Only the organisation's owners and admins invite members.",
            errors={"role": ["Your role cannot invite members."]},
        )


def invitation_create(
    *, organisation: Organisation, email: str, role: str, invited_by: UserModel
) -> tuple[Invitation, str]:
    """Invite `email` into `organisation` with `role`; returns the invitation and
    its link's token (shown to the inviter, who hands it over)."""
    membership_check_manager(user=invited_by, organisation=organisation)
    if role not in INVITABLE_ROLES:
        raise ApplicationError(
            "Unknown role.", errors={"role": ["Invite as admin, member or read-only."]}
        )
    now = clock.now()
    invitation = Invitation.objects.create(
        organisation=organisation,
        email=email.strip(),
        role=role,
        nonce=secrets.token_hex(16),
        invited_by=invited_by,
        created_at=now,
        expires_at=now + dt.timedelta(days=settings.INVITATION_TTL_DAYS),
    )
    return invitation, invitation_token(invitation)


@transaction.atomic
def authority_invite(
    *,
    legal_name: str,
    credit_code: str,
    region: str,
    email: str,
    invited_by: UserModel,
) -> tuple[Invitation, str]:
    """Staff register a subsidy authority (verified: staff vouch for it) and
    invite its first admin."""
    if not invited_by.is_staff:
        raise PermissionDenied("Only staff invite a subsidy authority.")
    code = normalise(credit_code)
    problem = credit_code_problem(code)
    if problem:
        raise ApplicationError("Invalid credit code.", errors={"credit_code": [problem]})
    authority = Organisation.objects.create(
        kind=Organisation.Kind.AUTHORITY,
        legal_name=legal_name.strip(),
        credit_code=code,
        region=region,
        verified=True,
        verified_at=clock.now(),
        verified_by=invited_by,
    )
    return invitation_create(
        organisation=authority, email=email, role=Membership.Role.ADMIN, invited_by=invited_by
    )


def invitation_for_token(token: str) -> Invitation:
    """The invitation a link names, if it still works: a forged or altered token
    is a 404, a used one a Conflict, an expired one a 400."""
    try:
        payload = signing.loads(token, salt=SALT)
    except signing.BadSignature as exc:
        raise NotFound("No such invitation.") from exc
    invitation = (
        Invitation.objects.select_related("organisation")
        .filter(pk=payload.get("i"), nonce=payload.get("n"))
        .first()
    )
    if invitation is None:
        raise NotFound("No such invitation.")
    _check_usable(invitation)
    return invitation


def _check_usable(invitation: Invitation) -> None:
    if invitation.accepted_at is not None:
        raise Conflict(
            "This invitation has already been used.",
            errors={"token": ["The invitation has already been used."]},
        )
    if invitation.expires_at <= clock.now():
        raise ApplicationError(
            "This invitation has expired; ask for a new one.",
            errors={"token": ["The invitation has expired."]},
        )


def invitation_accept(*, token: str, username: str, password: str) -> UserModel:
    """The invitee joins: a new user with the invited e-mail and role. Once."""
    invitation = invitation_for_token(token)
    user_sign_up_check(username=username, email=invitation.email, password=password)
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        _check_usable(locked)
        user = User.objects.create_user(
            username=username, email=invitation.email, password=password
        )
        Membership.objects.create(user=user, organisation=locked.organisation, role=locked.role)
        Invitation.objects.filter(pk=locked.pk).update(accepted_at=clock.now(), accepted_by=user)
    return user


def membership_role_set(*, membership: Membership, role: str, by: UserModel) -> Membership:
    """An owner or admin changes a member's role (never an owner's, never to owner)."""
    membership_check_manager(user=by, organisation=membership.organisation)
    if role not in INVITABLE_ROLES or membership.role == Membership.Role.OWNER:
        raise ApplicationError(
            "This role cannot be set.",
            errors={"role": ["Set admin, member or read-only, on anyone but an owner."]},
        )
    Membership.objects.filter(pk=membership.pk).update(role=role)
    membership.role = role
    return membership
