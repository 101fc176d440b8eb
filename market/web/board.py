"""The public market board (no log-in): per GPU model the lowest and median ask,
the GPUs available now and the price per PFLOPS-hour; the price of the last 7
days' matched trades; capacity by national hub with its green-power share; the
cheapest offers, each with *Order this* (the order form, filled in)."""

import datetime as dt
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from core import clock
from core.cache import cached
from core.db import replica_reads
from core.money import format_major
from market import index
from market import selectors as search
from market.models.capacity import Hub

HISTORY_DAYS = 7
CHEAPEST_OFFERS = 10
# A past day's trades no longer change; today's are read again after a few minutes.
HISTORY_CACHE, PAST_DAY_SECONDS, TODAY_SECONDS = "market-board-history", 86_400, 120


def price_history(*, today: dt.date) -> list[index.IndexRow]:
    """The index's figures (VWAP per class) of each of the last 7 days, computed
    from the matched trades as the index method computes a day (not only the
    published days: today counts too)."""
    rows: list[index.IndexRow] = []
    for back in range(HISTORY_DAYS - 1, -1, -1):
        day = today - dt.timedelta(days=back)
        rows += cached(
            HISTORY_CACHE,
            day.isoformat(),
            lambda day=day: index.index_compute_day(day=day),
            timeout=TODAY_SECONDS if day == today else PAST_DAY_SECONDS,
        )
    return rows


def order_this_url(*, gpu_model_id: int, price_amount: int, gpus: int, hours: int = 24) -> str:
    """The order form filled in for one model at one ask (the buyer may change it)."""
    query = {
        "accepted_models": gpu_model_id,
        "max_price": format_major(price_amount),
        "gpu_count": max(1, gpus),
        "hours": hours,
    }
    return f"{reverse('market:order_new')}?{urlencode(query)}"


@replica_reads
def board(request: HttpRequest) -> HttpResponse:
    currency = settings.DEFAULT_CURRENCY
    summary = search.board_summary(currency=currency)
    history = price_history(today=timezone.localdate(clock.now()))
    offers = list(search.OfferResults(sort="price")[:CHEAPEST_OFFERS])
    hubs = dict(Hub.choices)
    return render(
        request,
        "market/board.html",
        {
            "board": summary,
            "models": [
                (
                    model,
                    order_this_url(
                        gpu_model_id=model.gpu_model_id,
                        price_amount=model.lowest_ask_amount,
                        gpus=min(model.gpus_available, 8),
                    ),
                )
                for model in summary.models
            ],
            "hubs": [(hubs.get(hub.hub, hub.hub), hub) for hub in summary.hubs],
            "offers": [
                (
                    offer,
                    order_this_url(
                        gpu_model_id=offer.gpu_model_id,
                        price_amount=offer.price_amount,
                        gpus=min(offer.gpus_available, 8),
                        hours=max(offer.min_hours, min(24, offer.max_hours)),
                    ),
                )
                for offer in offers
            ],
            "chart": index.index_chart_svg(history, title=_("Matched trades, ¥ per PFLOPS-hour"))
            if history
            else "",
            "now": clock.now(),
        },
    )
