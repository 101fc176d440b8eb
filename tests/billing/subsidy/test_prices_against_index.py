"""The authority sees what its subsidised usage paid beside the market index."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Organisation
from billing.subsidy import invoice_redeem_vouchers
from market import index
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    spread_organisation,
    usage_line_spec,
    voucher,
)
from tests.factories import LeaseFactory, OfferFactory, member_of

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 5, 20, 12, tzinfo=ZoneInfo("Asia/Shanghai"))


@time_machine.travel(NOON, tick=False)
def test_the_programme_page_shows_subsidised_prices_against_the_index(client):
    # given: a 30 % programme paid on 100 GPU-hours of H800 bought at ¥36.00,
    # and the day's trades of that class: 48 GPU-hours at ¥36.00 (the subsidised
    # lease) and 48 at ¥24.00 elsewhere, so the index is ¥30.00
    authority = spread_organisation(Organisation.Kind.AUTHORITY)
    provider = spread_organisation(Organisation.Kind.PROVIDER)
    buyer = spread_organisation(Organisation.Kind.BUYER)
    prog = programme(authority, rate_bp=3_000)
    voucher(prog, buyer, 1_000_000)
    invoice = invoice_with_lines(
        buyer, [usage_line_spec(provider=provider, amount=360_000)], start=NOON
    )
    invoice_redeem_vouchers(invoice=invoice)
    cheaper = OfferFactory(price_amount=2_400)
    LeaseFactory(offer=cheaper, gpu_count=2, starts_at=NOON, ends_at=NOON + dt.timedelta(days=1))
    index.index_publish(day=timezone.localdate(NOON))

    # when
    client.force_login(member_of(authority))
    page = client.get(f"/subsidy/programmes/{prog.pk}/", HTTP_ACCEPT_LANGUAGE="en")

    # then: ¥36.00 paid against ¥30.00, 20 % above, ¥1,080.00 subsidy
    assert page.status_code == 200
    body = page.content.decode()
    row = body[body.index("<td>imported-t1-m1</td>") :].split("</tr>")[0]
    cells = [c.split(">")[-1] for c in row.split("</td>")[:-1]]
    assert cells == ["imported-t1-m1", "100.00", "¥36.00", "¥30.00", "20.0 %", "¥1,080.00"]
    # and in Chinese
    page = client.get(f"/subsidy/programmes/{prog.pk}/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert "近 30 天补贴用量的成交价与市场价格指数对比" in page.content.decode()
