"""The price index from matched trades, entered here: the class of a GPU model
(classes.py), a day's figures computed from its fills (compute.py), the
hash-chained snapshots that publish them (snapshots.py), and the chart and CSV
(charts.py). The method is
METHOD.md beside this file, versioned as `METHOD_VERSION`."""

from market.index.charts import index_chart_svg, index_csv
from market.index.classes import GPU_CLASSES, gpu_class
from market.index.compute import METHOD_VERSION, IndexRow, index_compute_day
from market.index.snapshots import (
    ChainCheck,
    index_chain_verify,
    index_publish,
    index_publish_due,
    index_rows,
    last_published_day,
    method_text,
)

__all__ = [
    "GPU_CLASSES",
    "METHOD_VERSION",
    "ChainCheck",
    "IndexRow",
    "gpu_class",
    "index_chart_svg",
    "index_csv",
    "index_chain_verify",
    "index_compute_day",
    "index_publish",
    "index_publish_due",
    "index_rows",
    "last_published_day",
    "method_text",
]
