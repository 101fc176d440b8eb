"""Benchmark of the matching engine on PostgreSQL (printed figures, not a test).

1. Generates a reproducible market (seeded): --offers offers over the catalogue
   and --orders orders with mixed constraints, writes it to a scratch database
   (created and dropped here, `bench_matching` by default), and times one
   `market.matching.match_round` over all of it - loading, matching and every
   database write included. Then, as the baseline measured in the same run,
   the same round on the same market without the rebalancing (the priority
   pass alone) and the ratio between the two.
2. On a --lp-orders x --lp-offers instance from the same generator, in the same
   run, matches again through the engine and compares with two LP upper
   bounds solved by HiGHS (interior point): the most GPUs any allocation
   could place, and the most welfare (sum of (bid - ask) x GPU-hours). The
   LP relaxes gang orders, so both bounds are optimistic. Its compatibility
   (`compatible` below) is the engine's exactly: bench/matching_variants.py
   checks every order x offer pair against `market.matching.plan.compatible` on
   the engine's own loaded book (0 differences on the default instance) and
   compares the engine with variants of the matching rules.

Usage (from the repository root, PostgreSQL on 127.0.0.1):
    python bench/matching.py                      # 10,000 orders x 5,000 offers
    python bench/matching.py --orders 2000 --offers 1000 --lp-orders 500 --lp-offers 250

The last line printed is one JSON object: orders, offers, match_seconds,
highs_seconds, allocated_share, welfare_share.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GANG_SHARE = 0.08
TIERS = [(0, 200), (200, 600), (600, 10_000)]  # dense BF16 TFLOPS
BID_LOW, BID_HIGH = 1.0, 1.8  # bids around the median acceptable model's list price

PROVINCES = {
    "甘肃": "gansu",
    "宁夏": "ningxia",
    "内蒙古": "inner_mongolia",
    "贵州": "guizhou",
    "四川": "chengyu",
    "重庆": "chengyu",
    "河北": "jingjinji",
    "北京": "jingjinji",
    "上海": "yangtze",
    "浙江": "yangtze",
    "广东": "greater_bay",
    "新疆": "none",
}


@dataclass
class GenSite:
    idx: int
    provider: int
    region: str
    hub: str
    green: Decimal


@dataclass
class GenOffer:
    idx: int
    site: int
    model: int
    node_gpus: list[int]  # one node (node offer) or the pool's dedicated nodes
    pool: bool
    gpus: int
    price: int
    available_from: dt.datetime
    available_until: dt.datetime
    min_hours: int
    max_hours: int


@dataclass
class GenOrder:
    idx: int
    buyer: int
    accepted: list[int]
    min_tflops: Decimal | None
    min_memory: int | None
    domestic: bool
    gpus: int
    hours: int
    bid: int
    regions: list[str]
    hubs: list[str]
    min_green: Decimal
    gang: bool
    start_by: dt.datetime
    models: frozenset[int] = field(default_factory=frozenset)


def reference_price(tflops: Decimal) -> int:
    """A plausible list price per GPU-hour in fen: ~¥4 for an RTX 4090, ~¥22 for an H100."""
    return int(60 + float(tflops) * 2.2)


def generate(*, seed: int, n_orders: int, n_offers: int, models: list, now: dt.datetime):
    from market.matching import acceptable_model_ids

    rng = random.Random(seed)
    model_ids = [m.pk for m in models]
    by_id = {m.pk: m for m in models}
    popularity = [4 if not m.domestic else 2 for m in models]
    n_providers = max(5, n_offers // 120)
    n_sites = max(10, n_offers // 16)
    sites = []
    for i in range(n_sites):
        region = rng.choice(list(PROVINCES))
        sites.append(
            GenSite(
                idx=i,
                provider=rng.randrange(n_providers),
                region=region,
                hub=PROVINCES[region],
                green=Decimal(rng.randint(100, 950)) / 1000,
            )
        )
    pair_kind: dict[tuple[int, int], str] = {}
    offers = []
    while len(offers) < n_offers:
        site = rng.randrange(n_sites)
        model = rng.choices(model_ids, weights=popularity)[0]
        pool = rng.random() < 0.3
        kind = "pool" if pool else "node"
        if pair_kind.setdefault((site, model), kind) != kind:
            continue
        if pool:
            node_gpus = [8] * rng.randint(2, 4)
            gpus = sum(node_gpus)
        else:
            node_gpus = [rng.choices([1, 2, 4, 8], weights=[1, 1, 2, 6])[0]]
            gpus = node_gpus[0]
        start = now - dt.timedelta(hours=1)
        if rng.random() < 0.1:
            start = now + dt.timedelta(hours=rng.randint(1, 24))
        offers.append(
            GenOffer(
                idx=len(offers),
                site=site,
                model=model,
                node_gpus=node_gpus,
                pool=pool,
                gpus=gpus,
                price=int(reference_price(by_id[model].dense_tflops) * rng.uniform(0.8, 1.25)),
                available_from=start,
                available_until=now + dt.timedelta(days=rng.randint(2, 30)),
                min_hours=rng.choices([1, 4], weights=[4, 1])[0],
                max_hours=rng.choice([168, 720]),
            )
        )
    # a pool covers every node of its model at its site: keep one pool per pair
    seen_pools: set[tuple[int, int]] = set()
    for offer in offers:
        if offer.pool and (offer.site, offer.model) in seen_pools:
            offer.pool, offer.node_gpus, offer.gpus = False, [8], 8
            pair_kind[(offer.site, offer.model)] = "mixed"
        elif offer.pool:
            seen_pools.add((offer.site, offer.model))
    for offer in offers:  # a pair shared with node offers: make it a node offer
        if offer.pool and pair_kind.get((offer.site, offer.model)) == "mixed":
            offer.pool, offer.node_gpus, offer.gpus = False, [8], 8

    orders = []
    n_buyers = max(5, n_orders // 100)
    for i in range(n_orders):
        # Buyers substitute between accelerators of one class (a job sized for
        # an H100 also runs on an H800 or a 910C, not on an RTX 4090): an accepted
        # list within a tier, a TFLOPS floor at the tier's bottom, or domestic-only.
        tier = rng.choices(TIERS, weights=[3, 3, 4])[0]
        in_tier = [m.pk for m in models if tier[0] <= m.dense_tflops < tier[1]]
        kind = rng.random()
        accepted, min_tflops, min_memory, domestic = [], None, None, False
        if kind < 0.45:
            accepted = rng.sample(in_tier, rng.randint(2, len(in_tier)))
        elif kind < 0.8:
            min_tflops = Decimal(tier[0])
            min_memory = rng.choice([None, 32, 48])
        else:
            domestic = True
            min_tflops = Decimal(tier[0])
        acceptable = acceptable_model_ids(
            accepted_ids=set(accepted),
            min_tflops=min_tflops,
            min_memory_gb=min_memory,
            domestic_only=domestic,
            models=models,
        )
        tier_refs = sorted(
            reference_price(by_id[m].dense_tflops) for m in acceptable if m in in_tier
        ) or [reference_price(by_id[m].dense_tflops) for m in acceptable]
        median = tier_refs[len(tier_refs) // 2]
        gang = rng.random() < GANG_SHARE
        gpus = rng.choice([8, 16]) if gang else rng.choices([1, 2, 4, 8, 16], [2, 2, 3, 3, 1])[0]
        regions = rng.sample(list(PROVINCES), rng.randint(6, 10)) if rng.random() < 0.1 else []
        hubs = (
            rng.sample(sorted(set(PROVINCES.values())), rng.randint(4, 7))
            if rng.random() < 0.1
            else []
        )
        orders.append(
            GenOrder(
                idx=i,
                buyer=rng.randrange(n_buyers),
                accepted=accepted,
                min_tflops=min_tflops,
                min_memory=min_memory,
                domestic=domestic,
                gpus=gpus,
                hours=rng.choices([1, 4, 8, 24, 72], [2, 3, 3, 3, 1])[0],
                bid=int(median * rng.uniform(BID_LOW, BID_HIGH)),
                regions=regions,
                hubs=hubs,
                min_green=Decimal(rng.choice([0, 0, 0, 0, 300])) / 1000,
                gang=gang,
                start_by=now + dt.timedelta(hours=rng.randint(2, 48)),
                models=acceptable,
            )
        )
    return sites, offers, orders, n_providers, n_buyers


def compatible(order: GenOrder, offer: GenOffer, site: GenSite, now: dt.datetime) -> bool:
    """The engine's rules except price (market.matching.plan.compatible), on generated data."""
    if offer.model not in order.models or site.green < order.min_green:
        return False
    if order.regions and site.region not in order.regions:
        return False
    if order.hubs and site.hub not in order.hubs:
        return False
    if not offer.min_hours <= order.hours <= offer.max_hours:
        return False
    start = max(now, offer.available_from)
    if start > order.start_by:
        return False
    return start + dt.timedelta(hours=order.hours) <= offer.available_until


