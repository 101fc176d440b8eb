"""A live market behind the demo: a few simulated buyers keep ordering on the
demo's capacity and pay their invoices, and the demo providers re-price by
utilisation, on the demo's accelerated clock (core/clock.py). The newcomer's
own `buyer` is left alone: its invoice stays payable for them to pay.

Runs as a daemon thread of the demo process, through the same services the
simulator uses (demo/simulation/behaviour.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import threading

from django.contrib.auth import get_user_model
from django.db import close_old_connections, transaction

from accounts.models import Membership, Organisation
from core import clock
from core.errors import ApplicationError
from demo.simulation import behaviour
from demo.simulation.world import Cast, credit_code
from market.models import GPUModel, Offer
from market.orders import order_create

logger = logging.getLogger(__name__)

FEED_BUYERS = [
    ("feed-buyer-1", "上海深算智能科技有限公司", "上海"),
    ("feed-buyer-2", "深圳灵犀大模型有限公司", "广东"),
    ("feed-buyer-3", "北京知远数据有限公司", "北京"),
]


def feed_cast() -> Cast:
    """The feed's buyers (made once, idempotent) and the demo providers' offers."""
    cast = Cast()
    rng = random.Random(2026)
    User = get_user_model()
    with transaction.atomic():
        for username, name, region in FEED_BUYERS:
            user, _ = User.objects.get_or_create(username=username)
            buyer = Organisation.objects.filter(legal_name=name).first()
            if buyer is None:
                buyer = Organisation.objects.create(
                    kind=Organisation.Kind.BUYER,
                    legal_name=name,
                    credit_code=credit_code(rng, region="310115"),
                    region=region,
                    verified=True,
                )
                Membership.objects.create(user=user, organisation=buyer, role=Membership.Role.OWNER)
            cast.buyers.append(buyer)
            cast.owners[buyer.pk] = user
            cast.kinds[buyer.pk] = "inference"
    for offer in Offer.objects.filter(status=Offer.Status.ACTIVE).select_related("provider"):
        cast.base_price[offer.pk] = offer.price_amount
        owner = Membership.objects.filter(organisation=offer.provider).first()
        cast.owners.setdefault(offer.provider_id, owner.user if owner else None)
    cast.models = {m.slug: m for m in GPUModel.objects.filter(offers__isnull=False).distinct()}
    return cast


class MarketFeed(threading.Thread):
    """Every `tick` real seconds: maybe an order (about one per 20 simulated
    minutes), buyers paying, and each simulated hour a re-pricing round."""

    def __init__(self, *, tick: float = 2.0, seed: int = 7) -> None:
        super().__init__(name="market-feed", daemon=True)
        self.tick, self.rng = tick, random.Random(seed)
        self.stopped = threading.Event()
        self.serial = 0

    def run(self) -> None:
        cast = feed_cast()
        # a few orders at once, so the feed's buyers have usage in the first
        # (short) day and the first payout run has paid invoices to pay out
        for _ in range(3):
            self._order(cast, clock.now())
        last = clock.now()
        last_hour = last.replace(minute=0, second=0, microsecond=0)
        while not self.stopped.wait(self.tick):
            try:
                now = clock.now()
                minutes = (now - last).total_seconds() / 60
                last = now
                for _ in range(behaviour.poisson(self.rng, minutes / 20)):
                    self._order(cast, now)
                behaviour.invoices_pay(rng=self.rng, cast=cast)
                if now - last_hour >= dt.timedelta(hours=1):
                    last_hour = now.replace(minute=0, second=0, microsecond=0)
                    behaviour.offers_reprice(cast=cast)
            except Exception:
                logger.exception("the market feed failed a round; it carries on")
            finally:
                close_old_connections()

    def _order(self, cast: Cast, now: dt.datetime) -> None:
        buyer = self.rng.choice(cast.buyers)
        models = list(cast.models.values())
        accepted = self.rng.sample(models, k=min(len(models), self.rng.randint(1, 2)))
        # a buyer who pays about the going rate of the dearest ask
        ask = max(cast.base_price.values(), default=2_000)
        self.serial += 1
        with contextlib.suppress(ApplicationError):
            order_create(
                buyer=buyer,
                placed_by=cast.owners[buyer.pk],
                gpu_count=self.rng.choice([1, 2, 4, 4, 8]),
                hours=self.rng.randint(1, 6),
                max_price_amount=round(ask * self.rng.uniform(0.8, 1.3)),
                accepted_models=accepted,
                start_by=now + dt.timedelta(hours=2),
                idempotency_key=f"feed-{now.timestamp():.0f}-{self.serial}",
            )

    def stop(self) -> None:
        self.stopped.set()
