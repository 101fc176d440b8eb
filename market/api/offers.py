"""API: offers - public search, a provider's own offers and their actions."""

import hashlib

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsProvider
from accounts.selectors import organisation_for_user
from core import limits
from core.api import PaginatedAPIView
from core.cache import cached
from core.db import replica_reads
from market import capacity
from market import selectors as search
from market.api.capacity import SiteOutput
from market.models import GPUModel, Offer
from market.models.capacity import BOARD_CACHE, Hub

# A page of the public search is the same for everyone: it is cached until the
# book changes (BOARD_CACHE moves on with every write to offers, sites, leases,
# node verification and reliability scores) and for this long at most - an
# offer whose window closes leaves the search without a write.
SEARCH_PAGE_SECONDS = 15


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
    verified = serializers.BooleanField(
        read_only=True,
        default=False,
        help_text="Every node of the offer passed its self-test (measured memory and TFLOPS).",
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
            "verified",
            "available_from",
            "available_until",
            "min_hours",
            "max_hours",
            "interruptible",
            "resale_of",
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
    @replica_reads
    def get(self, request):
        data = OfferSearchInput(data=request.query_params)
        data.is_valid(raise_exception=True)

        def page() -> dict:
            offers = search.OfferResults(**data.validated_data)
            return self.paginated(queryset=offers, serializer_class=OfferOutput).data

        # the whole address: the filters, the page, and the host its links name
        key = hashlib.sha256(request.build_absolute_uri().encode()).hexdigest()
        return Response(
            cached(BOARD_CACHE, f"search-page:{key}", page, timeout=SEARCH_PAGE_SECONDS)
        )

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
        offer = get_object_or_404(
            Offer.objects.filter(pk__in=visible.values("pk")).annotate(
                verified=search.offer_verified()
            ),
            pk=pk,
        )
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
