"""API: a provider's payouts and their lines."""

from rest_framework import serializers
from rest_framework.generics import ListAPIView

from accounts.permissions import IsProvider
from accounts.selectors import organisation_for_user
from billing import selectors
from billing.models import Payout, PayoutLine


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
