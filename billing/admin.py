from django.contrib import admin

from billing.models import (
    FrameworkAgreement,
    FraudFlag,
    FundingAlert,
    FundingTerms,
    Invoice,
    InvoiceEvent,
    InvoiceLine,
    InvoiceLineUsage,
    LedgerAccount,
    LedgerTransaction,
    Payment,
    Payout,
    PayoutAccount,
    PayoutLine,
    PayoutRun,
    Posting,
    Redemption,
    RedemptionEvent,
    Refund,
    Reimbursement,
    SlaCredit,
    StripeEvent,
    SubsidyClaim,
    SubsidyClaimEvent,
    SubsidyProgramme,
    SubsidyRefusal,
    TopUp,
    TrailLeaf,
    TreeHead,
    Voucher,
    VoucherApplication,
    VoucherApplicationEvent,
    VoucherEvent,
)
from core.admin import StatusEventAdmin, StatusEventInline, shown_to_the_second


class InvoiceEventInline(StatusEventInline):
    model = InvoiceEvent


class VoucherEventInline(StatusEventInline):
    model = VoucherEvent


class SubsidyClaimEventInline(StatusEventInline):
    model = SubsidyClaimEvent


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
        *shown_to_the_second(Invoice, "period_start", "period_end", "issued_at", "paid_at"),
    ]
    # what the invoice bills: to the second, never a form field (core.admin)
    exclude = ["period_start", "period_end", "issued_at", "paid_at"]
    inlines = [InvoiceLineInline, InvoiceEventInline]


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


@admin.register(InvoiceLineUsage)
class InvoiceLineUsageAdmin(ReadOnlyAdmin):
    list_display = ["id", "line", "usage_record"]
    raw_id_fields = ["line", "usage_record"]
    search_fields = ["line__invoice__number"]


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


# --- subsidy programmes and vouchers --------------------------------------------
@admin.register(SubsidyProgramme)
class SubsidyProgrammeAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "authority",
        "budget_amount",
        "funding",
        "rate_bp",
        "domestic_rate_bp",
        "valid_from",
        "valid_until",
    ]
    list_filter = ["funding", "authority"]
    search_fields = ["name", "authority__legal_name"]
    raw_id_fields = ["authority"]


@admin.register(Voucher)
class VoucherAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "programme",
        "holder",
        "face_amount",
        "currency",
        "status",
        "valid_from",
        "valid_until",
    ]
    list_filter = ["status", "programme"]
    search_fields = ["holder__legal_name", "programme__name"]
    raw_id_fields = ["programme", "holder", "application", "issued_by"]
    readonly_fields = ["face_amount", "status"]
    inlines = [VoucherEventInline]


@admin.register(VoucherApplication)
class VoucherApplicationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "programme",
        "applicant",
        "requested_amount",
        "approved_amount",
        "status",
        "decided_at",
        "created_at",
    ]
    list_filter = ["status", "programme"]
    search_fields = ["applicant__legal_name", "purpose"]
    raw_id_fields = ["programme", "applicant", "decided_by"]
    readonly_fields = ["status", "approved_amount", "decided_by", "decided_at"]


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "voucher",
        "programme",
        "beneficiary",
        "invoice_line",
        "amount",
        "rate_bp",
        "settlement_mode",
        "status",
        "created_at",
    ]
    list_filter = ["status", "settlement_mode", "programme"]
    search_fields = ["beneficiary__legal_name"]


@admin.register(FraudFlag)
class FraudFlagAdmin(admin.ModelAdmin):
    list_display = ["id", "rule", "subject_key", "programme", "status", "reviewed_by", "created_at"]
    list_filter = ["rule", "status", "programme"]
    search_fields = ["subject_key", "review_note"]
    raw_id_fields = ["programme", "voucher", "redemption", "reviewed_by"]
    readonly_fields = ["rule", "subject_key", "details", "status", "reviewed_by", "reviewed_at"]


# --- subsidy claims ---------------------------------------------------------------


@admin.register(SubsidyClaim)
class SubsidyClaimAdmin(ReadOnlyAdmin):
    list_display = ["programme", "year", "month", "status", "deduct_amount", "reimburse_amount"]
    list_filter = ["status"]
    inlines = [SubsidyClaimEventInline]


# State histories: read-only, one shape (core.admin).
admin.site.register(InvoiceEvent, StatusEventAdmin)
admin.site.register(VoucherEvent, StatusEventAdmin)
admin.site.register(VoucherApplicationEvent, StatusEventAdmin)
admin.site.register(RedemptionEvent, StatusEventAdmin)
admin.site.register(SubsidyClaimEvent, StatusEventAdmin)


@admin.register(SubsidyRefusal)
class SubsidyRefusalAdmin(ReadOnlyAdmin):
    list_display = ["id", "programme", "reason", "amount", "invoice_line", "created_at"]
    list_filter = ["reason"]
    raw_id_fields = ["invoice_line", "programme", "voucher"]
    search_fields = ["invoice_line__invoice__number", "programme__name", "detail"]


@admin.register(FrameworkAgreement)
class FrameworkAgreementAdmin(admin.ModelAdmin):
    """Staff record a signed framework agreement and the orders it covers."""

    list_display = ["reference", "buyer", "provider", "term_start", "term_end", "signed_at"]
    search_fields = ["reference", "buyer__legal_name", "provider__legal_name"]
    raw_id_fields = ["buyer", "provider"]
    filter_horizontal = ["orders"]


@admin.register(Reimbursement)
class ReimbursementAdmin(ReadOnlyAdmin):
    list_display = [
        "invoice",
        "programme",
        "amount",
        "usage_record_count",
        "status",
        "submitted_at",
    ]
    list_filter = ["status"]
    search_fields = ["invoice__number", "programme__name"]


# --- the subsidy trail (billing.trail): append-only, shown never changed -------------
@admin.register(TrailLeaf)
class TrailLeafAdmin(ReadOnlyAdmin):
    list_display = ["index", "kind", "record_id", "leaf_hash", "logged_at"]
    list_filter = ["kind"]
    search_fields = ["=record_id", "=leaf_hash"]


@admin.register(TreeHead)
class TreeHeadAdmin(ReadOnlyAdmin):
    list_display = ["tree_size", "root_hash", "timestamp", "key_id"]


@admin.register(FundingTerms)
class FundingTermsAdmin(ReadOnlyAdmin):
    """Read here; staff set a credit limit through the API (billing.prepaid.credit_limit_set)."""

    list_display = [
        "buyer",
        "credit_limit_amount",
        "at_zero",
        "grace_minutes",
        "auto_top_up",
        "exhausted_at",
        "leases_stopped_at",
    ]
    list_filter = ["at_zero", "auto_top_up"]
    search_fields = ["buyer__legal_name"]


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ["id", "buyer", "amount", "currency", "automatic", "status", "credited_at"]
    list_filter = ["status", "automatic"]
    search_fields = ["buyer__legal_name", "stripe_payment_intent_id", "idempotency_key"]


@admin.register(FundingAlert)
class FundingAlertAdmin(ReadOnlyAdmin):
    list_display = ["buyer", "threshold_amount", "available_amount", "created_at", "cleared_at"]
    search_fields = ["buyer__legal_name"]
