"""Normalised GPU classes of the price index (METHOD.md, "Classes")."""

from decimal import Decimal

from django.utils.translation import gettext as _

from market.models import GPUModel

TIERS = ((Decimal(700), "t1"), (Decimal(250), "t2"), (Decimal(0), "t3"))
MEMORY_TIER_GB = 80

GPU_CLASSES = {
    f"{origin}-{tier}-{memory}": (origin, tier, memory)
    for origin in ("imported", "domestic")
    for _floor, tier in TIERS
    for memory in ("m1", "m2")
}


def gpu_class(model: GPUModel) -> str:
    """'imported-t1-m1' for an H800: origin, compute tier, memory tier."""
    origin = "domestic" if model.domestic else "imported"
    tier = next(code for floor, code in TIERS if model.dense_tflops >= floor)
    memory = "m1" if model.memory_gb >= MEMORY_TIER_GB else "m2"
    return f"{origin}-{tier}-{memory}"


def gpu_class_label(code: str) -> str:
    """'Imported · ≥ 700 TFLOPS · ≥ 80 GB' for 'imported-t1-m1': the class as a buyer reads it."""
    origin, tier, memory = GPU_CLASSES[code]
    origins = {"imported": _("Imported"), "domestic": _("Domestic")}
    tiers = {"t1": "≥ 700 TFLOPS", "t2": "250–700 TFLOPS", "t3": "< 250 TFLOPS"}
    memories = {"m1": f"≥ {MEMORY_TIER_GB} GB", "m2": f"< {MEMORY_TIER_GB} GB"}
    return f"{origins[origin]} · {tiers[tier]} · {memories[memory]}"