# --- database -------------------------------------------------------------------------


def database_recreate(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_matching"
        ),
        help="a scratch PostgreSQL database: dropped and created here, dropped at the end",
    )


def scratch_setup(url: str) -> tuple[list, dt.datetime]:
    """(Re)create the scratch database, point Django at it (no Redis: tasks
    run in process) and migrate; returns the GPU catalogue and `now`."""
    database_recreate(url)
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from market.models import GPUModel

    call_command("migrate", verbosity=0)
    return list(GPUModel.objects.all()), timezone.now().replace(microsecond=0)


def market_make(*, seed: int, n_orders: int, n_offers: int, models: list, now: dt.datetime):
    """Generate a market and write it to the (empty) market tables: (sites,
    offers, orders, offer index -> Offer id, Order id -> generated order)."""
    sites, offers, orders, n_p, n_b = generate(
        seed=seed, n_orders=n_orders, n_offers=n_offers, models=models, now=now
    )
    providers, buyers = organisations(n_p, n_b)
    offer_ids, order_of = load(sites, offers, orders, providers, buyers, now)
    return sites, offers, orders, offer_ids, order_of


def organisations(n_providers: int, n_buyers: int):
    from accounts.models import Organisation
    from tests.factories import make_credit_code

    existing_p = list(Organisation.objects.filter(kind="provider").order_by("id"))
    existing_b = list(Organisation.objects.filter(kind="buyer").order_by("id"))
    new = [
        Organisation(
            kind="provider",
            legal_name=f"Bench provider {i}",
            credit_code=make_credit_code(10_000 + i),
        )
        for i in range(len(existing_p), n_providers)
    ] + [
        Organisation(
            kind="buyer", legal_name=f"Bench buyer {i}", credit_code=make_credit_code(20_000 + i)
        )
        for i in range(len(existing_b), n_buyers)
    ]
    Organisation.objects.bulk_create(new)
    providers = list(Organisation.objects.filter(kind="provider").order_by("id"))
    buyers = list(Organisation.objects.filter(kind="buyer").order_by("id"))
    return providers, buyers


