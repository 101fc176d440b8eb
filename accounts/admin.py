from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from accounts.models import (
    Invitation,
    Membership,
    Organisation,
    OrganisationRelationship,
    SmeDeclaration,
    WebhookDelivery,
    WebhookEndpoint,
)
from accounts.services import organisation_unverify, organisation_verify
from core import clock
from core.errors import ApplicationError


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


class CompetingClaimsFilter(admin.SimpleListFilter):
    """Credit codes that more than one organisation registered: staff decide which
    one the code belongs to."""

    title = "competing claims"
    parameter_name = "competing"

    def lookups(self, request, model_admin):
        return [("yes", "Code claimed by several organisations")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(claims__gt=1)
        return queryset


class RelationshipInline(admin.TabularInline):
    """Parents and shareholders the organisation declared, and links staff
    verified (kind "link verified by staff"): what subsidy rules read as
    affiliation."""

    model = OrganisationRelationship
    extra = 0
    fields = ["kind", "related_credit_code", "related_name", "share_bp", "note", "verified_at"]
    readonly_fields = ["verified_at"]


@admin.register(OrganisationRelationship)
class OrganisationRelationshipAdmin(admin.ModelAdmin):
    list_display = ["organisation", "kind", "related_credit_code", "related_name", "verified_at"]
    list_filter = ["kind"]
    search_fields = ["organisation__legal_name", "related_credit_code", "related_name"]
    raw_id_fields = ["organisation", "declared_by", "verified_by"]
    readonly_fields = ["verified_by", "verified_at", "created_at"]
    actions = ["mark_verified"]

    def save_model(self, request, obj, form, change):
        if obj.kind == OrganisationRelationship.Kind.STAFF_LINK and obj.verified_at is None:
            obj.verified_by, obj.verified_at = request.user, clock.now()
        super().save_model(request, obj, form, change)

    @admin.action(description="Mark the selected relationships verified by staff")
    def mark_verified(self, request, queryset):
        queryset.filter(verified_at__isnull=True).update(
            verified_by=request.user, verified_at=clock.now()
        )


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = [
        "legal_name",
        "kind",
        "credit_code",
        "claims",
        "region",
        "is_sme",
        "verified",
        "created_at",
    ]
    list_filter = [CompetingClaimsFilter, "kind", "verified", "is_sme", "region"]
    search_fields = ["legal_name", "credit_code"]
    readonly_fields = ["verified", "verified_at", "verified_by", "created_at"]
    inlines = [MembershipInline, RelationshipInline]
    actions = ["verify", "unverify"]

    def get_queryset(self, request):
        same_code = (
            Organisation.objects.filter(credit_code=OuterRef("credit_code"))
            .order_by()
            .values("credit_code")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(claims=Coalesce(Subquery(same_code), 1))

    @admin.display(description="claims on this code", ordering="claims")
    def claims(self, organisation: Organisation) -> int:
        return organisation.claims

    @admin.action(description="Mark selected organisations verified")
    def verify(self, request, queryset):
        for organisation in queryset.filter(verified=False):
            try:
                organisation_verify(organisation=organisation, by=request.user)
            except ApplicationError as error:
                self.message_user(request, f"{organisation}: {error.message}", messages.ERROR)
            else:
                self.message_user(request, f"{organisation}: verified.", messages.SUCCESS)

    @admin.action(description="Withdraw the verification of the selected organisations")
    def unverify(self, request, queryset):
        for organisation in queryset.filter(verified=True):
            organisation_unverify(organisation=organisation)
        self.message_user(request, "Verification withdrawn.", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organisation", "role", "created_at"]
    list_filter = ["role", "organisation__kind"]
    search_fields = ["user__username", "organisation__legal_name"]
    raw_id_fields = ["user", "organisation"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are made and used through accounts/invitations.py: shown here only."""

    list_display = ["email", "organisation", "role", "created_at", "expires_at", "accepted_at"]
    list_filter = ["role", ("accepted_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "organisation__legal_name"]
    exclude = ["nonce"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SmeDeclaration)
class SmeDeclarationAdmin(admin.ModelAdmin):
    """Read here; decided by a subsidy authority (accounts.services.sme_decide)."""

    list_display = ["organisation", "status", "created_at", "decided_at"]
    list_filter = ["status"]
    search_fields = ["organisation__legal_name"]
    readonly_fields = ["status", "decided_by", "decided_at", "decision_reason", "created_at"]
    raw_id_fields = ["organisation", "declared_by"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Organisations manage their endpoints (account page, API webhooks/); staff
    look, and may turn one off. The signing secret is never shown here."""

    list_display = ["url", "organisation", "active", "created_at", "disabled_at"]
    list_filter = ["active"]
    search_fields = ["url", "organisation__legal_name"]
    exclude = ["secret"]
    readonly_fields = [
        "organisation",
        "url",
        "description",
        "event_types",
        "created_by",
        "created_at",
        "disabled_at",
        "disabled_reason",
    ]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Every event sent to an endpoint and its last outcome: shown only."""

    list_display = [
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "event_type"]
    search_fields = ["event_id", "endpoint__url"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
