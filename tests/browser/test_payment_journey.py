"""An invoice from voucher to paid, in a real browser, in English and in Chinese:
the authority issues a voucher through its page; the buyer's draft shows what
the voucher would pay; staff issue the invoice now from the operator page; the
buyer pays with the test card on the local Stripe fake and sees *paid* without
reloading (the status polls by htmx while Stripe's webhook lands)."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from accounts.models import Organisation
from billing.invoices import invoice_draft_refresh
from billing.models import Invoice, Voucher
from core import clock
from tests.billing.conftest import make_lease
from tests.billing.subsidy.factories import programme, spread_organisation
from tests.browser.conftest import log_in, screenshot
from tests.factories import UsageRecordFactory, UserFactory, member_of
from tests.world import throttles_off

# On PostgreSQL only: the live server answers Stripe's webhooks and the page's polls
# in threads, and with the in-memory SQLite test database every thread shares one
# connection, so two requests at once fail "cannot start a transaction within a
# transaction" (seen once in a full SQLite run) - a harness artefact, not the product's.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)

# What each person reads, in English and in Chinese.
TEXTS = {
    "en": {
        "voucher_issued": "Voucher {pk} issued to Lanzhou Model Works Ltd.",
        "preview_column": "Vouchers (preview)",
        "preview_row": "Compute vouchers (preview: applied when the invoice is issued)",
        "your_share": "Your share",
        "draft": "draft",
        "issue_now": "Issue invoice now",
        "issued": "Invoice {number} issued to Lanzhou Model Works Ltd.: ¥134.43 for the buyer to pay.",
        "paid_by_vouchers": "Paid by compute vouchers",
        "open": "open",
        "outstanding": "¥134.43 outstanding",
        "pay": "Pay ¥134.43",
        "paid": "paid",
        "paid_line": "¥134.43 paid by card on",
    },
    "zh-hans": {
        "voucher_issued": "算力券 {pk} 已发放给 Lanzhou Model Works Ltd.。",
        "preview_column": "算力券（预估）",
        "preview_row": "算力券（预估：账单开具时抵扣）",
        "your_share": "您应付",
        "draft": "草稿",
        "issue_now": "立即开具账单",
        "issued": "已向 Lanzhou Model Works Ltd. 开具账单 {number}：买方应付 ¥134.43。",
        "paid_by_vouchers": "算力券支付",
        "open": "待支付",
        "outstanding": "待付 ¥134.43",
        "pay": "支付 ¥134.43",
        "paid": "已支付",
        "paid_line": "以银行卡支付 ¥134.43",
    },
}


@pytest.fixture
def month_underway():
    """The usage below lies in the 4 hours before now, all in this month's
    draft: in the first hours of a month (Asia/Shanghai) the exchange's clock,
    the live server's thread included, runs 6 hours ahead of the wall clock."""
    real = timezone.now()
    local = timezone.localtime(real)
    if local - local.replace(day=1, hour=0, minute=0, second=0, microsecond=0) > 6 * H:
        yield
        return
    clock.install(clock.AcceleratedClock(start=real + 6 * H, anchor=time.time(), speed=1))
    try:
        yield
    finally:
        clock.install(None)


