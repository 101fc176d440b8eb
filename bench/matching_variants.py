"""Allocation quality of matching-rule variants against the LP bounds (printed figures).

Generates the bench/matching.py LP instance (2,000 orders x 1,000 offers by
default) into a scratch PostgreSQL database, loads it through the engine's own
loaders, and plans it in memory (one round, no database writes: the commit of
a single uncontested round accepts every planned fill) under several order
priorities / offer tie-breaks, with and without the rebalancing, and with
the rebalancing's searches bounded differently. Also checks that the LP bound's compatibility
(bench/matching.py `compatible`) is exactly the engine's `compatible` on
every order x offer pair, and brackets the gang relaxation of the LP.

    python bench/matching_variants.py [--orders 2000 --offers 1000] [--no-lp]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:  # noqa: C901, PLR0915 - a linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2_000)
    parser.add_argument("--offers", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=20260301)
    parser.add_argument("--no-lp", action="store_true", help="skip HiGHS (shares vs the engine)")
    import matching as bench

    bench.database_argument(parser)
    args = parser.parse_args()

    try:
        models, now = bench.scratch_setup(args.database_url)
        from market.matching import book as book_module
        from market.matching import engine as m
        from market.matching import plan as planning
        from market.matching import rebalance
        from market.models import Order

        sites, offers, orders, offer_ids, order_of = bench.market_make(
            seed=args.seed, n_orders=args.orders, n_offers=args.offers, models=models, now=now
        )
        gen_offer = {pk: offers[idx] for idx, pk in offer_ids.items()}

        def load():
            queryset = Order.objects.filter(status__in=m.OPEN_STATUSES, start_by__gt=now)
            engine_orders = [
                o for o in m.orders_load(queryset, models=models) if o.need > 0 and o.models
            ]
            book = m.book_load(now=now)
            book_offers = {o.id: o for o in book.offers}
            return engine_orders, book, book_offers

        engine_orders, _book, book_offers = load()

        # 1. the LP's compatibility is the engine's, pair by pair
        mismatches = 0
        tradeable: dict[int, list[int]] = defaultdict(list)  # order id -> offer ids
        for order in engine_orders:
            gen = order_of[order.id]
            for offer in book_offers.values():
                g_off = gen_offer[offer.id]
                engine_ok = (
                    planning.compatible(order, offer, now) and offer.price <= order.max_price
                )
                bench_ok = (
                    bench.compatible(gen, g_off, sites[g_off.site], now) and g_off.price <= gen.bid
                )
                engine_ok = engine_ok and offer.gpu_model_id in order.models
                mismatches += engine_ok != bench_ok
                if engine_ok:
                    tradeable[order.id].append(offer.id)
        print(
            f"pairs checked: {len(engine_orders) * len(book_offers):,}; engine vs LP "
            f"compatibility mismatches: {mismatches}; orders/offers not loaded by the engine: "
            f"{len(orders) - len(engine_orders)}/{len(offers) - len(book_offers)}"
        )
        scarcity = defaultdict(int)  # offer id -> waiting orders that could trade with it
        for offer_list in tradeable.values():
            for offer_id in offer_list:
                scarcity[offer_id] += 1
        options = {order_id: len(lst) for order_id, lst in tradeable.items()}

        def score(fills, label, seconds):
            gpus = sum(f.gpus for f in fills)
            welfare = sum(
                (f.order.max_price - f.offer.price) * f.order.hours * f.gpus for f in fills
            )
            return {"variant": label, "gpus": gpus, "welfare": welfare, "seconds": seconds}

        def run(label, order_key, offer_key=None, plan=None, rebalance=True):
            engine_orders, book, _offers = load()
            if offer_key is not None:
                all_offers = list(book.offers)
                for offer in all_offers:
                    offer.key = offer_key(offer)
                book = book_module.Book(all_offers)
            started = time.perf_counter()
            engine_orders.sort(key=order_key)
            if plan is None:
                fills = m.plan(engine_orders, book, now, rebalance=rebalance)
            else:
                fills = plan(engine_orders, book, now)
            return score(fills, label, time.perf_counter() - started), fills, book

        by_bid = lambda o: (-o.max_price, o.id)  # noqa: E731
        rows = []
        current, fills_a, book_a = run(
            "(a) the engine: whole-lease bid first, then rebalancing", m._priority
        )
        rows.append(current)
        # leftover check: after the round, could any waiting order still trade?
        used = defaultdict(int)
        for f in fills_a:
            used[f.order.id] += f.gpus
        offers_a = {o.id: o for o in book_a.offers}
        left_pairs = sum(
            1
            for order in engine_orders
            if not order.gang and used[order.id] < order.need
            for offer_id in tradeable[order.id]
            if offers_a[offer_id].available > 0 and offers_a[offer_id].free() > 0
        )
        print(
            f"(a) leaves {left_pairs} (partial order, offer with free GPUs) tradeable pairs unmatched"
        )
        rows.append(run("(b) (a) without the rebalancing", m._priority, rebalance=False)[0])
        rows.append(
            run("(c) first version: highest bid first, no rebalancing", by_bid, rebalance=False)[0]
        )
        rows.append(run("(d) highest bid first, then rebalancing", by_bid)[0])
        rows.append(
            run("(e) time priority: oldest first, no rebalancing", lambda o: o.id, rebalance=False)[
                0
            ]
        )
        rows.append(
            run(
                "(f) (c) + equal bids: fewest options first",
                lambda o: (-o.max_price, options.get(o.id, 0), o.id),
                rebalance=False,
            )[0]
        )
        rows.append(
            run(
                "(g) (c) + equal price: least-wanted offer first (before greener)",
                by_bid,
                offer_key=lambda off: (off.price, scarcity[off.id], *off.key[1:]),
                rebalance=False,
            )[0]
        )
        for scan in [8, 10**6]:
            saved = rebalance.Rebalance.SCAN
            rebalance.Rebalance.SCAN = scan
            try:
                label = "unbounded" if scan > 10**5 else f"SCAN={scan}"
                rows.append(run(f"(h) (a) with move search {label}", m._priority)[0])
            finally:
                rebalance.Rebalance.SCAN = saved

        def plan_pair_greedy(engine_orders, book, now):
            """Breaks cheapest-first: all tradeable pairs by (bid - ask) x hours, best first."""
            by_id = {o.id: o for o in engine_orders}
            offers_by_id = {o.id: o for o in book.offers}
            pairs = sorted(
                (
                    ((by_id[oid].max_price - offers_by_id[fid].price) * by_id[oid].hours, oid, fid)
                    for oid, lst in tradeable.items()
                    for fid in lst
                    if not by_id[oid].gang
                ),
                reverse=True,
            )
            fills = []
            for gang in [o for o in engine_orders if o.gang]:
                fills.extend(planning.plan_gang(gang, book, now))
            need = {o.id: o.need for o in engine_orders if not o.gang}
            for _w, oid, fid in pairs:
                offer = offers_by_id[fid]
                gpus = min(need[oid], offer.free()) if offer.available > 0 else 0
                if gpus > 0:
                    fills.extend(planning.fills_from(by_id[oid], offer, gpus, now, book))
                    need[oid] -= gpus
            return fills

        rows.append(
            run(
                "(i) greedy on pairs by (bid-ask) x hours, gang first (no priority at all)",
                lambda o: o.id,
                plan=plan_pair_greedy,
            )[0]
        )

        if not args.no_lp:
            gen_orders = [order_of[o.id] for o in engine_orders]
            gen_offers = [gen_offer[o] for o in book_offers]
            max_gpus, max_welfare, highs, _c, _t = bench.lp_bounds(
                gen_orders, gen_offers, sites, now
            )
            non_gang = [o for o in gen_orders if not o.gang]
            ng_gpus, ng_welfare, highs2, _c, _t = bench.lp_bounds(non_gang, gen_offers, sites, now)
            print(
                f"LP (gang relaxed): {max_gpus:,.0f} GPUs, welfare {max_welfare:,.0f}; "
                f"LP without gang orders (achievable, a lower bound on the true optimum): "
                f"{ng_gpus:,.0f} GPUs, welfare {ng_welfare:,.0f}; HiGHS {highs + highs2:.1f} s"
            )
        else:
            max_gpus = max_welfare = ng_gpus = ng_welfare = None
        print()
        print("| variant | GPUs | welfare (fen) | GPUs / LP max | welfare / LP opt | plan s |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in rows:
            share_g = f"{row['gpus'] / max_gpus:.2%}" if max_gpus else "-"
            share_w = f"{row['welfare'] / max_welfare:.2%}" if max_welfare else "-"
            print(
                f"| {row['variant']} | {row['gpus']:,} | {row['welfare']:,} | {share_g} | "
                f"{share_w} | {row['seconds']:.2f} |"
            )
        if max_gpus:
            print(
                f"| LP without gang orders (achievable) | {ng_gpus:,.0f} | {ng_welfare:,.0f} | "
                f"{ng_gpus / max_gpus:.2%} | {ng_welfare / max_welfare:.2%} | |"
            )
    finally:
        bench.database_drop(args.database_url)


if __name__ == "__main__":
    main()
