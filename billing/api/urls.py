"""Billing: every API route of the app, one include in config/urls.py."""

from django.urls import path

from billing.api import eligibility, invoices, payouts, prepaid, subsidy, trail, webhooks

urlpatterns = [
    path("invoices/", invoices.InvoiceListView.as_view(), name="api-invoices"),
    path(
        "invoices/settle-now/",
        invoices.InvoiceSettleNowView.as_view(),
        name="api-invoice-settle-now",
    ),
    path("invoices/<int:pk>/", invoices.InvoiceDetailView.as_view(), name="api-invoice"),
    path("invoices/<int:pk>/pay/", invoices.InvoicePayView.as_view(), name="api-invoice-pay"),
    path("balance/", prepaid.FundingView.as_view(), name="api-balance"),
    path("balance/top-ups/", prepaid.TopUpCreateView.as_view(), name="api-balance-top-ups"),
    path(
        "buyers/<int:pk>/credit-limit/",
        prepaid.CreditLimitView.as_view(),
        name="api-buyer-credit-limit",
    ),
    path("payouts/", payouts.PayoutListView.as_view(), name="api-payouts"),
    path("payout-runs/", payouts.PayoutRunListCreateView.as_view(), name="api-payout-runs"),
    path("payout-account/", payouts.PayoutAccountView.as_view(), name="api-payout-account"),
    path("stripe/webhook/", webhooks.stripe_webhook, name="api-stripe-webhook"),
    path("programmes/", subsidy.ProgrammeListCreateView.as_view(), name="api-programmes"),
    path("programmes/<int:pk>/", subsidy.ProgrammeDetailView.as_view(), name="api-programme"),
    path("vouchers/", subsidy.VoucherListCreateView.as_view(), name="api-vouchers"),
    path(
        "vouchers/<int:pk>/revoke/", subsidy.VoucherRevokeView.as_view(), name="api-voucher-revoke"
    ),
    path(
        "voucher-applications/",
        subsidy.VoucherApplicationListCreateView.as_view(),
        name="api-voucher-applications",
    ),
    path(
        "voucher-applications/<int:pk>/approve/",
        subsidy.VoucherApplicationApproveView.as_view(),
        name="api-voucher-application-approve",
    ),
    path(
        "voucher-applications/<int:pk>/reject/",
        subsidy.VoucherApplicationRejectView.as_view(),
        name="api-voucher-application-reject",
    ),
    path(
        "redemptions/<int:pk>/<slug:action>/",
        subsidy.RedemptionReviewView.as_view(),
        name="api-redemption-review",
    ),
    path(
        "relationships/",
        eligibility.RelationshipListCreateView.as_view(),
        name="api-relationships",
    ),
    path(
        "sme-declarations/",
        eligibility.SmeDeclarationListCreateView.as_view(),
        name="api-sme-declarations",
    ),
    path(
        "sme-declarations/<int:pk>/decide/",
        eligibility.SmeDeclarationDecideView.as_view(),
        name="api-sme-declaration-decide",
    ),
    path("fraud-flags/", subsidy.FraudFlagListView.as_view(), name="api-fraud-flags"),
    path(
        "fraud-flags/<int:pk>/review/",
        subsidy.FraudFlagReviewView.as_view(),
        name="api-fraud-flag-review",
    ),
    path("trail/tree-head/", trail.TreeHeadView.as_view(), name="api-trail-tree-head"),
    path("trail/public-key/", trail.PublicKeyView.as_view(), name="api-trail-public-key"),
    path("trail/consistency/", trail.ConsistencyView.as_view(), name="api-trail-consistency"),
    path("trail/inclusion/", trail.InclusionView.as_view(), name="api-trail-inclusion"),
    path("trail/leaves/", trail.LeavesView.as_view(), name="api-trail-leaves"),
    path(
        "claims/<int:pk>/audit-report/",
        trail.ClaimAuditReportView.as_view(),
        name="api-claim-audit-report",
    ),
]
