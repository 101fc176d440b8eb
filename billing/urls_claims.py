from django.urls import path

from billing import views_claims as views

urlpatterns = [
    path(
        "subsidy/programmes/<int:pk>/claims/<year:year>/<month:month>/submit/",
        views.claim_submit,
        name="subsidy-claim-submit",
    ),
    path(
        "subsidy/claims/<int:pk>/<slug:action>/",
        views.claim_decide,
        name="subsidy-claim-decide",
    ),
]
