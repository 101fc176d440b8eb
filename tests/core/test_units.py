"""Units in one style: percent for shares and rates, ¥ with two decimals, kWh,
kg CO₂e, and one date format per language in the viewer's time zone."""

import datetime as dt
import zoneinfo
from decimal import Decimal

import time_machine
from django.utils import timezone, translation

from core.templatetags import units


def test_shares_and_rates_are_percent():
    assert units.percent(Decimal("0.820")) == "82%"
    assert units.percent(Decimal("0.8126"), 1) == "81.3%"
    assert units.percent_of_100(Decimal("64.51")) == "65%"
    assert units.rate(3000) == "30%"
    assert units.rate(1250) == "12.5%"
    assert units.percent(None) == "—"


def test_energy_carbon_and_money_units():
    assert units.kwh(Decimal("12345.6")) == "12.3 kWh"
    assert units.kg_co2e(Decimal("4567")) == "4.6 kg CO₂e"
    assert units.gpu_hours(5400) == "1.50"
    assert units.money_exact(Decimal("2425.71")) == "¥24.26"
    assert units.money_exact(Decimal("2425.50")) == "¥24.26"  # half-even: 2426 fen


def test_one_date_format_per_language_in_the_viewers_time_zone():
    moment = dt.datetime(2026, 11, 29, 10, 36, tzinfo=dt.UTC)
    with timezone.override(zoneinfo.ZoneInfo("Asia/Shanghai")):
        with translation.override("zh-hans"):
            assert units.when(moment) == "2026-11-29 18:36"
            assert units.day(moment) == "2026-11-29"
        with translation.override("en"):
            assert units.when(moment) == "29 Nov 2026, 18:36"
    with timezone.override(zoneinfo.ZoneInfo("Europe/Berlin")), translation.override("en"):
        assert units.when(moment) == "29 Nov 2026, 11:36"


def test_the_browser_names_the_viewers_time_zone_in_a_cookie(client, db):
    moment = dt.datetime(2026, 11, 29, 10, 36, tzinfo=dt.UTC)
    client.cookies["django_language"] = "en"
    with time_machine.travel(moment, tick=False):
        client.cookies["tz"] = "Europe/Berlin"
        berlin = client.get("/market/book/").content.decode()
        client.cookies["tz"] = "Not/A_Zone"
        unknown = client.get("/market/book/").content.decode()

    assert "As of 29 Nov 2026, 11:36." in berlin
    assert "As of 29 Nov 2026, 18:36." in unknown  # the exchange's zone, Asia/Shanghai
    assert timezone.get_current_timezone_name() == "Asia/Shanghai"  # nothing leaks out
