"""Webhooks the exchange sends: an organisation's own systems hear of what
concerns them without polling (a pre-emption notice, a lease that ended, a
funding alert, an invoice issued).

- `webhook_emit` writes one `WebhookDelivery` per subscribed, active endpoint
  in the caller's transaction (the event exists exactly when the change it
  reports was committed) and enqueues a send through the outbox.
- `webhooks_send_due` posts every delivery that is due: JSON, signed by the
  Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`,
  `webhook-signature: v1,<base64 HMAC-SHA256>`), so a receiver verifies it
  with any Standard Webhooks library and the endpoint's secret, and
  de-duplicates by `webhook-id` (the same on every attempt).
- A 2xx answer delivers; anything else (or no answer within the timeout) is
  retried with exponential backoff, WEBHOOK_MAX_ATTEMPTS in all (about a day),
  then the delivery fails and stays listed. An endpoint whose last
  WEBHOOK_DISABLE_AFTER_FAILURES deliveries all failed is disabled, with the
  reason, until its organisation turns it on again.
- Where deliveries may go: https only, and never to a loopback, private,
  link-local or reserved address (checked when the endpoint is saved and
  again, after DNS, before every attempt), unless WEBHOOKS_ALLOW_PRIVATE
  (on in development and the demo, off by default in production). Redirects
  are not followed.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _
from standardwebhooks.webhooks import Webhook

from accounts.models import Organisation, WebhookDelivery, WebhookEndpoint
from core import clock
from core.errors import ApplicationError, Conflict
from core.outbox import outbox_enqueue

logger = logging.getLogger(__name__)

# The events an endpoint may subscribe to: (type, what it reports).
EVENT_TYPES = {
    "lease.preemption_notice": "an interruptible lease will be pre-empted at `ends_at`",
    "lease.ended": "a lease ended before its planned end (by its buyer, a drain, a fault)",
    "funding.alert": "available funds fell to or below an alert threshold (or zero)",
    "invoice.issued": "an invoice was issued and can be paid",
    "webhook.test": "a test event sent on request",
}
SEND_TASK = "accounts.webhooks_send"
MAX_ENDPOINTS_PER_ORGANISATION = 10
_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
SEND_BUDGET_SECONDS = 30.0


class WebhookRefused(ApplicationError):
    """A webhook endpoint the exchange will not call; `errors` by field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, errors={field: [message]})


def _secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _address_problem(host: str) -> str | None:
    """Why `host` is no place to send a webhook to, or None."""
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return None
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return _("the host name does not resolve")
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            return _("the host resolves to a private or reserved address (%(address)s)") % {
                "address": address
            }
    return None


def url_check(url: str) -> None:
    """Refuse a URL no webhook may go to (module docstring)."""
    parts = urlsplit(url)
    allowed = {"https", "http"} if settings.WEBHOOKS_ALLOW_PRIVATE else {"https"}
    if parts.scheme not in allowed or not parts.hostname:
        raise WebhookRefused("url", _("Use an https:// URL."))
    if parts.username or parts.password:
        raise WebhookRefused("url", _("Leave credentials out of the URL."))
    problem = _address_problem(parts.hostname)
    if problem:
        raise WebhookRefused("url", problem)


def _event_types_check(event_types: Iterable[str]) -> list[str]:
    chosen = sorted(set(event_types))
    unknown = [name for name in chosen if name not in EVENT_TYPES]
    if unknown:
        raise WebhookRefused(
            "event_types", _("Unknown event types: %(names)s") % {"names": ", ".join(unknown)}
        )
    return chosen


