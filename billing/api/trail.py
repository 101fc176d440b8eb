"""REST API of the subsidy trail. Thin: parse, call billing.trail, render.

Public (no sign-in): the latest signed tree head, the public key that signs
heads, and consistency proofs. They say nothing about anyone's business (sizes
and hashes only), and anyone who keeps heads (an authority, an auditor, a
journalist) should be able to check that the log only grows.
Authorities only: leaves and inclusion proofs, which carry the records (buyers,
providers, amounts). Every authority may read every leaf: an authority checks
what its programme paid against the whole log (a record its claim left out,
a record logged twice), which a log filtered per authority could not prove.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsAuthority
from accounts.selectors import organisation_for_user
from billing import trail
from billing.models import SubsidyClaim, TrailLeaf, TreeHead
from core import limits
from core.errors import NotFound
from core.openapi import errors


class TreeHeadOutput(serializers.Serializer):
    tree_size = serializers.IntegerField()
    root_hash = serializers.CharField(help_text="MTH of the first tree_size leaves, hex")
    timestamp_ms = serializers.IntegerField(help_text="signing time, ms since the epoch (UTC)")
    key_id = serializers.CharField()
    signature = serializers.CharField(
        help_text="Ed25519 over 'compute-exchange/subsidy-trail/v1\\n<size>\\n<root>\\n<ms>\\n', hex"
    )


def _head(head: TreeHead) -> dict:
    return trail.head_json(head)  # type: ignore[return-value]


class TreeHeadView(APIView):
    """The latest signed tree head (signed every hour, and for every claim)."""

    permission_classes = [AllowAny]

    @extend_schema(responses={200: TreeHeadOutput, **errors(404)})
    def get(self, request):
        head = trail.tree_head_latest()
        if head is None:
            raise NotFound("No tree head has been signed yet.")
        return Response(_head(head))


class PublicKeyOutput(serializers.Serializer):
    algorithm = serializers.CharField()
    public_key = serializers.CharField(help_text="raw 32-byte Ed25519 public key, hex")
    key_id = serializers.CharField()


class PublicKeyView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=PublicKeyOutput)
    def get(self, request):
        public = trail.public_key_bytes()
        return Response(
            {"algorithm": "Ed25519", "public_key": public.hex(), "key_id": trail.key_id(public)}
        )


class ConsistencyInput(serializers.Serializer):
    first = serializers.IntegerField(min_value=0, max_value=limits.MAX_TRAIL_SIZE)
    second = serializers.IntegerField(min_value=0, max_value=limits.MAX_TRAIL_SIZE)


class ConsistencyOutput(serializers.Serializer):
    first = serializers.IntegerField()
    second = serializers.IntegerField()
    proof = serializers.ListField(child=serializers.CharField())


class ConsistencyView(APIView):
    """RFC 6962 PROOF(first, D[second]) between two signed tree sizes."""

    permission_classes = [AllowAny]

    @extend_schema(parameters=[ConsistencyInput], responses={200: ConsistencyOutput, **errors(404)})
    def get(self, request):
        data = ConsistencyInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        first, second = data.validated_data["first"], data.validated_data["second"]
        proof = trail.consistency_proof(first=first, second=second)
        return Response({"first": first, "second": second, "proof": proof})


class LeafOutput(serializers.Serializer):
    index = serializers.IntegerField()
    kind = serializers.ChoiceField(TrailLeaf.Kind.choices)
    record_id = serializers.IntegerField()
    leaf = serializers.CharField(help_text="the canonical JSON the leaf hash is taken over")
    leaf_hash = serializers.CharField()


class InclusionInput(serializers.Serializer):
    index = serializers.IntegerField(min_value=0, max_value=limits.MAX_TRAIL_SIZE, required=False)
    kind = serializers.ChoiceField(TrailLeaf.Kind.choices, required=False)
    record_id = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_TRAIL_SIZE, required=False
    )
    tree_size = serializers.IntegerField(
        min_value=1,
        max_value=limits.MAX_TRAIL_SIZE,
        required=False,
        help_text="a signed head's size (default: the latest head)",
    )


class InclusionOutput(serializers.Serializer):
    leaf = LeafOutput()
    tree_head = TreeHeadOutput()
    proof = serializers.ListField(child=serializers.CharField(), help_text="PATH, hex")


def _leaf(leaf: TrailLeaf) -> dict:
    return LeafOutput(leaf).data


class InclusionView(APIView):
    """A leaf (by index, or by record kind and id) and its audit path in a signed tree."""

    permission_classes = [IsAuthority]

    @extend_schema(parameters=[InclusionInput], responses={200: InclusionOutput, **errors(404)})
    def get(self, request):
        data = InclusionInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        args = data.validated_data
        leaf = trail.leaf_find(
            index=args.get("index"), kind=args.get("kind", ""), record_id=args.get("record_id")
        )
        inclusion = trail.inclusion_proof(leaf=leaf, tree_size=args.get("tree_size"))
        return Response(
            {"leaf": _leaf(leaf), "tree_head": _head(inclusion.head), "proof": inclusion.path}
        )


class LeavesInput(serializers.Serializer):
    start = serializers.IntegerField(min_value=0, max_value=limits.MAX_TRAIL_SIZE)
    end = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_TRAIL_SIZE, help_text="exclusive"
    )

    def validate(self, attrs):
        if (
            not attrs["start"]
            < attrs["end"]
            <= attrs["start"] + limits.MAX_TRAIL_LEAVES_PER_REQUEST
        ):
            raise serializers.ValidationError(
                {"end": [f"Ask for 1 to {limits.MAX_TRAIL_LEAVES_PER_REQUEST} leaves after start."]}
            )
        return attrs


class LeavesView(APIView):
    """Leaves start .. end-1, in order (fewer at the end of the log): what an
    authority downloads to recompute the whole tree itself."""

    permission_classes = [IsAuthority]

    @extend_schema(parameters=[LeavesInput], responses={200: LeafOutput(many=True)})
    def get(self, request):
        data = LeavesInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        leaves = TrailLeaf.objects.filter(
            index__gte=data.validated_data["start"], index__lt=data.validated_data["end"]
        ).order_by("index")
        return Response(LeafOutput(leaves, many=True).data)


class ClaimAuditUsageOutput(serializers.Serializer):
    id = serializers.IntegerField()
    window_start = serializers.CharField()
    gpu_seconds_delivered = serializers.IntegerField()
    gpu_seconds_lost = serializers.IntegerField()


class ClaimAuditRowOutput(serializers.Serializer):
    redemption = serializers.IntegerField()
    invoice_line = serializers.IntegerField()
    invoice = serializers.CharField()
    lease = serializers.IntegerField(allow_null=True)
    usage_records = serializers.ListField(child=serializers.IntegerField())
    usage = ClaimAuditUsageOutput(many=True)
    provider_credit_code = serializers.CharField()
    enterprise_credit_code = serializers.CharField()
    beneficiary_credit_code = serializers.CharField()
    gpu_seconds = serializers.IntegerField()
    gross_amount = serializers.IntegerField()
    rate_bp = serializers.IntegerField()
    subsidy_amount = serializers.IntegerField()
    settlement_mode = serializers.CharField()
    leaf_index = serializers.DictField(
        child=serializers.JSONField(),
        help_text="where the records sit in the log: redemption, invoice_line, usage_records",
    )


class ClaimAuditProgrammeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class ClaimAuditReportOutput(serializers.Serializer):
    claim = serializers.IntegerField()
    programme = ClaimAuditProgrammeOutput()
    year = serializers.IntegerField()
    month = serializers.IntegerField()
    usage_from = serializers.CharField(help_text="the claim's month of usage starts (UTC)")
    usage_until = serializers.CharField(help_text="... and ends, exclusive (UTC)")
    status = serializers.ChoiceField(SubsidyClaim.Status.choices)
    currency = serializers.CharField()
    deduct_amount = serializers.IntegerField()
    reimburse_amount = serializers.IntegerField()
    total_amount = serializers.IntegerField()
    tree_head = TreeHeadOutput(allow_null=True)
    rows = ClaimAuditRowOutput(many=True)


class ClaimAuditReportView(APIView):
    """A claim of one of the authority's programmes, row by row, with the signed
    tree head it was computed under: the input of `exchange-verify audit-claim`."""

    permission_classes = [IsAuthority]

    @extend_schema(responses={200: ClaimAuditReportOutput})
    def get(self, request, pk: int):
        authority = organisation_for_user(request.user)
        claim = get_object_or_404(
            SubsidyClaim.objects.filter(programme__authority=authority).select_related(
                "programme", "tree_head"
            ),
            pk=pk,
        )
        return Response(trail.claim_audit_report(claim=claim))
