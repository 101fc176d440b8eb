"""REST API of the subsidy part: programmes, vouchers, voucher applications,
the authority's review of redemptions and fraud flags. Thin: parse, call a
service, render. Other organisations' objects are 404s (querysets are
filtered by the caller's organisation in billing.subsidy.selectors)."""

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organisation
from accounts.permissions import HasOrganisation, IsAuthority, IsBuyer
from accounts.selectors import organisation_for_user
from billing.models import FraudFlag, Redemption, SubsidyProgramme, Voucher, VoucherApplication
from billing.subsidy import fraud
from billing.subsidy import redemption as vouchers
from billing.subsidy import selectors as subsidy_selectors
from billing.subsidy import services as subsidy_services
from core import limits
from core.errors import NotFound
from core.openapi import errors


def _org(request) -> Organisation:
    return organisation_for_user(request.user)


class ProgrammeOutput(serializers.ModelSerializer):
    budget = serializers.SerializerMethodField()
    eligible_providers = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = SubsidyProgramme
        exclude = ["authority"]

    def get_budget(self, programme) -> dict:
        budget = subsidy_selectors.programme_budget(programme=programme)
        return {
            "total_amount": budget.total,
            "left_amount": budget.left,
            "committed_amount": budget.committed,
            "spent_amount": budget.spent,
            "paid_out_amount": budget.paid_out,
            "pool_entitlements_amount": budget.pool_entitlements,
        }


class ProgrammeCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    currency = serializers.CharField(
        max_length=3, default=settings.DEFAULT_CURRENCY, help_text="one of EXCHANGE_CURRENCIES"
    )
    budget_amount = serializers.IntegerField(min_value=1, max_value=limits.MAX_AMOUNT)
    funding = serializers.ChoiceField(SubsidyProgramme.Funding.choices, default="reserved")
    rate_bp = serializers.IntegerField(min_value=1, max_value=limits.MAX_BASIS_POINTS)
    domestic_rate_bp = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_BASIS_POINTS, required=False, allow_null=True
    )
    sme_rate_bp = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_BASIS_POINTS, required=False, allow_null=True
    )
    cap_per_enterprise_amount = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_AMOUNT, required=False, allow_null=True
    )
    cap_per_enterprise_year_amount = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_AMOUNT, required=False, allow_null=True
    )
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    regions = serializers.ListField(
        child=serializers.CharField(max_length=32),
        default=list,
        max_length=limits.MAX_LIST_ITEMS,
    )
    hubs = serializers.ListField(
        child=serializers.CharField(max_length=20),
        default=list,
        max_length=limits.MAX_LIST_ITEMS,
    )
    eligible_providers = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Organisation.objects.filter(kind=Organisation.Kind.PROVIDER),
        required=False,
        default=list,
    )
    gpu_vendors = serializers.ListField(
        child=serializers.CharField(max_length=40),
        default=list,
        max_length=limits.MAX_LIST_ITEMS,
    )
    domestic_only = serializers.BooleanField(default=False)
    min_green_share = serializers.DecimalField(
        max_digits=4, decimal_places=3, min_value=0, max_value=1, default=0
    )
    buyer_must_be_verified = serializers.BooleanField(default=True)
    forbid_affiliated = serializers.BooleanField(default=True)
    max_contract_days = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_CONTRACT_DAYS, required=False, allow_null=True
    )
    one_claim_per_contract = serializers.BooleanField(default=False)
    settlement_mode = serializers.ChoiceField(
        SubsidyProgramme.SettlementMode.choices, default="deduct"
    )
    beneficiary = serializers.ChoiceField(SubsidyProgramme.Beneficiary.choices, default="buyers")

    def validate_currency(self, value: str) -> str:
        if value not in settings.EXCHANGE_CURRENCIES:
            raise serializers.ValidationError(
                f"The exchange settles in {', '.join(settings.EXCHANGE_CURRENCIES)} only."
            )
        return value


class ProgrammeListCreateView(ListAPIView):
    """Authorities: their programmes. Others: the active programmes they can apply to."""

    permission_classes = [HasOrganisation]
    serializer_class = ProgrammeOutput

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return SubsidyProgramme.objects.none()
        return subsidy_selectors.programmes_for(organisation=_org(self.request)).prefetch_related(
            "eligible_providers"
        )

    @extend_schema(request=ProgrammeCreateInput, responses={201: ProgrammeOutput})
    def post(self, request):
        if not IsAuthority().has_permission(request, self):
            self.permission_denied(request, message=IsAuthority.message)
        data = ProgrammeCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        programme = subsidy_services.programme_create(
            authority=_org(request), **data.validated_data
        )
        return Response(ProgrammeOutput(programme).data, status=status.HTTP_201_CREATED)


