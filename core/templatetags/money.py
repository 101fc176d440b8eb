from django import template

from core.money import format_money

register = template.Library()


@register.filter(name="money")
def money_filter(amount: int | None, currency: str = "CNY") -> str:
    if amount is None:
        return "—"
    return format_money(amount, currency)
