"""The one door to Stripe. Everything else in the exchange calls these
functions with plain values and gets plain dicts back.

Every call that creates something carries an idempotency key chosen (and
stored) by the caller, so a retry after a crash or a timeout creates nothing
twice. settings.STRIPE_API_BASE points the SDK at localstripe in the demo and
the tests; STRIPE_CONNECT_ENABLED adds the Connect-only fields (localstripe
rejects them).
"""

import json
from collections.abc import Iterator
from typing import Any

import stripe
from django.conf import settings


class GatewayError(Exception):
    """Stripe refused or could not be reached; `retryable` says whether to try again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class WebhookSignatureError(Exception):
    pass


def _client() -> stripe.StripeClient:
    base = settings.STRIPE_API_BASE
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": base} if base else None,
        max_network_retries=2,
    )


def _call(fn, *args, **kwargs) -> dict[str, Any]:
    try:
        result = fn(*args, **kwargs)
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise GatewayError(str(exc), retryable=True) from exc
    except stripe.StripeError as exc:
        retryable = getattr(exc, "http_status", None) in {409, 500, 502, 503}
        raise GatewayError(str(exc), retryable=retryable) from exc
    return result.to_dict()


def customer_create(*, name: str, reference: str, idempotency_key: str) -> str:
    """A Stripe customer for one buyer organisation; returns its id."""
    customer = _call(
        _client().v1.customers.create,
        params={"name": name, "metadata": {"organisation": reference}},
        options={"idempotency_key": idempotency_key},
    )
    return customer["id"]


def payment_intent_create(
    *,
    amount: int,
    currency: str,
    customer: str,
    idempotency_key: str,
    transfer_group: str,
    metadata: dict[str, str],
    payment_method: str | None = None,
    off_session: bool = False,
) -> dict[str, Any]:
    """A card PaymentIntent; confirmed at once when a payment method is given.
    `off_session`: the buyer is not there to authenticate (an automatic top-up
    charging its saved card), so Stripe declines rather than asks for 3-D Secure."""
    params: dict[str, Any] = {
        "amount": amount,
        "currency": currency.lower(),
        "customer": customer,
        "payment_method_types": ["card"],
        "metadata": {**metadata, "transfer_group": transfer_group},
    }
    if settings.STRIPE_CONNECT_ENABLED:
        params["transfer_group"] = transfer_group
    if payment_method:
        params["payment_method"] = payment_method
        params["confirm"] = True
        if off_session:
            params["off_session"] = True
    return _call(
        _client().v1.payment_intents.create,
        params=params,
        options={"idempotency_key": idempotency_key},
    )


def payment_intent_retrieve(*, payment_intent_id: str) -> dict[str, Any]:
    return _call(_client().v1.payment_intents.retrieve, payment_intent_id)


def refund_create(*, payment_intent_id: str, amount: int, idempotency_key: str) -> dict[str, Any]:
    return _call(
        _client().v1.refunds.create,
        params={"payment_intent": payment_intent_id, "amount": amount},
        options={"idempotency_key": idempotency_key},
    )


def transfer_create(
    *,
    amount: int,
    currency: str,
    destination: str,
    transfer_group: str,
    idempotency_key: str,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """Stripe Connect 'separate charges and transfers': move a provider's
    share of an invoice to its connected account, grouped with the charge."""
    return _call(
        _client().v1.transfers.create,
        params={
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": metadata,
        },
        options={"idempotency_key": idempotency_key},
    )


def events_list(*, created_gte: int) -> Iterator[dict[str, Any]]:
    """Recent events, newest first, all pages (for reconciliation)."""
    starting_after = None
    while True:
        params: dict[str, Any] = {"created": {"gte": created_gte}, "limit": 100}
        if starting_after:
            params["starting_after"] = starting_after
        page = _call(_client().v1.events.list, params=params)
        yield from page["data"]
        if not page.get("has_more") or not page["data"]:
            return
        starting_after = page["data"][-1]["id"]


def webhook_event(*, payload: bytes, signature: str | None) -> dict[str, Any]:
    """Verify a webhook's Stripe-Signature (HMAC and a 300 s timestamp
    tolerance) and return the event as a dict."""
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"),
            signature or "",
            settings.STRIPE_WEBHOOK_SECRET,
            settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise WebhookSignatureError(str(exc)) from exc
    if not isinstance(event, dict) or not str(event.get("id", "")).startswith("evt_"):
        raise WebhookSignatureError("not a Stripe event")
    return event
