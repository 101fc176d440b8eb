"""The simulated market's cast: computing centres in the national hubs with
their sites, nodes and offers; buyers; a subsidy authority with its programme.

Everything is made through the services the API calls (site_create,
node_create, offer_create, programme_create, voucher_issue, application_create
…) from one seeded random generator, so the same seed gives the same world.
Figures are plausible 2025-26 ones: hub sites' green shares, PUE and grid
carbon intensity; per-GPU-hour asks in fen, western hubs cheaper than eastern.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.credit_code import ALPHABET, check_character
from accounts.models import Membership, Organisation
from billing.models import PayoutAccount, PayoutMethod, SubsidyProgramme
from billing.subsidy import programme_create, services, voucher_issue
from core.errors import ApplicationError
from market.capacity import node_create, offer_create, site_create
from market.models import GPUModel, Node, Offer, Site

# hub → (province, city, green share, PUE, grid gCO2e/kWh, latency class, price factor)
HUBS: dict[str, tuple[str, str, str, str, int, str, float]] = {
    "jingjinji": ("河北", "张家口", "0.450", "1.25", 820, "metro", 1.12),
    "yangtze": ("安徽", "芜湖", "0.250", "1.30", 610, "metro", 1.15),
    "greater_bay": ("广东", "韶关", "0.350", "1.28", 520, "regional", 1.10),
    "chengyu": ("四川", "天府", "0.700", "1.22", 280, "regional", 0.98),
    "inner_mongolia": ("内蒙古", "和林格尔", "0.600", "1.15", 720, "national", 0.88),
    "guizhou": ("贵州", "贵安", "0.650", "1.25", 390, "national", 0.90),
    "gansu": ("甘肃", "庆阳", "0.820", "1.18", 470, "remote", 0.85),
    "ningxia": ("宁夏", "中卫", "0.750", "1.15", 520, "remote", 0.86),
}
WESTERN_HUBS = ["inner_mongolia", "guizhou", "gansu", "ningxia"]

# catalogue slug → (base ask per GPU-hour in fen, weight in a site's mix)
GPU_MIX: dict[str, tuple[int, int]] = {
    "nvidia-h800-sxm": (2_150, 4),
    "nvidia-h20": (850, 4),
    "nvidia-a800-sxm-80gb": (1_100, 3),
    "nvidia-l40s": (650, 3),
    "huawei-ascend-910b3": (1_250, 4),
    "hygon-k100-ai": (700, 2),
}
TRAINING_MODELS = ["nvidia-h800-sxm", "nvidia-a800-sxm-80gb", "huawei-ascend-910b3"]
INFERENCE_MODELS = ["nvidia-h20", "nvidia-l40s", "nvidia-a800-sxm-80gb", "hygon-k100-ai"]
GPUS_PER_NODE = 8

PROGRAMME_BUDGET = 2_000_000_00  # ¥2 million
PROGRAMME_CAP = 150_000_00


@dataclass
class Cast:
    providers: list[Organisation] = field(default_factory=list)
    buyers: list[Organisation] = field(default_factory=list)
    owners: dict[int, object] = field(default_factory=dict)  # organisation id → owner user
    nodes: list[Node] = field(default_factory=list)
    tokens: dict[int, str] = field(default_factory=dict)  # node id → agent token
    offers: list[Offer] = field(default_factory=list)
    base_price: dict[int, int] = field(default_factory=dict)  # offer id → first ask
    models: dict[str, GPUModel] = field(default_factory=dict)
    authority: Organisation | None = None
    programme: SubsidyProgramme | None = None
    kinds: dict[int, str] = field(default_factory=dict)  # buyer id → training/inference/batch


def credit_code(rng: random.Random, *, region: str = "330100") -> str:
    body = "91" + region + "".join(rng.choice(ALPHABET) for _ in range(9))
    return body + check_character(body)


def _organisation(rng: random.Random, cast: Cast, *, kind: str, name: str, region: str, sme=False):
    user = get_user_model().objects.create_user(
        username=f"sim-{kind}-{len(cast.owners) + 1:04d}", password=None
    )
    organisation = Organisation.objects.create(
        kind=kind,
        legal_name=name,
        credit_code=credit_code(rng),
        region=region,
        is_sme=sme,
        verified=True,
    )
    Membership.objects.create(user=user, organisation=organisation, role=Membership.Role.OWNER)
    cast.owners[organisation.pk] = user
    return organisation


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@transaction.atomic
def supply_create(
    *, rng: random.Random, cast: Cast, providers: int, nodes: int, now: dt.datetime
) -> None:
    """`providers` computing centres, one site each in a hub (round robin from a
    seeded start), `nodes` 8-GPU nodes spread over them, one pool offer per
    (site, GPU model) at the hub's price level."""
    cast.models = {m.slug: m for m in GPUModel.objects.filter(slug__in=GPU_MIX)}
    hubs = list(HUBS)
    rng.shuffle(hubs)
    slugs = list(GPU_MIX)
    for i, site_nodes in enumerate(_split(nodes, providers)):
        hub = hubs[i % len(hubs)]
        province, city, green, pue, carbon, latency, factor = HUBS[hub]
        provider = _organisation(
            rng,
            cast,
            kind=Organisation.Kind.PROVIDER,
            name=f"{city}算力中心 {i + 1:03d}",
            region=province,
        )
        cast.providers.append(provider)
        PayoutAccount.objects.create(
            provider=provider,
            method=PayoutMethod.BANK_TRANSFER,
            account_number=f"62220227{i:011d}",
            account_name=provider.legal_name,
            bank_name=f"中国工商银行{city}支行",
            bank_code=f"102{i:09d}",
            province=province,
            city=city,
        )
        site = site_create(
            provider=provider,
            name=f"{city}{i + 1:03d}号数据中心",
            region=province,
            hub=hub,
            green_share=Decimal(green) + Decimal(rng.randint(-40, 40)) / 1000,
            pue=Decimal(pue),
            carbon_intensity_g_per_kwh=carbon,
            latency_class=latency,
        )
        kinds = rng.sample(slugs, k=min(len(slugs), 1 + (site_nodes >= 4) + (site_nodes >= 10)))
        weights = [GPU_MIX[s][1] for s in kinds]
        pools: dict[str, int] = dict.fromkeys(kinds, 0)
        for _ in range(max(site_nodes, 1)):
            pools[rng.choices(kinds, weights=weights)[0]] += 1
        _site_fill(rng, cast, provider=provider, site=site, pools=pools, factor=factor, now=now)


