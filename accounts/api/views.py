from django.contrib.auth import authenticate
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.invitations import (
    INVITABLE_ROLES,
    authority_invite,
    invitation_accept,
    invitation_create,
    membership_role_set,
)
from accounts.models import Invitation, Membership, Organisation
from accounts.permissions import HasOrganisation
from accounts.selectors import (
    invitations_of,
    memberships_of,
    organisation_for_user,
    user_tokens,
)
from accounts.services import (
    api_token_create,
    api_token_revoke,
    organisation_create,
    organisation_verify,
    user_sign_up,
    user_sign_up_check,
)
from accounts.throttles import SignUpThrottle, TokenCreateThrottle, TokenObtainThrottle
from core.api import PaginatedAPIView
from core.errors import ApplicationError, NotFound
from core.openapi import errors


class OrganisationOutput(serializers.ModelSerializer):
    class Meta:
        model = Organisation
        fields = [
            "id",
            "kind",
            "legal_name",
            "credit_code",
            "region",
            "is_sme",
            "verified",
            "created_at",
        ]


class TokenObtainInput(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenCreatedOutput(serializers.Serializer):
    token = serializers.CharField()
    token_prefix = serializers.CharField()
    expiry = serializers.DateTimeField()


def _token_created(instance, key: str) -> Response:
    return Response(
        {"token": key, "token_prefix": instance.token_key, "expiry": instance.expiry},
        status=status.HTTP_201_CREATED,
    )


class TokenObtainView(APIView):
    """Exchange a username and password for a new API token (shown once; it expires
    after the server's token lifetime, `expiry`).

    After too many wrong passwords for one username from one address, sign-ins for
    that pair are refused - right password or not - with 429 and `Retry-After`."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenObtainThrottle]

    @extend_schema(request=TokenObtainInput, responses={201: TokenCreatedOutput})
    def post(self, request):
        data = TokenObtainInput(data=request.data)
        data.is_valid(raise_exception=True)
        # The lockout (django-axes) marks the Django request it is given; its middleware
        # then answers for a locked-out pair (accounts/lockout.py).
        user = authenticate(
            request._request,
            username=data.validated_data["username"],
            password=data.validated_data["password"],
        )
        if user is None:
            raise ApplicationError(
                "Unable to sign in with these credentials.",
                errors={"non_field_errors": ["Wrong username or password."]},
            )
        instance, key = api_token_create(user=user)
        return _token_created(instance, key)


class TokenListOutput(serializers.Serializer):
    token_prefix = serializers.CharField(source="token_key")
    created = serializers.DateTimeField()
    expiry = serializers.DateTimeField(allow_null=True)


class TokenListCreateView(APIView):
    """The caller's unexpired API tokens (prefixes only); POST makes a new one, unless
    the caller already holds the most allowed (409: revoke one first)."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [TokenCreateThrottle]

    @extend_schema(responses=TokenListOutput(many=True))
    def get(self, request):
        return Response(TokenListOutput(user_tokens(user=request.user), many=True).data)

    @extend_schema(request=None, responses={201: TokenCreatedOutput})
    def post(self, request):
        instance, key = api_token_create(user=request.user)
        return _token_created(instance, key)


class TokenRevokeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, prefix: str):
        api_token_revoke(user=request.user, token_key=prefix)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrganisationCreateInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[Organisation.Kind.PROVIDER, Organisation.Kind.BUYER])
    legal_name = serializers.CharField(max_length=200)
    credit_code = serializers.CharField(max_length=32)
    region = serializers.CharField(max_length=32, required=False, default="")


