"""REST API of the market: catalogue, sites, nodes, offers, orders, leases.

Thin views: parse with an input serializer, call a service or selector,
render with an output serializer. Others' objects are 404 (selectors only
return the caller's)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasOrganisation, IsBuyer, IsProvider
from accounts.selectors import organisation_for_user
from core import limits
from core.api import PaginatedAPIView
from core.openapi import errors
from market import capacity, orders, search
from market.models import GPUModel, Lease, Node, Offer, Order, Site
from market.models.capacity import Hub, LatencyClass
from market.throttles import OrderPlacementThrottle

# --- catalogue ------------------------------------------------------------------------


class GPUModelOutput(serializers.ModelSerializer):
    dense_tflops = serializers.DecimalField(max_digits=8, decimal_places=2, read_only=True)

    class Meta:
        model = GPUModel
        fields = [
            "slug",
            "vendor",
            "name",
            "memory_gb",
            "memory_type",
            "bf16_tflops",
            "fp16_tflops",
            "fp32_tflops",
            "dense_tflops",
            "interconnect",
            "tdp_w",
            "domestic",
            "sources",
            "notes",
        ]


class GPUModelListView(ListAPIView):
    """The GPU catalogue with published figures and their sources."""

    permission_classes = [AllowAny]
    serializer_class = GPUModelOutput

    def get_queryset(self):
        return search.gpu_models()


class GPUModelDetailView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=GPUModelOutput)
    def get(self, request, slug: str):
        return Response(GPUModelOutput(get_object_or_404(search.gpu_models(), slug=slug)).data)


# --- sites and nodes --------------------------------------------------------------------


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


# --- offers ---------------------------------------------------------------------------------


class OfferOutput(serializers.ModelSerializer):
    gpu_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    provider = serializers.CharField(source="provider.legal_name", read_only=True)
    site = SiteOutput(read_only=True)
    # Exact decimal arithmetic in the database; wide enough for any price the
    # column can hold (2^63 x 1000 / 0.01 TFLOPS has 27 digits before the point).
    price_per_pflops_hour = serializers.DecimalField(
        max_digits=32, decimal_places=2, read_only=True, allow_null=True, default=None
    )
    reliability = serializers.DecimalField(
        max_digits=5, decimal_places=4, read_only=True, allow_null=True, default=None
    )
    status = serializers.CharField(read_only=True)

    class Meta:
        model = Offer
        fields = [
            "id",
            "provider",
            "site",
            "node",
            "gpu_model",
            "gpus_total",
            "gpus_available",
            "price_amount",
            "currency",
            "price_per_pflops_hour",
            "reliability",
            "available_from",
            "available_until",
            "min_hours",
            "max_hours",
            "interruptible",
            "status",
            "created_at",
        ]


class OfferSearchInput(serializers.Serializer):
    gpu_model = serializers.CharField(required=False)
    vendor = serializers.CharField(required=False)
    domestic = serializers.BooleanField(required=False, allow_null=True, default=None)
    min_memory_gb = serializers.IntegerField(
        required=False, min_value=0, max_value=limits.MAX_MEMORY_GB
    )
    min_tflops = serializers.DecimalField(
        required=False, max_digits=8, decimal_places=2, min_value=0
    )
    region = serializers.CharField(required=False)
    hub = serializers.ChoiceField(choices=Hub.choices, required=False)
    min_green_share = serializers.DecimalField(
        required=False, max_digits=4, decimal_places=3, min_value=0, max_value=1
    )
    max_price = serializers.IntegerField(
        required=False, min_value=1, max_value=limits.MAX_PRICE_AMOUNT
    )
    min_gpus = serializers.IntegerField(
        required=False, min_value=1, max_value=limits.MAX_OFFER_GPUS
    )
    sort = serializers.ChoiceField(choices=list(search.OFFER_SORTS), default="price")


class OfferCreateInput(serializers.Serializer):
    site = serializers.IntegerField(min_value=1)
    node = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    gpu_model = serializers.SlugRelatedField(
        slug_field="slug", queryset=GPUModel.objects.all(), required=False, default=None
    )
    gpus_total = serializers.IntegerField(min_value=1, max_value=limits.MAX_OFFER_GPUS)
    price_amount = serializers.IntegerField(min_value=1, max_value=limits.MAX_PRICE_AMOUNT)
    available_from = serializers.DateTimeField()
    available_until = serializers.DateTimeField()
    min_hours = serializers.IntegerField(min_value=1, max_value=limits.MAX_LEASE_HOURS, default=1)
    max_hours = serializers.IntegerField(
        min_value=1, max_value=limits.MAX_LEASE_HOURS, default=24 * 30
    )
    interruptible = serializers.BooleanField(default=False)


class OfferUpdateInput(serializers.Serializer):
    price_amount = serializers.IntegerField(min_value=1, max_value=limits.MAX_PRICE_AMOUNT)


class OfferListCreateView(PaginatedAPIView):
    """GET: public search of live offers. POST: a provider lists an offer."""

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "GET" else [IsProvider()]

    @extend_schema(
        parameters=[OfferSearchInput],
        responses=OfferOutput(many=True),
        operation_id="offers_search",
    )
    def get(self, request):
        data = OfferSearchInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        offers = search.offers_search(**data.validated_data)
        return self.paginated(queryset=offers, serializer_class=OfferOutput)

    @extend_schema(request=OfferCreateInput, responses={201: OfferOutput})
    def post(self, request):
        data = OfferCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        provider = organisation_for_user(request.user)
        site = search.sites_of(provider).filter(pk=values.pop("site")).first()
        if site is None:
            raise serializers.ValidationError({"site": ["No such site of yours."]})
        node_id = values.pop("node")
        node = None
        if node_id is not None:
            node = search.nodes_of(provider).filter(pk=node_id, site=site).first()
            if node is None:
                raise serializers.ValidationError({"node": ["No such node at this site."]})
        offer = capacity.offer_create(
            provider=provider, actor=request.user, site=site, node=node, **values
        )
        return Response(OfferOutput(offer).data, status=status.HTTP_201_CREATED)


class OfferMineView(PaginatedAPIView):
    """The provider's own offers in every status."""

    permission_classes = [IsProvider]

    @extend_schema(responses=OfferOutput(many=True))
    def get(self, request):
        offers = search.offers_of(organisation_for_user(request.user)).order_by("-created_at")
        return self.paginated(queryset=offers, serializer_class=OfferOutput)


