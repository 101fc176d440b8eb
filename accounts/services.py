from django.contrib.auth import get_user_model
from django.contrib.auth.models import User as UserModel
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from knox.models import AuthToken
from knox.settings import knox_settings

from accounts.credit_code import credit_code_problem, normalise
from accounts.models import Membership, Organisation
from core import clock, limits
from core.errors import ApplicationError, Conflict, NotFound, PermissionDenied

User = get_user_model()


def organisation_create(
    *, owner: UserModel, kind: str, legal_name: str, credit_code: str, region: str = ""
) -> Organisation:
    """Register an organisation with `owner` as its first member (role owner).

    The organisation is a claim on its credit code until staff verify it
    (`organisation_verify`); until then it cannot trade. Anyone may claim a code that
    is already claimed, even verified: whoever registered first does not lock the real
    company out, and staff see every claim on a code side by side."""
    code = normalise(credit_code)
    problem = credit_code_problem(code)
    if problem:
        raise ApplicationError("Invalid credit code.", errors={"credit_code": [problem]})
    if Membership.objects.filter(user=owner).exists():
        raise ApplicationError("You already belong to an organisation.")
    with transaction.atomic():
        organisation = Organisation.objects.create(
            kind=kind, legal_name=legal_name.strip(), credit_code=code, region=region
        )
        Membership.objects.create(user=owner, organisation=organisation, role=Membership.Role.OWNER)
    return organisation


def user_sign_up_check(*, username: str, email: str, password: str) -> None:
    """The page's sign-up form's checks on the account, for clients without
    it (the API): a free username (case-insensitively) and a password the
    password validators accept. ApplicationError names the fields."""
    errors: dict[str, list[str]] = {}
    if User.objects.filter(username__iexact=username).exists():
        errors["username"] = ["A user with that username already exists."]
    try:
        validate_password(password, user=User(username=username, email=email))
    except DjangoValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise ApplicationError("The sign-up is not valid.", errors=errors)


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
) -> UserModel:
    """Create a user and the organisation they register, in one transaction."""
    user = User.objects.create_user(username=username, email=email, password=password)
    organisation_create(
        owner=user, kind=kind, legal_name=legal_name, credit_code=credit_code, region=region
    )
    return user


def organisation_competing_claims(*, organisation: Organisation):
    """The other organisations registered with the same credit code."""
    return Organisation.objects.filter(credit_code=organisation.credit_code).exclude(
        pk=organisation.pk
    )


@transaction.atomic
def organisation_verify(*, organisation: Organisation, by: UserModel) -> Organisation:
    """Staff confirm, against the business registry, that `organisation` is the company
    its credit code names. One organisation per code can be verified (a partial unique
    constraint backs this): to move a code to another claimant, unverify the holder."""
    holder = (
        organisation_competing_claims(organisation=organisation)
        .filter(verified=True)
        .select_for_update()
        .first()
    )
    if holder is not None:
        raise Conflict(
            f"{holder.legal_name} is already verified for this credit code; "
            "unverify it first if the code is theirs no longer.",
            errors={"credit_code": ["Another organisation is verified for this code."]},
        )
    Organisation.objects.filter(pk=organisation.pk, verified=False).update(
        verified=True, verified_at=clock.now(), verified_by=by
    )
    organisation.refresh_from_db()
    return organisation


def organisation_unverify(*, organisation: Organisation) -> Organisation:
    """Withdraw a verification (a claim staff found wrong): the organisation can no
    longer trade, and the code can be verified for a competing claim."""
    Organisation.objects.filter(pk=organisation.pk, verified=True).update(
        verified=False, verified_at=None, verified_by=None
    )
    organisation.refresh_from_db()
    return organisation


def organisation_check_can_trade(*, organisation: Organisation) -> None:
    """Only a verified organisation places orders or lists offers: an unverified one is
    a claim on a credit code that staff have not checked yet."""
    if not organisation.verified:
        raise PermissionDenied(
            "Your organisation is awaiting verification of its credit code; "
            "it can trade once staff have verified it.",
            errors={
                "organisation": [
                    "Your organisation is awaiting verification of its credit code by staff."
                ]
            },
        )


@transaction.atomic
def api_token_create(*, user: UserModel) -> tuple[AuthToken, str]:
    """A new API token; the plain key is returned once and only its digest is kept.

    It expires after knox's TOKEN_TTL; a user holds at most TOKEN_LIMIT_PER_USER
    unexpired tokens (409 beyond: revoke one first). Expired tokens are deleted here."""
    now = clock.now()
    # The user's row lock serialises two creations racing for the last free place.
    User.objects.select_for_update().filter(pk=user.pk).first()
    AuthToken.objects.filter(user=user, expiry__lte=now).delete()
    limit = knox_settings.TOKEN_LIMIT_PER_USER
    if limit is not None and AuthToken.objects.filter(user=user).count() >= limit:
        raise Conflict(
            f"You already hold {limit} API tokens, the most allowed; revoke one first.",
            errors={"token": [f"At most {limit} unexpired tokens per user."]},
        )
    return AuthToken.objects.create(user=user, expiry=knox_settings.TOKEN_TTL)