def endpoint_create(
    *,
    organisation: Organisation,
    url: str,
    by: Any,
    description: str = "",
    event_types: Iterable[str] = (),
) -> WebhookEndpoint:
    url_check(url)
    chosen = _event_types_check(event_types)
    with transaction.atomic():
        # the organisation's row serialises two creations racing past the count
        Organisation.objects.select_for_update().get(pk=organisation.pk)
        if (
            WebhookEndpoint.objects.filter(organisation=organisation).count()
            >= MAX_ENDPOINTS_PER_ORGANISATION
        ):
            raise WebhookRefused(
                "url",
                _("An organisation has at most %(n)d webhook endpoints.")
                % {"n": MAX_ENDPOINTS_PER_ORGANISATION},
            )
        return WebhookEndpoint.objects.create(
            organisation=organisation,
            url=url,
            description=description,
            event_types=chosen,
            secret=_secret_new(),
            created_by=by,
            created_at=clock.now(),
        )


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    description: str | None = None,
    event_types: Iterable[str] | None = None,
    active: bool | None = None,
) -> WebhookEndpoint:
    if url is not None:
        url_check(url)
        endpoint.url = url
    if description is not None:
        endpoint.description = description
    if event_types is not None:
        endpoint.event_types = _event_types_check(event_types)
    if active is not None:
        endpoint.active = active
        if active:  # turned on again by its organisation: failures start afresh
            endpoint.disabled_at, endpoint.disabled_reason = None, ""
    endpoint.save()
    return endpoint


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    endpoint.secret = _secret_new()
    endpoint.save(update_fields=["secret"])
    return endpoint


def endpoint_remove(*, endpoint: WebhookEndpoint) -> None:
    """The endpoint gets no more events; its deliveries go with it."""
    endpoint.delete()


def endpoints_of(organisation: Organisation) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(organisation=organisation)


