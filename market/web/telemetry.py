"""Pages: a lease's usage (buyer and provider) and a node's health (provider)."""

import datetime as dt
import math

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.selectors import organisation_for_user
from core import clock
from core.charts import line_chart
from core.db import replica_reads
from market.telemetry import lease_end, selectors

CHART_SPAN = dt.timedelta(hours=1)


def _chart(series: list[dict]) -> str:
    peak_kw = max((point["power"] for point in series), default=0) / 1000
    chart = line_chart(
        height=260,
        range=(0, 100),
        y_labels=[0, 25, 50, 75, 100],
        secondary_range=(0, max(1, math.ceil(peak_kw * 1.2))),
    )
    labels = [timezone.localtime(point["minute"]).strftime("%H:%M") for point in series]
    chart.x_labels = labels
    chart.x_labels_major = labels[:: max(1, len(labels) // 6)]
    chart.add(_("utilisation (%)"), [round(p["util"], 1) for p in series])
    chart.add(_("power (kW)"), [round(p["power"] / 1000, 2) for p in series], secondary=True)
    return chart.render(is_unicode=True)


@login_required
@replica_reads
def lease_usage(request: HttpRequest, pk: int) -> HttpResponse:
    organisation = organisation_for_user(request.user)
    if organisation is None:
        raise Http404
    visible = selectors.leases_for_organisation(organisation=organisation)
    lease = get_object_or_404(
        visible.select_related("node__site", "node__gpu_model", "order"), pk=pk
    )
    # The order's other leases as far as this organisation may see them: the
    # buyer sees its whole order, a provider only its own leases of it.
    history = list(visible.filter(order=lease.order).order_by("starts_at", "pk"))
    until = min(clock.now(), lease_end(lease))
    series = selectors.node_series(node=lease.node, since=until - CHART_SPAN, until=until)
    return render(
        request,
        "market/lease_usage.html",
        {
            "lease": lease,
            "history": history,
            "totals": selectors.lease_usage_totals(lease_ids=[lease.pk]),
            "records": lease.usage_records.order_by("-window_start")[:24],
            "chart": _chart(series) if series else "",
        },
    )


@login_required
@replica_reads
def node_health(request: HttpRequest, pk: int) -> HttpResponse:
    organisation = organisation_for_user(request.user)
    if organisation is None:
        raise Http404
    node = get_object_or_404(selectors.nodes_for_provider(organisation=organisation), pk=pk)
    now = clock.now()
    series = selectors.node_series(node=node, since=now - CHART_SPAN, until=now)
    lease_ids = list(node.leases.values_list("pk", flat=True))
    return render(
        request,
        "market/node_health.html",
        {
            "node": node,
            "events": selectors.node_health_history(node=node),
            "totals": selectors.lease_usage_totals(lease_ids=lease_ids),
            "chart": _chart(series) if series else "",
        },
    )
