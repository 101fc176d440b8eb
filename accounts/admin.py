from django.contrib import admin, messages

from accounts.models import Membership, Organisation
from accounts.services import organisation_verify


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = [
        "legal_name",
        "kind",
        "credit_code",
        "region",
        "is_sme",
        "verified",
        "created_at",
    ]
    list_filter = ["kind", "verified", "is_sme", "region"]
    search_fields = ["legal_name", "credit_code"]
    readonly_fields = ["verified_at", "verified_by", "created_at"]
    inlines = [MembershipInline]
    actions = ["verify"]

    @admin.action(description="Mark selected organisations verified")
    def verify(self, request, queryset):
        for organisation in queryset.filter(verified=False):
            organisation_verify(organisation=organisation, by=request.user)
        self.message_user(request, "Verified.", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organisation", "role", "created_at"]
    list_filter = ["role", "organisation__kind"]
    search_fields = ["user__username", "organisation__legal_name"]
    raw_id_fields = ["user", "organisation"]
