from django.urls import path

from billing import views_operator

urlpatterns = [
    path("operator/", views_operator.overview, name="operator-overview"),
]
