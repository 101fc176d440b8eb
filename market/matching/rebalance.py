"""Rebalancing: more GPUs traded in the same round, never fewer for anyone
(moves, waiting gangs taking a site, swaps; see `Rebalance`).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from dataclasses import dataclass
from operator import attrgetter

from market.matching.book import Book, BookOffer, BookOrder, Fill
from market.matching.plan import compatible, fills_from, lease_window, site_take


class ByModels:
    """Offers in book order (best first), and one such list per set of GPU
    models asked for, built when first asked for, pruned by `compact`."""

    def __init__(self, offers: list[BookOffer]) -> None:
        self.by_model: dict[int, list[BookOffer]] = defaultdict(list)
        for offer in offers:
            self.by_model[offer.gpu_model_id].append(offer)
        self.sets: dict[frozenset[int], list[BookOffer]] = {}
        self.compacted = 0

    def get(self, models: frozenset[int]) -> list[BookOffer]:
        offers = self.sets.get(models)
        if offers is None:
            lists = [self.by_model[m] for m in models if m in self.by_model]
            offers = lists[0] if len(lists) == 1 else []
            if len(lists) > 1:
                offers = sorted(itertools.chain.from_iterable(lists), key=attrgetter("rank"))
            self.sets[models] = offers
        return offers

    def compact(self, keep, mark: int) -> None:
        """Drop the offers `keep` refuses, everywhere. Lists are replaced, not
        edited: a holder's search position in an old list stays valid."""
        self.by_model = defaultdict(
            list, {m: [o for o in lst if keep(o)] for m, lst in self.by_model.items()}
        )
        self.sets = {k: [o for o in offers if keep(o)] for k, offers in self.sets.items()}
        self.compacted = mark


@dataclass(slots=True, eq=False)
class _Move:
    """`taker` takes `offer`'s GPUs from `holder`, who moves to `to` (free capacity)."""

    cost: int  # welfare the move loses, fen x hours (negative: it gains)
    taker: BookOrder
    offer: BookOffer
    holder: BookOrder
    to: BookOffer


