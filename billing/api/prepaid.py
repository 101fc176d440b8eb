"""API: a buyer's prepaid balance, credit and funding terms; card top-ups;
staff's credit limit."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organisation
from accounts.permissions import IsBuyer
from accounts.selectors import organisation_for_user
from billing import prepaid, selectors
from billing.models import FundingTerms, TopUp
from core import limits
from core.errors import NotFound
from core.openapi import errors
from core.parsers import BoundedJSONParser


class FundingOutput(serializers.Serializer):
    currency = serializers.CharField()
    prepaid = serializers.BooleanField(
        help_text="Held to available funds: the buyer chose so (PUT with held) or staff "
        "granted credit. Otherwise it pays invoices by card after use, its prepaid balance "
        "first, and no limit applies."
    )
    held = serializers.BooleanField(help_text="The same as prepaid, by the name PUT takes.")
    balance_amount = serializers.IntegerField(help_text="The prepaid balance (minor units).")
    credit_limit_amount = serializers.IntegerField(help_text="Credit granted by the exchange.")
    outstanding_amount = serializers.IntegerField(help_text="Issued invoices not yet paid.")
    unbilled_amount = serializers.IntegerField(
        help_text="Metered usage on no issued invoice, priced as its invoice line will be."
    )
    available_amount = serializers.IntegerField(
        help_text="balance + credit limit − outstanding − unbilled; new orders need more than 0."
    )
    at_zero = serializers.ChoiceField(choices=FundingTerms.AtZero.choices)
    at_zero_explained = serializers.CharField(help_text="What happens at zero, in words.")
    grace_minutes = serializers.IntegerField()
    alert_thresholds = serializers.ListField(child=serializers.IntegerField())
    auto_top_up = serializers.BooleanField()
    auto_top_up_amount = serializers.IntegerField()
    auto_top_up_below_amount = serializers.IntegerField()
    auto_top_up_payment_method = serializers.CharField(allow_blank=True)
    exhausted_at = serializers.DateTimeField(
        allow_null=True, help_text="When available funds reached zero (null: above zero)."
    )
    leases_stop_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Under stop_leases: when running leases end unless funds are added.",
    )


def funding_data(buyer: Organisation) -> dict:
    funding = selectors.funding_get(buyer=buyer)
    terms = funding.terms or FundingTerms(buyer=buyer)
    return {
        "currency": funding.currency,
        "prepaid": funding.enforced,
        "held": funding.enforced,
        "balance_amount": funding.balance,
        "credit_limit_amount": funding.credit_limit,
        "outstanding_amount": funding.outstanding,
        "unbilled_amount": funding.unbilled,
        "available_amount": funding.available,
        "at_zero": terms.at_zero,
        "at_zero_explained": prepaid.at_zero_explained(funding.terms),
        "grace_minutes": terms.grace_minutes,
        "alert_thresholds": terms.alert_thresholds,
        "auto_top_up": terms.auto_top_up,
        "auto_top_up_amount": terms.auto_top_up_amount,
        "auto_top_up_below_amount": terms.auto_top_up_below_amount,
        "auto_top_up_payment_method": terms.auto_top_up_payment_method,
        "exhausted_at": terms.exhausted_at,
        "leases_stop_at": prepaid.leases_stop_at(funding.terms),
    }


PAYMENT_METHOD = r"^pm_[A-Za-z0-9_]+$"


class StrictBooleanField(serializers.BooleanField):
    """true or false, as the schema says: never 0, 1 or "yes" for a card charge switch."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


class FundingTermsInput(serializers.Serializer):
    held = StrictBooleanField(
        required=False,
        default=True,
        help_text="Held to available funds (stopped at zero as at_zero says); false: pay "
        "each invoice by card after use, the prepaid balance first (not open with credit).",
    )
    at_zero = serializers.ChoiceField(choices=FundingTerms.AtZero.choices)
    grace_minutes = serializers.IntegerField(
        min_value=0, max_value=limits.MAX_FUNDING_GRACE_MINUTES
    )
    alert_thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=limits.MAX_AMOUNT),
        max_length=limits.MAX_ALERT_THRESHOLDS,
        required=False,
        default=list,
        help_text="Alert when available funds fall to or below each amount (0 always alerts).",
    )
    auto_top_up = StrictBooleanField(required=False, default=False)
    auto_top_up_amount = serializers.IntegerField(
        min_value=0, max_value=limits.MAX_AMOUNT, required=False, default=0
    )
    auto_top_up_below_amount = serializers.IntegerField(
        min_value=0,
        max_value=limits.MAX_AMOUNT,
        required=False,
        default=0,
        help_text="Top up automatically when available funds fall to or below this amount.",
    )
    auto_top_up_payment_method = serializers.RegexField(
        PAYMENT_METHOD,
        required=False,
        default="",
        allow_blank=True,
        help_text="The saved card charged by an automatic top-up (test mode: pm_card_visa).",
    )


