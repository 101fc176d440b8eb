"""Where a matching round spends its time (printed figures, not a test).

Generates the bench/matching.py market once into a scratch PostgreSQL database,
then runs `match_round` several times, resetting the market between runs
(leases and events deleted, orders and offers back to their initial
counters), and prints the wall time of each phase. Engines can be compared in
the same run (same minute, same load): `--engine path/to/matching.py` loads
another version of the engine module (e.g. `git show main:market/matching/engine.py >
/tmp/matching_main.py`), `--engine current` is the working tree's.

    python bench/matching_profile.py --runs 3 --engine /tmp/matching_main.py --engine current
    python bench/matching_profile.py --cprofile          # cProfile of one round, top 30
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PHASES = [
    "orders_load",
    "book_load",
    "plan",
    "round_commit",
    "_lock",
    "_leases_insert",
    "_order_progress",
    "_bulk_add",
]


def engine_load(spec: str):
    if spec == "current":
        import market.matching.engine as module

        return module
    name = f"engine_{abs(hash(spec))}"
    loader = importlib.util.spec_from_file_location(name, spec)
    module = importlib.util.module_from_spec(loader)
    sys.modules[name] = module
    loader.loader.exec_module(module)
    return module


def timed_round(module, now) -> tuple[float, dict[str, float], object]:
    spent: dict[str, float] = defaultdict(float)
    # The engine is split over market.matching.engine and market.matching.store: time the
    # phases wherever they live (an older single-file engine has them all in one).
    modules = [module] + [
        m for m in [sys.modules.get("market.matching.store")] if m and m is not module
    ]
    originals = {
        (owner, name): getattr(owner, name)
        for owner in modules
        for name in PHASES
        if hasattr(owner, name)
    }

    def wrap(name, fn):
        def inner(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return inner

    for (owner, name), fn in originals.items():
        setattr(owner, name, wrap(name, fn))
    from django.db import connections

    connection = connections["default"]

    connection.commit = wrap("db_commit", type(connection).commit.__get__(connection))
    try:
        started = time.perf_counter()
        result = module.match_round(now=now)
        total = time.perf_counter() - started
    finally:
        for (owner, name), fn in originals.items():
            setattr(owner, name, fn)
        del connection.commit
    return total, dict(spent), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--offers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=20260301)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engine", action="append", default=[])
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--sort", default="cumulative", help="cProfile sort key")
    import matching as bench

    bench.database_argument(parser)
    args = parser.parse_args()
    engines = args.engine or ["current"]

    try:
        models, now = bench.scratch_setup(args.database_url)
        from market.models import Lease

        bench.market_make(
            seed=args.seed, n_orders=args.orders, n_offers=args.offers, models=models, now=now
        )
        modules = {spec: engine_load(spec) for spec in engines}
        if args.cprofile:
            import cProfile
            import pstats

            bench.market_reset()
            profile = cProfile.Profile()
            profile.enable()
            modules[engines[-1]].match_round(now=now)
            profile.disable()
            pstats.Stats(profile).sort_stats(args.sort).print_stats(30)
            return
        totals: dict[str, list[float]] = defaultdict(list)
        for run in range(args.runs):
            for spec, module in modules.items():  # interleaved: same minute, same load
                if totals:  # the first round runs on the freshly loaded market, as in the bench
                    bench.market_reset()
                total, spent, result = timed_round(module, now)
                gpus = sum(Lease.objects.values_list("gpu_count", flat=True))
                totals[spec].append(total)
                phases = " ".join(f"{k.strip('_')}={v:.3f}" for k, v in spent.items())
                print(
                    f"run {run} {Path(spec).name:>22}: {total:.3f} s  {phases}  "
                    f"leases={result.leases_created} gpus={gpus}"
                )
        for spec, values in totals.items():
            print(f"median {Path(spec).name:>22}: {statistics.median(values):.3f} s")
    finally:
        bench.database_drop(args.database_url)


if __name__ == "__main__":
    main()
