"""API for node agents (telemetry) and for the metered evidence (usage records)."""

from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, generics, serializers
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasOrganisation
from accounts.selectors import organisation_for_user
from core import clock, limits
from core.db import replica_reads
from core.openapi import errors
from market.models import Node, UsageRecord
from market.telemetry import MAX_SAMPLES_PER_BATCH, selectors, telemetry_ingest
from market.throttles import TelemetryThrottle
from market.verification import node_self_test_record

# --- node credential ------------------------------------------------------------


@dataclass(frozen=True)
class NodeAgent:
    """The principal behind a node token: the node's agent, not a person."""

    node: Node
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    pk: None = None


class NodeTokenAuthentication(BaseAuthentication):
    """`Authorization: Node <node id>.<secret>`; 401 for an unknown, revoked or expired token."""

    keyword = "Node"

    def authenticate(self, request):
        from market.telemetry import node_for_token, node_token_expired

        parts = get_authorization_header(request).split()
        if not parts or parts[0].decode(errors="replace") != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed node token header.")
        node = node_for_token(token=parts[1].decode(errors="replace"))
        if node is None:
            raise exceptions.AuthenticationFailed("Unknown node token.")
        if node_token_expired(node=node, now=clock.now()):
            raise exceptions.AuthenticationFailed(
                "This node token has expired; rotate it on My capacity or through the API."
            )
        return NodeAgent(node=node), node

    def authenticate_header(self, request) -> str:
        return self.keyword


class NodeTokenScheme(OpenApiAuthenticationExtension):
    target_class = "market.api.telemetry.NodeTokenAuthentication"
    name = "nodeToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Node <node id>.<secret>` — the agent token shown once at node creation.",
        }


class TelemetrySampleInput(serializers.Serializer):
    """Documentation only: the view validates a batch in bulk, not per sample."""

    # The bounds market.telemetry.ingest checks (the columns' own), so the schema tells them.
    seq = serializers.IntegerField(min_value=0, max_value=2**63 - 1)
    ts = serializers.FloatField(help_text="seconds since the epoch, UTC")
    gpu = serializers.IntegerField(min_value=0, max_value=2**31 - 1, help_text="below gpu_count")
    util = serializers.FloatField(min_value=0, max_value=100)
    mem_used_mib = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    power_w = serializers.FloatField(min_value=0)
    temp_c = serializers.FloatField(min_value=0)
    ecc_errors = serializers.IntegerField(min_value=0, max_value=2**31 - 1, help_text="cumulative")
    xid_errors = serializers.IntegerField(min_value=0, max_value=2**31 - 1, help_text="cumulative")
    missing = serializers.BooleanField(default=False)


class TelemetryBatchInput(serializers.Serializer):
    node = serializers.IntegerField(
        required=False, allow_null=True, help_text="optional; must be the token's node"
    )
    samples = TelemetrySampleInput(many=True, max_length=MAX_SAMPLES_PER_BATCH)


class TelemetryBatchOutput(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class TelemetryIngestView(APIView):
    """A node agent posts a batch of up to 5,000 samples. All or nothing: a bad
    sample gets a 400 naming it and nothing from the batch is stored.
    Re-sent samples (same seq) are counted as duplicates, never stored twice.
    Batches per node are rate-limited (429 with Retry-After, which the agent honours)."""

    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [TelemetryThrottle]

    @extend_schema(
        request=TelemetryBatchInput,
        responses={200: TelemetryBatchOutput, **errors(403)},
        examples=[OpenApiExample("result", value={"accepted": 4990, "duplicates": 10})],
    )
    def post(self, request):
        result = telemetry_ingest(node=request.auth, body=request.body, now=clock.now())
        return Response({"accepted": result.accepted, "duplicates": result.duplicates})


class SelfTestInput(serializers.Serializer):
    gpus_seen = serializers.IntegerField(min_value=0, max_value=limits.MAX_NODE_GPUS)
    gpu_name = serializers.CharField(max_length=120, required=False, default="", allow_blank=True)
    memory_gb = serializers.DecimalField(
        max_digits=7, decimal_places=2, min_value=0, max_value=limits.MAX_MEMORY_GB
    )
    bandwidth_gb_s = serializers.DecimalField(
        max_digits=9,
        decimal_places=1,
        min_value=0,
        max_value=100_000,
        required=False,
        allow_null=True,
        default=None,
    )
    tflops = serializers.DecimalField(
        max_digits=8,
        decimal_places=2,
        min_value=0,
        max_value=100_000,
        required=False,
        allow_null=True,
        default=None,
        help_text="Dense BF16 TFLOPS of the slowest GPU over a short compute burst.",
    )
    simulated = serializers.BooleanField(default=False)


class SelfTestOutput(serializers.Serializer):
    passed = serializers.BooleanField()
    verified = serializers.BooleanField(help_text="The node's verification after this test.")
    reason = serializers.CharField()


class SelfTestView(APIView):
    """A node agent reports its self-test (GPUs seen, memory, bandwidth and
    dense TFLOPS measured); the exchange verifies or de-verifies the node
    against the catalogue (market/verification.py)."""

    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [TelemetryThrottle]

    @extend_schema(request=SelfTestInput, responses=SelfTestOutput)
    def post(self, request):
        data = SelfTestInput(data=request.data)
        data.is_valid(raise_exception=True)
        test = node_self_test_record(node=request.auth, now=clock.now(), **data.validated_data)
        return Response({"passed": test.passed, "verified": test.passed, "reason": test.reason})


# --- usage records ----------------------------------------------------------------


class UsageRecordOutput(serializers.ModelSerializer):
    order = serializers.IntegerField(source="lease.order_id")
    node = serializers.IntegerField(source="lease.node_id")

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "lease",
            "order",
            "node",
            "window_start",
            "window_end",
            "gpu_seconds_delivered",
            "gpu_seconds_lost",
            "gpu_seconds_grace",
            "energy_wh",
            "carbon_g",
            "avg_utilisation",
            "created_at",
        ]


class UsageRecordListView(generics.ListAPIView):
    """Metered evidence of the caller's leases (bought or sold); filter by `lease`."""

    serializer_class = UsageRecordOutput
    permission_classes = [IsAuthenticated, HasOrganisation]
    filterset_fields = ["lease"]

    @replica_reads
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return UsageRecord.objects.none()
        return selectors.usage_records_for_organisation(
            organisation=organisation_for_user(self.request.user)
        )
