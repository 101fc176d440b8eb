"""A day of the price index computed from its fills (METHOD.md)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.utils import timezone

from market.index.classes import gpu_class
from market.models import GPUModel, Lease

METHOD_VERSION = "v1"
CENT = Decimal("0.01")
SECONDS_PER_HOUR = Decimal(3600)


def _hundredths(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class IndexRow:
    day: dt.date
    gpu_class: str
    vwap_gpu_hour: Decimal  # fen per GPU-hour, 0.01
    vwap_pflops_hour: Decimal | None  # fen per PFLOPS-hour of dense BF16, 0.01
    gpu_hours: Decimal
    pflops_hours: Decimal
    notional_amount: int  # fen
    trades: int
    currency: str

    def as_json(self) -> dict:
        """The row as published: decimals as strings (the payload is hashed)."""
        return {
            "day": self.day.isoformat(),
            "gpu_class": self.gpu_class,
            "currency": self.currency,
            "vwap_gpu_hour": str(self.vwap_gpu_hour),
            "vwap_pflops_hour": None
            if self.vwap_pflops_hour is None
            else str(self.vwap_pflops_hour),
            "gpu_hours": str(self.gpu_hours),
            "pflops_hours": str(self.pflops_hours),
            "notional_amount": self.notional_amount,
            "trades": self.trades,
        }

    @classmethod
    def from_json(cls, row: dict) -> IndexRow:
        pflops = row["vwap_pflops_hour"]
        return cls(
            day=dt.date.fromisoformat(row["day"]),
            gpu_class=row["gpu_class"],
            currency=row["currency"],
            vwap_gpu_hour=Decimal(row["vwap_gpu_hour"]),
            vwap_pflops_hour=None if pflops is None else Decimal(pflops),
            gpu_hours=Decimal(row["gpu_hours"]),
            pflops_hours=Decimal(row["pflops_hours"]),
            notional_amount=row["notional_amount"],
            trades=row["trades"],
        )


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The day in the exchange's time zone, as an aware [start, end)."""
    zone = timezone.get_default_timezone()
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return start, end


def index_compute_day(*, day: dt.date) -> list[IndexRow]:
    """Every class with a fill on `day`: VWAPs, volume and trade count, by class
    and currency, sorted by class."""
    start, end = day_bounds(day)
    models = {m.pk: m for m in GPUModel.objects.all()}
    fills = Lease.objects.filter(
        created_at__gte=start, created_at__lt=end, previous_lease__isnull=True
    ).values_list(
        "node__gpu_model_id", "gpu_count", "price_amount", "currency", "starts_at", "ends_at"
    )
    sums: dict[tuple[str, str], list] = defaultdict(lambda: [Decimal(0), Decimal(0), Decimal(0), 0])
    for model_id, gpus, price, currency, starts_at, ends_at in fills:
        model = models[model_id]
        gpu_hours = gpus * Decimal((ends_at - starts_at).total_seconds()) / SECONDS_PER_HOUR
        total = sums[(gpu_class(model), currency)]
        total[0] += price * gpu_hours
        total[1] += gpu_hours
        total[2] += gpu_hours * model.dense_tflops / 1000
        total[3] += 1
    rows = []
    for (code, currency), (notional, gpu_hours, pflops_hours, trades) in sorted(sums.items()):
        rows.append(
            IndexRow(
                day=day,
                gpu_class=code,
                currency=currency,
                vwap_gpu_hour=_hundredths(notional / gpu_hours),
                vwap_pflops_hour=_hundredths(notional / pflops_hours) if pflops_hours else None,
                gpu_hours=_hundredths(gpu_hours),
                pflops_hours=_hundredths(pflops_hours),
                notional_amount=int(_hundredths(notional).to_integral_value(ROUND_HALF_EVEN)),
                trades=trades,
            )
        )
    return rows
