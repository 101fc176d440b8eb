"""API: a provider's sites and nodes (node create returns the agent token once)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsProvider
from accounts.selectors import organisation_for_user
from core import limits
from core.api import PaginatedAPIView
from core.openapi import errors
from market import capacity, maintenance
from market import selectors as search
from market.models import GPUModel, Node, Site
from market.models.capacity import Hub, LatencyClass


class SiteOutput(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = [
            "id",
            "name",
            "region",
            "hub",
            "green_share",
            "pue",
            "carbon_intensity_g_per_kwh",
            "latency_class",
            "created_at",
        ]


class SiteCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    region = serializers.CharField(max_length=32)
    hub = serializers.ChoiceField(choices=Hub.choices, default=Hub.NONE)
    green_share = serializers.DecimalField(max_digits=4, decimal_places=3, min_value=0, max_value=1)
    pue = serializers.DecimalField(
        max_digits=4, decimal_places=2, min_value=1, max_value=limits.MAX_PUE
    )
    carbon_intensity_g_per_kwh = serializers.IntegerField(
        min_value=0, max_value=limits.MAX_CARBON_INTENSITY
    )
    latency_class = serializers.ChoiceField(
        choices=LatencyClass.choices, default=LatencyClass.NATIONAL
    )


class SiteUpdateInput(SiteCreateInput):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, partial=True, **kwargs)


class SiteListCreateView(PaginatedAPIView):
    permission_classes = [IsProvider]

    @extend_schema(responses=SiteOutput(many=True))
    def get(self, request):
        sites = search.sites_of(organisation_for_user(request.user))
        return self.paginated(queryset=sites, serializer_class=SiteOutput)

    @extend_schema(request=SiteCreateInput, responses={201: SiteOutput})
    def post(self, request):
        data = SiteCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        site = capacity.site_create(
            provider=organisation_for_user(request.user), **data.validated_data
        )
        return Response(SiteOutput(site).data, status=status.HTTP_201_CREATED)


class SiteDetailView(APIView):
    permission_classes = [IsProvider]

    @extend_schema(responses=SiteOutput)
    def get(self, request, pk: int):
        site = get_object_or_404(search.sites_of(organisation_for_user(request.user)), pk=pk)
        return Response(SiteOutput(site).data)

    @extend_schema(request=SiteUpdateInput, responses=SiteOutput)
    def patch(self, request, pk: int):
        site = get_object_or_404(search.sites_of(organisation_for_user(request.user)), pk=pk)
        data = SiteUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(SiteOutput(capacity.site_update(site=site, **data.validated_data)).data)


class NodeOutput(serializers.ModelSerializer):
    gpu_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    gpus_leased = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Node
        fields = [
            "id",
            "site",
            "name",
            "gpu_model",
            "gpu_count",
            "gpus_leased",
            "interconnect",
            "state",
            "state_reason",
            "last_seen_at",
            "drain_at",
            "drain_reason",
            "token_expires_at",
            "token_revoked_at",
            "created_at",
        ]


class NodeCreatedOutput(NodeOutput):
    agent_token = serializers.CharField(read_only=True)

    class Meta(NodeOutput.Meta):
        fields = [*NodeOutput.Meta.fields, "agent_token"]


class NodeCreateInput(serializers.Serializer):
    site = serializers.IntegerField(min_value=1)
    name = serializers.CharField(max_length=120)
    gpu_model = serializers.SlugRelatedField(slug_field="slug", queryset=GPUModel.objects.all())
    gpu_count = serializers.IntegerField(min_value=1, max_value=limits.MAX_NODE_GPUS)
    interconnect = serializers.CharField(max_length=60, required=False, default="")


class NodeListCreateView(PaginatedAPIView):
    permission_classes = [IsProvider]

    @extend_schema(responses=NodeOutput(many=True))
    def get(self, request):
        nodes = search.nodes_of(organisation_for_user(request.user)).order_by("site", "name")
        return self.paginated(queryset=nodes, serializer_class=NodeOutput)

    @extend_schema(request=NodeCreateInput, responses={201: NodeCreatedOutput})
    def post(self, request):
        """Register a node. The response carries its agent token, this once."""
        data = NodeCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        site = search.sites_of(organisation_for_user(request.user)).filter(pk=values.pop("site"))
        if not site:
            raise serializers.ValidationError({"site": ["No such site of yours."]})
        node, token = capacity.node_create(site=site[0], **values)
        node.agent_token = token
        return Response(NodeCreatedOutput(node).data, status=status.HTTP_201_CREATED)


class NodeDetailView(APIView):
    permission_classes = [IsProvider]

    @extend_schema(responses=NodeOutput)
    def get(self, request, pk: int):
        node = get_object_or_404(search.nodes_of(organisation_for_user(request.user)), pk=pk)
        return Response(NodeOutput(node).data)


class NodeTokenRotateView(APIView):
    """A new agent token for the node, in the response this once; the old token stops
    working at once. The new one expires after the server's node-token lifetime."""

    permission_classes = [IsProvider]

    @extend_schema(request=None, responses=NodeCreatedOutput)
    def post(self, request, pk: int):
        node = get_object_or_404(search.nodes_of(organisation_for_user(request.user)), pk=pk)
        node.agent_token = capacity.node_token_rotate(node=node)
        return Response(NodeCreatedOutput(node).data)


class NodeTokenRevokeView(APIView):
    """Revoke the node's agent token with no replacement: telemetry with it gets 401
    until the token is rotated."""

    permission_classes = [IsProvider]

    @extend_schema(request=None, responses=NodeOutput)
    def post(self, request, pk: int):
        node = get_object_or_404(search.nodes_of(organisation_for_user(request.user)), pk=pk)
        capacity.node_token_revoke(node=node)
        return Response(NodeOutput(node).data)


class NodeDrainInput(serializers.Serializer):
    notice_minutes = serializers.IntegerField(
        min_value=0, max_value=limits.MAX_DRAIN_NOTICE_MINUTES
    )
    reason = serializers.CharField(max_length=150, required=False, default="", allow_blank=True)


class NodeDrainView(APIView):
    """Announce maintenance of the node in `notice_minutes`: it takes no new lease
    from now on, and when the notice runs out it goes into maintenance; its
    running leases fail over to another offer where their orders allow it and end
    there otherwise (billed to that second). A node in maintenance is a 409."""

    permission_classes = [IsProvider]

    @extend_schema(request=NodeDrainInput, responses={200: NodeOutput, **errors(409)})
    def post(self, request, pk: int):
        nodes = search.nodes_of(organisation_for_user(request.user))
        node = get_object_or_404(nodes, pk=pk)
        data = NodeDrainInput(data=request.data)
        data.is_valid(raise_exception=True)
        maintenance.node_drain_schedule(node=node, actor=request.user, **data.validated_data)
        return Response(NodeOutput(nodes.get(pk=pk)).data)


class NodeDrainCancelView(APIView):
    """Withdraw the node's announced drain, or end its maintenance (it is matched
    again once its agent reports). A node with neither is a 409."""

    permission_classes = [IsProvider]

    @extend_schema(request=None, responses={200: NodeOutput, **errors(409)})
    def post(self, request, pk: int):
        nodes = search.nodes_of(organisation_for_user(request.user))
        node = get_object_or_404(nodes, pk=pk)
        maintenance.node_drain_cancel(node=node, actor=request.user)
        return Response(NodeOutput(nodes.get(pk=pk)).data)
