"""Pages of the price index: the board (chart, table, CSV) and its method."""

import datetime as dt

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from market import index


class IndexFilterForm(forms.Form):
    gpu_class = forms.ChoiceField(
        label=gettext_lazy("GPU class"),
        choices=[("", gettext_lazy("all")), *((c, c) for c in sorted(index.GPU_CLASSES))],
        required=False,
    )
    days = forms.IntegerField(
        label=gettext_lazy("Days"), min_value=1, max_value=366, initial=30, required=False
    )


def _rows(request: HttpRequest) -> list[index.IndexRow]:
    form = IndexFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}
    until = index.last_published_day()
    if until is None:
        return []
    since = until - dt.timedelta(days=(data.get("days") or 30) - 1)
    return index.index_rows(since=since, until=until, gpu_class=data.get("gpu_class") or None)


def price_index(request: HttpRequest) -> HttpResponse:
    form = IndexFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        context = {"form": form, "rows": [], "chart": "", "chain": index.index_chain_verify()}
        return render(request, "market/price_index.html", context, status=400)
    rows = _rows(request)
    return render(
        request,
        "market/price_index.html",
        {
            "form": IndexFilterForm(request.GET or None),
            "rows": list(reversed(rows)),
            "chart": index.index_chart_svg(rows, title=_("VWAP, ¥ per PFLOPS-hour"))
            if rows
            else "",
            "chain": index.index_chain_verify(),
            "method_version": index.METHOD_VERSION,
            "query": request.GET.urlencode(),
        },
    )


def price_index_csv(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(index.index_csv(_rows(request)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="price-index.csv"'
    return response


def price_index_method(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "market/price_index_method.html",
        {"method": index.method_text(), "method_version": index.METHOD_VERSION},
    )
