"""Accounts: every API route of the app, one include in config/urls.py."""

from django.urls import path

from accounts.api import views, webhooks

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
    path(
        "organisations/me/invitations/",
        views.InvitationListCreateView.as_view(),
        name="api-invitations",
    ),
    path(
        "organisations/<int:pk>/invitations/",
        views.OrganisationInvitationCreateView.as_view(),
        name="api-organisation-invitation-create",
    ),
    path("organisations/me/members/", views.MemberListView.as_view(), name="api-members"),
    path(
        "organisations/me/members/<int:pk>/",
        views.MemberDetailView.as_view(),
        name="api-member",
    ),
    path("authorities/", views.AuthorityInviteView.as_view(), name="api-authority-invite"),
    path("invitations/accept/", views.InvitationAcceptView.as_view(), name="api-invitation-accept"),
    path("webhooks/", webhooks.WebhookEndpointListView.as_view(), name="api-webhooks"),
    path("webhooks/<int:pk>/", webhooks.WebhookEndpointDetailView.as_view(), name="api-webhook"),
    path(
        "webhooks/<int:pk>/rotate-secret/",
        webhooks.WebhookSecretRotateView.as_view(),
        name="api-webhook-rotate-secret",
    ),
    path("webhooks/<int:pk>/test/", webhooks.WebhookTestView.as_view(), name="api-webhook-test"),
    path(
        "webhooks/<int:pk>/deliveries/",
        webhooks.WebhookDeliveryListView.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "webhooks/<int:pk>/deliveries/<int:delivery_pk>/redeliver/",
        webhooks.WebhookRedeliverView.as_view(),
        name="api-webhook-redeliver",
    ),
]
