"""Server-side SVG charts for the authority dashboard (pygal, no JavaScript)."""

import datetime as dt

from django.utils import timezone

from billing.models import SubsidyProgramme
from billing.subsidy.selectors import spending_by_day
from core.charts import line_chart


def budget_burn_down_svg(*, programme: SubsidyProgramme, today: dt.date | None = None) -> str:
    """Budget not yet spent, day by day, from the programme's start to today."""
    today = today or timezone.localdate()
    start = timezone.localtime(programme.valid_from).date()
    end = min(today, timezone.localtime(programme.valid_until).date())
    spent_on = dict(spending_by_day(programme=programme))
    days, remaining, left = [], [], programme.budget_amount
    day = start
    while day <= end:
        left -= spent_on.get(day, 0)
        days.append(day.isoformat())
        remaining.append(left / 100)
        day += dt.timedelta(days=1)
    chart = line_chart(
        show_dots=len(days) <= 31,
        x_label_rotation=30,
        show_legend=False,
        range=(0, max(1, programme.budget_amount / 100)),
        value_formatter=lambda value: f"¥{value:,.2f}",
    )
    chart.title = str(programme.name)
    chart.x_labels = days
    chart.x_labels_major_every = max(1, len(days) // 8)
    chart.add("¥ unspent", remaining)
    return chart.render(is_unicode=True)
