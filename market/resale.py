"""Resale: a buyer puts the unused rest of a lease (a contract: typically a
forward block) back on the book at its own ask.

`lease_resell` lists the rest of the lease - from the next whole hour (or its
start, if later) for as many whole hours as are left - as an offer whose
provider is the seller (`Offer.resale_of`). The book matches it like any offer,
never to the seller's own orders. A fill is a lease for the new holder on the
same node (`Lease.resold_from`), at the seller's ask, with the seller as its
provider: it holds no node capacity of its own (the seller's lease holds the
GPUs), and is metered and billed like any lease, to the new holder, for the
time delivered. Billing then credits the seller the fill minus the platform
fee (the lease's provider payable in billing's ledger, at invoice issue), the
way it credits any provider. The seller's own lease runs and is billed on as
matched: a contract stays its holder's obligation to the provider.

`lease_resale_cancel` takes the unsold rest off the book. It and a fill both
lock the resale's offer row, so a cancel racing a fill either comes first
(nothing is sold) or withdraws only what the fill left.

While GPUs of a lease are resold, its seller cannot end it early (409); ending
it with an unsold resale withdraws the resale first.
"""

import datetime as dt

from django.contrib.auth.models import User
from django.db import transaction

from accounts.services import organisation_check_can_trade
from core import clock, limits
from core.cache import generation_bump
from core.errors import ApplicationError, Conflict
from core.transitions import transition
from market.models import Lease, Offer, OfferEvent
from market.models.capacity import BOARD_CACHE

HOUR = dt.timedelta(hours=1)
RESALE_STATUSES = (Lease.Status.PENDING, Lease.Status.ACTIVE)


def _next_hour(at: dt.datetime) -> dt.datetime:
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + HOUR


def resale_window(*, lease: Lease, now: dt.datetime) -> tuple[dt.datetime, int]:
    """Where a resale of the lease would start, and its whole hours."""
    start = max(lease.starts_at, _next_hour(now))
    return start, int((lease.ends_at - start) // HOUR) if lease.ends_at > start else 0


def lease_resell(*, lease: Lease, price_amount: int, actor: User | None) -> Offer:
    """List the rest of the lease for resale at `price_amount` per GPU-hour."""
    organisation_check_can_trade(organisation=lease.buyer)
    if not 0 < price_amount <= limits.MAX_PRICE_AMOUNT:
        raise ApplicationError(
            "The resale is not valid.",
            errors={
                "price_amount": [
                    "The price is more than zero and at most "
                    f"{limits.MAX_PRICE_AMOUNT} minor units."
                ]
            },
        )
    with transaction.atomic():
        locked = Lease.objects.select_for_update().select_related("node").get(pk=lease.pk)
        _check_resellable(locked)
        start, hours = resale_window(lease=locked, now=clock.now())
        if hours < 1:
            raise Conflict(
                "Less than a whole hour of the lease is left to resell.",
                errors={"ends_at": ["Less than a whole hour is left."]},
            )
        offer = Offer.objects.create(
            provider=locked.buyer,
            site=locked.node.site,
            node=locked.node,
            gpu_model=locked.node.gpu_model,
            gpus_total=locked.gpu_count,
            gpus_available=locked.gpu_count,
            price_amount=price_amount,
            currency=locked.currency,
            available_from=start,
            available_until=start + hours * HOUR,
            min_hours=1,
            max_hours=hours,
            resale_of=locked,
        )
        OfferEvent.objects.create(
            offer=offer,
            to_status=Offer.Status.ACTIVE,
            actor=actor,
            reason=f"resale of lease {locked.pk}",
        )
        generation_bump(BOARD_CACHE)
    return offer


def _check_resellable(lease: Lease) -> None:
    if lease.status not in RESALE_STATUSES:
        raise Conflict(
            f"The lease is {lease.get_status_display()}; only a live lease is resold.",
            errors={"status": [f"The lease is {lease.status}."]},
        )
    if lease.offer.interruptible or lease.preempt_at is not None:
        raise Conflict(
            "Interruptible capacity is not resold.",
            errors={"lease": ["The lease is on interruptible capacity."]},
        )
    if lease.resold_from_id is not None:
        raise Conflict(
            "A lease bought from a resale is not resold again.",
            errors={"lease": ["The lease was bought from a resale."]},
        )
    if Offer.objects.filter(resale_of=lease).exclude(status=Offer.Status.WITHDRAWN).exists():
        raise Conflict(
            "The lease is already up for resale.",
            errors={"lease": ["The lease is already up for resale."]},
        )


def lease_resale_cancel(*, lease: Lease, actor: User | None) -> Offer:
    """Take the unsold rest of a resale off the book (GPUs sold stay sold)."""
    with transaction.atomic():
        offer = (
            Offer.objects.select_for_update(no_key=True)
            .filter(resale_of=lease)
            .exclude(status=Offer.Status.WITHDRAWN)
            .first()
        )
        if offer is None:
            raise Conflict(
                "The lease is not up for resale.",
                errors={"lease": ["The lease is not up for resale."]},
            )
        transition(
            offer,
            old=offer.status,
            new=Offer.Status.WITHDRAWN,
            actor=actor,
            reason="resale cancelled by the seller",
            gpus_available=0,
        )
        generation_bump(BOARD_CACHE)
    return offer


def resales_close(*, leases: list[Lease], actor: User | None) -> None:
    """Before the seller ends leases early (caller's transaction): an unsold
    resale is withdrawn; GPUs already resold are a Conflict, and nothing ends."""
    for lease in sorted(leases, key=lambda lease: lease.pk):
        offers = Offer.objects.select_for_update(no_key=True).filter(resale_of=lease).order_by("pk")
        for offer in offers:
            sold = Lease.objects.filter(
                resold_from=lease, offer=offer, status__in=RESALE_STATUSES
            ).exists()
            if sold:
                raise Conflict(
                    f"GPUs of lease {lease.pk} are resold to another buyer; it runs to its end.",
                    errors={"lease": [f"Lease {lease.pk} is resold."]},
                )
            if offer.status != Offer.Status.WITHDRAWN:
                transition(
                    offer,
                    old=offer.status,
                    new=Offer.Status.WITHDRAWN,
                    actor=actor,
                    reason="the lease resold ended early",
                    gpus_available=0,
                )
