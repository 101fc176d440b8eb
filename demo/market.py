"""Demo capacity for the embedded mode: the two demo providers' sites, nodes
and offers. Idempotent: sites are looked up by name, nodes by (site, name).
Like every new node, a demo node awaits its agent (the demo command runs a
simulated one on each) and is matched once that agent has reported."""

import datetime as dt
import hashlib
from decimal import Decimal

from accounts.models import Organisation
from core import clock
from market.models import GPUModel, Node, Offer, Site

DEMO_CAPACITY = {
    "914403001922038216": [  # 庆阳绿色算力 (Gansu)
        (
            "庆阳一号数据中心",
            "甘肃",
            "gansu",
            "0.820",
            "1.18",
            470,
            [
                ("nvidia-h800-sxm", 4, 8, 2_150),
                ("huawei-ascend-910b3", 4, 8, 1_250),
            ],
        ),
    ],
    "91440300708461136T": [  # 贵安云谷 (Guizhou)
        (
            "贵安云谷 A 区",
            "贵州",
            "guizhou",
            "0.650",
            "1.25",
            390,
            [
                ("nvidia-a800-sxm-80gb", 2, 8, 1_100),
                ("nvidia-l40s", 2, 8, 650),
            ],
        ),
    ],
}


def seed() -> None:
    now = clock.now()
    for credit_code, sites in DEMO_CAPACITY.items():
        provider = Organisation.objects.filter(credit_code=credit_code).first()
        if provider is None:
            continue
        for name, region, hub, green, pue, carbon, groups in sites:
            site, _ = Site.objects.get_or_create(
                provider=provider,
                name=name,
                defaults={
                    "region": region,
                    "hub": hub,
                    "green_share": Decimal(green),
                    "pue": Decimal(pue),
                    "carbon_intensity_g_per_kwh": carbon,
                },
            )
            for slug, nodes, gpus, price in groups:
                model = GPUModel.objects.get(slug=slug)
                for i in range(nodes):
                    node_name = f"{slug}-{i + 1:02d}"
                    Node.objects.get_or_create(
                        site=site,
                        name=node_name,
                        defaults={
                            "gpu_model": model,
                            "gpu_count": gpus,
                            # demo nodes get a fresh token from the capacity page when needed
                            "token_digest": hashlib.sha256(
                                f"demo:{site.pk}:{node_name}".encode()
                            ).hexdigest(),
                        },
                    )
                Offer.objects.get_or_create(
                    provider=provider,
                    site=site,
                    node=None,
                    gpu_model=model,
                    defaults={
                        "gpus_total": nodes * gpus,
                        "gpus_available": nodes * gpus,
                        "price_amount": price,
                        "available_from": now,
                        "available_until": now + dt.timedelta(days=90),
                    },
                )


def demo_nodes() -> list[Node]:
    """The demo providers' nodes: the demo runs a simulated agent on each."""
    return list(Node.objects.filter(site__provider__credit_code__in=DEMO_CAPACITY).order_by("pk"))