@pytest.fixture
def market(settings, monkeypatch, month_underway):
    """An authority with a 30 % programme; a buyer with 19,205 GPU-seconds metered
    this month at ¥36.00 per GPU-hour (one fen a GPU-second: ¥192.05) on its draft;
    a staff member."""
    throttles_off(settings, monkeypatch)
    now = timezone.now()
    authority = spread_organisation(Organisation.Kind.AUTHORITY, legal_name="Gansu Compute Office")
    buyer = spread_organisation(Organisation.Kind.BUYER, legal_name="Lanzhou Model Works Ltd.")
    provider = spread_organisation(Organisation.Kind.PROVIDER, legal_name="Qingyang Hub Ltd.")
    scheme = programme(authority, name="Gansu compute vouchers", rate_bp=3_000)
    lease = make_lease(
        buyer=buyer,
        provider=provider,
        price_amount=3_600,
        gpu_count=2,
        starts_at=now - 4 * H,
        hours=6,
    )
    for start, end, seconds in (
        (now - 4 * H, now - 3 * H, 7_200),
        (now - 3 * H, now - 2 * H, 7_200),
        (now - 2 * H, now - 100 * M, 4_805),
    ):
        UsageRecordFactory(
            lease=lease, window_start=start, window_end=end, gpu_seconds_delivered=seconds
        )
    invoice_draft_refresh(buyer=buyer)  # what the beat does every few minutes
    return {
        "programme": scheme,
        "buyer": buyer,
        "draft": Invoice.objects.get(buyer=buyer, status=Invoice.Status.DRAFT),
        "authority_user": member_of(authority, "gansu.office"),
        "buyer_user": member_of(buyer, "lanzhou.buyer"),
        "staff": UserFactory(username="ops", is_staff=True),
        "since": now - dt.timedelta(days=1),
    }


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_voucher_previewed_on_the_draft_the_invoice_issued_now_and_paid_by_card(
    page_in, live_server, localstripe, market, language
):
    text = TEXTS[language]
    url = live_server.url

    # --- the authority issues a ¥1,000.00 voucher valid since yesterday ---------------
    authority = log_in(page_in(language), live_server, "gansu.office")
    authority.goto(f"{url}/subsidy/programmes/{market['programme'].pk}/vouchers/new/")
    authority.select_option("#id_holder", label="Lanzhou Model Works Ltd.")
    authority.fill("#id_face_amount", "1000.00")
    since = timezone.localtime(market["since"])
    authority.fill("#id_valid_from", since.strftime("%Y-%m-%dT%H:%M"))
    authority.click("main form button[type=submit]")
    authority.wait_for_url(f"**/subsidy/programmes/{market['programme'].pk}/")
    voucher = Voucher.objects.get(holder=market["buyer"])
    assert voucher.face_amount == 100_000
    assert text["voucher_issued"].format(pk=voucher.pk) in authority.inner_text(".messages")

    # --- the buyer's draft shows what the voucher would pay -----------------------------
    buyer = log_in(page_in(language), live_server, "lanzhou.buyer")
    buyer.goto(f"{url}/billing/invoices/{market['draft'].pk}/")
    assert buyer.inner_text("h1 .badge") == text["draft"]
    lines = buyer.locator("table.invoice-lines")
    assert text["preview_column"] in lines.locator("thead").text_content()
    row = lines.locator("tbody tr").first
    assert "¥192.05" in row.inner_text()
    assert "-¥57.62" in row.inner_text()  # 30 % of ¥192.05 = ¥57.615, half-even
    share = lines.locator("tr.voucher-share")
    assert text["preview_row"] in share.text_content() and "-¥57.62" in share.inner_text()
    own = lines.locator("tfoot tr", has_text=text["your_share"])
    assert own.locator("td").inner_text() == "¥134.43"
    screenshot(buyer, f"invoice-draft-{language}")

    # --- staff issue the buyer's invoice now --------------------------------------------
    staff = log_in(page_in(language), live_server, "ops")
    staff.goto(f"{url}/operator/")
    waiting = staff.locator(".uninvoiced tr", has_text="Lanzhou Model Works Ltd.")
    assert "5.33" in waiting.inner_text()  # GPU-hours metered, not yet invoiced
    waiting.get_by_role("button", name=text["issue_now"]).click()
    staff.wait_for_url(f"{url}/operator/")
    issued = Invoice.objects.get(buyer=market["buyer"], status=Invoice.Status.OPEN)
    assert (issued.gross_amount, issued.voucher_amount, issued.buyer_amount) == (
        19_205,
        5_762,
        13_443,
    )
    assert text["issued"].format(number=issued.number) in staff.inner_text(".messages")

    # --- the buyer pays it with the test card, and sees it paid without reloading -------
    buyer.goto(f"{url}/billing/invoices/")
    buyer.get_by_role("link", name=issued.number).click()
    buyer.wait_for_url(f"**/billing/invoices/{issued.pk}/")
    status = buyer.locator("#invoice-status")
    assert status.locator(".badge").inner_text() == text["open"]
    assert text["outstanding"] in status.inner_text()
    vouchers = buyer.locator("table.invoice-lines tr.voucher-share")
    assert (
        text["paid_by_vouchers"] in vouchers.text_content() and "-¥57.62" in vouchers.inner_text()
    )

    buyer.select_option("select[name=payment_method]", "pm_card_visa")
    pay = buyer.get_by_role("button", name=text["pay"])
    pay.click()
    buyer.wait_for_url(f"**/billing/invoices/{issued.pk}/")
    loaded = buyer.evaluate("() => performance.timeOrigin")
    # the webhook lands; the polled status turns paid on the page as it is
    status.locator(".badge", has_text=text["paid"]).wait_for(timeout=30_000)
    assert buyer.evaluate("() => performance.timeOrigin") == loaded  # no reload
    assert text["paid_line"] in status.inner_text()
    # and the rest of the page follows: the heading says paid, nothing is left to pay
    buyer.locator("h1 .badge", has_text=text["paid"]).wait_for()
    assert buyer.inner_text("#invoice-outstanding") == "¥0.00"
    assert pay.count() == 0
    issued.refresh_from_db()
    assert (issued.status, issued.paid_amount) == ("paid", 13_443)
    screenshot(buyer, f"invoice-paid-{language}")
