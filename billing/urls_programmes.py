from django.urls import path

from billing import views_programmes as views

urlpatterns = [
    path("subsidy/programmes/new/", views.programme_new, name="subsidy-programme-new"),
    path(
        "subsidy/programmes/<int:pk>/vouchers/new/",
        views.voucher_issue,
        name="subsidy-voucher-issue",
    ),
]
