"""Accounts: every page of the app, one include in config/urls.py."""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts.web import views

urlpatterns = [
    path("signup/", views.sign_up, name="sign_up"),
    path("login/", auth_views.LoginView.as_view(template_name="accounts/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path("account/tokens/", views.token_create, name="token_create"),
    path("account/tokens/<str:prefix>/revoke/", views.token_revoke, name="token_revoke"),
    path("account/invitations/", views.invitation_create, name="invitation_create"),
    path("account/members/<int:pk>/role/", views.member_role, name="member_role"),
    path("account/webhooks/", views.webhook_create, name="webhook_create"),
    path("account/webhooks/<int:pk>/<str:action>/", views.webhook_action, name="webhook_action"),
    path("staff/authorities/invite/", views.authority_invite_page, name="authority_invite"),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
]
