"""The GPU catalogue, seeded from market/data/gpu_models.json.

`catalogue_models()` reads the whole catalogue (a few dozen rows) from the
cache (kept in the process too) until an entry changes: placing an order read it from the database two
or three times (validating the accepted models, then the floors)."""

import json
from pathlib import Path

from django.db import transaction

from core.cache import cached_in_process, generation_bump
from market.models import GPUModel

CATALOGUE_CACHE = "market-catalogue"

DATA_FILE = Path(__file__).parent / "data" / "gpu_models.json"
FIELDS = [
    "vendor",
    "name",
    "memory_gb",
    "memory_type",
    "bf16_tflops",
    "fp16_tflops",
    "fp32_tflops",
    "interconnect",
    "tdp_w",
    "domestic",
    "sources",
    "notes",
]


@transaction.atomic
def gpu_models_load(*, path: Path = DATA_FILE) -> int:
    """Create or update every catalogue entry from the data file; returns the count."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    for entry in entries:
        GPUModel.objects.update_or_create(
            slug=entry["slug"], defaults={field: entry.get(field) for field in FIELDS}
        )
    return len(entries)


def catalogue_models() -> list[GPUModel]:
    """Every catalogue entry, in the catalogue's order; cached until one is
    saved or deleted (`catalogue_changed`, connected in MarketConfig.ready).
    The entries are this process's own copies, shared by its callers: read them,
    never change them."""
    models = cached_in_process(
        CATALOGUE_CACHE, "models", lambda: list(GPUModel.objects.all()), timeout=3600
    )
    return list(models)


def catalogue_changed(**_kwargs) -> None:
    generation_bump(CATALOGUE_CACHE)
