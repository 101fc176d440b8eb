import re
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import reverse

from tests.conftest import _client_for
from tests.support import PRODUCTION_ENV, manage_check


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "GPU capacity by the hour"), ("zh-hans", "按小时租用绿色算力中心的 GPU")],
)
def test_home_page_renders_in_both_languages(client, language, expected):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get("/")
    assert response.status_code == 200
    assert expected in response.content.decode()


@pytest.mark.django_db
def test_language_switch_sets_the_language(client):
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert "Log in" in client.get("/").content.decode()
    client.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})
    assert "登录" in client.get("/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/signup/", 'name="credit_code"'),
        ("/login/", 'name="password"'),
        ("/api/docs/", "swagger-ui"),
        ("/api/schema/", "/api/v1/orders/"),
    ],
)
def test_public_pages_are_served_with_what_they_are_for(client, path, expected):
    response = client.get(path)
    assert response.status_code == 200
    assert expected in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/account/"])
def test_anonymous_users_are_sent_to_log_in_from_private_pages(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/organisations/me/", "/api/v1/auth/tokens/"])
def test_anonymous_users_reach_no_private_api(api_client, path):
    assert api_client.get(path).status_code == 401


@pytest.mark.django_db
def test_admin_needs_staff(client, buyer):
    client.force_login(buyer)
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"] == ("ok" if settings.REDIS_URL else "in-process")


def test_production_settings_pass_check_deploy_with_no_warnings():
    result = manage_check(PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_redis():
    """Without Redis, tasks would run in the web request and throttles and
    lock-outs would count per process: production says so and stops."""
    result = manage_check(
        {k: v for k, v in PRODUCTION_ENV.items() if k != "REDIS_URL"}, deploy=False
    )
    assert result.returncode != 0
    assert "core.E002" in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = {"EXCHANGE_ENV": "production", "ALLOWED_HOSTS": "x.cn", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        env=env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.django_db
def test_api_errors_use_the_one_format(provider):
    client = _client_for(provider)
    response = client.post("/api/v1/organisations/", {"kind": "nope"}, format="json")
    body = response.json()
    assert response.status_code == 400
    assert set(body) == {"detail", "errors"}
    assert {"kind", "legal_name", "credit_code"} <= set(body["errors"])


def test_charts_load_no_script_from_outside():
    from core.charts import line_chart

    chart = line_chart()
    chart.add("x", [1, 2, 3])
    svg = chart.render(is_unicode=True)
    assert not re.search(r"<script[^>]*(src|href)=", svg)
    assert "kozea.github.io" not in svg


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_language_switch_names_each_language_in_itself(client, language):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    page = client.get("/").content.decode()
    assert ">简体中文</button>" in page
    assert ">English</button>" in page


@pytest.mark.parametrize(
    ("typed", "fen"), [("12.34", 1234), ("0.01", 1), ("1234567.80", 123456780), ("7", 700)]
)
def test_yuan_typed_in_a_form_becomes_exact_fen(typed, fen):
    from core.forms import YuanField

    assert YuanField().clean(typed) == fen


def test_a_yuan_amount_with_three_decimals_is_refused():
    from django.core.exceptions import ValidationError

    from core.forms import YuanField

    with pytest.raises(ValidationError):
        YuanField().clean("1.005")
