from django.urls import path

from billing import api_subsidy as api

urlpatterns = [
    path("programmes/", api.ProgrammeListCreateView.as_view(), name="api-programmes"),
    path("programmes/<int:pk>/", api.ProgrammeDetailView.as_view(), name="api-programme"),
    path("vouchers/", api.VoucherListCreateView.as_view(), name="api-vouchers"),
    path("vouchers/<int:pk>/revoke/", api.VoucherRevokeView.as_view(), name="api-voucher-revoke"),
    path(
        "voucher-applications/",
        api.VoucherApplicationListCreateView.as_view(),
        name="api-voucher-applications",
    ),
    path(
        "voucher-applications/<int:pk>/approve/",
        api.VoucherApplicationApproveView.as_view(),
        name="api-voucher-application-approve",
    ),
    path(
        "voucher-applications/<int:pk>/reject/",
        api.VoucherApplicationRejectView.as_view(),
        name="api-voucher-application-reject",
    ),
    path(
        "redemptions/<int:pk>/<slug:action>/",
        api.RedemptionReviewView.as_view(),
        name="api-redemption-review",
    ),
    path("fraud-flags/", api.FraudFlagListView.as_view(), name="api-fraud-flags"),
    path(
        "fraud-flags/<int:pk>/review/",
        api.FraudFlagReviewView.as_view(),
        name="api-fraud-flag-review",
    ),
]
