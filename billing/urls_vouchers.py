from django.urls import path

from billing import views_vouchers as views

urlpatterns = [
    path("subsidy/", views.dashboard, name="subsidy-dashboard"),
    path("subsidy/programmes/<int:pk>/", views.programme_detail, name="subsidy-programme"),
    path(
        "subsidy/programmes/<int:pk>/claims/<year:year>/<month:month>/",
        views.claim_page,
        name="subsidy-claim",
    ),
    path(
        "subsidy/programmes/<int:pk>/claims/<year:year>/<month:month>.csv",
        views.claim_download,
        name="subsidy-claim-csv",
    ),
    path(
        "subsidy/applications/<int:pk>/<slug:decision>/",
        views.application_decide,
        name="subsidy-application-decide",
    ),
    path(
        "subsidy/redemptions/<int:pk>/<slug:action>/",
        views.redemption_review,
        name="subsidy-redemption-review",
    ),
    path("subsidy/flags/<int:pk>/review/", views.flag_review, name="subsidy-flag-review"),
    path("vouchers/", views.my_vouchers, name="my-vouchers"),
    path("vouchers/invoices/", views.my_invoice_splits, name="my-invoice-splits"),
]
