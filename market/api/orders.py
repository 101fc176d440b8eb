"""API: a buyer's orders (placed with an Idempotency-Key) and leases."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasOrganisation, IsBuyer
from accounts.selectors import organisation_for_user
from core import limits
from core.api import PaginatedAPIView
from core.openapi import errors
from market import orders, resale
from market import selectors as search
from market.api.offers import OfferOutput
from market.catalogue import catalogue_models
from market.leases import lease_end_now
from market.models import GPUModel, Lease, Order
from market.throttles import OrderPlacementThrottle


class LeaseOutput(serializers.ModelSerializer):
    """A lease names what it delivers: the GPU model, the site (and its hub) and the price."""

    gpu_model = serializers.CharField(source="node.gpu_model.slug", read_only=True)
    gpu_model_name = serializers.CharField(source="node.gpu_model.__str__", read_only=True)
    site = serializers.CharField(source="node.site.name", read_only=True)
    region = serializers.CharField(source="node.site.region", read_only=True)
    hub = serializers.CharField(source="node.site.hub", read_only=True)
    gpu_seconds_delivered = serializers.IntegerField(read_only=True, default=0)
    gpu_seconds_lost = serializers.IntegerField(read_only=True, default=0)
    status = serializers.CharField(read_only=True)
    ended_reason = serializers.CharField(read_only=True, allow_null=True, default=None)
    node_drain_at = serializers.DateTimeField(
        source="node.drain_at", read_only=True, allow_null=True
    )
    interruptible = serializers.BooleanField(source="offer.interruptible", read_only=True)
    preempt_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Set when the lease (on interruptible capacity) is pre-empted by a higher "
        "bid: it ends then, after the notice, billed to that second.",
    )
    original_ends_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="The end the lease was matched with, before a pre-emption brought it forward.",
    )
    rearm = serializers.BooleanField(
        read_only=True,
        help_text="The lease was lost (pre-empted or failed) and its order re-arms: the rest "
        "of its window is matched again (see next_lease).",
    )
    next_lease = serializers.IntegerField(
        source="next_lease_id",
        read_only=True,
        allow_null=True,
        default=None,
        help_text="The lease that took over this one's remaining hours (failover or re-arm).",
    )

    class Meta:
        model = Lease
        fields = [
            "id",
            "order",
            "offer",
            "node",
            "gpu_model",
            "gpu_model_name",
            "site",
            "region",
            "hub",
            "gpu_count",
            "price_amount",
            "currency",
            "starts_at",
            "ends_at",
            "status",
            "previous_lease",
            "ended_at",
            "ended_reason",
            "node_drain_at",
            "interruptible",
            "preempt_at",
            "original_ends_at",
            "rearm",
            "next_lease",
            "resold_from",
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
            "start_at",
            "time_in_force",
            "good_till",
            "failover_allowed",
            "verified_only",
            "interruptible",
            "max_refills",
            "refills_used",
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
    start_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="A forward block: its leases start at this hour (on the hour, in the future, "
        "by start_by), not before. Once matched it is a contract its buyer may resell.",
    )
    failover_allowed = serializers.BooleanField(default=True)
    verified_only = serializers.BooleanField(
        default=False, help_text="Only GPUs on nodes whose self-test verified them."
    )
    interruptible = serializers.BooleanField(
        default=False,
        help_text="Accept interruptible capacity (cheaper; pre-empted by higher bids after "
        "a notice). Without it the order never lands on interruptible offers, and may "
        "pre-empt lower bids' leases there.",
    )
    max_refills = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=limits.MAX_ORDER_REFILLS,
        help_text="How often the order re-arms after losing a lease to pre-emption or node "
        "failure, matching the lease's remaining hours from the best offer then (null: no "
        "limit; needs failover_allowed).",
    )
    time_in_force = serializers.ChoiceField(
        choices=Order.TimeInForce.choices,
        default=Order.TimeInForce.GOOD_TILL,
        help_text="good_till: stands on the book until filled, cancelled or good_till; "
        "ioc: matched once now, the unfilled part released at once.",
    )
    good_till = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text="When a good-till order leaves the book (at most start_by; none: start_by).",
    )

    def validate_accepted_models(self, slugs: list[str]) -> list[GPUModel]:
        wanted = set(slugs)
        models = [m for m in catalogue_models() if m.slug in wanted]
        unknown = sorted(wanted - {m.slug for m in models})
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
        per organisation are rate-limited (429 with Retry-After). A good-till
        order stands on the book; an immediate-or-cancel order comes back
        already matched, its unfilled part released (status expired)."""
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


