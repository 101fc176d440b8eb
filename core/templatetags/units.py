"""Units in one style on every page: percent for shares and rates, kWh, kg CO₂e,
GPU-hours with two decimals, and one date format per language in the viewer's
time zone (`{% load units %}`). Display only: nothing here is charged."""

import datetime as dt
from decimal import Decimal, InvalidOperation

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.formats import number_format
from django.utils.translation import get_language

from core.money import BASIS_POINTS, format_major, format_money, round_minor

register = template.Library()

# One format per language (Django's date-format letters): the date and the date with time.
DATE_FORMATS = {"zh-hans": ("Y-m-d", "Y-m-d H:i"), "en": ("j M Y", "j M Y, H:i")}
EMPTY = "—"


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _number(value: Decimal, places: int) -> str:
    return number_format(value.quantize(Decimal(1).scaleb(-places)), places, force_grouping=True)


def _scaled(value, *, per: int | Decimal, places, suffix: str = "") -> str:
    """`value` × `per`, with `places` decimals and `suffix`; a dash when there is
    no number."""
    number = _decimal(value)
    return EMPTY if number is None else f"{_number(number * per, int(places))}{suffix}"


@register.filter
def percent(share, places: int = 0) -> str:
    """A share 0–1 (green power, utilisation, reliability) as '82%'."""
    return _scaled(share, per=100, places=places, suffix="%")


@register.filter
def percent_of_100(value, places: int = 0) -> str:
    """A value already in percent (0–100, e.g. average utilisation) as '82%'."""
    return _scaled(value, per=1, places=places, suffix="%")


@register.filter
def rate(basis_points) -> str:
    """A rate kept in basis points (3000) as a percent ('30%', '12.5%')."""
    value = _decimal(basis_points)
    if value is None:
        return EMPTY
    pct = value * 100 / BASIS_POINTS
    if pct == pct.to_integral_value():
        return f"{_number(pct, 0)}%"
    return f"{_number(pct, 2).rstrip('0')}%"


@register.filter
def kwh(watt_hours, places: int = 1) -> str:
    return _scaled(watt_hours, per=Decimal("0.001"), places=places, suffix=" kWh")


@register.filter
def kg_co2e(grams, places: int = 1) -> str:
    return _scaled(grams, per=Decimal("0.001"), places=places, suffix=" kg CO₂e")


@register.filter
def gpu_hours(gpu_seconds, places: int = 2) -> str:
    number = _decimal(gpu_seconds)
    return EMPTY if number is None else _number(number / 3600, int(places))


@register.filter
def decimal(value, places: int = 2) -> str:
    return _scaled(value, per=1, places=places)


@register.filter
def money_exact(amount, currency: str = "CNY") -> str:
    """A computed amount of minor units that may carry decimals (e.g. a price per
    PFLOPS-hour) shown as money: rounded by the one rule, ¥ with two decimals."""
    value = _decimal(amount)
    return EMPTY if value is None else format_money(round_minor(value), currency)


def _formats() -> tuple[str, str]:
    language = (get_language() or "en").lower()
    return DATE_FORMATS.get(language, DATE_FORMATS["en"])


def _local(value):
    if isinstance(value, dt.datetime) and timezone.is_aware(value):
        return timezone.localtime(value)
    return value


@register.filter
def when(value) -> str:
    """A moment in the viewer's time zone, in the one format of the page's language."""
    if not value:
        return EMPTY
    return date_format(_local(value), _formats()[1])


@register.filter
def day(value) -> str:
    """A day (or the day of a moment, in the viewer's time zone)."""
    if not value:
        return EMPTY
    return date_format(_local(value), _formats()[0])


@register.filter
def bucket(part, whole) -> str:
    """The class of a progress bar: part of whole to the nearest tenth ('p40')."""
    numerator, denominator = _decimal(part), _decimal(whole)
    if numerator is None or not denominator:
        return "p0"
    tenth = int((numerator * 10 / denominator).quantize(Decimal(1)))
    return f"p{max(0, min(10, tenth)) * 10}"


@register.filter
def major(amount) -> str:
    """Minor units as the plain yuan a form field takes (1800 → '18.00')."""
    value = _decimal(amount)
    return "" if value is None else format_major(int(value))
