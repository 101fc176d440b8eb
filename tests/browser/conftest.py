"""Real-browser tests: Debian's Chromium driven by Playwright against
pytest-django's live server. `playwright install` cannot download browsers
here, so we launch the system Chromium by path."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def pytest_collection_modifyitems(config, items):
    # One worker drives the one browser of the session (xdist --dist loadgroup).
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.xdist_group("browser"))
    if shutil.which(CHROMIUM) or os.path.exists(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser():
    # Playwright's sync API runs an event loop in this thread; the live server's
    # database work happens in its own thread, so this is safe here.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page; the test fails if the browser refused anything under the
    Content-Security-Policy (Chromium reports each refusal on the console)."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert refused == [], refused


@pytest.fixture
def logged_in(page, live_server):
    """Log `user` in through the real log-in form."""

    def login(username: str, password: str = "correct-horse-battery"):  # noqa: S107
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("main form button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        return page

    return login


SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def page_in(browser, live_server):
    """A fresh page in a language (`page_in("zh-hans")`), at a viewport size, that
    fails the test on any Content-Security-Policy refusal, like `page`."""
    opened = []

    def open_page(language: str, viewport: dict = DESKTOP, *, mobile: bool = False):
        context = browser.new_context(
            locale="zh-CN" if language == "zh-hans" else "en-US",
            viewport=viewport,
            is_mobile=mobile,
            has_touch=mobile,
            device_scale_factor=1,
        )
        host = live_server.url.split("//", 1)[1].split(":")[0]
        context.add_cookies(
            [{"name": "django_language", "value": language, "domain": host, "path": "/"}]
        )
        page = context.new_page()
        page.set_default_timeout(60_000)  # a loaded CI machine renders slowly
        refused: list[str] = []
        page.on(
            "console",
            lambda message: (
                refused.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        opened.append((context, refused))
        return page

    yield open_page
    for context, refused in opened:
        context.close()
        assert refused == [], refused


def log_in(page, live_server, username: str, password: str = "correct-horse-battery"):  # noqa: S107
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return page


def screenshot(page, name: str) -> Path:
    """Saved under var/screenshots/ (git-ignored; CI keeps it as the test output)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page, impacts=("serious", "critical")) -> list[dict]:
    """axe-core (from the npm registry, `make install`) run in the page; the
    violations of the given impacts, each with the nodes it names."""
    assert AXE.exists(), f"{AXE} is missing: run `make install` (npm ci) first"
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in impacts
    ]


def page_scrolls_sideways(page) -> int:
    """How many CSS pixels the page is wider than the viewport (0: none)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"
    )


@pytest.fixture(scope="session")
def _localstripe_process():
    from billing.gateways.localstripe import LocalStripe

    server = LocalStripe().start()
    yield server
    server.stop()


@pytest.fixture
def localstripe(_localstripe_process, live_server, settings):
    """The local Stripe fake (as the billing tests start it), its signed webhooks
    delivered to the live server's endpoint, as Stripe would."""
    secret = "whsec_browser_journey"  # noqa: S105 - the fake's signing secret
    server = _localstripe_process
    server.flush()
    server.configure_webhook(url=f"{live_server.url}/api/v1/stripe/webhook/", secret=secret)
    settings.STRIPE_API_BASE = server.api_base
    settings.STRIPE_CONNECT_ENABLED = False
    settings.STRIPE_WEBHOOK_SECRET = secret
    return server