class OrganisationCreateView(PaginatedAPIView):
    """Register the caller's organisation (a user belongs to one). It cannot trade until
    staff have verified its credit code; registering a code another organisation has
    already claimed files a competing claim for staff to decide. Staff list every
    organisation (`?verified=false`: the claims waiting for them)."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [SignUpThrottle]

    def get_permissions(self):
        if self.request.method == "GET":
            return [IsAdminUser()]
        return super().get_permissions()

    def get_throttles(self):
        return super().get_throttles() if self.request.method == "POST" else []

    @extend_schema(
        responses=OrganisationOutput(many=True),
        parameters=[OpenApiParameter("verified", bool, required=False)],
    )
    def get(self, request):
        organisations = Organisation.objects.order_by("pk")
        verified = request.query_params.get("verified")
        if verified is not None:
            if verified not in ("true", "false"):
                raise serializers.ValidationError({"verified": ["Use true or false."]})
            organisations = organisations.filter(verified=verified == "true")
        return self.paginated(queryset=organisations, serializer_class=OrganisationOutput)

    @extend_schema(request=OrganisationCreateInput, responses={201: OrganisationOutput})
    def post(self, request):
        data = OrganisationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        organisation = organisation_create(owner=request.user, **data.validated_data)
        return Response(OrganisationOutput(organisation).data, status=status.HTTP_201_CREATED)


class OrganisationMeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: OrganisationOutput, **errors(404)})
    def get(self, request):
        organisation = organisation_for_user(request.user)
        if organisation is None:
            raise NotFound("You do not belong to an organisation yet.")
        return Response(OrganisationOutput(organisation).data)


class OrganisationVerifyView(APIView):
    """Staff confirm, against the business registry, that the organisation is the
    company its credit code names: it can trade from now on. 409 when another
    organisation is already verified for the code."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={200: OrganisationOutput, **errors(409)})
    def post(self, request, pk: int):
        organisation = get_object_or_404(Organisation, pk=pk)
        organisation = organisation_verify(organisation=organisation, by=request.user)
        return Response(OrganisationOutput(organisation).data)