class FundingView(APIView):
    """The buyer's prepaid balance, credit, what is available and what happens
    at zero (GET). PUT replaces its funding terms: fields left out take their
    defaults (no alert but zero, no automatic top-up); the credit limit is
    staff's. Terms set with `held` (the default) hold the buyer to them: at
    available ≤ 0 new orders are refused (409), and under stop_leases running
    leases end after the grace; a top-up alone holds nobody."""

    permission_classes = [IsBuyer]
    # JSON only: a form's "0" is no boolean a buyer meant for auto_top_up
    parser_classes = [BoundedJSONParser]

    @extend_schema(responses=FundingOutput)
    def get(self, request):
        return Response(FundingOutput(funding_data(organisation_for_user(request.user))).data)

    @extend_schema(request=FundingTermsInput, responses=FundingOutput)
    def put(self, request):
        data = FundingTermsInput(data=request.data)
        data.is_valid(raise_exception=True)
        buyer = organisation_for_user(request.user)
        prepaid.funding_terms_update(buyer=buyer, **data.validated_data)
        return Response(FundingOutput(funding_data(buyer)).data)


class TopUpInput(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, max_value=limits.MAX_AMOUNT)
    payment_method = serializers.RegexField(
        PAYMENT_METHOD,
        required=False,
        help_text="Confirm at once with this payment method (test mode: pm_card_visa).",
    )


class TopUpOutput(serializers.ModelSerializer):
    payment_intent = serializers.CharField(source="stripe_payment_intent_id", allow_null=True)
    status = serializers.CharField(help_text="The Stripe PaymentIntent status, as far as known.")
    credited = serializers.SerializerMethodField()

    class Meta:
        model = TopUp
        fields = [
            "id",
            "amount",
            "currency",
            "automatic",
            "status",
            "payment_intent",
            "client_secret",
            "credited",
            "created_at",
        ]

    def get_credited(self, top_up: TopUp) -> bool:
        return top_up.credited_at is not None


class TopUpCreateView(APIView):
    """Top up the prepaid balance by card. The balance grows when Stripe's
    signed webhook says the payment succeeded, once. With an `Idempotency-Key`
    header the same request again returns the first top-up (200)."""

    permission_classes = [IsBuyer]
    parser_classes = [BoundedJSONParser]

    @extend_schema(
        request=TopUpInput,
        responses={201: TopUpOutput, 200: TopUpOutput, **errors(409)},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
    )
    def post(self, request):
        data = TopUpInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "").strip()[:80] or None
        top_up, created = prepaid.top_up_start(
            buyer=organisation_for_user(request.user),
            amount=data.validated_data["amount"],
            payment_method=data.validated_data.get("payment_method"),
            idempotency_key=key,
        )
        return Response(
            TopUpOutput(top_up).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class CreditLimitInput(serializers.Serializer):
    credit_limit_amount = serializers.IntegerField(min_value=0, max_value=limits.MAX_AMOUNT)


class CreditLimitView(APIView):
    """Staff: set a buyer's credit limit (0 withdraws it); answers the buyer's funding."""

    permission_classes = [IsAdminUser]
    parser_classes = [BoundedJSONParser]

    @extend_schema(request=CreditLimitInput, responses={200: FundingOutput, **errors(404)})
    def put(self, request, pk: int):
        data = CreditLimitInput(data=request.data)
        data.is_valid(raise_exception=True)
        buyer = Organisation.objects.filter(pk=pk, kind=Organisation.Kind.BUYER).first()
        if buyer is None:
            raise NotFound(_("No such buyer."))
        prepaid.credit_limit_set(buyer=buyer, amount=data.validated_data["credit_limit_amount"])
        return Response(FundingOutput(funding_data(buyer)).data)