class OfferDetailView(APIView):
    def get_permissions(self):
        return [AllowAny()] if self.request.method == "GET" else [IsProvider()]

    @extend_schema(responses=OfferOutput)
    def get(self, request, pk: int):
        organisation = organisation_for_user(request.user)
        visible = search.offers_search()
        if organisation is not None and organisation.is_provider:
            visible = visible | search.offers_of(organisation)
        offer = get_object_or_404(Offer.objects.filter(pk__in=visible.values("pk")), pk=pk)
        return Response(OfferOutput(offer).data)

    @extend_schema(request=OfferUpdateInput, responses=OfferOutput)
    def patch(self, request, pk: int):
        """Re-price for future matches; leases already made keep their price."""
        offer = get_object_or_404(search.offers_of(organisation_for_user(request.user)), pk=pk)
        data = OfferUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        offer = capacity.offer_reprice(offer=offer, actor=request.user, **data.validated_data)
        return Response(OfferOutput(offer).data)


class _OfferActionView(APIView):
    permission_classes = [IsProvider]
    transition = staticmethod(capacity.offer_pause)

    @extend_schema(request=None, responses=OfferOutput)
    def post(self, request, pk: int):
        offer = get_object_or_404(search.offers_of(organisation_for_user(request.user)), pk=pk)
        return Response(OfferOutput(self.transition(offer=offer, actor=request.user)).data)


class OfferPauseView(_OfferActionView):
    transition = staticmethod(capacity.offer_pause)


class OfferResumeView(_OfferActionView):
    transition = staticmethod(capacity.offer_resume)


class OfferWithdrawView(_OfferActionView):
    transition = staticmethod(capacity.offer_withdraw)


# --- orders and leases ---------------------------------------------------------------------


class LeaseOutput(serializers.ModelSerializer):
    gpu_model = serializers.CharField(source="node.gpu_model.slug", read_only=True)
    site = serializers.CharField(source="node.site.name", read_only=True)
    gpu_seconds_delivered = serializers.IntegerField(read_only=True, default=0)
    gpu_seconds_lost = serializers.IntegerField(read_only=True, default=0)
    status = serializers.CharField(read_only=True)

    class Meta:
        model = Lease
        fields = [
            "id",
            "order",
            "offer",
            "node",
            "gpu_model",
            "site",
            "gpu_count",
            "price_amount",
            "currency",
            "starts_at",
            "ends_at",
            "status",
            "previous_lease",
            "ended_at",
            "gpu_seconds_delivered",
            "gpu_seconds_lost",
        ]


class OrderOutput(serializers.ModelSerializer):
    accepted_models = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
    gpus_unfilled = serializers.IntegerField(read_only=True)
    status = serializers.CharField(read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "accepted_models",
            "min_tflops",
            "min_memory_gb",
            "gpu_count",
            "gpus_filled",
            "gpus_unfilled",
            "hours",
            "max_price_amount",
            "currency",
            "regions",
            "hubs",
            "min_green_share",
            "domestic_only",
            "gang",
            "start_by",
            "failover_allowed",
            "status",
            "created_at",
        ]


