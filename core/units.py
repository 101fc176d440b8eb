"""Unit conversions shown beside money (not money: nothing here is charged)."""

from decimal import Decimal

from core.money import SECONDS_PER_HOUR


def gpu_hours(gpu_seconds: int, *, places: str = "0.01") -> Decimal:
    """GPU-seconds as GPU-hours, to `places` (display and reports only)."""
    return (Decimal(gpu_seconds) / SECONDS_PER_HOUR).quantize(Decimal(places))
