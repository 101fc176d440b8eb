from django.contrib import admin

from core.admin import StatusEventAdmin, StatusEventInline, ViewOnlyAdmin, shown_to_the_second
from market.models import (
    GPUModel,
    Lease,
    LeaseEvent,
    Node,
    NodeHealthCursor,
    NodeHealthEvent,
    NodeSelfTest,
    Offer,
    OfferEvent,
    Order,
    OrderEvent,
    PriceIndexSnapshot,
    ProviderReliability,
    Site,
    TelemetryRollupCursor,
    UsageRecord,
)


class OrderEventInline(StatusEventInline):
    model = OrderEvent


class LeaseEventInline(StatusEventInline):
    model = LeaseEvent


@admin.register(GPUModel)
class GPUModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "vendor",
        "memory_gb",
        "bf16_tflops",
        "fp16_tflops",
        "fp32_tflops",
        "domestic",
    ]
    list_filter = ["vendor", "domestic"]
    search_fields = ["name", "vendor", "slug"]


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "provider",
        "region",
        "hub",
        "green_share",
        "pue",
        "carbon_intensity_g_per_kwh",
    ]
    list_filter = ["hub", "region", "latency_class"]
    search_fields = ["name", "provider__legal_name"]
    raw_id_fields = ["provider"]


class NodeHealthEventInline(admin.TabularInline):
    model = NodeHealthEvent
    extra = 0
    readonly_fields = ["from_state", "to_state", "reason", "at"]
    can_delete = False


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    """Capacity and state change through services (health, drain): read-only here."""

    list_display = [
        "name",
        "site",
        "gpu_model",
        "gpu_count",
        "state",
        "state_reason",
        "verified",
        "last_seen_at",
    ]
    list_filter = ["state", "verified", "gpu_model__vendor", "site__hub"]
    search_fields = ["name", "site__name", "site__provider__legal_name"]
    raw_id_fields = ["site"]
    exclude = ["last_seen_at", "state_changed_at", "drain_at", "token_expires_at"]
    readonly_fields = [
        "token_digest",
        "gpu_count",
        "gpu_model",
        "state",
        "state_reason",
        "drain_reason",
        "token_revoked_at",
        *shown_to_the_second(
            Node, "last_seen_at", "state_changed_at", "drain_at", "token_expires_at"
        ),
    ]
    inlines = [NodeHealthEventInline]


@admin.register(Offer)
class OfferAdmin(ViewOnlyAdmin):
    """Offers change through the provider's services (reprice, pause, withdraw)."""

    list_display = [
        "id",
        "provider",
        "site",
        "gpu_model",
        "gpus_available",
        "gpus_total",
        "price_amount",
        "currency",
        "status",
    ]
    list_filter = ["status", "interruptible", "gpu_model__vendor", "site__hub"]
    search_fields = ["provider__legal_name", "site__name", "gpu_model__name"]
    raw_id_fields = ["provider", "site", "node"]
    exclude = ["available_from", "available_until"]
    readonly_fields = shown_to_the_second(Offer, "available_from", "available_until", "created_at")


@admin.register(Order)
class OrderAdmin(ViewOnlyAdmin):
    """Orders change through the buyer's services (place, cancel) and matching."""

    list_display = [
        "id",
        "buyer",
        "gpu_count",
        "gpus_filled",
        "hours",
        "max_price_amount",
        "gang",
        "status",
        "start_by",
        "created_at",
    ]
    list_filter = ["status", "gang", "domestic_only", "failover_allowed"]
    search_fields = ["buyer__legal_name", "idempotency_key"]
    raw_id_fields = ["buyer", "placed_by"]
    filter_horizontal = ["accepted_models"]
    exclude = ["start_by"]
    readonly_fields = shown_to_the_second(Order, "start_by", "created_at")
    inlines = [OrderEventInline]


LEASE_TIMES = shown_to_the_second(Lease, "starts_at", "ends_at", "ended_at", "created_at")


@admin.register(Lease)
class LeaseAdmin(ViewOnlyAdmin):
    """What is allocated and billed: shown to the second, never edited here (a
    lease ends through `market.leases` services, which record why)."""

    list_display = [
        "id",
        "order",
        "buyer",
        "provider",
        "node",
        "gpu_count",
        "price_amount",
        "status",
        *LEASE_TIMES[:3],
    ]
    exclude = ["starts_at", "ends_at", "ended_at"]
    readonly_fields = LEASE_TIMES
    list_filter = ["status", "node__site__hub"]
    search_fields = ["buyer__legal_name", "provider__legal_name", "node__name"]
    raw_id_fields = ["order", "offer", "node", "buyer", "provider", "previous_lease"]
    inlines = [LeaseEventInline]


USAGE_WINDOW = shown_to_the_second(UsageRecord, "window_start", "window_end")


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "lease",
        *USAGE_WINDOW,
        "gpu_seconds_delivered",
        "gpu_seconds_lost",
        "gpu_seconds_grace",
        "energy_wh",
        "carbon_g",
        "avg_utilisation",
    ]
    list_filter = ["window_start"]
    search_fields = ["lease__buyer__legal_name", "lease__provider__legal_name"]
    raw_id_fields = ["lease"]
    exclude = ["window_start", "window_end"]
    readonly_fields = USAGE_WINDOW

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # usage records are evidence: immutable


# TelemetrySample has a composite primary key (node, seq), which the admin cannot
# show; samples are read per node on the provider's node health page instead.
# TelemetryMinute (the per-minute rollups) likewise, composite-keyed: the charts read it.


@admin.register(TelemetryRollupCursor)
class TelemetryRollupCursorAdmin(admin.ModelAdmin):
    list_display = ["name", "rolled_until"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # moved by the rollup task only


@admin.register(NodeHealthEvent)
class NodeHealthEventAdmin(admin.ModelAdmin):
    list_display = ["node", "from_state", "to_state", "reason", "at"]
    list_filter = ["to_state"]
    search_fields = ["node__name", "reason"]
    raw_id_fields = ["node"]


@admin.register(NodeHealthCursor)
class NodeHealthCursorAdmin(admin.ModelAdmin):
    list_display = [field.name for field in NodeHealthCursor._meta.fields][:8]
    raw_id_fields = ["node"]


@admin.register(NodeSelfTest)
class NodeSelfTestAdmin(admin.ModelAdmin):
    list_display = ["node", "at", "gpus_seen", "memory_gb", "tflops", "simulated", "passed"]
    list_filter = ["passed", "simulated"]
    raw_id_fields = ["node"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # what the agent measured: evidence


@admin.register(PriceIndexSnapshot)
class PriceIndexSnapshotAdmin(admin.ModelAdmin):
    list_display = ["seq", "day", "method_version", "digest", "published_at"]
    list_filter = ["method_version"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # published and hash-chained: a restatement is a new snapshot

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# State histories: read-only, one shape (core.admin).
admin.site.register(OrderEvent, StatusEventAdmin)
admin.site.register(LeaseEvent, StatusEventAdmin)
admin.site.register(OfferEvent, StatusEventAdmin)


@admin.register(ProviderReliability)
class ProviderReliabilityAdmin(admin.ModelAdmin):
    """Stored scores (refreshed after metering): read-only."""

    list_display = ["provider", "score", "computed_at"]
    readonly_fields = ["provider", "score", "computed_at"]

    def has_add_permission(self, request) -> bool:
        return False