class OrderDetailOutput(OrderOutput):
    leases = serializers.SerializerMethodField()

    class Meta(OrderOutput.Meta):
        fields = [*OrderOutput.Meta.fields, "leases"]

    @extend_schema_field(LeaseOutput(many=True))
    def get_leases(self, order) -> list[dict]:
        return LeaseOutput(
            search.leases_of(order.buyer).filter(order=order).order_by("id"), many=True
        ).data


class OrderCreateInput(serializers.Serializer):
    accepted_models = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        default=list,
        max_length=limits.MAX_LIST_ITEMS,
    )
    min_tflops = serializers.DecimalField(
        max_digits=8, decimal_places=2, required=False, allow_null=True, default=None, min_value=0
    )
    min_memory_gb = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=limits.MAX_MEMORY_GB
    )
    gpu_count = serializers.IntegerField(min_value=1, max_value=limits.MAX_ORDER_GPUS)
    hours = serializers.IntegerField(min_value=1, max_value=limits.MAX_ORDER_HOURS)
    max_price_amount = serializers.IntegerField(min_value=1, max_value=limits.MAX_PRICE_AMOUNT)
    regions = serializers.ListField(
        child=serializers.CharField(max_length=32),
        required=False,
        default=list,
        max_length=limits.MAX_LIST_ITEMS,
    )
    hubs = serializers.ListField(
        child=serializers.CharField(max_length=20),
        required=False,
        default=list,
        max_length=limits.MAX_LIST_ITEMS,
    )
    min_green_share = serializers.DecimalField(
        max_digits=4, decimal_places=3, min_value=0, max_value=1, required=False, default=0
    )
    domestic_only = serializers.BooleanField(default=False)
    gang = serializers.BooleanField(default=False)
    start_by = serializers.DateTimeField()
    failover_allowed = serializers.BooleanField(default=True)

    def validate_accepted_models(self, slugs: list[str]) -> list[GPUModel]:
        models = list(GPUModel.objects.filter(slug__in=slugs))
        unknown = sorted(set(slugs) - {m.slug for m in models})
        if unknown:
            raise serializers.ValidationError(f"Unknown GPU model: {', '.join(unknown)}.")
        return models


class OrderListCreateView(PaginatedAPIView):
    permission_classes = [IsBuyer]
    throttle_classes = [OrderPlacementThrottle]

    @extend_schema(responses=OrderOutput(many=True))
    def get(self, request):
        placed = search.orders_of(organisation_for_user(request.user)).order_by("-created_at")
        return self.paginated(queryset=placed, serializer_class=OrderOutput)

    @extend_schema(
        request=OrderCreateInput,
        responses={201: OrderOutput, 200: OrderOutput, **errors(409)},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
    )
    def post(self, request):
        """Place an order. With an `Idempotency-Key` header, repeating the same
        request returns the first order (200) instead of placing another. Orders
        per organisation are rate-limited (429 with Retry-After)."""
        data = OrderCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "").strip()[:80] or None
        order, created = orders.order_create(
            buyer=organisation_for_user(request.user),
            placed_by=request.user,
            idempotency_key=key,
            **data.validated_data,
        )
        return Response(
            OrderOutput(order).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class OrderDetailView(APIView):
    permission_classes = [IsBuyer]

    @extend_schema(responses=OrderDetailOutput)
    def get(self, request, pk: int):
        order = get_object_or_404(search.orders_of(organisation_for_user(request.user)), pk=pk)
        return Response(OrderDetailOutput(order).data)


class OrderCancelView(APIView):
    permission_classes = [IsBuyer]

    @extend_schema(request=None, responses=OrderOutput)
    def post(self, request, pk: int):
        order = get_object_or_404(search.orders_of(organisation_for_user(request.user)), pk=pk)
        return Response(OrderOutput(orders.order_cancel(order=order, actor=request.user)).data)


class LeaseListView(PaginatedAPIView):
    """Leases the caller's organisation bought or sold, with usage so far."""

    permission_classes = [HasOrganisation]

    @extend_schema(responses=LeaseOutput(many=True))
    def get(self, request):
        leases = search.leases_of(organisation_for_user(request.user)).order_by("-id")
        return self.paginated(queryset=leases, serializer_class=LeaseOutput)


class LeaseDetailView(APIView):
    permission_classes = [HasOrganisation]

    @extend_schema(responses=LeaseOutput)
    def get(self, request, pk: int):
        lease = get_object_or_404(search.leases_of(organisation_for_user(request.user)), pk=pk)
        return Response(LeaseOutput(lease).data)
