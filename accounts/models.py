from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.credit_code import credit_code_problem
from core import limits


def validate_credit_code(value: str) -> None:
    problem = credit_code_problem(value)
    if problem:
        raise ValidationError(problem, code="credit_code")


class Organisation(models.Model):
    """A company or public body on the exchange.

    Registering is a claim on a unified social credit code: `verified` is set by
    an administrator after checking the claim against the business registry.
    Several organisations may claim one code (the real company is never locked
    out by whoever registered its code first); at most one of them is verified.
    Unverified organisations can browse and set up, but not trade (no orders,
    no offers), and some programmes only pay verified buyers.
    """

    class Kind(models.TextChoices):
        PROVIDER = "provider", _("Compute provider")
        BUYER = "buyer", _("Enterprise buyer")
        AUTHORITY = "authority", _("Subsidy authority")

    kind = models.CharField(max_length=16, choices=Kind.choices)
    legal_name = models.CharField(_("legal name"), max_length=200)
    credit_code = models.CharField(
        _("unified social credit code"),
        max_length=18,
        db_index=True,
        validators=[validate_credit_code],
    )
    region = models.CharField(_("province"), max_length=32, blank=True)
    is_sme = models.BooleanField(_("start-up / SME"), default=False)
    verified = models.BooleanField(default=False)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["legal_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["credit_code"],
                condition=models.Q(verified=True),
                name="organisation_credit_code_verified_once",
            ),
        ]

    def __str__(self) -> str:
        return self.legal_name

    @property
    def is_provider(self) -> bool:
        return self.kind == self.Kind.PROVIDER

    @property
    def is_buyer(self) -> bool:
        return self.kind == self.Kind.BUYER

    @property
    def is_authority(self) -> bool:
        return self.kind == self.Kind.AUTHORITY


class Membership(models.Model):
    """A user's place in one organisation. Owners (who registered it) and
    admins manage its members; members act for it; read-only members see
    what it sees and change nothing (no orders, payments, offers ...)."""

    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        ADMIN = "admin", pgettext_lazy("membership role", "Admin")
        MEMBER = "member", _("Member")
        READ_ONLY = "read_only", _("Read-only")

    MANAGERS = (Role.OWNER, Role.ADMIN)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # One organisation per user keeps "whose data is this" unambiguous.
            models.UniqueConstraint(fields=["user"], name="membership_one_organisation_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organisation} ({self.role})"


class OrganisationRelationship(models.Model):
    """A declared fact about who owns or controls whom, by credit code.

    An organisation declares its parent company and its shareholders (the
    other party need not be on the exchange); staff record links they have
    verified between two organisations (`STAFF_LINK`, e.g. found in the
    business registry). Affiliation for subsidy rules is read from these rows
    (accounts.selectors.declared_affiliation), never guessed from a code.
    """

    class Kind(models.TextChoices):
        PARENT = "parent", _("parent company")
        SHAREHOLDER = "shareholder", _("shareholder")
        STAFF_LINK = "staff_link", _("link verified by staff")

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="relationships"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    related_credit_code = models.CharField(
        _("credit code of the related organisation"),
        max_length=18,
        db_index=True,
        validators=[validate_credit_code],
    )
    related_name = models.CharField(_("its name"), max_length=200, blank=True)
    share_bp = models.PositiveIntegerField(
        _("share held (basis points)"), null=True, blank=True, help_text=_("shareholders only")
    )
    note = models.CharField(max_length=300, blank=True)
    declared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organisation", "kind", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "kind", "related_credit_code"],
                name="relationship_once_per_kind",
            ),
            models.CheckConstraint(
                condition=models.Q(share_bp__isnull=True)
                | models.Q(share_bp__gt=0, share_bp__lte=limits.MAX_BASIS_POINTS),
                name="relationship_share_bounded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organisation} → {self.related_credit_code} ({self.kind})"


class SmeDeclaration(models.Model):
    """A buyer declares itself a start-up / SME with evidence; a subsidy
    authority decides. Accepting sets `Organisation.is_sme` (the higher SME
    rate of a programme applies), rejecting clears it.

    Statuses: pending → accepted / rejected (by a member of an authority).
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("awaiting the authority")
        ACCEPTED = "accepted", _("accepted")
        REJECTED = "rejected", _("rejected")

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="sme_declarations"
    )
    evidence = models.TextField(
        _("evidence"), help_text=_("headcount, revenue, founding date, registry extract …")
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    declared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation"],
                condition=models.Q(status="pending"),
                name="sme_declaration_one_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"SME declaration of {self.organisation} ({self.status})"


class Invitation(models.Model):
    """An invitation to join `organisation` with `role`, sent as a signed link
    (accounts/invitations.py). It works once, until `expires_at`: the invitee
    sets a username and password and becomes a member."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField(_("e-mail"))
    role = models.CharField(max_length=16, choices=Membership.Role.choices)
    nonce = models.CharField(max_length=32, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(role="owner"), name="invitation_never_makes_an_owner"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} → {self.organisation} ({self.role})"


class WebhookEndpoint(models.Model):
    """A URL of an organisation's that the exchange calls when something it
    subscribed to happens (accounts/webhooks.py): a pre-emption notice, a lease
    ended, a funding alert, an invoice issued. Each call is signed with the
    endpoint's own secret (the Standard Webhooks scheme)."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(_("URL"), max_length=500)
    description = models.CharField(_("description"), max_length=200, blank=True)
    # every event type if empty
    event_types = models.JSONField(default=list, blank=True)
    # whsec_<base64>: signs every delivery; shown once, when the endpoint is made
    secret = models.CharField(max_length=80)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    # set when deliveries kept failing and the exchange stopped calling it
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.url} ({self.organisation})"


class WebhookDelivery(models.Model):
    """One event for one endpoint: written in the transaction of the change it
    reports, then sent (and retried with backoff) until the endpoint answers
    2xx or the attempts run out."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    # the webhook-id header: the same for every attempt, so receivers can de-duplicate
    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event_id"], name="webhook_delivery_once_per_event"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.endpoint_id} ({self.status})"
