"""Two people's first hour, in a real browser: a computing centre signs up in
Chinese, adds a site, a node and an offer, starts its agent with the command
the page gives and watches the node come online; an enterprise (in English)
finds that offer on the public board, orders it and watches its lease."""

import json
import re
import time
import urllib.request

import pytest

from accounts.models import Organisation
from market.models import Lease
from tests.browser.conftest import log_in, screenshot
from tests.factories import OrganisationFactory, member_of
from tests.market.telemetry.conftest import sample

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ISO_MINUTE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d$")


def post_telemetry(url: str, token: str, seqs: range) -> int:
    """What the agent does: a batch of samples with the node's token (over HTTP)."""
    body = json.dumps({"samples": [sample(seq, ts=time.time(), util=72.0) for seq in seqs]})
    request = urllib.request.Request(  # noqa: S310 - the test's own live server
        f"{url}/api/v1/telemetry/",
        data=body.encode(),
        headers={"Authorization": f"Node {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return answer.status


def test_a_provider_onboards_in_chinese_and_a_buyer_orders_its_offer_in_english(
    page_in, live_server
):
    # --- the computing centre signs up (in Chinese) --------------------------------------
    provider = page_in("zh-hans")
    provider.goto(f"{live_server.url}/signup/")
    provider.fill("#id_username", "ma.li")
    provider.fill("#id_email", "ma.li@example.com")
    provider.check("input[name=kind][value=provider]")
    provider.fill("#id_legal_name", "宁夏西部云算科技有限公司")
    provider.fill("#id_credit_code", "914403001922038216")
    provider.fill("#id_password1", "Gpu-hours-2026!")
    provider.fill("#id_password2", "Gpu-hours-2026!")
    provider.click("main form button[type=submit]")
    provider.wait_for_url(f"{live_server.url}/")
    assert "宁夏西部云算科技有限公司" in provider.inner_text("main h1")
    Organisation.objects.filter(legal_name="宁夏西部云算科技有限公司").update(
        verified=True
    )  # staff

    # a site and a node
    provider.goto(f"{live_server.url}/market/capacity/")
    site = provider.locator("form[action$='/capacity/sites/']")
    site.locator("[name=name]").fill("中卫一号机房")
    site.locator("[name=region]").fill("宁夏")
    site.locator("[name=hub]").select_option("ningxia")
    site.locator("[name=green_share]").fill("82")
    site.locator("[name=carbon_intensity_g_per_kwh]").fill("420")
    site.locator("button[type=submit]").click()
    assert "机房已添加。" in provider.inner_text(".messages")
    assert "82%" in provider.inner_text("main table")

    node = provider.locator("form[action$='/capacity/nodes/']")
    node.locator("[name=site]").select_option(label="中卫一号机房")
    node.locator("[name=name]").fill("zw-01")
    node.locator("[name=gpu_model]").select_option(label="NVIDIA H20 96GB")
    node.locator("[name=gpu_count]").fill("4")
    node.locator("button[type=submit]").click()

    # the page gives the agent's command, token in the environment, and waits
    provider.wait_for_url("**/connect/")
    command = provider.inner_text("#agent-command")
    token = re.fullmatch(
        rf"EXCHANGE_NODE_TOKEN='(\S+)' exchange-agent --url {re.escape(live_server.url)}", command
    ).group(1)
    assert provider.inner_text("#node-status .badge") == "等待代理上报"
    screenshot(provider, "node-connect-zh-hans")

    # the agent reports: the node turns online on the page, without a reload
    assert post_telemetry(live_server.url, token, range(1, 5)) in (200, 201, 202)
    provider.locator("#node-status .badge", has_text="在线").wait_for(timeout=30_000)
    assert "代理已连接" in provider.inner_text("#node-status")

    # an offer, its dates entered through the form in Chinese
    provider.goto(f"{live_server.url}/market/capacity/")
    offer = provider.locator("form[action$='/capacity/offers/']")
    assert ISO_MINUTE.match(offer.locator("[name=available_from]").input_value())
    until = offer.locator("[name=available_until]").input_value()
    assert ISO_MINUTE.match(until)
    offer.locator("[name=available_until]").fill(until[:8] + "28T18:00")
    offer.locator("[name=site]").select_option(label="中卫一号机房")
    offer.locator("[name=node]").select_option(label="中卫一号机房 / zw-01")
    offer.locator("[name=gpus_total]").fill("4")
    offer.locator("[name=price]").fill("6.50")
    offer.locator("button[type=submit]").click()
    assert "挂单已发布。" in provider.inner_text(".messages")
    assert "¥6.50" in provider.inner_text("main")

    # --- the enterprise finds it on the board (in English) -------------------------------
    member_of(OrganisationFactory(kind=Organisation.Kind.BUYER), "lin.buyer")
    buyer = log_in(page_in("en"), live_server, "lin.buyer")
    buyer.goto(f"{live_server.url}/market/board/")
    row = buyer.locator("#offers tr.offer-row", has_text="H20 96GB")
    assert "¥6.50" in row.inner_text() and "82%" in row.inner_text()
    row.get_by_role("link", name="Order this").click()

    # the order form, filled in: the H20 ticked, at its ask, listed first with its price
    buyer.wait_for_url("**/market/orders/new/**")
    assert buyer.input_value("#id_max_price") == "6.50"
    first = buyer.locator("input[name=accepted_models]").first
    assert first.is_checked()
    assert "H20 96GB — from ¥6.50 per GPU-hour" in buyer.inner_text(
        "label[for=id_accepted_models_0]"
    )
    buyer.fill("#id_gpu_count", "4")
    buyer.fill("#id_hours", "10")
    buyer.locator("#estimate .stat", has_text="¥260.00").wait_for()  # 40 GPU-hours at ¥6.50
    buyer.click("#order-form button[type=submit]")

    # the lease appears, with its usage chart
    buyer.wait_for_url(f"{live_server.url}/market/orders/")
    lease = Lease.objects.get()
    assert (
        "active" in buyer.inner_text("main").lower()
        or "pending" in buyer.inner_text("main").lower()
    )
    post_telemetry(live_server.url, token, range(5, 9))
    buyer.get_by_role("link", name="usage").first.click()
    buyer.wait_for_url(f"**/leases/{lease.pk}/usage/")
    assert buyer.locator("#usage-chart svg").count() == 1
    assert "zw-01" in buyer.inner_text("main")
    screenshot(buyer, "lease-usage-en")
