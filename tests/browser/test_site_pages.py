import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_visitor_switches_the_language_from_the_header(page, live_server):
    page.goto(live_server.url + "/")
    page.click("button[name=language][value=zh-hans]")
    assert "按小时租用绿色算力中心的 GPU" in page.inner_text("h1")

    page.click("button[name=language][value=en]")
    assert "GPU capacity by the hour" in page.inner_text("h1")


def test_a_newcomer_signs_up_and_lands_signed_in(page, live_server):
    page.goto(live_server.url + "/signup/")
    page.fill("#id_username", "zhao.min")
    page.fill("#id_email", "zhao.min@example.com")
    page.check("input[name=kind][value=provider]")
    page.fill("#id_legal_name", "Ningxia Cloud Compute Co., Ltd.")
    page.fill("#id_credit_code", "914403001922038216")
    page.fill("#id_password1", "Gpu-hours-2026!")
    page.fill("#id_password2", "Gpu-hours-2026!")
    page.click("main form button[type=submit]")

    page.wait_for_url(live_server.url + "/")
    assert "zhao.min" in page.inner_text("header")
    assert "Ningxia Cloud Compute Co., Ltd." in page.inner_text("header")


def test_a_wrong_check_character_is_explained_next_to_the_field(page, live_server):
    page.goto(live_server.url + "/signup/")
    page.fill("#id_credit_code", "914403001922038217")
    page.click("main form button[type=submit]")

    error = page.locator(".field.has-error:has(#id_credit_code) small.error")
    assert "check character" in error.inner_text()


def test_the_api_docs_render_swagger_ui_under_the_content_security_policy(page, live_server):
    page.goto(live_server.url + "/api/docs/")

    page.locator(".opblock-summary-path", has_text="/api/v1/orders/").first.wait_for()
    assert "Compute exchange API" in page.inner_text(".information-container")


def test_a_locked_out_user_reads_why_on_the_log_in_page(page, live_server, django_user_model):
    django_user_model.objects.create_user("lin.buyer", password="correct-horse-battery")
    for _ in range(5):
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "lin.buyer")
        page.fill("#id_password", "wrong-guess")
        page.click("main form button[type=submit]")

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "lin.buyer")
    page.fill("#id_password", "correct-horse-battery")
    page.click("main form button[type=submit]")

    assert "Too many failed log-ins for this account. Try again in 15 minutes." in page.inner_text(
        "main"
    )
    assert "lin.buyer" not in page.inner_text("header")
