"""API: the public book (depth by price level, anonymised) and quotes (what an
order would get now, and why every other offer would not serve it)."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core import clock, limits
from market import selectors as search
from market.api.orders import OrderCreateInput
from market.matching import REASONS
from market.models.capacity import Hub
from market.throttles import QuoteThrottle


class DepthLevelOutput(serializers.Serializer):
    price_amount = serializers.IntegerField(help_text="Minor units per GPU-hour.")
    price_per_pflops_hour = serializers.DecimalField(
        max_digits=32,
        decimal_places=2,
        allow_null=True,
        help_text="Minor units per PFLOPS-hour of dense BF16 (null: no published figure).",
    )
    gpus = serializers.IntegerField()
    count = serializers.IntegerField(help_text="Orders (bids) or offers (asks) at this price.")


class DepthBookOutput(serializers.Serializer):
    gpu_model = serializers.CharField(source="gpu_model.slug")
    gpu_model_name = serializers.CharField(source="gpu_model.__str__")
    dense_tflops = serializers.DecimalField(
        source="gpu_model.dense_tflops", max_digits=8, decimal_places=2
    )
    domestic = serializers.BooleanField(source="gpu_model.domestic")
    currency = serializers.CharField()
    bids = DepthLevelOutput(many=True, help_text="Best (highest) bid first.")
    asks = DepthLevelOutput(many=True, help_text="Best (lowest) ask first.")


class BookOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    hub = serializers.CharField(allow_null=True)
    books = DepthBookOutput(many=True)


class BookInput(serializers.Serializer):
    gpu_model = serializers.SlugField(required=False, max_length=64)
    hub = serializers.ChoiceField(choices=Hub.choices, required=False)


class BookView(APIView):
    """The standing book, per GPU model: bids (unfilled GPUs of good-till
    orders) and asks (GPUs left on live offers) summed by price level, in
    minor units per GPU-hour and per PFLOPS-hour. No organisation, order or
    offer is named. An order accepting several models stands in each book."""

    permission_classes = [AllowAny]

    @extend_schema(parameters=[BookInput], responses=BookOutput)
    def get(self, request):
        data = BookInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        now = clock.now()
        books = search.book_depth(now=now, **data.validated_data)
        hub = data.validated_data.get("hub")
        return Response(BookOutput({"at": now, "hub": hub, "books": books}).data)


class QuoteInput(OrderCreateInput):
    max_price_amount = serializers.IntegerField(
        min_value=1,
        max_value=limits.MAX_PRICE_AMOUNT,
        required=False,
        allow_null=True,
        default=None,
        help_text="Leave out to see every ask; with it, dearer offers are excluded (price).",
    )
    failover_allowed = None
    max_refills = None
    time_in_force = None
    good_till = None


class QuoteLineOutput(serializers.Serializer):
    offer = serializers.IntegerField(source="fill.offer_id")
    gpu_model = serializers.CharField(source="offer.gpu_model.slug")
    provider = serializers.CharField(source="offer.provider.legal_name")
    site = serializers.CharField(source="offer.site.name")
    region = serializers.CharField(source="offer.site.region")
    hub = serializers.CharField(source="offer.site.hub")
    green_share = serializers.DecimalField(
        source="offer.site.green_share", max_digits=4, decimal_places=3
    )
    gpus = serializers.IntegerField(source="fill.gpus")
    price_amount = serializers.IntegerField(source="fill.price_amount")
    cost_amount = serializers.IntegerField(help_text="GPUs x hours x price, minor units.")
    starts_at = serializers.DateTimeField(source="fill.starts_at")
    ends_at = serializers.DateTimeField(source="fill.ends_at")


class QuoteExclusionOutput(serializers.Serializer):
    offer = serializers.IntegerField(source="exclusion.offer_id")
    gpu_model = serializers.CharField(source="offer.gpu_model.slug")
    site = serializers.CharField(source="offer.site.name")
    hub = serializers.CharField(source="offer.site.hub")
    price_amount = serializers.IntegerField(source="exclusion.price_amount")
    reasons = serializers.ListField(
        child=serializers.ChoiceField(choices=REASONS),
        source="exclusion.reasons",
        help_text="model: GPU model not accepted; currency; price: ask above the maximum "
        "price; green_share: site below the minimum green share; region; hub; hours: "
        "outside the offer's minimum/maximum lease; unverified: a node of the offer is not "
        "verified and the order asks for verified capacity; window: its window cannot hold the lease; "
        "capacity: no free GPU on an online node; gang_site: a gang order needs one site and "
        "this one cannot hold it or costs more; not_needed: better offers cover the order.",
    )


class QuoteOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    currency = serializers.CharField()
    gpus_asked = serializers.IntegerField()
    gpus = serializers.IntegerField(help_text="GPUs the book would give now.")
    hours = serializers.IntegerField()
    gpu_hours = serializers.IntegerField()
    pflops_hours = serializers.DecimalField(max_digits=20, decimal_places=2)
    cost_amount = serializers.IntegerField(help_text="At the asks, minor units.")
    lines = QuoteLineOutput(many=True)
    excluded = QuoteExclusionOutput(many=True, help_text="Cheapest first, at most 200.")
    excluded_total = serializers.IntegerField()


class QuoteView(APIView):
    """What an order would get from the book now: the offers, GPUs and cost,
    and every live offer left out with its reasons. Nothing is placed or
    held: the book may move before an order is placed. Rate-limited per
    client address."""

    permission_classes = [AllowAny]
    throttle_classes = [QuoteThrottle]

    @extend_schema(request=QuoteInput, responses=QuoteOutput)
    def post(self, request):
        data = QuoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        now = clock.now()
        view = search.order_quote_view(order=values, currency=settings.DEFAULT_CURRENCY, now=now)
        return Response(QuoteOutput(quote_payload(view, at=now)).data)


def quote_payload(view: search.QuoteView, *, at) -> dict:
    quote = view.quote
    return {
        "at": at,
        "currency": view.currency,
        "gpus_asked": quote.gpus_asked,
        "gpus": quote.gpus,
        "hours": view.hours,
        "gpu_hours": view.gpu_hours,
        "pflops_hours": view.pflops_hours,
        "cost_amount": view.cost_amount,
        "lines": [
            {
                "fill": fill,
                "offer": view.offers[fill.offer_id],
                "cost_amount": fill.gpus * fill.price_amount * view.hours,
            }
            for fill in quote.fills
        ],
        "excluded": [{"exclusion": e, "offer": view.offers[e.offer_id]} for e in view.excluded],
        "excluded_total": quote.excluded_total,
    }
