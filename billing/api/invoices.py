"""API: a buyer's invoices and starting a card payment."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsBuyer
from accounts.selectors import organisation_for_user
from billing import interim, payments, selectors
from billing.models import Invoice, InvoiceLine, Payment
from core.errors import NotFound
from core.openapi import errors


class InvoiceLineOutput(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.legal_name")
    gpu_hours = serializers.DecimalField(max_digits=14, decimal_places=4)
    buyer_amount = serializers.IntegerField()
    usage_record_count = serializers.IntegerField(
        read_only=True, help_text="How many usage records (metering windows) the line sums."
    )

    class Meta:
        model = InvoiceLine
        fields = [
            "id",
            "kind",
            "description",
            "provider",
            "lease",
            "usage_record_count",
            "window_start",
            "window_end",
            "gpu_seconds",
            "gpu_seconds_lost",
            "gpu_hours",
            "pflops_hours",
            "energy_wh",
            "carbon_g",
            "price_amount",
            "amount",
            "voucher_amount",
            "buyer_amount",
            "fee_amount",
            "provider_net_amount",
        ]


class InvoiceOutput(serializers.ModelSerializer):
    outstanding_amount = serializers.IntegerField()

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "period_start",
            "period_end",
            "currency",
            "status",
            "gross_amount",
            "credit_amount",
            "total_amount",
            "voucher_amount",
            "buyer_amount",
            "paid_amount",
            "prepaid_amount",
            "outstanding_amount",
            "on_demand",
            "issued_at",
            "paid_at",
        ]
        extra_kwargs = {
            "on_demand": {
                "help_text": "An interim invoice (settle now), ending before its period."
            },
            "paid_amount": {"help_text": "Paid so far: from the prepaid balance and by card."},
            "prepaid_amount": {
                "help_text": "Of paid_amount, what the prepaid balance paid at issue."
            },
        }


class InvoiceDetailOutput(InvoiceOutput):
    lines = InvoiceLineOutput(many=True)

    class Meta(InvoiceOutput.Meta):
        fields = [*InvoiceOutput.Meta.fields, "lines"]


class InvoiceListView(ListAPIView):
    """The caller's (buyer's) invoices, newest period first."""

    permission_classes = [IsBuyer]
    serializer_class = InvoiceOutput

    def get_queryset(self):
        return selectors.invoice_list(buyer=organisation_for_user(self.request.user))


class InvoiceDetailView(APIView):
    permission_classes = [IsBuyer]

    @extend_schema(responses=InvoiceDetailOutput)
    def get(self, request, pk: int):
        invoice = selectors.invoice_get(buyer=organisation_for_user(request.user), pk=pk)
        if invoice is None:
            raise NotFound("No such invoice.")
        return Response(InvoiceDetailOutput(invoice).data)


class InvoicePayInput(serializers.Serializer):
    payment_method = serializers.RegexField(
        r"^pm_[A-Za-z0-9_]+$",
        required=False,
        help_text="Confirm at once with this payment method (test mode: pm_card_visa).",
    )


class InvoicePayOutput(serializers.ModelSerializer):
    payment_intent = serializers.CharField(source="stripe_payment_intent_id", allow_null=True)
    # Plain strings: one "status" enum per API (drf-spectacular names them by field).
    status = serializers.CharField(help_text="The Stripe PaymentIntent status, as far as known.")

    class Meta:
        model = Payment
        fields = [
            "id",
            "attempt",
            "amount",
            "currency",
            "status",
            "payment_intent",
            "client_secret",
        ]


class InvoicePayView(APIView):
    """Start paying the invoice's outstanding buyer share by card. The invoice
    becomes paid when Stripe's signed webhook says the payment succeeded."""

    permission_classes = [IsBuyer]

    @extend_schema(request=InvoicePayInput, responses={201: InvoicePayOutput, **errors(409)})
    def post(self, request, pk: int):
        data = InvoicePayInput(data=request.data)
        data.is_valid(raise_exception=True)
        invoice = selectors.invoice_get(buyer=organisation_for_user(request.user), pk=pk)
        if invoice is None:
            raise NotFound("No such invoice.")
        payment = payments.invoice_pay_start(
            invoice=invoice, payment_method=data.validated_data.get("payment_method")
        )
        return Response(InvoicePayOutput(payment).data, status=status.HTTP_201_CREATED)


class InvoiceSettleNowView(APIView):
    """Settle now: issue an interim invoice of everything metered so far in the
    open period; vouchers apply as at a period close, and it is paid by card
    like any invoice. The period's later invoice continues from its end, so no
    usage record is billed twice. With an `Idempotency-Key` header the same
    request again returns the invoice it issued (200); 409 when nothing metered
    is left to settle."""

    permission_classes = [IsBuyer]

    @extend_schema(
        request=None,
        responses={201: InvoiceDetailOutput, 200: InvoiceDetailOutput, **errors(409)},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
    )
    def post(self, request):
        buyer = organisation_for_user(request.user)
        key = request.headers.get("Idempotency-Key", "").strip()[:80] or None
        invoice, created = interim.invoice_settle_now(
            buyer=buyer, actor=request.user, idempotency_key=key
        )
        return Response(
            InvoiceDetailOutput(selectors.invoice_get(buyer=buyer, pk=invoice.pk)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
