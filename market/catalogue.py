"""The GPU catalogue, seeded from market/data/gpu_models.json."""

import json
from pathlib import Path

from django.db import transaction

from market.models import GPUModel

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
