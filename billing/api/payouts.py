"""API: a provider's payouts and their lines."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsProvider
from accounts.selectors import organisation_for_user
from billing import selectors
from billing.models import Payout, PayoutAccount, PayoutLine
from billing.payout_accounts import (
    BankAccount,
    payout_account_set_bank,
    payouts_waiting_for_an_account,
)
from billing.payouts import payout_run_request


class PayoutLineOutput(serializers.ModelSerializer):
    invoice = serializers.CharField(source="invoice.number")

    class Meta:
        model = PayoutLine
        fields = ["invoice", "amount", "transferred_amount", "stripe_transfer_id"]


class PayoutOutput(serializers.ModelSerializer):
    run = serializers.CharField(source="run.key")
    lines = PayoutLineOutput(many=True)
    status = serializers.CharField(help_text="pending, sent, paid or failed")

    class Meta:
        model = Payout
        fields = [
            "id",
            "run",
            "method",
            "amount",
            "currency",
            "status",
            "reference",
            "created_at",
            "sent_at",
            "lines",
        ]


class PayoutListView(ListAPIView):
    """The caller's (provider's) payouts with the invoice shares they carry."""

    permission_classes = [IsProvider]
    serializer_class = PayoutOutput

    def get_queryset(self):
        return selectors.payout_list(provider=organisation_for_user(self.request.user))


class PayoutRunOutput(serializers.Serializer):
    key = serializers.CharField()
    status = serializers.CharField(help_text="created (queued or running) or completed")
    created_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    payout_count = serializers.IntegerField()
    total_amount = serializers.IntegerField(allow_null=True, help_text="minor units")


class PayoutRunQueuedOutput(serializers.Serializer):
    key = serializers.CharField(
        help_text="the run's key; it shows in the list once a worker runs it"
    )


class PayoutRunListCreateView(ListAPIView):
    """Staff: the payout runs (newest first), and `POST` to start one now besides
    the daily run (queued for a worker; 202 with its key)."""

    permission_classes = [IsAdminUser]
    serializer_class = PayoutRunOutput

    def get_queryset(self):
        return selectors.payout_run_list()

    @extend_schema(request=None, responses={202: PayoutRunQueuedOutput})
    def post(self, request):
        key = payout_run_request(requested_by=request.user)
        return Response({"key": key}, status=202)


class PayoutAccountOutput(serializers.Serializer):
    configured = serializers.BooleanField()
    method = serializers.CharField(allow_blank=True)
    account_number = serializers.CharField(allow_blank=True)
    account_name = serializers.CharField(allow_blank=True)
    bank_name = serializers.CharField(allow_blank=True)
    bank_code = serializers.CharField(allow_blank=True)
    province = serializers.CharField(allow_blank=True)
    city = serializers.CharField(allow_blank=True)
    waiting_amount = serializers.IntegerField(
        help_text="Shares of paid invoices waiting for this account (minor units)"
    )
    waiting_invoices = serializers.IntegerField()
    currency = serializers.CharField()


class BankAccountInput(serializers.Serializer):
    account_number = serializers.CharField(max_length=40, help_text="收款账号")
    account_name = serializers.CharField(max_length=200, help_text="户名")
    bank_name = serializers.CharField(max_length=200, help_text="开户行")
    bank_code = serializers.CharField(max_length=12, help_text="联行号 (CNAPS, 12 digits)")
    province = serializers.CharField(max_length=32, required=False, default="", allow_blank=True)
    city = serializers.CharField(max_length=32, required=False, default="", allow_blank=True)


def _account_answer(provider) -> Response:
    account = PayoutAccount.objects.filter(provider=provider).first()
    waiting = payouts_waiting_for_an_account(provider=provider)
    fields = ["method", "account_number", "account_name", "bank_name", "bank_code"]
    fields += ["province", "city"]
    data = {name: getattr(account, name) if account else "" for name in fields}
    data.update(
        configured=account is not None,
        waiting_amount=sum(w.amount for w in waiting),
        waiting_invoices=sum(w.invoices for w in waiting),
        currency=settings.DEFAULT_CURRENCY,
    )
    return Response(PayoutAccountOutput(data).data)


class PayoutAccountView(APIView):
    """Where the caller (a provider) is paid, and what waits for it: without an
    account, shares of paid invoices stay in the provider's payable and show here
    as waiting. PUT gives a bank account (收款账号, 户名 = the organisation's legal
    name, 开户行, 联行号); the next payout run pays what waited."""

    permission_classes = [IsProvider]

    @extend_schema(responses=PayoutAccountOutput)
    def get(self, request):
        return _account_answer(organisation_for_user(request.user))

    @extend_schema(request=BankAccountInput, responses=PayoutAccountOutput)
    def put(self, request):
        provider = organisation_for_user(request.user)
        data = BankAccountInput(data=request.data)
        data.is_valid(raise_exception=True)
        payout_account_set_bank(provider=provider, bank=BankAccount(**data.validated_data))
        return _account_answer(provider)