def api_token_revoke(*, user: UserModel, token_key: str) -> None:
    deleted, _rows = AuthToken.objects.filter(user=user, token_key=token_key).delete()
    if not deleted:
        raise NotFound("No such token.")


def relationship_declare(
    *,
    organisation: Organisation,
    kind: str,
    related_credit_code: str,
    related_name: str = "",
    share_bp: int | None = None,
    actor: UserModel | None = None,
):
    """An organisation declares its parent or a shareholder (by credit code);
    declaring the same kind and code again updates the name and share."""
    from accounts.models import OrganisationRelationship as R

    code = normalise(related_credit_code)
    errors: dict[str, list[str]] = {}
    if kind not in (R.Kind.PARENT, R.Kind.SHAREHOLDER):
        errors["kind"] = [_("Declare a parent company or a shareholder.")]
    if problem := credit_code_problem(code):
        errors["related_credit_code"] = [problem]
    elif code == organisation.credit_code:
        errors["related_credit_code"] = [_("That is the organisation's own credit code.")]
    if share_bp is not None and not 0 < share_bp <= limits.MAX_BASIS_POINTS:
        errors["share_bp"] = [
            _("A share is between 1 and %(most)s basis points (0.01 %% to 100 %%).")
            % {"most": f"{limits.MAX_BASIS_POINTS:,}"}
        ]
    if errors:
        raise ApplicationError(_("The relationship is not valid."), errors=errors)
    relationship, _created = R.objects.update_or_create(
        organisation=organisation,
        kind=kind,
        related_credit_code=code,
        defaults={
            "related_name": related_name.strip()[:200],
            "share_bp": share_bp,
            "declared_by": actor,
        },
    )
    return relationship


def relationship_link(*, a: Organisation, b: Organisation, actor: UserModel | None, note: str = ""):
    """Staff record a link between two organisations they verified."""
    from accounts.models import OrganisationRelationship as R

    if a.pk == b.pk:
        raise ApplicationError("Link two different organisations.")
    relationship, _created = R.objects.update_or_create(
        organisation=a,
        kind=R.Kind.STAFF_LINK,
        related_credit_code=b.credit_code,
        defaults={
            "related_name": b.legal_name,
            "note": note[:300],
            "verified_by": actor,
            "verified_at": clock.now(),
        },
    )
    return relationship


def sme_declare(*, organisation: Organisation, evidence: str, actor: UserModel | None = None):
    """A buyer declares itself a start-up / SME, with evidence, for an
    authority to decide (one pending declaration at a time: another is a 409)."""
    from accounts.models import SmeDeclaration

    errors: dict[str, list[str]] = {}
    if not organisation.is_buyer:
        errors["organisation"] = [_("Only a buyer declares start-up / SME status.")]
    if not evidence.strip():
        errors["evidence"] = [_("Give the evidence: headcount, revenue, founding date …")]
    if errors:
        raise ApplicationError(_("The declaration is not valid."), errors=errors)
    waiting = _("A declaration is already waiting for the authority.")
    if SmeDeclaration.objects.filter(
        organisation=organisation, status=SmeDeclaration.Status.PENDING
    ).exists():
        raise Conflict(waiting)
    try:
        with transaction.atomic():
            return SmeDeclaration.objects.create(
                organisation=organisation, evidence=evidence.strip()[:5000], declared_by=actor
            )
    except IntegrityError as exc:  # a concurrent declaration won (one pending at a time)
        raise Conflict(waiting) from exc


def sme_decide(*, declaration, accept: bool, actor: UserModel, reason: str = ""):
    """A member of a subsidy authority accepts or rejects a pending declaration
    (once: deciding again is a 409); the organisation's SME status follows the
    decision."""
    from accounts.models import SmeDeclaration

    deciding = Membership.objects.filter(
        user=actor, organisation__kind=Organisation.Kind.AUTHORITY
    ).exists()
    if not deciding:
        raise PermissionDenied(_("Only a subsidy authority decides SME status."))
    reason = reason.strip()
    if not accept and not reason:
        raise ApplicationError(_("Say why."), errors={"reason": [_("A reason is required.")]})
    status = SmeDeclaration.Status.ACCEPTED if accept else SmeDeclaration.Status.REJECTED
    with transaction.atomic():
        updated = SmeDeclaration.objects.filter(
            pk=declaration.pk, status=SmeDeclaration.Status.PENDING
        ).update(
            status=status, decided_by=actor, decided_at=clock.now(), decision_reason=reason[:300]
        )
        if updated != 1:
            raise Conflict(_("The declaration was already decided."))
        Organisation.objects.filter(pk=declaration.organisation_id).update(is_sme=accept)
    declaration.refresh_from_db()
    return declaration
