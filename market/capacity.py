"""Providers' capacity: sites, nodes (with their agent token) and offers.

Offer statuses and transitions are on market.models.Offer; each change
appends an OfferEvent. Re-pricing applies to future matches only: a lease
keeps the price it was made at.
"""

import datetime as dt
import hashlib
import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Sum

from accounts.models import Organisation
from accounts.services import organisation_check_can_trade
from core import clock, limits
from core.cache import generation_bump
from core.errors import ApplicationError
from core.transitions import transition
from market.models import GPUModel, Node, Offer, OfferEvent, Site
from market.models.capacity import BOARD_CACHE, Hub, LatencyClass


def node_token_digest(*, token: str) -> str:
    """SHA-256 hex of the whole agent token: what Node.token_digest stores."""
    return hashlib.sha256(token.encode()).hexdigest()


def _site_errors(
    *,
    hub: str,
    green_share: Decimal,
    pue: Decimal,
    latency_class: str,
    carbon_intensity_g_per_kwh: int,
) -> dict:
    errors: dict[str, list[str]] = {}
    if hub not in Hub.values:
        errors["hub"] = ["Unknown national hub."]
    if latency_class not in LatencyClass.values:
        errors["latency_class"] = ["Unknown latency class."]
    if not Decimal(0) <= green_share <= Decimal(1):
        errors["green_share"] = ["The green-power share is between 0 and 1."]
    if not 1 <= pue <= limits.MAX_PUE:
        errors["pue"] = [f"PUE is between 1.0 and {limits.MAX_PUE}."]
    if not 0 <= carbon_intensity_g_per_kwh <= limits.MAX_CARBON_INTENSITY:
        errors["carbon_intensity_g_per_kwh"] = [
            f"The grid carbon intensity is between 0 and {limits.MAX_CARBON_INTENSITY} gCO2e/kWh."
        ]
    return errors


def site_create(
    *,
    provider: Organisation,
    name: str,
    region: str,
    green_share: Decimal,
    pue: Decimal,
    carbon_intensity_g_per_kwh: int,
    hub: str = Hub.NONE,
    latency_class: str = LatencyClass.NATIONAL,
) -> Site:
    errors = _site_errors(
        hub=hub,
        green_share=green_share,
        pue=pue,
        latency_class=latency_class,
        carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
    )
    if errors:
        raise ApplicationError("The site is not valid.", errors=errors)
    return Site.objects.create(
        provider=provider,
        name=name.strip(),
        region=region.strip(),
        hub=hub,
        green_share=green_share,
        pue=pue,
        carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
        latency_class=latency_class,
    )


def site_update(*, site: Site, **fields) -> Site:
    merged = {
        key: fields.get(key, getattr(site, key))
        for key in ("hub", "green_share", "pue", "latency_class", "carbon_intensity_g_per_kwh")
    }
    errors = _site_errors(**merged)
    if errors:
        raise ApplicationError("The site is not valid.", errors=errors)
    for key, value in fields.items():
        setattr(site, key, value)
    site.save(update_fields=list(fields) or None)
    generation_bump(BOARD_CACHE)
    return site


@transaction.atomic
def node_create(
    *, site: Site, name: str, gpu_model: GPUModel, gpu_count: int, interconnect: str = ""
) -> tuple[Node, str]:
    """Register a node; returns it with its agent token `<node_id>.<secret>`,
    shown this once (only the SHA-256 of the whole token is stored)."""
    if not 1 <= gpu_count <= limits.MAX_NODE_GPUS:
        raise ApplicationError(
            "The node is not valid.",
            errors={"gpu_count": [f"A node has 1 to {limits.MAX_NODE_GPUS} GPUs."]},
        )
    # The token embeds the id, so the row exists first with a throwaway digest.
    node = Node.objects.create(
        site=site,
        name=name.strip(),
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        interconnect=interconnect or gpu_model.interconnect,
        token_digest=secrets.token_hex(32),
    )
    return node, node_token_rotate(node=node)


def node_token_rotate(*, node: Node) -> str:
    """Give the node a new agent token (shown once) and revoke the old one
    at once: a provider who lost a token, or suspects a leak, re-keys here.
    The new token works for NODE_TOKEN_TTL_DAYS; rotating again renews it."""
    token = f"{node.pk}.{secrets.token_urlsafe(32)}"
    fields = {
        "token_digest": node_token_digest(token=token),
        "token_expires_at": clock.now() + dt.timedelta(days=settings.NODE_TOKEN_TTL_DAYS),
        "token_revoked_at": None,
    }
    Node.objects.filter(pk=node.pk).update(**fields)
    for name, value in fields.items():
        setattr(node, name, value)
    return token


def node_token_revoke(*, node: Node) -> None:
    """Stop the node's agent token at once, with no new one (a node taken out of
    service, a token known to be stolen); `node_token_rotate` issues the next."""
    fields = {
        # A digest of a secret nobody holds: the column stays unique and non-empty.
        "token_digest": node_token_digest(token=secrets.token_urlsafe(32)),
        "token_expires_at": None,
        "token_revoked_at": clock.now(),
    }
    Node.objects.filter(pk=node.pk).update(**fields)
    for name, value in fields.items():
        setattr(node, name, value)


def _offer_capacity(*, site: Site, node: Node | None, gpu_model: GPUModel) -> int:
    if node is not None:
        return node.gpu_count
    total = Node.objects.filter(site=site, gpu_model=gpu_model).aggregate(n=Sum("gpu_count"))["n"]
    return total or 0