def webhook_emit(
    *, organisation_id: int, event_type: str, data: dict[str, Any], key: str | None = None
) -> int:
    """Queue `event_type` for every active endpoint of the organisation that
    subscribed to it; returns how many deliveries were written. `key` makes an
    event once-only (e.g. `lease.ended:42`): emitting it again writes nothing."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(organisation_id=organisation_id, active=True)
        if not endpoint.event_types or event_type in endpoint.event_types
    ]
    if not endpoints:
        return 0
    now = clock.now()
    event_id = "evt_" + (
        uuid.uuid5(uuid.NAMESPACE_URL, f"exchange:{organisation_id}:{key}").hex
        if key
        else uuid.uuid4().hex
    )
    payload = {
        "id": event_id,
        "type": event_type,
        "created_at": now.isoformat(),
        "organisation": organisation_id,
        "data": data,
    }
    written = 0
    for endpoint in endpoints:
        _, created = WebhookDelivery.objects.get_or_create(
            endpoint=endpoint,
            event_id=event_id,
            defaults={
                "event_type": event_type,
                "payload": payload,
                "next_attempt_at": now,
                "created_at": now,
            },
        )
        written += created
    if written:
        outbox_enqueue(
            task_name=SEND_TASK, args=[], key=f"webhooks-send:{event_id}", coalesce=SEND_TASK
        )
    return written


def endpoint_test(*, endpoint: WebhookEndpoint, by: Any) -> WebhookDelivery:
    """A `webhook.test` event for this endpoint alone, sent at once."""
    if not endpoint.active:
        raise Conflict(
            _("The endpoint is turned off; turn it on to send it events."),
            errors={"active": [_("The endpoint is turned off.")]},
        )
    now = clock.now()
    event_id = "evt_" + uuid.uuid4().hex
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=event_id,
            event_type="webhook.test",
            payload={
                "id": event_id,
                "type": "webhook.test",
                "created_at": now.isoformat(),
                "organisation": endpoint.organisation_id,
                "data": {"endpoint": endpoint.pk, "requested_by": getattr(by, "username", "")},
            },
            next_attempt_at=now,
            created_at=now,
        )
        outbox_enqueue(
            task_name=SEND_TASK, args=[], key=f"webhooks-send:{event_id}", coalesce=SEND_TASK
        )
    return delivery


def _backoff(attempts: int) -> dt.timedelta:
    """30 s, 1 min, 2 min ... capped at 6 h: WEBHOOK_MAX_ATTEMPTS=12 spans about a day."""
    return dt.timedelta(seconds=min(30 * 2 ** (attempts - 1), 6 * 3600))


def _sign(endpoint: WebhookEndpoint, *, event_id: str, body: str) -> dict[str, str]:
    # The timestamp is the real time even on a simulated clock: receivers check it
    # against theirs (five minutes' tolerance) to refuse replays.
    sent_at = dt.datetime.now(dt.UTC)
    return {
        "content-type": "application/json",
        "user-agent": "compute-exchange-webhooks/1",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(endpoint.secret).sign(event_id, sent_at, body),
    }


def _attempt(delivery: WebhookDelivery, client: httpx.Client) -> tuple[int | None, str]:
    endpoint = delivery.endpoint
    problem = _address_problem(urlsplit(endpoint.url).hostname or "")
    if problem:
        return None, problem
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    try:
        answer = client.post(
            endpoint.url,
            content=body.encode(),
            headers=_sign(endpoint, event_id=delivery.event_id, body=body),
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300]
    if 200 <= answer.status_code < 300:
        return answer.status_code, ""
    return answer.status_code, f"HTTP {answer.status_code}"


def webhooks_send_due(*, limit: int = 200) -> dict[str, int]:
    """Send what is due; returns counts by outcome. Each delivery is claimed by
    pushing its next attempt past the timeout before the call, so two workers
    never send the same one at once."""
    now = clock.now()
    sent = {"delivered": 0, "retrying": 0, "failed": 0}
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at__lte=now,
                endpoint__active=True,
            )
            .order_by("next_attempt_at", "pk")[:limit]
            .values_list("pk", flat=True)
        )
        WebhookDelivery.objects.filter(pk__in=due).update(
            next_attempt_at=now + dt.timedelta(minutes=5)
        )
    if not due:
        return sent
    # A run stops sending after SEND_BUDGET_SECONDS (dead endpoints answer only at
    # the timeout) and hands back what it claimed but did not try, well inside the
    # task's time limit: a run killed there would leave its claims untried and uncounted.
    deadline = time.monotonic() + SEND_BUDGET_SECONDS
    deliveries = list(WebhookDelivery.objects.filter(pk__in=due).select_related("endpoint"))
    with httpx.Client(timeout=_TIMEOUT, follow_redirects=False) as client:
        for n, delivery in enumerate(deliveries):
            if time.monotonic() > deadline:
                untried = [d.pk for d in deliveries[n:]]
                WebhookDelivery.objects.filter(pk__in=untried).update(next_attempt_at=now)
                break
            code, error = _attempt(delivery, client)
            sent[_record(delivery, code=code, error=error)] += 1
    return sent


def _record(delivery: WebhookDelivery, *, code: int | None, error: str) -> str:
    now = clock.now()
    delivery.attempts += 1
    delivery.last_status_code = code
    delivery.last_error = error
    if not error:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at, delivery.next_attempt_at = now, None
        outcome = "delivered"
    elif delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
        outcome = "failed"
    else:
        delivery.next_attempt_at = now + _backoff(delivery.attempts)
        outcome = "retrying"
    delivery.save()
    if outcome == "failed":
        _endpoint_review(delivery.endpoint)
    logger.info(
        "webhook %s %s to endpoint %s: %s",
        delivery.event_type,
        delivery.event_id,
        delivery.endpoint_id,
        outcome if not error else f"{outcome} ({error})",
    )
    return outcome


def _endpoint_review(endpoint: WebhookEndpoint) -> None:
    """Disable an endpoint whose last deliveries all failed for good."""
    window = settings.WEBHOOK_DISABLE_AFTER_FAILURES
    last = list(
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .exclude(status=WebhookDelivery.Status.PENDING)
        .order_by("-pk")
        .values_list("status", flat=True)[:window]
    )
    if len(last) == window and all(s == WebhookDelivery.Status.FAILED for s in last):
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            active=False,
            disabled_at=clock.now(),
            disabled_reason=_("its last %(n)d deliveries failed after every retry") % {"n": window},
        )


def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivered or failed event again, now (the organisation asked)."""
    delivery.status = WebhookDelivery.Status.PENDING
    delivery.next_attempt_at = clock.now()
    delivery.attempts = 0
    delivery.save(update_fields=["status", "next_attempt_at", "attempts"])
    outbox_enqueue(
        task_name=SEND_TASK,
        args=[],
        key=f"webhooks-send:redeliver:{delivery.pk}:{uuid.uuid4().hex}",
        coalesce=SEND_TASK,
    )
    return delivery
