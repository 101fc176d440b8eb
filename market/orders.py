"""Orders (the buyer's bid): place, cancel, expire.

Statuses and transitions are listed on market.models.Order. Placing a
good-till order queues a matching task after commit (coalesced: one run
matches every order placed since the last, core.outbox); it then stands on the
book, the beat's round matches whatever is left, and `orders_expire` releases
the unfilled part when its `good_till` (at the latest its start-by deadline)
passes. An immediate-or-cancel order is matched in the request that places
it and its unfilled part is released at once.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.utils.module_loading import import_string

from accounts.models import Organisation
from accounts.services import organisation_check_can_trade
from core import clock, limits
from core.errors import ApplicationError, Conflict
from core.outbox import outbox_enqueue
from core.transitions import transition
from market.catalogue import catalogue_models
from market.matching import OPEN_STATUSES, acceptable_model_ids, order_match
from market.models import GPUModel, Lease, Node, Order, OrderEvent
from market.models.capacity import Hub

MAX_START_BY = limits.MAX_ORDER_START_AHEAD
# An immediate-or-cancel order is matched and closed in the request that places
# it; should that request die in between, the order leaves the book this much
# later (`orders_expire`), never matched by a round meanwhile.
IOC_GRACE = dt.timedelta(minutes=1)
GOOD_TILL = Order.TimeInForce.GOOD_TILL
IOC = Order.TimeInForce.IMMEDIATE_OR_CANCEL


def _digest(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _largest_site(model_ids: frozenset[int]) -> int:
    sizes = (
        Node.objects.filter(gpu_model_id__in=model_ids)
        .values("site_id")
        .annotate(gpus=Sum("gpu_count"))
        .values_list("gpus", flat=True)
    )
    return max(sizes, default=0)


def _validate(
    *,
    accepted: list[GPUModel],
    min_tflops: Decimal | None,
    min_memory_gb: int | None,
    domestic_only: bool,
    gpu_count: int,
    hours: int,
    max_price_amount: int,
    gang: bool,
    start_by: dt.datetime,
    hubs: Sequence[str],
    min_green_share: Decimal,
    time_in_force: str = GOOD_TILL,
    good_till: dt.datetime | None = None,
    max_refills: int | None = None,
    start_at: dt.datetime | None = None,
) -> None:
    errors: dict[str, list[str]] = {}
    if start_at is not None:
        if start_at.minute or start_at.second or start_at.microsecond:
            errors["start_at"] = ["A forward block starts on the hour."]
        elif start_at <= clock.now():
            errors["start_at"] = ["A forward block starts in the future."]
        elif start_at > start_by:
            errors["start_at"] = ["A forward block starts by the start-by deadline."]
    if max_refills is not None and not 0 <= max_refills <= limits.MAX_ORDER_REFILLS:
        errors["max_refills"] = [f"Allow 0 to {limits.MAX_ORDER_REFILLS} refills."]
    if not 1 <= gpu_count <= limits.MAX_ORDER_GPUS:
        errors["gpu_count"] = [f"Ask for 1 to {limits.MAX_ORDER_GPUS} GPUs."]
    if not 1 <= hours <= limits.MAX_ORDER_HOURS:
        errors["hours"] = [f"Ask for 1 to {limits.MAX_ORDER_HOURS} hours."]
    if not 0 < max_price_amount <= limits.MAX_PRICE_AMOUNT:
        errors["max_price_amount"] = [
            f"The maximum price is more than zero and at most {limits.MAX_PRICE_AMOUNT} minor units."
        ]
    if min_memory_gb is not None and not 0 <= min_memory_gb <= limits.MAX_MEMORY_GB:
        errors["min_memory_gb"] = [f"A memory floor is 0 to {limits.MAX_MEMORY_GB} GB."]
    if not Decimal(0) <= min_green_share <= Decimal(1):
        errors["min_green_share"] = ["The green share is between 0 and 1."]
    bad_hubs = sorted(set(hubs) - set(Hub.values))
    if bad_hubs:
        errors["hubs"] = [f"Unknown hub: {', '.join(bad_hubs)}."]
    now = clock.now()
    if start_by <= now:
        errors["start_by"] = ["The start-by deadline must be in the future."]
    elif start_by > now + MAX_START_BY:
        errors["start_by"] = ["The start-by deadline can be at most 90 days ahead."]
    if time_in_force not in Order.TimeInForce.values:
        errors["time_in_force"] = ["Choose good_till or ioc."]
    elif good_till is not None:
        if time_in_force == IOC:
            errors["good_till"] = ["An immediate-or-cancel order does not stand on the book."]
        elif good_till <= now:
            errors["good_till"] = ["Good-till must be in the future."]
        elif good_till > start_by:
            errors["good_till"] = ["An order cannot stand on the book past its start-by deadline."]
    model_ids = acceptable_model_ids(
        models=catalogue_models(),
        accepted_ids={m.pk for m in accepted},
        min_tflops=min_tflops,
        min_memory_gb=min_memory_gb,
        domestic_only=domestic_only,
    )
    if not model_ids:
        errors["accepted_models"] = ["No GPU model in the catalogue meets these requirements."]
    elif gang and gpu_count >= 1:
        largest = _largest_site(model_ids)
        if gpu_count > largest:
            errors["gpu_count"] = [
                f"A gang order must fit in one site; the largest site has {largest} "
                "GPUs of the accepted models."
            ]
    if errors:
        raise ApplicationError("The order is not valid.", errors=errors)


def order_create(
    *,
    buyer: Organisation,
    placed_by: User | None,
    gpu_count: int,
    hours: int,
    max_price_amount: int,
    start_by: dt.datetime,
    accepted_models: Sequence[GPUModel] = (),
    min_tflops: Decimal | None = None,
    min_memory_gb: int | None = None,
    regions: Sequence[str] = (),
    hubs: Sequence[str] = (),
    min_green_share: Decimal = Decimal(0),
    domestic_only: bool = False,
    gang: bool = False,
    failover_allowed: bool = True,
    verified_only: bool = False,
    interruptible: bool = False,
    max_refills: int | None = None,
    start_at: dt.datetime | None = None,
    time_in_force: str = GOOD_TILL,
    good_till: dt.datetime | None = None,
    currency: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Order, bool]:
    """Place an order; returns (order, created). With an idempotency key, the
    same request again returns the first order (created=False); the same key
    with a different request is a 409 and stores nothing. Only a verified buyer
    places orders.

    Good-till (the default) stands on the book until filled, cancelled or
    `good_till` (none: the start-by deadline). Immediate-or-cancel is matched
    here, before returning, and its unfilled part released at once.

    `interruptible`: the order accepts interruptible offers (cheaper, may be
    pre-empted with notice); an order that does not never lands on one, and
    may pre-empt the leases of lower bids there. `max_refills`: how often the
    order re-arms after losing a lease to pre-emption or node failure (none:
    no limit; re-arming needs `failover_allowed`). `start_at` (on the hour): a
    forward block, its leases start then and not before; once matched it is a
    contract its buyer may resell (market/resale.py)."""
    organisation_check_can_trade(organisation=buyer)
    payload = {
        "accepted_models": sorted(m.slug for m in accepted_models),
        "min_tflops": min_tflops,
        "min_memory_gb": min_memory_gb,
        "gpu_count": gpu_count,
        "hours": hours,
        "max_price_amount": max_price_amount,
        "currency": currency or settings.DEFAULT_CURRENCY,
        "regions": sorted(regions),
        "hubs": sorted(hubs),
        "min_green_share": min_green_share,
        "domestic_only": domestic_only,
        "gang": gang,
        "start_by": start_by.isoformat(),
        "failover_allowed": failover_allowed,
        "time_in_force": time_in_force,
        "verified_only": verified_only,
        "good_till": good_till.isoformat() if good_till else None,
    }
    # only when set: a repeated request of an order placed before these existed keeps its digest
    if interruptible:
        payload["interruptible"] = True
    if max_refills is not None:
        payload["max_refills"] = max_refills
    if start_at is not None:
        payload["start_at"] = start_at.isoformat()
    digest = _digest(payload)
    if idempotency_key:
        existing = _order_for_key(buyer=buyer, key=idempotency_key, digest=digest)
        if existing:
            return existing, False
    _validate(
        accepted=list(accepted_models),
        min_tflops=min_tflops,
        min_memory_gb=min_memory_gb,
        domestic_only=domestic_only,
        gpu_count=gpu_count,
        hours=hours,
        max_price_amount=max_price_amount,
        gang=gang,
        start_by=start_by,
        hubs=hubs,
        min_green_share=min_green_share,
        time_in_force=time_in_force,
        good_till=good_till,
        max_refills=max_refills,
        start_at=start_at,
    )
    # Checks of layers above the market (billing's funding terms), by dotted
    # path: the second declared seam (CONTRIBUTING.md); each raises to refuse.
    for check in settings.ORDER_PLACEMENT_CHECKS:
        import_string(check)(buyer=buyer, currency=str(payload["currency"]))
    if time_in_force == IOC:
        good_till = min(clock.now() + IOC_GRACE, start_by)
    try:
        with transaction.atomic():
            order = Order.objects.create(
                buyer=buyer,
                placed_by=placed_by,
                min_tflops=min_tflops,
                min_memory_gb=min_memory_gb,
                gpu_count=gpu_count,
                hours=hours,
                max_price_amount=max_price_amount,
                currency=str(payload["currency"]),
                regions=sorted(set(regions)),
                hubs=sorted(set(hubs)),
                min_green_share=min_green_share,
                domestic_only=domestic_only,
                gang=gang,
                start_by=start_by,
                failover_allowed=failover_allowed,
                time_in_force=time_in_force,
                good_till=good_till,
                verified_only=verified_only,
                interruptible=interruptible,
                max_refills=max_refills,
                start_at=start_at,
                idempotency_key=idempotency_key or None,
                request_digest=digest,
            )
            # a new order has none yet: insert them, no read of what it has
            Order.accepted_models.through.objects.bulk_create(
                Order.accepted_models.through(order=order, gpumodel_id=pk)
                for pk in sorted({model.pk for model in accepted_models})
            )
            OrderEvent.objects.create(
                order=order, to_status=Order.Status.OPEN, actor=placed_by, reason="placed"
            )
            if time_in_force == GOOD_TILL:
                # One matching run for every order placed meanwhile: never a
                # backlog of one task per order behind a burst of placements.
                outbox_enqueue(
                    task_name="market.match_order",
                    args=[order.pk],
                    key=f"order-match:{order.pk}",
                    coalesce="market.match_order",
                    coalesce_seconds=settings.MATCH_COALESCE_SECONDS,
                    fresh=True,
                )
    except IntegrityError:
        # The same key raced in from a second request: the first one won.
        existing = _order_for_key(buyer=buyer, key=idempotency_key or "", digest=digest)
        if existing is None:
            raise
        return existing, False
    if time_in_force == IOC:
        order_match(order_id=order.pk)
        order = order_release_unfilled(
            order=order, reason="immediate or cancel: unfilled GPUs released"
        )
    return order, True


def order_release_unfilled(*, order: Order, reason: str) -> Order:
    """Take an open or partly filled order off the book (status expired): its
    unfilled GPUs are released, the leases it holds run on. A filled order is
    left as it is."""
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        if locked.status in OPEN_STATUSES:
            transition(
                locked, old=locked.status, new=Order.Status.EXPIRED, actor=None, reason=reason
            )
    locked.refresh_from_db()
    return locked


def _order_for_key(*, buyer: Organisation, key: str, digest: str) -> Order | None:
    existing = Order.objects.filter(buyer=buyer, idempotency_key=key).first()
    if existing is not None and existing.request_digest != digest:
        raise Conflict(
            "This Idempotency-Key was already used for a different order.",
            errors={"idempotency_key": ["Already used with a different request."]},
        )
    return existing


def order_cancel(*, order: Order, actor: User | None, end_running_leases: bool = False) -> Order:
    """Cancel an open or partly filled order: the unfilled part is dropped and
    leases not yet started are cancelled; running leases run to their end,
    unless `end_running_leases`: then they end now too (billed to the second),
    and a filled order can be cancelled as well."""
    from market.leases import leases_cancel, leases_stop
    from market.resale import resales_close

    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order.pk)
        cancellable = (*OPEN_STATUSES, Order.Status.FILLED) if end_running_leases else OPEN_STATUSES
        if locked.status not in cancellable:
            raise ApplicationError(
                f"An order that is {locked.get_status_display()} cannot be cancelled.",
                errors={"status": [f"The order is {locked.status}."]},
            )
        transition(
            locked,
            old=locked.status,
            new=Order.Status.CANCELLED,
            actor=actor,
            reason="cancelled by the buyer",
        )
        pending = list(locked.leases.filter(status=Lease.Status.PENDING))
        ending = pending + (
            list(locked.leases.filter(status=Lease.Status.ACTIVE)) if end_running_leases else []
        )
        # a resold lease runs on for its new holder: then nothing is cancelled (409)
        resales_close(leases=ending, actor=actor)
        leases_cancel(leases=pending, actor=actor, reason="order cancelled")
        if end_running_leases:
            running = list(locked.leases.filter(status=Lease.Status.ACTIVE).order_by("pk"))
            leases_stop(
                leases=running,
                at=clock.now().replace(microsecond=0),
                actor=actor,
                reason="ended early by the buyer: order cancelled",
            )
    locked.refresh_from_db()
    return locked


def orders_expire(*, now: dt.datetime | None = None) -> int:
    """Expire open / partly filled orders whose good-till or start-by
    deadline has passed; the unfilled part is released (leases already made
    run on). An order re-arming a lost lease (failover, pre-emption) stays
    until that lease's window is over. Returns how many expired."""
    now = now or clock.now()
    # a lost lease whose rest waits to be matched again keeps its order on the book
    rearming = Lease.objects.filter(
        Q(status=Lease.Status.FAILED, ends_at__gt=now)
        | Q(status=Lease.Status.COMPLETED, original_ends_at__gt=now),
        order=OuterRef("pk"),
        rearm=True,
        next_lease__isnull=True,
    )
    expired = 0
    for status in OPEN_STATUSES:
        with transaction.atomic():
            ids = list(
                Order.objects.select_for_update(skip_locked=True)
                .filter(Q(start_by__lte=now) | Q(good_till__lte=now), status=status)
                .exclude(Exists(rearming))
                .values_list("id", flat=True)
            )
            Order.objects.filter(id__in=ids, status=status).update(status=Order.Status.EXPIRED)
            OrderEvent.objects.bulk_create(
                [
                    OrderEvent(
                        order_id=pk,
                        from_status=status,
                        to_status=Order.Status.EXPIRED,
                        reason="start-by deadline or good-till passed; unfilled GPUs released",
                    )
                    for pk in ids
                ]
            )
            expired += len(ids)
    return expired
