"""POST /api/v1/stripe/webhook/ — Stripe's signed events.

A plain Django view: no session, no CSRF, no DRF parsing, because the
signature is over the exact bytes Stripe sent.
"""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import payments
from billing.gateways import stripe as gateway


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = gateway.webhook_event(
            payload=request.body, signature=request.headers.get("Stripe-Signature")
        )
    except gateway.WebhookSignatureError:
        return JsonResponse({"detail": "Invalid signature.", "errors": {}}, status=400)
    _record, created = payments.stripe_event_record(event=event)
    return JsonResponse({"received": True, "duplicate": not created})
