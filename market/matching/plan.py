"""The matching engine's planning: which offers fill which orders, in
memory and without writes (see market/matching/engine.py for the rules).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from operator import attrgetter

from market.matching.book import Book, BookOffer, BookOrder, Fill


def lease_window(
    order: BookOrder, offer: BookOffer, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    starts_at = offer.available_from if offer.available_from > now else now
    if order.start_at is not None and order.start_at > starts_at:
        starts_at = order.start_at
    if order.ends_at is not None:
        return starts_at, order.ends_at
    return starts_at, starts_at + order.duration


def compatible(order: BookOrder, offer: BookOffer, now: dt.datetime) -> bool:
    # the engine's hottest function: `lease_window` is inlined
    if offer.currency != order.currency or offer.green < order.min_green:
        return False
    if order.regions and offer.region not in order.regions:
        return False
    if order.hubs and offer.hub not in order.hubs:
        return False
    if order.verified_only and not offer.verified:
        return False
    if offer.interruptible and not order.interruptible:
        return False
    if offer.resale_of is not None and offer.provider_id == order.buyer_id:
        return False
    starts_at = offer.available_from if offer.available_from > now else now
    if order.start_at is not None and order.start_at > starts_at:
        starts_at = order.start_at
    if order.ends_at is None:
        if not offer.min_hours <= order.hours <= offer.max_hours:
            return False
        ends_at = starts_at + order.duration
    else:
        ends_at = order.ends_at
    if order.start_by is not None and starts_at > order.start_by:
        return False
    return starts_at < ends_at <= offer.available_until


def offer_take(offer: BookOffer, gpus: int, sink: list[tuple[int, int]]) -> None:
    """Take `gpus` from the offer, packing onto the fullest-free nodes first
    (fewer nodes per lease set = fewer hops for the buyer's job)."""
    offer.available -= gpus
    for node in sorted(offer.nodes, key=attrgetter("free"), reverse=True):
        if gpus == 0:
            break
        n = min(node.free, gpus)
        if n:
            node.free -= n
            gpus -= n
            sink.append((node.id, n))


def fills_from(
    order: BookOrder, offer: BookOffer, gpus: int, now: dt.datetime, book: Book
) -> list[Fill]:
    taken: list[tuple[int, int]] = []
    offer_take(offer, gpus, taken)
    starts_at, ends_at = lease_window(order, offer, now)
    return [Fill(order, offer, node_id, n, starts_at, ends_at) for node_id, n in taken]


def plan_partial(order: BookOrder, book: Book, now: dt.datetime) -> list[Fill]:
    fills: list[Fill] = []
    need = order.need
    dead = 0
    for offer in book.candidates(order):
        if offer.price > order.max_price:
            break
        if offer.available <= 0:
            dead += 1
            continue
        if not compatible(order, offer, now):
            continue
        gpus = min(need, offer.free())
        if gpus <= 0:
            continue
        fills.extend(fills_from(order, offer, gpus, now, book))
        need -= gpus
        if need == 0:
            break
    book.note_skipped(order, dead)
    return fills


def site_take(offers: Iterable[BookOffer], need: int) -> tuple[list[tuple[BookOffer, int]], int]:
    """Up to `need` GPUs from one site's offers, taken in the order given, as
    (offer, GPUs) pairs, and what is still missing - a trial: nothing is
    taken, but node capacity shared between the offers is accounted for."""
    scratch: dict[int, int] = {}  # node id -> free GPUs left in this trial
    takes: list[tuple[BookOffer, int]] = []
    for offer in offers:
        if need == 0:
            break
        room = min(offer.available, sum(scratch.get(n.id, n.free) for n in offer.nodes))
        gpus = min(room, need)
        if gpus <= 0:
            continue
        left = gpus
        for node in sorted(offer.nodes, key=lambda n: scratch.get(n.id, n.free), reverse=True):
            n = min(scratch.get(node.id, node.free), left)
            scratch[node.id] = scratch.get(node.id, node.free) - n
            left -= n
        takes.append((offer, gpus))
        need -= gpus
    return takes, need


def site_cost(offers: list[BookOffer], need: int) -> int | None:
    """Cost of `need` GPUs from one site's offers taken cheapest first, or
    None if the site cannot hold them all."""
    takes, missing = site_take(offers, need)
    return None if missing else sum(offer.price * gpus for offer, gpus in takes)


def plan_gang(order: BookOrder, book: Book, now: dt.datetime) -> list[Fill]:
    """The cheapest whole site (ties: greener, more reliable, older offer), or nothing.

    Offers arrive cheapest first, so a site's cost is final the first time
    its capacity covers the order; the scan stops once no site still open
    could beat the best found (all its remaining GPUs cost at least the
    current price)."""
    need = order.need
    by_site: dict[int, list[BookOffer]] = defaultdict(list)
    room: dict[int, int] = defaultdict(int)
    done: set[int] = set()
    best: tuple | None = None
    for seen, offer in enumerate(book.candidates(order)):
        if offer.price > order.max_price:
            break
        if best is not None and offer.price * need > best[0][0] and seen % 32 == 0:
            bound = min(
                (
                    offers[0].price * min(room[site], need)
                    + (need - min(room[site], need)) * offer.price
                    for site, offers in by_site.items()
                    if site not in done
                ),
                default=offer.price * need,
            )
            if bound > best[0][0]:
                break
        site = offer.site_id
        if site in done or offer.available <= 0 or not compatible(order, offer, now):
            continue
        by_site[site].append(offer)
        room[site] += offer.free()
        if room[site] < need:
            continue
        cost = site_cost(by_site[site], need)
        if cost is None:
            continue
        done.add(site)
        rank = (cost, *by_site[site][0].key[1:])
        if best is None or rank < best[0]:
            best = (rank, by_site[site])
    if best is None:
        return []
    fills: list[Fill] = []
    for offer in best[1]:
        gpus = min(need, offer.free())
        if gpus > 0:
            fills.extend(fills_from(order, offer, gpus, now, book))
            need -= gpus
        if need == 0:
            break
    return fills