class ProgrammeDetailView(APIView):
    permission_classes = [HasOrganisation]

    @extend_schema(responses=ProgrammeOutput)
    def get(self, request, pk: int):
        programme = get_object_or_404(
            subsidy_selectors.programmes_for(organisation=_org(request)), pk=pk
        )
        return Response(ProgrammeOutput(programme).data)


class VoucherOutput(serializers.ModelSerializer):
    balance_amount = serializers.SerializerMethodField()
    programme_name = serializers.CharField(source="programme.name", read_only=True)

    class Meta:
        model = Voucher
        fields = [
            "id",
            "programme",
            "programme_name",
            "holder",
            "face_amount",
            "balance_amount",
            "currency",
            "valid_from",
            "valid_until",
            "status",
            "application",
            "created_at",
        ]

    def get_balance_amount(self, voucher) -> int:
        balances = self.context.get("balances")
        if balances is not None and voucher.pk in balances:
            return balances[voucher.pk]
        return subsidy_selectors.voucher_balances(vouchers=[voucher])[voucher.pk]


class VoucherIssueInput(serializers.Serializer):
    programme = serializers.IntegerField(min_value=1)
    holder = serializers.PrimaryKeyRelatedField(queryset=Organisation.objects.all())
    face_amount = serializers.IntegerField(min_value=1, max_value=limits.MAX_AMOUNT)
    valid_from = serializers.DateTimeField(required=False, allow_null=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True)


class VoucherListCreateView(ListAPIView):
    """Authorities: vouchers of their programmes (POST issues one directly).
    Buyers and providers: their own vouchers, with balances."""

    permission_classes = [HasOrganisation]
    serializer_class = VoucherOutput

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Voucher.objects.none()
        return subsidy_selectors.vouchers_for(organisation=_org(self.request))

    def get_serializer_context(self):
        context = super().get_serializer_context()
        page = getattr(self, "_page", None)
        if page is not None:
            context["balances"] = subsidy_selectors.voucher_balances(vouchers=page)
        return context

    def paginate_queryset(self, queryset):
        self._page = super().paginate_queryset(queryset)
        return self._page

    @extend_schema(request=VoucherIssueInput, responses={201: VoucherOutput, **errors(404)})
    def post(self, request):
        if not IsAuthority().has_permission(request, self):
            self.permission_denied(request, message=IsAuthority.message)
        data = VoucherIssueInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        programme = SubsidyProgramme.objects.filter(
            pk=fields.pop("programme"), authority=_org(request)
        ).first()
        if programme is None:
            raise NotFound("No such programme.", errors={"programme": ["Not one of yours."]})
        voucher = subsidy_services.voucher_issue(programme=programme, actor=request.user, **fields)
        return Response(VoucherOutput(voucher).data, status=status.HTTP_201_CREATED)


class ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class VoucherRevokeView(APIView):
    permission_classes = [IsAuthority]

    @extend_schema(request=ReasonInput, responses={200: VoucherOutput, **errors(409)})
    def post(self, request, pk: int):
        voucher = get_object_or_404(
            subsidy_selectors.vouchers_for(organisation=_org(request)), pk=pk
        )
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        voucher = subsidy_services.voucher_revoke(
            voucher=voucher, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(VoucherOutput(voucher).data)


class VoucherApplicationOutput(serializers.ModelSerializer):
    voucher = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = VoucherApplication
        fields = [
            "id",
            "programme",
            "applicant",
            "purpose",
            "expected_gpu_hours",
            "requested_amount",
            "approved_amount",
            "status",
            "decision_reason",
            "decided_at",
            "voucher",
            "created_at",
        ]


class VoucherApplicationCreateInput(serializers.Serializer):
    programme = serializers.PrimaryKeyRelatedField(
        queryset=SubsidyProgramme.objects.filter(status=SubsidyProgramme.Status.ACTIVE)
    )
    purpose = serializers.CharField(max_length=2000)
    expected_gpu_hours = serializers.IntegerField(min_value=1, max_value=limits.MAX_GPU_HOURS)
    requested_amount = serializers.IntegerField(min_value=1, max_value=limits.MAX_AMOUNT)


class VoucherApplicationListCreateView(ListAPIView):
    """Buyers: their applications (POST applies). Authorities: applications to their programmes."""

    permission_classes = [HasOrganisation]
    serializer_class = VoucherApplicationOutput

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return VoucherApplication.objects.none()
        return subsidy_selectors.applications_for(organisation=_org(self.request)).select_related(
            "voucher"
        )

    @extend_schema(request=VoucherApplicationCreateInput, responses={201: VoucherApplicationOutput})
    def post(self, request):
        if not IsBuyer().has_permission(request, self):
            self.permission_denied(request, message=IsBuyer.message)
        data = VoucherApplicationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        application = subsidy_services.application_create(
            applicant=_org(request), actor=request.user, **data.validated_data
        )
        return Response(VoucherApplicationOutput(application).data, status=status.HTTP_201_CREATED)


class VoucherApplicationApproveInput(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, max_value=limits.MAX_AMOUNT)
    valid_until = serializers.DateTimeField(required=False, allow_null=True)


def _authority_application(request, pk: int) -> VoucherApplication:
    return get_object_or_404(subsidy_selectors.applications_for(organisation=_org(request)), pk=pk)


class VoucherApplicationApproveView(APIView):
    permission_classes = [IsAuthority]

    @extend_schema(
        request=VoucherApplicationApproveInput, responses={201: VoucherOutput, **errors(409)}
    )
    def post(self, request, pk: int):
        application = _authority_application(request, pk)
        data = VoucherApplicationApproveInput(data=request.data)
        data.is_valid(raise_exception=True)
        voucher = subsidy_services.application_approve(
            application=application, actor=request.user, **data.validated_data
        )
        return Response(VoucherOutput(voucher).data, status=status.HTTP_201_CREATED)


class VoucherApplicationRejectView(APIView):
    permission_classes = [IsAuthority]

    @extend_schema(request=ReasonInput, responses={200: VoucherApplicationOutput, **errors(409)})
    def post(self, request, pk: int):
        application = _authority_application(request, pk)
        data = ReasonInput(data=request.data)
        data.is_valid(raise_exception=True)
        application = subsidy_services.application_reject(
            application=application, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(VoucherApplicationOutput(application).data)


class RedemptionOutput(serializers.ModelSerializer):
    class Meta:
        model = Redemption
        fields = [
            "id",
            "voucher",
            "programme",
            "beneficiary",
            "invoice_line",
            "usage_records",
            "amount",
            "rate_bp",
            "settlement_mode",
            "status",
            "created_at",
        ]


class RedemptionReviewInput(serializers.Serializer):
    reason = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


_REVIEW_ACTIONS = {
    "hold": vouchers.redemption_hold,
    "release": vouchers.redemption_release,
    "claw-back": vouchers.redemption_claw_back,
}


class RedemptionReviewView(APIView):
    """Hold a redemption for review, release it, or claw it back (authority)."""

    permission_classes = [IsAuthority]

    @extend_schema(request=RedemptionReviewInput, responses={200: RedemptionOutput, **errors(409)})
    def post(self, request, pk: int, action: str):
        if action not in _REVIEW_ACTIONS:
            raise NotFound("No such action.")
        redemption = get_object_or_404(
            subsidy_selectors.redemptions_for_authority(authority=_org(request)), pk=pk
        )
        data = RedemptionReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        redemption = _REVIEW_ACTIONS[action](
            redemption=redemption, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(RedemptionOutput(redemption).data)


class FraudFlagOutput(serializers.ModelSerializer):
    class Meta:
        model = FraudFlag
        fields = [
            "id",
            "rule",
            "subject_key",
            "programme",
            "voucher",
            "redemption",
            "details",
            "status",
            "review_note",
            "reviewed_at",
            "created_at",
        ]


class FraudFlagReviewInput(serializers.Serializer):
    decision = serializers.ChoiceField([FraudFlag.Status.DISMISSED, FraudFlag.Status.CONFIRMED])
    note = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


class FraudFlagFilterInput(serializers.Serializer):
    status = serializers.ChoiceField(FraudFlag.Status.choices, required=False)


@extend_schema_view(get=extend_schema(parameters=[FraudFlagFilterInput]))
class FraudFlagListView(ListAPIView):
    permission_classes = [IsAuthority]
    serializer_class = FraudFlagOutput

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return FraudFlag.objects.none()
        data = FraudFlagFilterInput(data=self.request.query_params)
        data.is_valid(raise_exception=True)
        return subsidy_selectors.flags_for_authority(
            authority=_org(self.request), status=data.validated_data.get("status")
        )


class FraudFlagReviewView(APIView):
    permission_classes = [IsAuthority]

    @extend_schema(request=FraudFlagReviewInput, responses={200: FraudFlagOutput, **errors(409)})
    def post(self, request, pk: int):
        flag = get_object_or_404(
            subsidy_selectors.flags_for_authority(authority=_org(request)), pk=pk
        )
        data = FraudFlagReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        flag = fraud.fraud_flag_review(
            flag=flag,
            actor=request.user,
            status=data.validated_data["decision"],
            note=data.validated_data["note"],
        )
        return Response(FraudFlagOutput(flag).data)