def offer_create(
    *,
    provider: Organisation,
    actor: User | None,
    site: Site,
    node: Node | None,
    gpu_model: GPUModel | None,
    gpus_total: int,
    price_amount: int,
    available_from: dt.datetime,
    available_until: dt.datetime,
    min_hours: int = 1,
    max_hours: int = 24 * 30,
    interruptible: bool = False,
    currency: str | None = None,
) -> Offer:
    """List GPUs of one node, or of the site's pool of nodes of one model.

    An offer can never promise more GPUs than its node (or pool) has; the
    matching engine also never leases a node's GPUs twice across offers. Only a
    verified provider lists offers."""
    organisation_check_can_trade(organisation=provider)
    errors: dict[str, list[str]] = {}
    if site.provider_id != provider.pk or (node is not None and node.site_id != site.pk):
        errors["node"] = ["This node is not at this site."]
    model = node.gpu_model if node is not None else gpu_model
    if model is None:
        errors["gpu_model"] = ["A pool offer names its GPU model."]
    elif node is not None and gpu_model is not None and gpu_model.pk != node.gpu_model_id:
        errors["gpu_model"] = ["The node has another GPU model."]
    if model is not None and not errors:
        capacity = _offer_capacity(site=site, node=node, gpu_model=model)
        if capacity == 0:
            errors["gpu_model"] = ["The site has no nodes of this GPU model."]
        elif gpus_total > capacity:
            errors["gpus_total"] = [f"Only {capacity} GPUs of this model are there to offer."]
    if not 1 <= gpus_total <= limits.MAX_OFFER_GPUS:
        errors["gpus_total"] = [f"Offer 1 to {limits.MAX_OFFER_GPUS} GPUs."]
    if error := _price_error(price_amount):
        errors["price_amount"] = [error]
    now = clock.now()
    if available_until <= available_from:
        errors["available_until"] = ["The window must end after it starts."]
    elif available_until <= now:
        errors["available_until"] = ["The window has already ended."]
    elif available_until > now + limits.MAX_OFFER_AHEAD:
        errors["available_until"] = [
            f"The window can end at most {limits.MAX_OFFER_AHEAD.days} days ahead."
        ]
    if not 1 <= min_hours <= max_hours <= limits.MAX_LEASE_HOURS:
        errors["max_hours"] = [f"Lease hours: 1 ≤ minimum ≤ maximum ≤ {limits.MAX_LEASE_HOURS}."]
    if errors:
        raise ApplicationError("The offer is not valid.", errors=errors)
    assert model is not None  # a missing model is an error above
    with transaction.atomic():
        offer = Offer.objects.create(
            provider=provider,
            site=site,
            node=node,
            gpu_model=model,
            gpus_total=gpus_total,
            gpus_available=gpus_total,
            price_amount=price_amount,
            currency=currency or settings.DEFAULT_CURRENCY,
            available_from=available_from,
            available_until=available_until,
            min_hours=min_hours,
            max_hours=max_hours,
            interruptible=interruptible,
        )
        OfferEvent.objects.create(
            offer=offer, to_status=Offer.Status.ACTIVE, actor=actor, reason="listed"
        )
        generation_bump(BOARD_CACHE)
    return offer


def _price_error(price_amount: int) -> str | None:
    if not 0 < price_amount <= limits.MAX_PRICE_AMOUNT:
        return f"The price is more than zero and at most {limits.MAX_PRICE_AMOUNT} minor units."
    return None


def _offer_move(
    *, offer: Offer, allowed: tuple[str, ...], to: str, actor, reason: str, **extra
) -> Offer:
    with transaction.atomic():
        current = Offer.objects.select_for_update(no_key=True).get(pk=offer.pk)
        if current.status not in allowed:
            raise ApplicationError(
                f"An offer that is {current.status} cannot be {reason}.",
                errors={"status": [f"The offer is {current.status}."]},
            )
        moved = transition(current, old=current.status, new=to, actor=actor, reason=reason, **extra)
        assert moved  # the row lock makes this certain
        generation_bump(BOARD_CACHE)
    offer.refresh_from_db()
    return offer


def offer_pause(*, offer: Offer, actor: User | None) -> Offer:
    return _offer_move(
        offer=offer,
        allowed=(Offer.Status.ACTIVE,),
        to=Offer.Status.PAUSED,
        actor=actor,
        reason="paused",
    )


def offer_resume(*, offer: Offer, actor: User | None) -> Offer:
    return _offer_move(
        offer=offer,
        allowed=(Offer.Status.PAUSED,),
        to=Offer.Status.ACTIVE,
        actor=actor,
        reason="resumed",
    )


def offer_withdraw(*, offer: Offer, actor: User | None) -> Offer:
    """Withdraw for good: nothing more is sold; running leases run on."""
    return _offer_move(
        offer=offer,
        allowed=(Offer.Status.ACTIVE, Offer.Status.PAUSED),
        to=Offer.Status.WITHDRAWN,
        actor=actor,
        reason="withdrawn",
        gpus_available=0,
    )


def offer_reprice(*, offer: Offer, price_amount: int, actor: User | None) -> Offer:
    """A new ask for future matches; leases already made keep their price."""
    if error := _price_error(price_amount):
        raise ApplicationError("The offer is not valid.", errors={"price_amount": [error]})
    with transaction.atomic():
        current = Offer.objects.select_for_update(no_key=True).get(pk=offer.pk)
        if current.status == Offer.Status.WITHDRAWN:
            raise ApplicationError(
                "A withdrawn offer cannot be re-priced.",
                errors={"status": ["The offer is withdrawn."]},
            )
        Offer.objects.filter(pk=offer.pk).update(price_amount=price_amount)
        OfferEvent.objects.create(
            offer=offer,
            from_status=current.status,
            to_status=current.status,
            actor=actor,
            reason=f"price {current.price_amount} → {price_amount}",
        )
        generation_bump(BOARD_CACHE)
    offer.refresh_from_db()
    return offer