def load(sites, offers, orders, providers, buyers, now):
    """Write the generated market; returns (offer index -> Offer id, Order id -> order)."""
    import hashlib

    from market.models import Node, Offer, Order, Site

    db_sites = Site.objects.bulk_create(
        [
            Site(
                provider_id=providers[s.provider].pk,
                name=f"bench-site-{s.idx}",
                region=s.region,
                hub=s.hub,
                green_share=s.green,
                pue=Decimal("1.25"),
                carbon_intensity_g_per_kwh=500,
            )
            for s in sites
        ]
    )
    nodes, owners = [], []
    for offer in offers:
        for k, count in enumerate(offer.node_gpus):
            nodes.append(
                Node(
                    site_id=db_sites[offer.site].pk,
                    name=f"bench-{offer.idx}-{k}",
                    gpu_model_id=offer.model,
                    gpu_count=count,
                    state=Node.State.ONLINE,  # as if its agent reported: only those match
                    token_digest=hashlib.sha256(f"bench-{offer.idx}-{k}".encode()).hexdigest(),
                )
            )
            owners.append(offer.idx)
    db_nodes = Node.objects.bulk_create(nodes, batch_size=5000)
    node_of = {}
    for node, owner in zip(db_nodes, owners, strict=True):
        node_of.setdefault(owner, node)
    db_offers = Offer.objects.bulk_create(
        [
            Offer(
                provider_id=providers[sites[o.site].provider].pk,
                site_id=db_sites[o.site].pk,
                node_id=None if o.pool else node_of[o.idx].pk,
                gpu_model_id=o.model,
                gpus_total=o.gpus,
                gpus_available=o.gpus,
                price_amount=o.price,
                available_from=o.available_from,
                available_until=o.available_until,
                min_hours=o.min_hours,
                max_hours=o.max_hours,
            )
            for o in offers
        ],
        batch_size=5000,
    )
    db_orders = Order.objects.bulk_create(
        [
            Order(
                buyer_id=buyers[o.buyer].pk,
                min_tflops=o.min_tflops,
                min_memory_gb=o.min_memory,
                gpu_count=o.gpus,
                hours=o.hours,
                max_price_amount=o.bid,
                regions=o.regions,
                hubs=o.hubs,
                min_green_share=o.min_green,
                domestic_only=o.domestic,
                gang=o.gang,
                start_by=o.start_by,
            )
            for o in orders
        ],
        batch_size=5000,
    )
    through = Order.accepted_models.through
    through.objects.bulk_create(
        [
            through(order_id=db.pk, gpumodel_id=m)
            for db, o in zip(db_orders, orders, strict=True)
            for m in o.accepted
        ],
        batch_size=10000,
    )
    return {o.idx: db.pk for o, db in zip(offers, db_offers, strict=True)}, {
        db.pk: o for o, db in zip(orders, db_orders, strict=True)
    }


