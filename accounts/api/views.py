from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organisation
from accounts.selectors import organisation_for_user, user_tokens
from accounts.services import api_token_create, api_token_revoke, organisation_create
from accounts.throttles import SignUpThrottle, TokenCreateThrottle, TokenObtainThrottle
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


class OrganisationCreateView(APIView):
    """Register the caller's organisation (a user belongs to one). It cannot trade until
    staff have verified its credit code; registering a code another organisation has
    already claimed files a competing claim for staff to decide."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [SignUpThrottle]

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
