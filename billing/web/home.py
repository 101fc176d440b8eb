"""The home page at `/`: each role lands on what it asks first (buyer, provider,
authority, operator); anonymous visitors keep the marketing page. It lives in
billing's face because billing is the layer that may read market and accounts
as well (as billing.operator_overview does)."""

import datetime as dt

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.selectors import organisation_for_user
from billing import selectors
from billing.models import FraudFlag, VoucherApplication
from billing.operator_overview import operator_overview
from billing.subsidy import selectors as subsidy_selectors
from core import clock
from core.charts import column_chart, line_chart
from core.views import home as marketing_home
from market import selectors as market_selectors
from market.models import Node

BREAKDOWNS = [
    ("region", gettext_lazy("Region")),
    ("hub", gettext_lazy("Hub")),
    ("gpu_vendor", gettext_lazy("GPU vendor")),
]


def home(request: HttpRequest) -> HttpResponse:
    organisation = organisation_for_user(request.user)
    if organisation is not None and organisation.is_buyer:
        return buyer_home(request, organisation)
    if organisation is not None and organisation.is_provider:
        return provider_home(request, organisation)
    if organisation is not None and organisation.is_authority:
        return authority_home(request, organisation)
    if request.user.is_authenticated and request.user.is_staff:
        return operator_home(request)
    return marketing_home(request)


def buyer_home(request: HttpRequest, buyer) -> HttpResponse:
    currency = settings.DEFAULT_CURRENCY
    data = selectors.buyer_home(buyer=buyer, now=clock.now(), currency=currency)
    board = market_selectors.board_summary(currency=currency)
    prices = [m for m in board.models if m.gpu_model_id in data.model_ids] or board.models
    return render(
        request,
        "home/buyer.html",
        {"home": data, "prices": prices[:5], "currency": currency},
    )


def provider_home(request: HttpRequest, provider) -> HttpResponse:
    currency = settings.DEFAULT_CURRENCY
    now = clock.now()
    data = selectors.provider_home(provider=provider, now=now, currency=currency)
    return render(
        request,
        "home/provider.html",
        {
            "home": data,
            "summary": market_selectors.capacity_summary(provider),
            "node_states": [
                (state.value, state.label, data.states[state.value])
                for state in Node.State
                if state.value in data.states
            ],
            "utilisation_chart": _utilisation_chart(data.utilisation_by_hour),
            "revenue_chart": _revenue_chart(data.revenue_by_day),
            "currency": currency,
        },
    )


def authority_home(request: HttpRequest, authority) -> HttpResponse:
    now = clock.now()
    programmes = [
        p
        for p in subsidy_selectors.programmes_for(organisation=authority)
        if p.status == p.Status.ACTIVE
    ][:2]
    burn_downs = [subsidy_selectors.programme_burn_down(programme=p, now=now) for p in programmes]
    breakdowns = []
    if programmes:
        for by, label in BREAKDOWNS:
            rows = subsidy_selectors.subsidy_breakdown(programme=programmes[0], by=by)
            breakdowns.append((label, rows[:4]))
        domestic = subsidy_selectors.subsidy_breakdown(programme=programmes[0], by="domestic")
        breakdowns.append(
            (
                _("Domestic accelerator"),
                [
                    {**row, "key": _("domestic") if row["key"] else _("imported")}
                    for row in domestic
                ],
            )
        )
    return render(
        request,
        "home/authority.html",
        {
            "burn_downs": [(b, _burn_down_chart(b)) for b in burn_downs],
            "breakdowns": breakdowns,
            "applications": subsidy_selectors.applications_for(organisation=authority)
            .filter(status=VoucherApplication.Status.PENDING)
            .select_related("applicant", "programme")[:5],
            "flags": subsidy_selectors.flags_for_authority(
                authority=authority, status=FraudFlag.Status.OPEN
            ).select_related("programme")[:5],
        },
    )


def operator_home(request: HttpRequest) -> HttpResponse:
    overview = operator_overview()
    return render(request, "home/operator.html", {"overview": overview})


# --- charts (pygal in the house style, inlined with the request's nonce) -------------------


# Few, whole labels on small charts: pygal's defaults crowd a 190 px high chart.
SMALL = {
    "height": 190,
    "truncate_label": -1,
    "show_minor_y_labels": False,
    "y_labels_major_count": 4,
}


def _utilisation_chart(rows: list[tuple[dt.datetime, float]]) -> str:
    if not rows:
        return ""
    chart = line_chart(**{**SMALL, "range": (0, 100), "y_labels": [0, 50, 100]}, show_legend=False)
    labels = [timezone.localtime(hour).strftime("%H:%M") for hour, _util in rows]
    chart.x_labels = labels
    chart.x_labels_major = labels[:: max(1, len(labels) // 6)]
    chart.add(_("utilisation (%)"), [round(util, 1) for _hour, util in rows])
    return chart.render(is_unicode=True)


def _revenue_chart(rows: list[tuple[dt.date, int]]) -> str:
    if not rows:
        return ""
    chart = column_chart(**SMALL, show_legend=False, value_formatter=lambda value: f"¥{value:,.0f}")
    # every day of the month so far, a day without revenue at zero
    by_day = dict(rows)
    first, last = rows[0][0].replace(day=1), max(rows[-1][0], timezone.localdate(clock.now()))
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    chart.x_labels = [str(day.day) for day in days]
    chart.x_labels_major = chart.x_labels[:: max(1, len(days) // 8)]
    chart.show_minor_x_labels = False
    chart.add(_("revenue (¥)"), [by_day.get(day, 0) / 100 for day in days])
    return chart.render(is_unicode=True)


def _burn_down_chart(burn) -> str:
    """Budget used so far (cumulative) and the straight line its pace leads to by
    the programme's end, against the total budget."""
    start = timezone.localtime(burn.programme.valid_from).date()
    end = timezone.localtime(burn.programme.valid_until).date()
    spent = dict(burn.spent_by_day)
    today = start + dt.timedelta(days=burn.days_elapsed - 1)
    step = max(1, burn.days_total // 30)
    days, actual, projected = [], [], []
    running, day = 0, start
    while day <= end:
        running = spent.get(day, running)
        index = (day - start).days
        if index % step == 0 or day == today:
            days.append(day)
            actual.append(running / 100 if day <= today else None)
            share = min(1, (index + 1) / burn.days_total)
            projected.append(burn.projected_amount * share / 100 if day >= today else None)
        day += dt.timedelta(days=1)
    chart = line_chart(
        **SMALL,
        range=(0, max(1, burn.budget.total / 100, burn.projected_amount / 100)),
        value_formatter=lambda value: f"¥{value:,.0f}",
    )
    chart.x_labels = [d.strftime("%m-%d") for d in days]
    chart.x_labels_major = chart.x_labels[:: max(1, len(days) // 5)]
    chart.add(_("spent"), actual)
    chart.add(_("projected"), projected, stroke_style={"dasharray": "6, 4"})
    chart.add(_("budget"), [burn.budget.total / 100] * len(days))
    return chart.render(is_unicode=True)
