from django.urls import path

from accounts import api

urlpatterns = [
    path("auth/token/", api.TokenObtainView.as_view(), name="api-token-obtain"),
    path("auth/tokens/", api.TokenListCreateView.as_view(), name="api-tokens"),
    path("auth/tokens/<str:prefix>/", api.TokenRevokeView.as_view(), name="api-token-revoke"),
    path("organisations/", api.OrganisationCreateView.as_view(), name="api-organisation-create"),
    path("organisations/me/", api.OrganisationMeView.as_view(), name="api-organisation-me"),
]
