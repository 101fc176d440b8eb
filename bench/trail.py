"""The subsidy trail at scale: N usage records logged, a tree head signed, and
inclusion and consistency proofs served, against two in-run floors: SHA-256 of
the same leaves in a loop (the hashing any log must do) and reading the leaf
hashes back from PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> .venv/bin/python bench/trail.py \
        [--records 100000]

It deletes the trail, usage records and leases of that database (a benchmark
database; the trail's append-only triggers are bypassed for the clean-up).
The last line printed is a JSON object with the figures.
"""

import argparse
import datetime as dt
import hashlib
import json
import time

from _setup import django_setup, make_nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    django_setup()
    from django.db import connection

    from billing import trail
    from billing.models import TrailLeaf, TreeHead
    from market.models import UsageRecord
    from tests.factories import LeaseFactory, OfferFactory, OrderFactory

    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # past the append-only triggers
        cursor.execute("TRUNCATE billing_trailleaf, billing_treehead CASCADE")
        cursor.execute("SET session_replication_role = DEFAULT")
    UsageRecord.objects.all().delete()
    node, _token = make_nodes(1, gpus=8, label="trail")[0]
    lease = LeaseFactory(offer=OfferFactory(node=node), order=OrderFactory())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    step = dt.timedelta(minutes=5)
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(
                lease=lease,
                window_start=start + i * step,
                window_end=start + (i + 1) * step,
                gpu_seconds_delivered=2_400,
            )
            for i in range(args.records)
        ],
        batch_size=5_000,
    )
    print(f"{args.records:,} usage records")

    t = time.perf_counter()
    appended = trail.trail_append_pending()
    append_s = time.perf_counter() - t
    print(f"logged {appended:,} leaves in {append_s:.1f} s ({appended / append_s:,.0f} leaves/s)")

    t = time.perf_counter()
    head = trail.tree_head_sign()
    sign_s = time.perf_counter() - t
    print(f"signed the head of {head.tree_size:,} leaves in {sign_s:.2f} s")

    leaves = list(TrailLeaf.objects.values_list("leaf", flat=True))
    t = time.perf_counter()
    for leaf in leaves:
        hashlib.sha256(b"\x00" + leaf.encode()).digest()
    hash_floor_s = time.perf_counter() - t
    t = time.perf_counter()
    list(TrailLeaf.objects.order_by("index").values_list("leaf_hash", flat=True))
    read_floor_s = time.perf_counter() - t
    print(
        f"floors: SHA-256 of every leaf {hash_floor_s:.2f} s, reading every leaf hash {read_floor_s:.2f} s"
    )

    picks = [
        TrailLeaf.objects.get(index=i)
        for i in range(0, head.tree_size, max(1, head.tree_size // 100))
    ]
    t = time.perf_counter()
    trail.inclusion_proof(leaf=picks[0], tree_size=head.tree_size)
    first_proof_s = time.perf_counter() - t
    t = time.perf_counter()
    for leaf in picks[1:]:
        trail.inclusion_proof(leaf=leaf, tree_size=head.tree_size)
    proof_ms = (time.perf_counter() - t) / max(1, len(picks) - 1) * 1000
    print(
        f"first inclusion proof {first_proof_s:.2f} s (builds the tree), then {proof_ms:.2f} ms each"
    )

    UsageRecord.objects.create(
        lease=lease,
        window_start=start + args.records * step,
        window_end=start + (args.records + 1) * step,
        gpu_seconds_delivered=2_400,
    )
    second = trail.tree_head_sign()
    t = time.perf_counter()
    proof = trail.consistency_proof(first=head.tree_size, second=second.tree_size)
    consistency_s = time.perf_counter() - t
    print(
        f"consistency proof {head.tree_size:,} -> {second.tree_size:,}: {len(proof)} hashes in {consistency_s:.2f} s"
    )
    assert TreeHead.objects.count() == 2

    figures = {
        "leaves": head.tree_size,
        "append_leaves_per_s": round(appended / append_s),
        "sign_s": round(sign_s, 3),
        "sign_over_hash_floor": round(sign_s / hash_floor_s, 2),
        "sign_over_read_floor": round(sign_s / read_floor_s, 2),
        "first_inclusion_proof_s": round(first_proof_s, 3),
        "inclusion_proof_ms": round(proof_ms, 3),
        "consistency_proof_s": round(consistency_s, 3),
        "hash_floor_s": round(hash_floor_s, 3),
        "read_floor_s": round(read_floor_s, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
