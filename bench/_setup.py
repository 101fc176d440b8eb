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
    import secrets
    from decimal import Decimal

    from accounts.models import Organisation
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
        Node.objects.filter(pk=node.pk).update(token_digest=node_token_digest(token=token))
        nodes.append((node, token))
    return nodes
