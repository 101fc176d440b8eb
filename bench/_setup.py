"""Shared set-up for the benchmarks: Django on the DATABASE_URL database."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    if not settings.IS_POSTGRES:
        sys.exit("benchmarks need PostgreSQL: set DATABASE_URL=postgres://...")


def make_nodes(count: int, *, gpus: int, label: str):
    """`count` nodes of `gpus` GPUs at one bench site, with agent tokens."""
    import datetime as dt
    import secrets
    from decimal import Decimal

    from accounts.models import Organisation
    from core import clock
    from market.capacity import node_token_digest
    from market.models import GPUModel, Node, Site

    provider, _ = Organisation.objects.get_or_create(
        credit_code="91440300MA5BENCH0X",
        defaults={"kind": "provider", "legal_name": "Bench Compute Co., Ltd.", "verified": True},
    )
    site, _ = Site.objects.get_or_create(
        provider=provider,
        name="bench",
        defaults={
            "region": "甘肃",
            "hub": "gansu",
            "green_share": Decimal("0.6"),
            "pue": Decimal("1.2"),
            "carbon_intensity_g_per_kwh": 550,
        },
    )
    model = GPUModel.objects.get(slug="nvidia-h800-sxm")
    nodes = []
    for i in range(count):
        node = Node.objects.create(
            site=site,
            name=f"{label}-{i}-{secrets.token_hex(3)}",
            gpu_model=model,
            gpu_count=gpus,
            token_digest=secrets.token_hex(32),
        )
        token = f"{node.pk}.{secrets.token_urlsafe(32)}"
        Node.objects.filter(pk=node.pk).update(
            token_digest=node_token_digest(token=token),
            token_expires_at=clock.now() + dt.timedelta(days=365),
        )
        nodes.append((node, token))
    return nodes


PROVINCE_HUBS = [
    ("甘肃", "gansu"),
    ("宁夏", "ningxia"),
    ("内蒙古", "inner_mongolia"),
    ("贵州", "guizhou"),
    ("四川", "chengyu"),
    ("河北", "jingjinji"),
    ("上海", "yangtze"),
    ("广东", "greater_bay"),
    ("新疆", "none"),
]


def make_book(
    *, offers: int = 100_000, providers: int = 200, sites: int = 2_000, nodes: int = 20_000
):
    """A realistic open book written in a few set-based statements: `providers`
    verified providers, `sites` sites, `nodes` nodes (8 GPUs, a catalogue
    model each, online) and `offers` active node offers over the next 30 days
    at prices around each model's list price. Returns the number of offers."""
    from django.db import connection

    from core import clock

    now = clock.now()
    regions = [r for r, _ in PROVINCE_HUBS]
    hubs = [h for _, h in PROVINCE_HUBS]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO accounts_organisation
                (kind, legal_name, credit_code, region, is_sme, verified, verified_at,
                 stripe_customer_id, created_at)
            SELECT 'provider', 'Load Provider ' || i, '91440300LOAD' || lpad(i::text, 6, '0'),
                   '甘肃', false, true, %(now)s, '', %(now)s
            FROM generate_series(1, %(n)s) AS i
            RETURNING id
            """,
            {"n": providers, "now": now},
        )
        provider_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            """
            INSERT INTO market_site
                (provider_id, name, region, hub, green_share, pue, carbon_intensity_g_per_kwh,
                 latency_class, created_at)
            SELECT (%(p)s::bigint[])[1 + i %% %(np)s], 'load-site-' || i,
                   (%(regions)s::text[])[1 + i %% 9], (%(hubs)s::text[])[1 + i %% 9],
                   ((i * 37) %% 1000) / 1000.0, 1.2, 550, 'national', %(now)s
            FROM generate_series(0, %(n)s - 1) AS i
            RETURNING id
            """,
            {
                "p": provider_ids,
                "np": providers,
                "regions": regions,
                "hubs": hubs,
                "n": sites,
                "now": now,
            },
        )
        site_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT id FROM market_gpumodel ORDER BY id")
        model_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            """
            INSERT INTO market_node
                (site_id, name, gpu_model_id, gpu_count, interconnect, state, state_reason,
                 token_digest, last_seen_at, created_at, verified, verification_reason,
                 drain_reason)
            SELECT (%(s)s::bigint[])[1 + i %% %(ns)s], 'load-node-' || i,
                   (%(m)s::bigint[])[1 + (i / %(ns)s) %% %(nm)s], 8, '', 'online', '',
                   md5('load-node-' || i || random()::text) || md5(i::text), %(now)s, %(now)s,
                   false, '', ''
            FROM generate_series(0, %(n)s - 1) AS i
            """,
            {
                "s": site_ids,
                "ns": sites,
                "m": model_ids,
                "nm": len(model_ids),
                "n": nodes,
                "now": now,
            },
        )
        cursor.execute(
            """
            INSERT INTO market_offer
                (provider_id, site_id, node_id, gpu_model_id, gpus_total, gpus_available,
                 price_amount, currency, available_from, available_until, min_hours, max_hours,
                 interruptible, status, created_at, updated_at)
            SELECT s.provider_id, n.site_id, n.id, n.gpu_model_id, 8, 1 + (k + n.id) %% 8,
                   (60 + coalesce(m.bf16_tflops, m.fp16_tflops, 100) * 2.2)::bigint
                     * (80 + (n.id * 7 + k * 13) %% 60) / 100,
                   'CNY', %(now)s - interval '1 hour',
                   %(now)s + make_interval(days => 30 + k), 1, 720, false, 'active',
                   %(now)s, %(now)s
            FROM market_node n JOIN market_site s ON s.id = n.site_id
                 JOIN market_gpumodel m ON m.id = n.gpu_model_id,
                 generate_series(0, %(per)s - 1) AS k
            WHERE n.name LIKE 'load-node-%%'
            """,
            {"now": now, "per": max(1, offers // nodes)},
        )
        written = cursor.rowcount
        for table in ("accounts_organisation", "market_site", "market_node", "market_offer"):
            cursor.execute(f"ANALYZE {table}")
    return written