def _site_fill(rng, cast: Cast, *, provider, site: Site, pools: dict, factor: float, now) -> None:
    for slug, count in pools.items():
        if not count:
            continue
        model = cast.models[slug]
        for n in range(count):
            node, token = node_create(
                site=site, name=f"{slug}-{n + 1:02d}", gpu_model=model, gpu_count=GPUS_PER_NODE
            )
            cast.nodes.append(node)
            cast.tokens[node.pk] = token
        price = round(GPU_MIX[slug][0] * factor * rng.uniform(0.92, 1.08))
        offer = offer_create(
            provider=provider,
            actor=cast.owners[provider.pk],
            site=site,
            node=None,
            gpu_model=model,
            gpus_total=count * GPUS_PER_NODE,
            price_amount=price,
            available_from=now,
            available_until=now + dt.timedelta(days=60),
            max_hours=24 * 30,
        )
        cast.offers.append(offer)
        cast.base_price[offer.pk] = price


@transaction.atomic
def demand_create(*, rng: random.Random, cast: Cast, buyers: int, now: dt.datetime) -> None:
    """`buyers` enterprises: a mix of model trainers, inference services and
    batch users; an authority with a programme; about a third of the buyers
    hold a voucher (half granted outright, half through an approved application)."""
    regions = [("浙江", "330100"), ("北京", "110108"), ("上海", "310115"), ("广东", "440300")]
    for i in range(buyers):
        kind = rng.choices(["training", "inference", "batch"], weights=[3, 5, 2])[0]
        region = rng.choice(regions)[0]
        buyer = _organisation(
            rng,
            cast,
            kind=Organisation.Kind.BUYER,
            name=f"{region}智算科技 {i + 1:03d}",
            region=region,
            sme=rng.random() < 0.5,
        )
        cast.buyers.append(buyer)
        cast.kinds[buyer.pk] = kind
    cast.authority = _organisation(
        rng, cast, kind=Organisation.Kind.AUTHORITY, name="市经济和信息化局", region="北京"
    )
    cast.programme = programme_create(
        authority=cast.authority,
        name="算力券 · simulated programme",
        budget_amount=PROGRAMME_BUDGET,
        rate_bp=3_000,
        domestic_rate_bp=5_000,
        sme_rate_bp=4_000,
        cap_per_enterprise_amount=PROGRAMME_CAP,
        cap_per_enterprise_year_amount=PROGRAMME_CAP,
        valid_from=now - dt.timedelta(days=1),
        valid_until=now + dt.timedelta(days=90),
    )
    holders = [b for b in cast.buyers if rng.random() < 1 / 3]
    authority_user = cast.owners[cast.authority.pk]
    for n, holder in enumerate(holders):
        face = rng.choice([20_000_00, 50_000_00, 100_000_00])
        try:
            with transaction.atomic():
                if n % 2 == 0:
                    voucher_issue(programme=cast.programme, holder=holder, face_amount=face)
                    continue
                application = services.application_create(
                    applicant=holder,
                    programme=cast.programme,
                    purpose="Fine-tuning a domain model",
                    expected_gpu_hours=face // 1_000,
                    requested_amount=face,
                    actor=cast.owners[holder.pk],
                )
                services.application_approve(
                    application=application, amount=face, actor=authority_user
                )
        except ApplicationError:
            continue  # the budget is spoken for: the authority grants no more
    # one application the authority has not decided yet, as on any working day
    undecided = [b for b in cast.buyers if b not in holders][:1]
    for applicant in undecided:
        services.application_create(
            applicant=applicant,
            programme=cast.programme,
            purpose="Inference for a public-service chatbot",
            expected_gpu_hours=500,
            requested_amount=30_000_00,
            actor=cast.owners[applicant.pk],
        )
