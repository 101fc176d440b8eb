"""Accounts: every API route of the app, one include in config/urls.py."""

from django.urls import path

from accounts.api import views

urlpatterns = [
    path("auth/token/", views.TokenObtainView.as_view(), name="api-token-obtain"),
    path("auth/tokens/", views.TokenListCreateView.as_view(), name="api-tokens"),
    path("auth/tokens/<str:prefix>/", views.TokenRevokeView.as_view(), name="api-token-revoke"),
    path("organisations/", views.OrganisationCreateView.as_view(), name="api-organisation-create"),
    path("organisations/me/", views.OrganisationMeView.as_view(), name="api-organisation-me"),
    path(
        "organisations/<int:pk>/verify/",
        views.OrganisationVerifyView.as_view(),
        name="api-organisation-verify",
    ),
    path("auth/sign-up/", views.SignUpView.as_view(), name="api-sign-up"),
]
