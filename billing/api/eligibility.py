"""API: what a buyer declares for subsidy eligibility, and the authority's
decision on it. A buyer declares its parent company and shareholders (by
credit code: a programme's "no affiliation" rule reads them) and its
start-up / SME status with evidence (an accepted declaration sets the
programme's SME rate). Any subsidy authority decides SME declarations."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services as accounts_services
from accounts.models import OrganisationRelationship, SmeDeclaration
from accounts.permissions import IsAuthority, IsBuyer, IsBuyerOrAuthority
from accounts.selectors import organisation_for_user
from billing.subsidy import selectors as subsidy_selectors
from core import limits
from core.openapi import errors


class RelationshipOutput(serializers.ModelSerializer):
    verified = serializers.SerializerMethodField()

    class Meta:
        model = OrganisationRelationship
        fields = ["id", "kind", "related_credit_code", "related_name", "share_bp", "verified"]

    def get_verified(self, relationship) -> bool:
        return relationship.verified_at is not None


class RelationshipDeclareInput(serializers.Serializer):
    kind = serializers.ChoiceField(
        [OrganisationRelationship.Kind.PARENT, OrganisationRelationship.Kind.SHAREHOLDER]
    )
    related_credit_code = serializers.CharField(max_length=18)
    related_name = serializers.CharField(
        max_length=200, required=False, default="", allow_blank=True
    )
    share_bp = serializers.IntegerField(
        min_value=1,
        max_value=limits.MAX_BASIS_POINTS,
        required=False,
        allow_null=True,
        help_text="The share held, in basis points (shareholders).",
    )


class RelationshipListCreateView(ListAPIView):
    """The buyer's declared parent company and shareholders (POST declares one;
    declaring the same code and kind again updates its name and share)."""

    permission_classes = [IsBuyer]
    serializer_class = RelationshipOutput

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return OrganisationRelationship.objects.none()
        return subsidy_selectors.relationships_of(
            organisation=organisation_for_user(self.request.user)
        )

    @extend_schema(request=RelationshipDeclareInput, responses={201: RelationshipOutput})
    def post(self, request):
        data = RelationshipDeclareInput(data=request.data)
        data.is_valid(raise_exception=True)
        relationship = accounts_services.relationship_declare(
            organisation=organisation_for_user(request.user),
            actor=request.user,
            **data.validated_data,
        )
        return Response(RelationshipOutput(relationship).data, status=status.HTTP_201_CREATED)


class SmeDeclarationOutput(serializers.ModelSerializer):
    organisation = serializers.CharField(source="organisation.legal_name")
    credit_code = serializers.CharField(source="organisation.credit_code")

    class Meta:
        model = SmeDeclaration
        fields = [
            "id",
            "organisation",
            "credit_code",
            "evidence",
            "status",
            "decision_reason",
            "created_at",
            "decided_at",
        ]


class SmeDeclareInput(serializers.Serializer):
    evidence = serializers.CharField(max_length=5000)


class SmeDeclarationListCreateView(ListAPIView):
    """Buyers: their start-up / SME declarations (POST declares, with the
    evidence; one waits for the authority at a time, another is a 409).
    Authorities: every declaration, pending first, to decide."""

    permission_classes = [IsBuyerOrAuthority]
    serializer_class = SmeDeclarationOutput

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return SmeDeclaration.objects.none()
        return subsidy_selectors.sme_declarations_for(
            organisation=organisation_for_user(self.request.user)
        )

    @extend_schema(request=SmeDeclareInput, responses={201: SmeDeclarationOutput, **errors(409)})
    def post(self, request):
        if not IsBuyer().has_permission(request, self):
            self.permission_denied(request, message=IsBuyer.message)
        data = SmeDeclareInput(data=request.data)
        data.is_valid(raise_exception=True)
        declaration = accounts_services.sme_declare(
            organisation=organisation_for_user(request.user),
            actor=request.user,
            evidence=data.validated_data["evidence"],
        )
        return Response(SmeDeclarationOutput(declaration).data, status=status.HTTP_201_CREATED)


class SmeDecideInput(serializers.Serializer):
    accept = serializers.BooleanField()
    reason = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


class SmeDeclarationDecideView(APIView):
    """The authority accepts (the buyer's SME rate applies from its next
    invoice) or rejects (with a reason) a pending declaration; a decided one
    is a 409. Any subsidy authority decides: SME status is the buyer's, read
    by every programme."""

    permission_classes = [IsAuthority]

    @extend_schema(request=SmeDecideInput, responses={200: SmeDeclarationOutput, **errors(409)})
    def post(self, request, pk: int):
        declaration = get_object_or_404(
            subsidy_selectors.sme_declarations_for(
                organisation=organisation_for_user(request.user)
            ),
            pk=pk,
        )
        data = SmeDecideInput(data=request.data)
        data.is_valid(raise_exception=True)
        declaration = accounts_services.sme_decide(
            declaration=declaration, actor=request.user, **data.validated_data
        )
        return Response(SmeDeclarationOutput(declaration).data)
