"""API: the price index from matched trades (market/index/METHOD.md), public."""

import datetime as dt

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from market import index

MAX_INDEX_DAYS = 366


class PriceIndexRowOutput(serializers.Serializer):
    day = serializers.DateField()
    gpu_class = serializers.ChoiceField(choices=sorted(index.GPU_CLASSES))
    currency = serializers.CharField()
    vwap_gpu_hour = serializers.DecimalField(
        max_digits=24, decimal_places=2, help_text="Fen per GPU-hour, volume-weighted."
    )
    vwap_pflops_hour = serializers.DecimalField(
        max_digits=24,
        decimal_places=2,
        allow_null=True,
        help_text="Fen per PFLOPS-hour of dense BF16, volume-weighted.",
    )
    gpu_hours = serializers.DecimalField(max_digits=24, decimal_places=2)
    pflops_hours = serializers.DecimalField(max_digits=24, decimal_places=2)
    notional_amount = serializers.IntegerField(help_text="Σ price x GPU-hours, fen.")
    trades = serializers.IntegerField()


class PriceIndexOutput(serializers.Serializer):
    method_version = serializers.CharField()
    rows = PriceIndexRowOutput(many=True)


class PriceIndexInput(serializers.Serializer):
    gpu_class = serializers.ChoiceField(choices=sorted(index.GPU_CLASSES), required=False)
    since = serializers.DateField(required=False, help_text="Default: 30 days before until.")
    until = serializers.DateField(required=False, help_text="Default: the last published day.")

    def validate(self, data):
        until = data.get("until")
        since = data.get("since")
        if since and until and since > until:
            raise serializers.ValidationError({"since": ["On or before `until`."]})
        if since and until and (until - since).days >= MAX_INDEX_DAYS:
            raise serializers.ValidationError({"since": [f"At most {MAX_INDEX_DAYS} days."]})
        return data


def _shift(day: dt.date, days: int) -> dt.date:
    """`day` + `days`, held inside the calendar (a client may send 9999-12-31)."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


def index_window(data: dict) -> tuple[dt.date | None, dt.date | None]:
    until = data.get("until")
    since = data.get("since")
    if since is None:
        anchor = until or index.last_published_day()
        since = _shift(anchor, -29) if anchor else None
    if until is None and since is not None:
        until = _shift(since, MAX_INDEX_DAYS - 1)
    return since, until


class PriceIndexView(APIView):
    """Daily volume-weighted average fill prices per normalised GPU class, as
    published (each day hash-chained; see `price-index/verify/`)."""

    permission_classes = [AllowAny]

    @extend_schema(parameters=[PriceIndexInput], responses=PriceIndexOutput)
    def get(self, request):
        data = PriceIndexInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        since, until = index_window(data.validated_data)
        rows = index.index_rows(
            since=since, until=until, gpu_class=data.validated_data.get("gpu_class")
        )
        return Response(
            PriceIndexOutput({"method_version": index.METHOD_VERSION, "rows": rows}).data
        )


class ChainCheckOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    snapshots = serializers.IntegerField()
    head_digest = serializers.CharField(help_text="Digest of the last snapshot checked.")
    broken_seq = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()


class PriceIndexVerifyView(APIView):
    """Recompute the snapshot chain from the published payloads: `ok` is false,
    naming the first snapshot, if any published value changed afterwards."""

    permission_classes = [AllowAny]

    @extend_schema(responses=ChainCheckOutput)
    def get(self, request):
        return Response(ChainCheckOutput(index.index_chain_verify()).data)