def market_truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE market_leaseevent, market_lease, market_orderevent, "
            "market_order_accepted_models, market_order, market_offerevent, market_offer, "
            "market_node, market_site RESTART IDENTITY CASCADE"
        )


def settle() -> None:
    """Vacuum and analyse what `load` just wrote, as autovacuum does for a live
    exchange's tables, and checkpoint: otherwise the timed round pays for the
    bulk load (first reads set every row's hint bits, the load's WAL forces a
    checkpoint) and plans its queries without statistics."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in [
            "accounts_organisation",
            "market_site",
            "market_node",
            "market_offer",
            "market_order",
            "market_order_accepted_models",
            "market_lease",
        ]:
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("CHECKPOINT")  # the load's own, not in the timed round


def market_reset() -> None:
    """Back to the generated market, nothing matched: no leases, every order
    open, every offer whole."""
    from django.db import connection

    with connection.cursor() as cursor:
        # Not TRUNCATE ... CASCADE: offers reference leases (resale_of), so the
        # cascade emptied the book and the baseline round allocated nothing.
        cursor.execute("TRUNCATE market_leaseevent, market_orderevent")
        cursor.execute("DELETE FROM market_lease")
        cursor.execute("UPDATE market_order SET gpus_filled = 0, status = 'open'")
        cursor.execute("UPDATE market_offer SET gpus_available = gpus_total")
        cursor.execute("VACUUM ANALYZE market_order")
        cursor.execute("VACUUM ANALYZE market_offer")


def baseline_round(now) -> tuple[float, int]:
    """The same round on the same market without the rebalancing - the
    priority pass alone, which is all the first version of the engine did -
    timed the same way: (seconds, GPUs allocated)."""
    import functools

    from market.matching import engine as matching

    market_reset()
    settle()
    plan = matching.plan
    matching.plan = functools.partial(plan, rebalance=False)
    try:
        started = time.perf_counter()
        result = matching.match_round(now=now)
        return time.perf_counter() - started, result.gpus_allocated
    finally:
        matching.plan = plan


# --- LP upper bounds ------------------------------------------------------------------


def lp_bounds(orders, offers, sites, now) -> tuple[float, float, float, int, int]:
    """(max GPUs, max welfare, HiGHS seconds, compatible pairs, tradeable pairs)."""
    import highspy
    import numpy as np

    cols_order, cols_offer, welfare = [], [], []
    compatible_pairs = 0
    for i, order in enumerate(orders):
        for j, offer in enumerate(offers):
            if compatible(order, offer, sites[offer.site], now):
                compatible_pairs += 1
                if offer.price <= order.bid:
                    cols_order.append(i)
                    cols_offer.append(j)
                    welfare.append((order.bid - offer.price) * order.hours)
    n = len(cols_order)
    m = len(orders) + len(offers)
    index = np.empty(2 * n, dtype=np.int32)
    index[0::2] = np.array(cols_order, dtype=np.int32)
    index[1::2] = len(orders) + np.array(cols_offer, dtype=np.int32)
    row_upper = np.array([o.gpus for o in orders] + [o.gpus for o in offers], dtype=float)

    def solve(costs: np.ndarray) -> tuple[float, float]:
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("solver", "ipm")
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, m
        lp.col_cost_ = costs
        lp.col_lower_ = np.zeros(n)
        lp.col_upper_ = np.full(n, highspy.kHighsInf)
        lp.row_lower_ = np.full(m, -highspy.kHighsInf)
        lp.row_upper_ = row_upper
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.arange(0, 2 * n + 1, 2, dtype=np.int32)
        lp.a_matrix_.index_ = index
        lp.a_matrix_.value_ = np.ones(2 * n)
        lp.sense_ = highspy.ObjSense.kMaximize
        h.passModel(lp)
        started = time.perf_counter()
        h.run()
        seconds = time.perf_counter() - started
        return h.getInfo().objective_function_value, seconds

    max_gpus, t1 = solve(np.ones(n))
    max_welfare, t2 = solve(np.array(welfare, dtype=float))
    return max_gpus, max_welfare, t1 + t2, compatible_pairs, n


# --- main ----------------------------------------------------------------------------


def run_instance(*, seed, n_orders, n_offers, models, now):
    from market.matching import match_round
    from market.models import Lease

    market_truncate()
    sites, offers, orders, _offer_ids, order_of = market_make(
        seed=seed, n_orders=n_orders, n_offers=n_offers, models=models, now=now
    )
    settle()
    started = time.perf_counter()
    result = match_round(now=now)
    seconds = time.perf_counter() - started
    result.phases.update(write_floor(result.lease_ids))
    leases = list(Lease.objects.values_list("order_id", "gpu_count", "price_amount"))
    allocated = sum(g for _o, g, _p in leases)
    welfare = sum((order_of[o].bid - p) * order_of[o].hours * g for o, g, p in leases)
    return sites, offers, orders, result, seconds, allocated, welfare


def write_floor(lease_ids: list[int]) -> dict[str, float]:
    """The write phase's floors, timed as binary COPY into empty temporary
    tables of the same columns and defaults (no foreign keys, no CHECK
    constraints), in a transaction that drops them again:

    - `write_floor_inserts`: the rows the round inserted (leases, their
      events, the orders' events), into tables with the same indexes. The
      floor issue 15 first quoted.
    - `write_floor`: those, plus the row versions the round's UPDATEs write.
      PostgreSQL writes a whole new version of every row it updates, so
      writing the same output costs at least that much more: the updated
      orders into a table with the order table's indexes (the round moves
      their `status`, an indexed column, so every index gets an entry), the
      updated offers into one with no index (the round changes only
      `gpus_available`, in no index: at best a heap-only update). A lower
      bound still: no WAL (temporary tables), no constraint checks, no
      locks, no index entry an update might skip."""
    from django.db import connection

    in_round = "SELECT {column} FROM market_lease WHERE id = ANY(%(leases)s)"
    inserted = {
        "market_lease": "id = ANY(%(leases)s)",
        "market_leaseevent": "lease_id = ANY(%(leases)s)",
        "market_orderevent": f"order_id IN ({in_round.format(column='order_id')})",
    }
    updated = {  # table: (rows, indexes)
        "market_order": (f"id IN ({in_round.format(column='order_id')})", True),
        "market_offer": (f"id IN ({in_round.format(column='offer_id')})", False),
    }
    raw = connection.connection
    tables = {t: (where, True) for t, where in inserted.items()} | updated
    dumps = {}
    with raw.cursor() as cur:
        for table, (where, _indexes) in tables.items():
            query = cur.mogrify(f"SELECT * FROM {table} WHERE {where}", {"leases": lease_ids})
            chunks = []
            with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as cp:
                chunks.extend(bytes(c) for c in cp)
            dumps[table] = chunks
        for table, (_where, indexes) in tables.items():
            like = "INCLUDING DEFAULTS" + (" INCLUDING INDEXES" if indexes else "")
            cur.execute(f"CREATE TEMP TABLE floor_{table} (LIKE {table} {like})")
        seconds = {}
        for table, chunks in dumps.items():
            started = time.perf_counter()
            with cur.copy(f"COPY floor_{table} FROM STDIN (FORMAT BINARY)") as cp:
                for chunk in chunks:
                    cp.write(chunk)
            seconds[table] = time.perf_counter() - started
        for table in tables:
            cur.execute(f"DROP TABLE floor_{table}")
    raw.commit()
    inserts = sum(seconds[t] for t in inserted)
    return {
        "write_floor_inserts": inserts,
        "write_floor": inserts + sum(seconds[t] for t in updated),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--offers", type=int, default=5_000)
    parser.add_argument("--lp-orders", type=int, default=2_000)
    parser.add_argument("--lp-offers", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=20260301)
    database_argument(parser)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    try:
        models, now = scratch_setup(args.database_url)
        _s, offers, orders, result, match_seconds, allocated, _w = run_instance(
            seed=args.seed, n_orders=args.orders, n_offers=args.offers, models=models, now=now
        )
        supply = sum(o.gpus for o in offers)
        demand = sum(o.gpus for o in orders)
        print(
            f"market: {len(orders):,} orders ({demand:,} GPUs) x {len(offers):,} offers ({supply:,} GPUs), seed {args.seed}"
        )
        print(
            f"matching round: {match_seconds:.3f} s wall, {result.leases_created:,} leases, "
            f"{result.gpus_allocated:,} GPUs allocated, {result.orders_touched:,} orders filled in part or whole"
        )
        phases = result.phases
        print(
            "phases: "
            + ", ".join(f"{k} {phases[k]:.3f} s" for k in ("snapshot", "plan", "write"))
            + f"; write floor (COPY of the rows inserted and of the updated rows' new versions) "
            f"{phases['write_floor']:.3f} s, write / floor {phases['write'] / phases['write_floor']:.2f}; "
            f"inserted rows alone (the first floor) {phases['write_floor_inserts']:.3f} s, "
            f"write / that {phases['write'] / phases['write_floor_inserts']:.2f}"
        )
        baseline_seconds, baseline_gpus = baseline_round(now)
        print(
            f"baseline, the same round without the rebalancing: {baseline_seconds:.3f} s wall, "
            f"{baseline_gpus:,} GPUs allocated; ratio {match_seconds / baseline_seconds:.2f}"
        )

        sites, lp_offers, lp_orders, lp_result, lp_match_seconds, lp_allocated, lp_welfare = (
            run_instance(
                seed=args.seed,
                n_orders=args.lp_orders,
                n_offers=args.lp_offers,
                models=models,
                now=now,
            )
        )
        max_gpus, max_welfare, highs_seconds, compatible_pairs, tradeable = lp_bounds(
            lp_orders, lp_offers, sites, now
        )
        pairs = len(lp_orders) * len(lp_offers)
        allocated_share = lp_allocated / max_gpus if max_gpus else 1.0
        welfare_share = lp_welfare / max_welfare if max_welfare else 1.0
        print(
            f"LP instance: {len(lp_orders):,} x {len(lp_offers):,}; compatible pairs "
            f"{compatible_pairs / pairs:.1%} (price aside), tradeable (ask <= bid) {tradeable / pairs:.1%}; "
            f"engine {lp_match_seconds:.3f} s"
        )
        print(f"GPUs allocated: {lp_allocated:,} of LP max {max_gpus:,.0f} = {allocated_share:.2%}")
        print(f"welfare: {lp_welfare:,} of LP optimum {max_welfare:,.0f} fen = {welfare_share:.2%}")
        print(f"HiGHS (interior point, both LPs): {highs_seconds:.2f} s")
        print(
            json.dumps(
                {
                    "orders": len(orders),
                    "offers": len(offers),
                    "match_seconds": round(match_seconds, 3),
                    "phases": {k: round(v, 3) for k, v in result.phases.items()},
                    "write_to_floor": round(
                        result.phases["write"] / result.phases["write_floor"], 2
                    ),
                    "write_to_inserts_floor": round(
                        result.phases["write"] / result.phases["write_floor_inserts"], 2
                    ),
                    "highs_seconds": round(highs_seconds, 2),
                    "allocated_share": round(allocated_share, 4),
                    "welfare_share": round(welfare_share, 4),
                }
            )
        )
    finally:
        if not args.keep:
            database_drop(args.database_url)


if __name__ == "__main__":
    main()
