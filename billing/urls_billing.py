from django.urls import path

from billing import views

urlpatterns = [
    path("billing/invoices/", views.invoice_list, name="billing-invoices"),
    path("billing/invoices/<int:pk>/", views.invoice_detail, name="billing-invoice"),
    path("billing/invoices/<int:pk>/print/", views.invoice_print, name="billing-invoice-print"),
    path("billing/invoices/<int:pk>/pay/", views.invoice_pay, name="billing-invoice-pay"),
    path("billing/payouts/", views.payout_list, name="billing-payouts"),
    path(
        "billing/payouts/<int:pk>/statement.csv",
        views.payout_statement,
        name="billing-payout-statement",
    ),
    path(
        "billing/payout-runs/<int:pk>/bank-batch.csv",
        views.payout_run_bank_batch,
        name="billing-payout-run-bank-batch",
    ),
]
