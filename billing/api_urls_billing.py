from django.urls import path

from billing import api, webhooks

urlpatterns = [
    path("invoices/", api.InvoiceListView.as_view(), name="api-invoices"),
    path("invoices/<int:pk>/", api.InvoiceDetailView.as_view(), name="api-invoice"),
    path("invoices/<int:pk>/pay/", api.InvoicePayView.as_view(), name="api-invoice-pay"),
    path("payouts/", api.PayoutListView.as_view(), name="api-payouts"),
    path("stripe/webhook/", webhooks.stripe_webhook, name="api-stripe-webhook"),
]
