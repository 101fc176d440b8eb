"""Webhook endpoints of the caller's organisation (accounts/webhooks.py): its
owners and admins add, change and remove them, send a test event, and see
every delivery with its outcome."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import webhooks
from accounts.invitations import membership_check_manager
from accounts.models import WebhookDelivery, WebhookEndpoint
from accounts.permissions import HasOrganisation
from accounts.selectors import organisation_for_user
from accounts.throttles import WebhookThrottle
from core.api import PaginatedAPIView
from core.openapi import errors

EVENT_CHOICES = sorted(webhooks.EVENT_TYPES)


class EndpointOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "active",
            "created_at",
            "disabled_at",
            "disabled_reason",
        ]


class EndpointWithSecretOutput(EndpointOutput):
    """The signing secret, shown when the endpoint is made or its secret rotated."""

    class Meta(EndpointOutput.Meta):
        fields = [*EndpointOutput.Meta.fields, "secret"]


class EndpointInput(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_CHOICES),
        required=False,
        max_length=len(EVENT_CHOICES),
        help_text="Empty or left out: every event type.",
    )


class EndpointChangeInput(EndpointInput):
    url = serializers.URLField(max_length=500, required=False)
    active = serializers.BooleanField(required=False)


class DeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "created_at",
            "delivered_at",
            "payload",
        ]


def _managed_endpoints(request):
    organisation = organisation_for_user(request.user)
    membership_check_manager(user=request.user, organisation=organisation)
    return organisation, webhooks.endpoints_of(organisation)


class _WebhookView(APIView):
    permission_classes = [HasOrganisation]

    def get_throttles(self):
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return []
        return [WebhookThrottle()]


class WebhookEndpointListView(_WebhookView, PaginatedAPIView):
    """The organisation's webhook endpoints; POST adds one and answers its
    signing secret once. Deliveries are signed by the Standard Webhooks scheme
    (`webhook-id`, `webhook-timestamp`, `webhook-signature`)."""

    @extend_schema(responses=EndpointOutput(many=True))
    def get(self, request):
        _, endpoints = _managed_endpoints(request)
        return self.paginated(queryset=endpoints, serializer_class=EndpointOutput)

    @extend_schema(request=EndpointInput, responses={201: EndpointWithSecretOutput, **errors(403)})
    def post(self, request):
        organisation, _ = _managed_endpoints(request)
        data = EndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhooks.endpoint_create(
            organisation=organisation, by=request.user, **data.validated_data
        )
        return Response(EndpointWithSecretOutput(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailView(_WebhookView):
    """One endpoint: change its URL, events or whether it is on; remove it."""

    @extend_schema(responses={200: EndpointOutput, **errors(403, 404)})
    def get(self, request, pk: int):
        _, endpoints = _managed_endpoints(request)
        return Response(EndpointOutput(get_object_or_404(endpoints, pk=pk)).data)

    @extend_schema(request=EndpointChangeInput, responses={200: EndpointOutput, **errors(403, 404)})
    def patch(self, request, pk: int):
        _, endpoints = _managed_endpoints(request)
        endpoint = get_object_or_404(endpoints, pk=pk)
        data = EndpointChangeInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        webhooks.endpoint_update(endpoint=endpoint, **data.validated_data)
        return Response(EndpointOutput(endpoint).data)

    @extend_schema(responses={204: None, **errors(403, 404)})
    def delete(self, request, pk: int):
        _, endpoints = _managed_endpoints(request)
        webhooks.endpoint_remove(endpoint=get_object_or_404(endpoints, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookSecretRotateView(_WebhookView):
    """A new signing secret; the old one stops signing at once."""

    @extend_schema(request=None, responses={200: EndpointWithSecretOutput, **errors(403, 404)})
    def post(self, request, pk: int):
        _, endpoints = _managed_endpoints(request)
        endpoint = webhooks.endpoint_secret_rotate(endpoint=get_object_or_404(endpoints, pk=pk))
        return Response(EndpointWithSecretOutput(endpoint).data)


class WebhookTestView(_WebhookView):
    """Send a `webhook.test` event to this endpoint now (it need not subscribe to it)."""

    @extend_schema(request=None, responses={202: DeliveryOutput, **errors(403, 404, 409)})
    def post(self, request, pk: int):
        _, endpoints = _managed_endpoints(request)
        endpoint = get_object_or_404(endpoints, pk=pk)
        delivery = webhooks.endpoint_test(endpoint=endpoint, by=request.user)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryListView(_WebhookView, PaginatedAPIView):
    """The endpoint's deliveries, newest first, with each one's last outcome."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status", enum=[s.value for s in WebhookDelivery.Status], required=False
            )
        ],
        responses=DeliveryOutput(many=True),
    )
    def get(self, request, pk: int):
        _, endpoints = _managed_endpoints(request)
        endpoint = get_object_or_404(endpoints, pk=pk)
        deliveries = endpoint.deliveries.all()
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in WebhookDelivery.Status.values:
                raise serializers.ValidationError(
                    {"status": [f"Choose one of {', '.join(WebhookDelivery.Status.values)}."]}
                )
            deliveries = deliveries.filter(status=wanted)
        return self.paginated(queryset=deliveries, serializer_class=DeliveryOutput)


class WebhookRedeliverView(_WebhookView):
    """Send a delivered or failed event again, now."""

    @extend_schema(request=None, responses={202: DeliveryOutput, **errors(403, 404)})
    def post(self, request, pk: int, delivery_pk: int):
        _, endpoints = _managed_endpoints(request)
        endpoint = get_object_or_404(endpoints, pk=pk)
        delivery = get_object_or_404(endpoint.deliveries.all(), pk=delivery_pk)
        webhooks.delivery_redeliver(delivery=delivery)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)
