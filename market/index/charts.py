"""The price index drawn (pygal, house style) and written as CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from core.charts import line_chart
from market.index.classes import gpu_class_label
from market.index.compute import IndexRow

CSV_COLUMNS = [
    "day",
    "gpu_class",
    "currency",
    "vwap_gpu_hour",
    "vwap_pflops_hour",
    "gpu_hours",
    "pflops_hours",
    "notional_amount",
    "trades",
]


def index_csv(rows: list[IndexRow]) -> str:
    """One line per day and class; prices in fen (0.01), as published."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.as_json().items()})
    return out.getvalue()


def index_chart_svg(rows: list[IndexRow], *, title: str) -> str:
    """VWAP in ¥ per PFLOPS-hour, one line per class: classes compared on one scale."""
    days = sorted({row.day for row in rows})
    series: dict[str, dict] = defaultdict(dict)
    for row in rows:
        if row.vwap_pflops_hour is not None:
            series[row.gpu_class][row.day] = float(row.vwap_pflops_hour) / 100
    chart = line_chart(
        show_dots=True,
        x_label_rotation=30,
        value_formatter=lambda value: f"¥{value:,.2f}",
    )
    chart.title = title
    chart.x_labels = [day.isoformat() for day in days]
    chart.x_labels_major_every = max(1, len(days) // 8)
    for code in sorted(series):
        chart.add(gpu_class_label(code), [series[code].get(day) for day in days])
    return chart.render(is_unicode=True)
