"""Each role's home answers its first questions above the fold at 1280×800, in
Chinese and English; the public board too. Screenshots of every home and the
board go to var/screenshots/ (the test output; never committed)."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError

from market.models import TelemetrySample
from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    axe_violations,
    log_in,
    page_scrolls_sideways,
    screenshot,
)
from tests.test_access_matrix import PAGES
from tests.world import PASSWORD, throttles_off, world_build

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# What each role must see without scrolling: (element, its text in English, in Chinese).
FIRST_QUESTIONS = {
    "buyer_a": [
        ("#month", "GPU-hours this month", "本月 GPU 时"),
        ("#month", "Your own share", "自付部分"),
        ("#active-leases", "Active leases", "运行中的租约"),
        ("#vouchers", "¥9,700.00", "¥9,700.00"),  # ¥10,000 less the ¥300 it paid
        ("#open-orders", "0 of 1 GPUs", "0 / 1 块 GPU"),
        ("#prices", "H800 SXM5 80GB", "H800 SXM5 80GB"),
    ],
    "provider_a": [
        ("#gpus", "GPUs idle", "空闲 GPU"),
        ("#next-payout", "Next payout", "下次结算付款"),
        ("#node-health", "online", "在线"),
        ("#utilisation svg", "", ""),
        ("#revenue", "Revenue by day this month", "本月每日收入"),
        ("#reliability", "Reliability (30 days)", "可靠性（30 天）"),
    ],
    "authority_a": [
        (".budget", "Programme a", "Programme a"),
        (".budget", "Spent by the end at this pace", "按当前速度至结束时的支出"),
        ("#burn-down svg", "", ""),
        ("#breakdown", "Subsidy paid by", "补贴支出分布"),
        ("#applications", "Buyer A Co.", "Buyer A Co."),
        ("#flags", "burst of redemptions near expiry", "临近过期集中抵扣"),
    ],
    "staff": [
        ("#to-verify", "Organisations to verify", "待认证的机构"),
        ("#node-states", "awaiting agent", "等待代理"),
        ("#failing-tasks", "Failing scheduled tasks", "失败的定时任务"),
        ("#metering", "Metering lag", "计量延迟"),
        ("#outbox", "Tasks waiting in the outbox", "发件箱"),
        ("#ledger", "balanced", "平衡"),
    ],
}


@pytest.fixture
def world(settings, monkeypatch):
    throttles_off(settings, monkeypatch)
    world = world_build()
    node, now = world.a.node, timezone.now()
    # an hour of its agent's reports, every 5 minutes, 2 GPUs at 55-80 %
    TelemetrySample.objects.bulk_create(
        TelemetrySample(
            node=node,
            seq=i,
            gpu_index=i % 2,
            ts=now - dt.timedelta(minutes=5 * (i // 2)),
            utilisation=55 + (i * 7) % 25,
            memory_used_mib=40_000,
            power_w=520,
            temperature_c=61,
        )
        for i in range(24)
    )
    return world


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_each_home_answers_its_first_questions_above_the_fold(
    page_in, live_server, world, language
):
    for role, expected in FIRST_QUESTIONS.items():
        page = log_in(page_in(language), live_server, world.users[role].username, PASSWORD)
        for selector, english, chinese in expected:
            element = page.locator(selector).first
            box = element.bounding_box()
            assert box is not None, (role, selector)
            assert box["y"] + min(box["height"], 40) <= DESKTOP["height"], (role, selector, box)
            wanted = english if language == "en" else chinese
            if wanted:  # an svg chart: being there is what counts
                assert wanted.lower() in element.inner_text().lower(), (role, selector)
        screenshot(page, f"home-{role.split('_')[0]}-{language}")

    board = page_in(language)
    board.goto(f"{live_server.url}/market/board/")
    assert "H800 SXM5 80GB" in board.locator("#models").inner_text()
    assert board.locator("#models").bounding_box()["y"] < DESKTOP["height"]
    screenshot(board, f"board-{language}")


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_no_page_scrolls_sideways_at_phone_width(page_in, live_server, world, language):
    """Every page each role may open, at 390×844, in either language: the page
    itself never scrolls sideways (wide tables scroll inside their card)."""
    wide = []
    for role in ("anonymous", "buyer_a", "provider_a", "authority_a", "staff"):
        page = page_in(language, PHONE, mobile=True)
        if role != "anonymous":
            log_in(page, live_server, world.users[role].username, PASSWORD)
        for name, spec in PAGES.items():
            if spec.method != "get" or role not in spec.roles or name.startswith("admin"):
                continue
            if spec.sees is not None and role not in spec.sees:
                continue
            if name in {"logout", "set_language"}:
                continue
            url = reverse(name, kwargs=spec.kwargs(world) if spec.kwargs else None)
            try:
                response = page.goto(f"{live_server.url}{url}")
            except PlaywrightError as error:
                if "Download is starting" in str(error):
                    continue  # a CSV file, not a page
                raise
            if "text/html" not in response.headers.get("content-type", ""):
                continue  # JSON
            if overflow := page_scrolls_sideways(page):
                wide.append((role, url, overflow))
    assert wide == []


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_homes_board_order_form_and_invoice_have_no_serious_accessibility_violation(
    page_in, live_server, world, language
):
    found = {}
    for role in ("buyer_a", "provider_a", "authority_a", "staff"):
        page = log_in(page_in(language), live_server, world.users[role].username, PASSWORD)
        found[f"home of {role}"] = axe_violations(page)
        if role == "buyer_a":
            page.goto(f"{live_server.url}/market/orders/new/")
            page.locator("#estimate h3").wait_for()
            found["order form"] = axe_violations(page)
            page.goto(f"{live_server.url}/billing/invoices/{world.a.invoice.pk}/")
            found["invoice"] = axe_violations(page)
    board = page_in(language)
    board.goto(f"{live_server.url}/market/board/")
    found["board"] = axe_violations(board)

    assert {where: v for where, v in found.items() if v} == {}
