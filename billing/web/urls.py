"""Billing: every page of the app, one include in config/urls.py."""

from django.urls import path

from billing.web import (
    claims,
    eligibility,
    home,
    invoices,
    operator,
    payouts,
    programmes,
    subsidy,
)

urlpatterns = [
    path("", home.home, name="home"),
    path("billing/invoices/", invoices.invoice_list, name="billing-invoices"),
    path("billing/funding/top-up/", invoices.funding_top_up, name="billing-funding-top-up"),
    path("billing/funding/terms/", invoices.funding_terms, name="billing-funding-terms"),
    path(
        "billing/invoices/settle-now/",
        invoices.invoice_settle_now,
        name="billing-invoice-settle-now",
    ),
    path("billing/invoices/<int:pk>/", invoices.invoice_detail, name="billing-invoice"),
    path(
        "billing/invoices/<int:pk>/status/", invoices.invoice_status, name="billing-invoice-status"
    ),
    path("billing/invoices/<int:pk>/invoice.pdf", invoices.invoice_pdf, name="billing-invoice-pdf"),
    path("billing/invoice-lines/<int:pk>/", invoices.invoice_line, name="billing-invoice-line"),
    path(
        "billing/invoice-lines/<int:pk>/usage.csv",
        invoices.invoice_line_csv,
        name="billing-invoice-line-csv",
    ),
    path("billing/invoices/<int:pk>/print/", invoices.invoice_print, name="billing-invoice-print"),
    path("billing/invoices/<int:pk>/pay/", invoices.invoice_pay, name="billing-invoice-pay"),
    path(
        "billing/invoices/<int:pk>/reimbursement/",
        invoices.invoice_reimbursement,
        name="billing-invoice-reimbursement",
    ),
    path("billing/payouts/", payouts.payout_list, name="billing-payouts"),
    path(
        "billing/payouts/<int:pk>/statement.csv",
        payouts.payout_statement,
        name="billing-payout-statement",
    ),
    path("billing/payout-runs/", payouts.payout_run_start, name="billing-payout-run-start"),
    path(
        "billing/payout-runs/<str:key>/progress/",
        payouts.payout_run_status,
        name="billing-payout-run-progress",
    ),
    path(
        "billing/payout-runs/<int:pk>/bank-batch.csv",
        payouts.payout_run_bank_batch,
        name="billing-payout-run-bank-batch",
    ),
    path("subsidy/", subsidy.dashboard, name="subsidy-dashboard"),
    path("subsidy/programmes/<int:pk>/", subsidy.programme_detail, name="subsidy-programme"),
    path(
        "subsidy/programmes/<int:pk>/claims/<year:year>/<month:month>/",
        subsidy.claim_page,
        name="subsidy-claim",
    ),
    path(
        "subsidy/programmes/<int:pk>/claims/<year:year>/<month:month>.csv",
        subsidy.claim_download,
        name="subsidy-claim-csv",
    ),
    path(
        "subsidy/programmes/<int:pk>/claims/<year:year>/<month:month>/export/",
        subsidy.claim_export_start,
        name="subsidy-claim-export",
    ),
    path(
        "subsidy/programmes/<int:pk>/claim-exports/<slug:token>/",
        subsidy.claim_export_status,
        name="subsidy-claim-export-status",
    ),
    path(
        "subsidy/programmes/<int:pk>/claim-exports/<slug:token>.csv",
        subsidy.claim_export_download,
        name="subsidy-claim-export-download",
    ),
    path(
        "subsidy/applications/<int:pk>/<slug:decision>/",
        subsidy.application_decide,
        name="subsidy-application-decide",
    ),
    path(
        "subsidy/redemptions/<int:pk>/<slug:action>/",
        subsidy.redemption_review,
        name="subsidy-redemption-review",
    ),
    path("subsidy/flags/<int:pk>/review/", subsidy.flag_review, name="subsidy-flag-review"),
    path("vouchers/", subsidy.my_vouchers, name="my-vouchers"),
    path("vouchers/invoices/", subsidy.my_invoice_splits, name="my-invoice-splits"),
    path("vouchers/eligibility/", eligibility.my_eligibility, name="my-eligibility"),
    path("subsidy/reviews/", eligibility.review_queue, name="subsidy-reviews"),
    path(
        "subsidy/sme-declarations/<int:pk>/<slug:decision>/",
        eligibility.sme_decide,
        name="subsidy-sme-decide",
    ),
    path(
        "subsidy/reimbursements/<int:pk>/reject/",
        eligibility.reimbursement_refuse,
        name="subsidy-reimbursement-reject",
    ),
    path("subsidy/programmes/new/", programmes.programme_new, name="subsidy-programme-new"),
    path(
        "subsidy/programmes/<int:pk>/vouchers/new/",
        programmes.voucher_issue,
        name="subsidy-voucher-issue",
    ),
    path(
        "subsidy/programmes/<int:pk>/claims/<year:year>/<month:month>/submit/",
        claims.claim_submit,
        name="subsidy-claim-submit",
    ),
    path(
        "subsidy/claims/<int:pk>/<slug:action>/",
        claims.claim_decide,
        name="subsidy-claim-decide",
    ),
    path("operator/", operator.overview, name="operator-overview"),
    path(
        "operator/buyers/<int:pk>/settle-now/",
        operator.buyer_settle_now,
        name="operator-buyer-settle-now",
    ),
]