class OrderCancelInput(serializers.Serializer):
    end_running_leases = serializers.BooleanField(default=False)


class OrderCancelView(APIView):
    """Cancel the order: its unfilled part is dropped and leases not yet started
    are cancelled. Running leases run to their end unless `end_running_leases`
    is true: then they end now, billed to this second (a filled order can then
    be cancelled too)."""

    permission_classes = [IsBuyer]

    @extend_schema(request=OrderCancelInput, responses=OrderOutput)
    def post(self, request, pk: int):
        order = get_object_or_404(search.orders_of(organisation_for_user(request.user)), pk=pk)
        data = OrderCancelInput(data=request.data)
        data.is_valid(raise_exception=True)
        cancelled = orders.order_cancel(order=order, actor=request.user, **data.validated_data)
        return Response(OrderOutput(cancelled).data)


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


class LeaseEndInput(serializers.Serializer):
    reason = serializers.CharField(max_length=150, required=False, default="", allow_blank=True)


class LeaseEndView(APIView):
    """End a lease now (its buyer): a running lease completes at this second and
    is billed to it, one not yet started is cancelled; the GPUs go back to the
    offer at once, and the reason shows on the lease for its provider. A lease
    that has already ended is a 409."""

    permission_classes = [IsBuyer]

    @extend_schema(request=LeaseEndInput, responses={200: LeaseOutput, **errors(409)})
    def post(self, request, pk: int):
        buyer = organisation_for_user(request.user)
        lease = get_object_or_404(search.leases_of(buyer).filter(buyer=buyer), pk=pk)
        data = LeaseEndInput(data=request.data)
        data.is_valid(raise_exception=True)
        lease_end_now(lease=lease, actor=request.user, reason=data.validated_data["reason"])
        return Response(LeaseOutput(search.leases_of(buyer).get(pk=pk)).data)


class LeaseResellInput(serializers.Serializer):
    price_amount = serializers.IntegerField(
        min_value=1,
        max_value=limits.MAX_PRICE_AMOUNT,
        help_text="The seller's ask per GPU-hour (minor units).",
    )


class LeaseResellView(APIView):
    """Put the unused rest of a lease (its buyer's) up for resale on the book at
    this ask: from the next whole hour (or its start) for the whole hours left.
    A buyer whose order fills it leases the GPUs, billed at the ask for the time
    delivered; the seller is credited the fill minus the platform fee, through
    billing's ledger, and its own lease runs and is billed on as matched. A
    lease already ended, on interruptible capacity, bought from a resale or
    already up for resale is a 409."""

    permission_classes = [IsBuyer]

    @extend_schema(request=LeaseResellInput, responses={201: OfferOutput, **errors(409)})
    def post(self, request, pk: int):
        buyer = organisation_for_user(request.user)
        lease = get_object_or_404(search.leases_of(buyer).filter(buyer=buyer), pk=pk)
        data = LeaseResellInput(data=request.data)
        data.is_valid(raise_exception=True)
        offer = resale.lease_resell(lease=lease, actor=request.user, **data.validated_data)
        return Response(OfferOutput(offer).data, status=status.HTTP_201_CREATED)


class LeaseResaleCancelView(APIView):
    """Take the unsold rest of the lease's resale off the book (GPUs already
    resold stay with their new holder). A lease not up for resale is a 409."""

    permission_classes = [IsBuyer]

    @extend_schema(request=None, responses={200: OfferOutput, **errors(409)})
    def post(self, request, pk: int):
        buyer = organisation_for_user(request.user)
        lease = get_object_or_404(search.leases_of(buyer).filter(buyer=buyer), pk=pk)
        offer = resale.lease_resale_cancel(lease=lease, actor=request.user)
        return Response(OfferOutput(offer).data)