class Rebalance:
    """More GPUs traded in the same round, never fewer for anyone.

    After the priority pass an order may be left short while an offer it can
    use is held by an earlier fill of this round whose order could as well
    run on an offer nobody took (typically a dearer one, still within its
    bid). Moving that order there lets the short one in: one more trade,
    nobody loses a GPU, everyone still pays an ask at or below its bid. This
    is how a call auction works - it maximises the volume it can execute -
    and what the DESIGN's cheapest-first rule alone cannot do: highest
    priority first, each taking the cheapest offers, strands the offers only
    the high bidders could afford and the orders only the cheap offers suit.

    1. `place`: short orders, in priority order, each making the moves that
       cost the least welfare first - the holder's extra ask x its hours,
       minus the taker's surplus.
    2. `gang`: waiting gang orders, in priority order, take a whole site if
       its free GPUs plus those its holders can give up (moving to free
       capacity elsewhere) cover the order.
    3. `exchange`: a long order moved onto a dear offer swaps with a shorter
       order of the round on a cheaper offer each can use - the same GPUs
       traded, less paid in all.

    Only fills of this round move (never a committed lease); gang orders and
    failover replacements are never moved. Cost stays bounded because free
    capacity only shrinks (a move fills a free offer and hands the freed GPUs
    straight to the taker): a holder with no free option never gains one, so
    an offer none of whose holders can move is dead for the rest of the
    round, and each offer's cheapest way to free a GPU (`_best`) is kept
    until the free offer it relies on fills up. `place` prices a bounded
    number of moves (SCAN), cheapest offers first: a large round
    (bench/matching.py) stays well inside its time, for 0.2-0.6 % of welfare
    against an unbounded search."""

    SCAN = 32  # moves priced per short order, cheapest offers first
    EXCHANGE_HOURS = 8  # moved orders shorter than this are not worth a swap search

    def __init__(self, fills: list[Fill], book: Book, now: dt.datetime) -> None:
        self.book = book
        self.now = now
        self.fills = fills
        self.got: dict[int, int] = defaultdict(int)
        self.holdings: dict[int, list[Fill]] = defaultdict(list)  # offer id -> movable fills
        for fill in fills:
            self.got[fill.order.id] += fill.gpus
            if self._movable(fill.order):
                self.holdings[fill.offer.id].append(fill)
        # free GPUs per offer that has any (no other offer ever gains some)
        self.room: dict[int, int] = {}
        self.sharing: dict[int, list[BookOffer]] = defaultdict(list)  # node id -> free offers
        free, held = [], []
        for offer in book.offers:  # best first
            if offer.available > 0 and (room := offer.free()) > 0:
                self.room[offer.id] = room
                free.append(offer)
                for node in offer.nodes:
                    self.sharing[node.id].append(offer)
            if offer.id in self.holdings:
                held.append(offer)
        self.open_offers = len(free)
        self.coupled = {
            offer.id for offers in self.sharing.values() if len(offers) > 1 for offer in offers
        }
        self.free = ByModels(free)
        self.held = ByModels(held)  # pruned of dead offers as the round goes
        self.everything = ByModels(book.offers)
        self.moved: list[Fill] = []
        self.richest: dict[int, list[Fill]] = {}  # for `exchange`
        self.partners: dict[int, list[list]] = {}
        self.fits: dict[tuple[int, int], bool] = {}  # (order id, offer id) -> compatible
        self.options: dict[int, list] = {}  # holder id -> [found, candidates, position]
        self.best: dict[int, tuple[int, Fill, BookOffer]] = {}
        self.dead: set[int] = set()

    @staticmethod
    def _movable(order: BookOrder) -> bool:
        return not order.gang and order.previous_lease_id is None

    def short(self, order: BookOrder) -> int:
        return order.need - self.got[order.id]

    def option(self, holder: BookOrder, exclude: BookOffer | None) -> BookOffer | None:
        """The best offer with free GPUs the holder could move to, if any.
        Searched lazily, best first; what is found is kept (it only ever
        fills up, so the search never has to look back)."""
        state = self.options.get(holder.id)
        if state is None:
            state = self.options[holder.id] = [[], self.free.get(holder.models), 0]
        found, candidates, position = state
        room = self.room
        while found and room[found[0].id] <= 0:
            found.pop(0)
        for offer in found:
            if offer is not exclude and room[offer.id] > 0:
                return offer
        while position < len(candidates):
            offer = candidates[position]
            position += 1
            if offer.price > holder.max_price:
                position = len(candidates)
                break
            if room[offer.id] > 0 and compatible(holder, offer, self.now):
                found.append(offer)
                if offer is not exclude:
                    state[2] = position
                    return offer
        state[2] = position
        return None

    def _best(self, offer: BookOffer) -> tuple[int, Fill, BookOffer] | None:
        """The cheapest way to free one of the offer's GPUs: (extra price x
        hours of the holder, the holder's fill, where the holder goes), or
        None: no holder can move, the offer is dead for the round."""
        best = self.best.get(offer.id)
        if best is not None and best[1].gpus > 0 and self.room[best[2].id] > 0:
            return best
        best = None
        for fill in self.holdings[offer.id]:
            if fill.gpus <= 0:
                continue
            to = self.option(fill.order, offer)
            if to is not None:
                cost = (to.price - offer.price) * fill.order.hours
                if best is None or cost < best[0]:
                    best = (cost, fill, to)
        if best is None:
            self.dead.add(offer.id)
            self.best.pop(offer.id, None)
        else:
            self.best[offer.id] = best
        return best

    def moves(self, taker: BookOrder) -> list[_Move]:
        """The cheapest of the first few moves found on the taker's
        compatible offers, cheapest offers first."""
        if len(self.dead) > self.held.compacted * 3 // 2 + 64:
            dead = self.dead
            self.held.compact(lambda offer: offer.id not in dead, len(dead))
        found: list[_Move] = []
        dead = self.dead
        for offer in self.held.get(taker.models):
            if offer.price > taker.max_price:
                break
            if offer.id in dead or not compatible(taker, offer, self.now):
                continue
            best = self._best(offer)
            if best is None:
                continue
            gain = (taker.max_price - offer.price) * taker.hours
            found.append(_Move(best[0] - gain, taker, offer, best[1].order, best[2]))
            if len(found) >= self.SCAN:
                break
        found.sort(key=attrgetter("cost"))
        return found

    def apply(self, move: _Move) -> int:
        """Make the move for as many GPUs as still fit; returns how many."""
        taker, offer, holder, to = move.taker, move.offer, move.holder, move.to
        held = [f for f in self.holdings[offer.id] if f.order is holder and f.gpus > 0]
        gpus = min(self.short(taker), sum(f.gpus for f in held), self.room[to.id])
        if gpus > 0:
            self._hand_over(held, gpus, taker, to)
        return max(gpus, 0)

    def _hand_over(self, held: list[Fill], gpus: int, taker: BookOrder, to: BookOffer) -> None:
        """`gpus` of the holder's fills (one order, one offer) go to the taker -
        the very GPUs, node by node - and the holder takes as many on `to`."""
        offer, holder = held[0].offer, held[0].order
        starts_at, ends_at = lease_window(taker, offer, self.now)
        left = gpus
        for fill in held:
            n = min(fill.gpus, left)
            fill.gpus -= n
            left -= n
            handed = Fill(taker, offer, fill.node_id, n, starts_at, ends_at)
            self.fills.append(handed)
            if self._movable(taker):
                self.holdings[offer.id].append(handed)
            if left == 0:
                break
        moved = fills_from(holder, to, gpus, self.now, self.book)
        self.fills.extend(moved)
        self.holdings[to.id].extend(moved)
        self.moved.extend(moved)
        self._room_update(moved)
        self.got[taker.id] += gpus

    def run(self, orders: list[BookOrder]) -> list[Fill]:
        for taker in orders:
            if not self.open_offers:
                break
            if self._movable(taker):
                self.place(taker)
        for order in orders:
            if not self.open_offers:
                break
            waiting = order.gang and not self.got[order.id] and order.previous_lease_id is None
            if waiting and self.free_gpus() >= order.need:  # it frees up one GPU per GPU it gets
                self.gang(order)
        self.exchange()
        merged: dict[tuple[int, int, int], Fill] = {}
        for fill in self.fills:
            if fill.gpus <= 0:
                continue
            key = (fill.order.id, fill.offer.id, fill.node_id)
            if key in merged:
                merged[key].gpus += fill.gpus
            else:
                merged[key] = fill
        return list(merged.values())

    def place(self, taker: BookOrder) -> None:
        while self.short(taker) > 0:
            placed = 0
            for move in self.moves(taker):
                placed += self.apply(move)
                if self.short(taker) == 0:
                    return
            if not placed:
                return

    def free_gpus(self) -> int:
        return sum(room for room in self.room.values() if room > 0)

    def gang(self, order: BookOrder) -> None:
        """A gang order still waiting: a site whose free GPUs plus those its
        movable holders could give up (each moving to free capacity at
        another site) cover the whole order. The cheapest such site - the
        gang's own asks plus what the moves cost - wins; what the moves cost
        in asks, `exchange` then wins back where it can."""
        by_site: dict[int, list[BookOffer]] = defaultdict(list)
        room, dead = self.room, self.dead
        for offer in self.everything.get(order.models):
            if offer.price > order.max_price:
                break
            if offer.id in dead and room.get(offer.id, 0) <= 0:
                continue  # nothing to take there, nobody to move
            if compatible(order, offer, self.now):
                by_site[offer.site_id].append(offer)
        best = None
        for site, offers in by_site.items():
            found = self._gang_site(order, site, offers)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
        if best is None:
            return
        _cost, free_part, handovers = best
        for offer, gpus in free_part:
            fills = fills_from(order, offer, gpus, self.now, self.book)
            self.fills.extend(fills)
            self._room_update(fills)
        self.got[order.id] += sum(gpus for _offer, gpus in free_part)
        for fill, to, gpus in handovers:
            self._hand_over([fill], gpus, order, to)

    def _gang_site(self, order: BookOrder, site: int, offers: list[BookOffer]):
        """(cost, free GPUs to take, holders' GPUs to take over) placing the
        whole gang at this site, or None."""
        room = self.room
        free_part, need = site_take((o for o in offers if room.get(o.id, 0) > 0), order.need)
        cost = sum(offer.price * gpus for offer, gpus in free_part) * order.hours
        if need == 0:
            return cost, free_part, []
        live = [o for o in offers if o.id not in self.dead and o.id in self.holdings]
        if sum(f.gpus for o in live for f in self.holdings[o.id]) < need:
            return None
        handovers: list[tuple[Fill, BookOffer, int]] = []
        taken: dict[int, int] = defaultdict(int)  # free offer id -> GPUs promised to movers
        for offer in live:
            if need == 0:
                break
            for fill in self.holdings[offer.id]:
                if need == 0:
                    break
                if fill.gpus <= 0:
                    continue
                to = self._option_elsewhere(fill.order, site, taken)
                if to is None:
                    continue
                gpus = min(fill.gpus, need, self.room[to.id] - taken[to.id])
                taken[to.id] += gpus
                handovers.append((fill, to, gpus))
                cost += offer.price * gpus * order.hours
                cost += (to.price - offer.price) * gpus * fill.order.hours
                need -= gpus
        if need:
            return None
        return cost, free_part, handovers

    def _option_elsewhere(self, holder: BookOrder, site: int, taken: dict[int, int]):
        """A free offer at another site for a holder the gang would displace.
        Offers sharing nodes with another free offer are left out: promises
        to two of them could add up to more than their nodes hold."""
        if self.option(holder, None) is None:  # also advances the holder's search
            return None
        for offer in self.options[holder.id][0]:
            if (
                offer.site_id != site
                and offer.id not in self.coupled
                and self.room[offer.id] - taken[offer.id] > 0
            ):
                return offer
        return None

    def _room_update(self, fills: list[Fill]) -> None:
        for fill in fills:  # offers sharing the nodes just used have less room too
            for other in self.sharing[fill.node_id]:
                before = self.room[other.id]
                self.room[other.id] = other.free() if other.available > 0 else 0
                if before > 0 >= self.room[other.id]:
                    self.open_offers -= 1

    def exchange(self) -> None:
        """A moved holder may be a long order now paying a dear ask for all its
        hours. Where a shorter order of the round holds a cheaper offer the
        long one can use, and can itself run on the dear offer within its bid,
        they swap GPUs: the same GPUs traded, (dear - cheap) x (long - short
        hours) less paid in all. Longest first; the short one may swap on."""
        work = sorted(
            (f for f in self.moved if f.order.hours >= self.EXCHANGE_HOURS),
            key=lambda f: -f.order.hours,
        )
        if not work:
            return
        # who could take a dear offer's place: fills of shorter orders, per GPU
        # model they accept, richest first (a partner must afford the dear ask)
        longest = max(f.order.hours for f in work)
        floor = min(f.offer.price for f in work)
        models = {f.offer.gpu_model_id for f in work}
        self.richest = defaultdict(list)
        for fills in self.holdings.values():
            for fill in fills:
                order = fill.order
                if fill.gpus > 0 and order.hours < longest and order.max_price >= floor:
                    for model in order.models & models:
                        self.richest[model].append(fill)
        for fills in self.richest.values():
            fills.sort(key=lambda f: -f.order.max_price)
        self.partners = {}
        while work:
            fill = work.pop(0)
            while fill.gpus > 0:
                partner = self._partner(fill)
                if partner is None:
                    break
                gpus = min(fill.gpus, partner.gpus)
                fill.gpus -= gpus
                partner.gpus -= gpus
                long_, short = fill.order, partner.order
                cheap, dear = partner.offer, fill.offer
                swapped = [
                    Fill(
                        long_, cheap, partner.node_id, gpus, *lease_window(long_, cheap, self.now)
                    ),
                    Fill(short, dear, fill.node_id, gpus, *lease_window(short, dear, self.now)),
                ]
                self.fills.extend(swapped)
                self.holdings[cheap.id].append(swapped[0])
                self.holdings[dear.id].append(swapped[1])
                if short.hours >= self.EXCHANGE_HOURS:
                    work.append(swapped[1])

    def _pool(self, dear: BookOffer) -> list[list]:
        """The fills that could take the dear offer's place: shorter orders on
        cheaper offers that can pay its ask (`_fits` says whether they can run
        on it, when asked), as one list per
        order length (shortest first), each cheapest offer first, with the
        position of its first fill that still has GPUs."""
        pool = self.partners.get(dear.id)
        if pool is None:
            by_hours: dict[int, list[Fill]] = defaultdict(list)
            for fill in self.richest.get(dear.gpu_model_id, ()):
                if fill.order.max_price < dear.price:
                    break
                if fill.offer.price < dear.price:
                    by_hours[fill.order.hours].append(fill)
            pool = self.partners[dear.id] = [
                [hours, sorted(fills, key=lambda f: f.offer.price), 0]
                for hours, fills in sorted(by_hours.items())
            ]
        return pool

    def _fits(self, order: BookOrder, offer: BookOffer) -> bool:
        pair = (order.id, offer.id)
        fits = self.fits.get(pair)
        if fits is None:
            fits = self.fits[pair] = compatible(order, offer, self.now)
        return fits

    def _partner(self, fill: Fill) -> Fill | None:
        """The swap saving most: per shorter length, the cheapest offer whose
        holder can take the dear one and that the long order can use."""
        long_, dear = fill.order, fill.offer
        best: tuple[int, Fill] | None = None
        for entry in self._pool(dear):
            hours, fills, start = entry
            if hours >= long_.hours:
                break
            while start < len(fills) and fills[start].gpus <= 0:
                start += 1
            entry[2] = start
            for index in range(start, len(fills)):
                other = fills[index]
                cheap = other.offer
                if (
                    other.gpus <= 0
                    or cheap.gpu_model_id not in long_.models
                    or not compatible(long_, cheap, self.now)
                    or not self._fits(other.order, dear)
                ):
                    continue
                saving = (dear.price - cheap.price) * (long_.hours - hours)
                if best is None or saving > best[0]:
                    best = (saving, other)
                break
        return best[1] if best else None


def round_rebalance(
    orders: list[BookOrder], fills: list[Fill], book: Book, now: dt.datetime
) -> list[Fill]:
    return Rebalance(fills, book, now).run(orders)
