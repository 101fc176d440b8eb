from django.contrib import admin

from billing.models import (
    Invoice,
    InvoiceEvent,
    InvoiceLine,
    LedgerAccount,
    LedgerTransaction,
    Payment,
    Payout,
    PayoutAccount,
    PayoutLine,
    PayoutRun,
    Posting,
    Refund,
    SlaCredit,
    StripeEvent,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Ledger rows are append-only: the admin shows them and never edits them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "organisation",
        "purpose",
        "reference",
        "currency",
        "balance",
        "floor_zero",
    ]
    list_filter = ["purpose", "currency", "floor_zero"]
    search_fields = ["organisation__legal_name", "reference"]


class PostingInline(admin.TabularInline):
    model = Posting
    extra = 0
    readonly_fields = ["account", "amount", "currency"]
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "business_key", "memo", "reverses", "created_at"]
    list_filter = ["kind"]
    search_fields = ["business_key", "memo"]
    inlines = [PostingInline]


@admin.register(Posting)
class PostingAdmin(ReadOnlyAdmin):
    list_display = ["id", "transaction", "account", "amount", "currency"]
    list_filter = ["currency", "account__purpose"]
    search_fields = ["transaction__business_key", "account__organisation__legal_name"]


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    readonly_fields = [
        "kind",
        "description",
        "gpu_seconds",
        "price_amount",
        "amount",
        "voucher_amount",
        "fee_amount",
        "provider_net_amount",
    ]
    fields = readonly_fields


class InvoiceEventInline(admin.TabularInline):
    model = InvoiceEvent
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "actor", "reason", "at"]


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = [
        "number",
        "buyer",
        "period_start",
        "status",
        "total_amount",
        "voucher_amount",
        "buyer_amount",
        "paid_amount",
        "currency",
    ]
    list_filter = ["status", "currency", "period_start"]
    search_fields = ["number", "buyer__legal_name"]
    raw_id_fields = ["buyer"]
    readonly_fields = [
        "gross_amount",
        "credit_amount",
        "total_amount",
        "voucher_amount",
        "buyer_amount",
        "paid_amount",
        "platform_fee_amount",
        "issued_at",
        "paid_at",
    ]
    inlines = [InvoiceLineInline, InvoiceEventInline]


@admin.register(InvoiceEvent)
class InvoiceEventAdmin(admin.ModelAdmin):
    list_display = ["invoice", "from_status", "to_status", "actor", "reason", "at"]
    list_filter = ["to_status"]
    raw_id_fields = ["invoice", "actor"]


@admin.register(InvoiceLine)
class InvoiceLineAdmin(ReadOnlyAdmin):
    list_display = [
        "invoice",
        "kind",
        "provider",
        "gpu_seconds",
        "price_amount",
        "amount",
        "voucher_amount",
        "fee_amount",
    ]
    list_filter = ["kind"]
    search_fields = ["invoice__number", "provider__legal_name"]


# --- payments and payouts ------------------------------------------------------
@admin.register(SlaCredit)
class SlaCreditAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "buyer",
        "provider",
        "source_invoice",
        "gpu_seconds_lost",
        "multiple",
        "uncapped_amount",
        "amount",
        "created_at",
    ]
    search_fields = ["buyer__legal_name", "provider__legal_name"]


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    readonly_fields = [
        "amount",
        "reason",
        "idempotency_key",
        "stripe_refund_id",
        "status",
        "created_at",
    ]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "invoice",
        "attempt",
        "amount",
        "captured_amount",
        "refunded_amount",
        "currency",
        "status",
        "stripe_payment_intent_id",
        "created_at",
    ]
    list_filter = ["status", "currency"]
    search_fields = ["invoice__number", "stripe_payment_intent_id", "idempotency_key"]
    inlines = [RefundInline]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["id", "payment", "amount", "status", "stripe_refund_id", "created_at"]
    list_filter = ["status"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "source", "received_at", "processed_at"]
    list_filter = ["type", "source"]
    search_fields = ["event_id"]


@admin.register(PayoutAccount)
class PayoutAccountAdmin(admin.ModelAdmin):
    list_display = [
        "provider",
        "method",
        "stripe_account_id",
        "account_name",
        "bank_name",
        "bank_code",
    ]
    list_filter = ["method"]
    search_fields = ["provider__legal_name", "account_name", "account_number"]
    raw_id_fields = ["provider"]


class PayoutLineInline(admin.TabularInline):
    model = PayoutLine
    extra = 0
    can_delete = False
    readonly_fields = ["invoice", "provider", "amount", "transferred_amount", "stripe_transfer_id"]


@admin.register(PayoutRun)
class PayoutRunAdmin(ReadOnlyAdmin):
    list_display = ["key", "status", "created_at", "completed_at"]
    list_filter = ["status"]
    search_fields = ["key"]


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = [
        "reference",
        "run",
        "provider",
        "method",
        "amount",
        "currency",
        "status",
        "sent_at",
    ]
    list_filter = ["status", "method"]
    search_fields = ["reference", "provider__legal_name"]
    inlines = [PayoutLineInline]


@admin.register(PayoutLine)
class PayoutLineAdmin(ReadOnlyAdmin):
    list_display = [
        "payout",
        "invoice",
        "provider",
        "amount",
        "transferred_amount",
        "stripe_transfer_id",
    ]
    search_fields = ["invoice__number", "provider__legal_name"]
