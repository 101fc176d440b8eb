from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

from accounts.credit_code import credit_code_problem, normalise
from accounts.models import Membership, Organisation
from core.errors import ApplicationError, NotFound

User = get_user_model()


def organisation_create(
    *, owner: AbstractBaseUser, kind: str, legal_name: str, credit_code: str, region: str = ""
) -> Organisation:
    """Register an organisation with `owner` as its first member (role owner)."""
    code = normalise(credit_code)
    problem = credit_code_problem(code)
    if problem:
        raise ApplicationError("Invalid credit code.", errors={"credit_code": [problem]})
    if Organisation.objects.filter(credit_code=code).exists():
        raise ApplicationError(
            "This organisation is already registered.",
            errors={
                "credit_code": ["An organisation with this credit code is already registered."]
            },
        )
    if Membership.objects.filter(user=owner).exists():
        raise ApplicationError("You already belong to an organisation.")
    with transaction.atomic():
        organisation = Organisation.objects.create(
            kind=kind, legal_name=legal_name.strip(), credit_code=code, region=region
        )
        Membership.objects.create(user=owner, organisation=organisation, role=Membership.Role.OWNER)
    return organisation


@transaction.atomic
def user_sign_up(
    *,
    username: str,
    email: str,
    password: str,
    kind: str,
    legal_name: str,
    credit_code: str,
    region: str = "",
) -> AbstractBaseUser:
    """Create a user and the organisation they register, in one transaction."""
    user = User.objects.create_user(username=username, email=email, password=password)
    organisation_create(
        owner=user, kind=kind, legal_name=legal_name, credit_code=credit_code, region=region
    )
    return user


def organisation_verify(*, organisation: Organisation, by: AbstractBaseUser) -> Organisation:
    Organisation.objects.filter(pk=organisation.pk, verified=False).update(
        verified=True, verified_at=timezone.now(), verified_by=by
    )
    organisation.refresh_from_db()
    return organisation


def api_token_create(*, user: AbstractBaseUser) -> tuple[AuthToken, str]:
    """A new API token; the plain key is returned once and only its digest is kept."""
    return AuthToken.objects.create(user=user, expiry=None)


def api_token_revoke(*, user: AbstractBaseUser, token_key: str) -> None:
    deleted, _ = AuthToken.objects.filter(user=user, token_key=token_key).delete()
    if not deleted:
        raise NotFound("No such token.")