class SignUpInput(serializers.Serializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(
        max_length=128, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    kind = serializers.ChoiceField(choices=[Organisation.Kind.PROVIDER, Organisation.Kind.BUYER])
    legal_name = serializers.CharField(max_length=200)
    credit_code = serializers.CharField(max_length=24)
    region = serializers.CharField(max_length=32, required=False, default="", allow_blank=True)


class SignUpUserOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()


class SignUpOutput(serializers.Serializer):
    user = SignUpUserOutput()
    organisation = OrganisationOutput()
    token = serializers.CharField()
    token_prefix = serializers.CharField()
    expiry = serializers.DateTimeField()


class SignUpView(APIView):
    """Sign up: a user and the buyer or provider organisation they register, as the
    sign-up page does (same checks on the username, password and credit code; the
    same limit per client address, 429 with `Retry-After` beyond). The answer holds
    an API token for the new user, shown this once. The organisation can trade once
    staff have verified its credit code."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [SignUpThrottle]

    @extend_schema(request=SignUpInput, responses={201: SignUpOutput})
    def post(self, request):
        data = SignUpInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user_sign_up_check(
            username=values["username"], email=values["email"], password=values["password"]
        )
        with transaction.atomic():
            user = user_sign_up(**values)
            instance, key = api_token_create(user=user)
        return Response(
            {
                "user": {"id": user.pk, "username": user.username, "email": user.email},
                "organisation": OrganisationOutput(organisation_for_user(user)).data,
                "token": key,
                "token_prefix": instance.token_key,
                "expiry": instance.expiry,
            },
            status=status.HTTP_201_CREATED,
        )


# --- invitations and members ------------------------------------------------------


class InvitationOutput(serializers.ModelSerializer):
    organisation = serializers.IntegerField(source="organisation_id")

    class Meta:
        model = Invitation
        fields = ["id", "organisation", "email", "role", "created_at", "expires_at", "accepted_at"]


class InvitationCreatedOutput(InvitationOutput):
    link = serializers.CharField()
    token = serializers.CharField()

    class Meta(InvitationOutput.Meta):
        fields = [*InvitationOutput.Meta.fields, "link", "token"]


class InvitationCreateInput(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=INVITABLE_ROLES)


def _invitation_created(request, invitation, token: str) -> Response:
    invitation.token = token
    invitation.link = request.build_absolute_uri(reverse("invitation_accept", args=[token]))
    return Response(InvitationCreatedOutput(invitation).data, status=status.HTTP_201_CREATED)


class InvitationListCreateView(PaginatedAPIView):
    """Invitations into the caller's organisation. Its owners and admins invite an
    e-mail address as admin, member or read-only: the answer holds the signed link
    (shown this once) to hand to the invitee; it works once, for the server's
    invitation lifetime."""

    permission_classes = [HasOrganisation]

    @extend_schema(responses=InvitationOutput(many=True))
    def get(self, request):
        mine = invitations_of(organisation_for_user(request.user))
        return self.paginated(queryset=mine, serializer_class=InvitationOutput)

    @extend_schema(request=InvitationCreateInput, responses={201: InvitationCreatedOutput})
    def post(self, request):
        data = InvitationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, token = invitation_create(
            organisation=organisation_for_user(request.user),
            invited_by=request.user,
            **data.validated_data,
        )
        return _invitation_created(request, invitation, token)


class OrganisationInvitationCreateView(APIView):
    """Staff invite someone into any organisation (the same link as its owners make)."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=InvitationCreateInput, responses={201: InvitationCreatedOutput})
    def post(self, request, pk: int):
        organisation = get_object_or_404(Organisation, pk=pk)
        data = InvitationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, token = invitation_create(
            organisation=organisation, invited_by=request.user, **data.validated_data
        )
        return _invitation_created(request, invitation, token)


class AuthorityInviteInput(serializers.Serializer):
    legal_name = serializers.CharField(max_length=200)
    credit_code = serializers.CharField(max_length=24)
    region = serializers.CharField(max_length=32, required=False, default="", allow_blank=True)
    email = serializers.EmailField(max_length=254)


class AuthorityInviteView(APIView):
    """Staff register a subsidy authority (verified by them) and invite its first
    admin: the answer holds the signed link; the invitee sets a password and lands
    in the authority's home."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=AuthorityInviteInput, responses={201: InvitationCreatedOutput})
    def post(self, request):
        data = AuthorityInviteInput(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, token = authority_invite(invited_by=request.user, **data.validated_data)
        return _invitation_created(request, invitation, token)


class InvitationAcceptInput(serializers.Serializer):
    token = serializers.CharField(max_length=400)
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    password = serializers.CharField(
        max_length=128, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )


class InvitationAcceptView(APIView):
    """Accept an invitation: a new user with the invited e-mail joins the organisation
    in the invited role; the answer holds an API token, shown this once. A used
    invitation is a 409, an expired one a 400, a forged one a 404."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [SignUpThrottle]

    @extend_schema(request=InvitationAcceptInput, responses={201: SignUpOutput, **errors(404, 409)})
    def post(self, request):
        data = InvitationAcceptInput(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            user = invitation_accept(**data.validated_data)
            instance, key = api_token_create(user=user)
        return Response(
            {
                "user": {"id": user.pk, "username": user.username, "email": user.email},
                "organisation": OrganisationOutput(organisation_for_user(user)).data,
                "token": key,
                "token_prefix": instance.token_key,
                "expiry": instance.expiry,
            },
            status=status.HTTP_201_CREATED,
        )


class MemberOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.EmailField(source="user.email")

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role", "created_at"]


class MemberListView(PaginatedAPIView):
    """The members of the caller's organisation and their roles."""

    permission_classes = [HasOrganisation]

    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request):
        members = memberships_of(organisation_for_user(request.user)).order_by("pk")
        return self.paginated(queryset=members, serializer_class=MemberOutput)


class MemberRoleInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=INVITABLE_ROLES)


class MemberDetailView(APIView):
    """An owner or admin sets a member's role (admin, member, read-only); an
    owner's role is not set here."""

    permission_classes = [HasOrganisation]

    @extend_schema(request=MemberRoleInput, responses=MemberOutput)
    def patch(self, request, pk: int):
        members = memberships_of(organisation_for_user(request.user))
        membership = get_object_or_404(members, pk=pk)
        data = MemberRoleInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership_role_set(membership=membership, by=request.user, **data.validated_data)
        return Response(MemberOutput(members.get(pk=pk)).data)
