"""Content-Security-Policy (django-csp) and Permissions-Policy on every page; the pages
that inline code or charts still work under them (tests/csp.py checks each page a test
fetches; these look at the headers and the pages with a chart or the API docs)."""

import datetime as dt
import re

import orjson
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.billing.subsidy.factories import programme
from tests.csp import csp_problems
from tests.factories import LeaseFactory, OfferFactory
from tests.market.telemetry.conftest import node_with_token, sample

STRICT = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def _directives(response) -> dict[str, str]:
    parts = (part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    return {name: value for name, value in parts}


def _nonce(response) -> str:
    return re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)


@pytest.mark.django_db
def test_a_page_gets_the_strict_policy_and_a_permissions_policy(client):
    response = client.get("/")

    assert response.status_code == 200
    assert _directives(response) == STRICT
    policy = response["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
        assert feature in policy


@pytest.mark.django_db
def test_the_api_answers_carry_the_headers_too(api_client):
    response = api_client.get("/api/v1/gpu-models/")

    assert response.status_code == 200
    assert _directives(response) == STRICT
    assert "camera=()" in response["Permissions-Policy"]


@pytest.mark.django_db
def test_a_lease_chart_is_inlined_with_the_responses_nonce_and_no_script(
    client, buyer, buyer_org, provider_org
):
    # given: a lease whose node reported in the last minutes
    node, token = node_with_token(site__provider=provider_org, gpu_count=2)
    lease = LeaseFactory(offer=OfferFactory(node=node), order__buyer=buyer_org)
    now = timezone.now().timestamp()
    samples = [sample(seq, ts=now - 600 + seq * 30, gpu=seq % 2) for seq in range(20)]
    posted = APIClient().post(
        "/api/v1/telemetry/",
        data=orjson.dumps({"samples": samples}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Node {token}",
    )
    assert posted.status_code == 200
    client.force_login(buyer)

    # when
    page = client.get(f"/leases/{lease.pk}/usage/")

    # then: the chart is there, its <style> carries the nonce, nothing would be refused
    body = page.content.decode()
    assert page.status_code == 200
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in body
    assert f'<style nonce="{_nonce(page)}"' in body
    assert "<script" not in body.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert csp_problems(page) == []


@pytest.mark.django_db
def test_the_programme_burn_down_chart_is_inlined_with_the_responses_nonce(
    client, authority, authority_org
):
    prog = programme(authority_org, valid_from=timezone.now() - dt.timedelta(days=10))
    client.force_login(authority)

    page = client.get(f"/subsidy/programmes/{prog.pk}/")

    assert page.status_code == 200
    assert f'<style nonce="{_nonce(page)}"' in page.content.decode()
    assert csp_problems(page) == []


@pytest.mark.django_db
def test_the_api_docs_load_swagger_ui_from_this_origin_with_no_inline_code(client):
    page = client.get("/api/docs/")
    script = client.get("/api/docs/?script=")

    body = page.content.decode()
    assert page.status_code == 200
    assert csp_problems(page) == []
    assert 'src="/api/docs/?script="' in body
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in body
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in script.content.decode()
    assert '"validatorUrl": null' in script.content.decode()


def test_the_check_finds_what_the_policy_would_refuse():
    class Page(dict):
        status_code = 200

        def __init__(self, html: str):
            super().__init__({"Content-Security-Policy": "script-src 'self' 'nonce-abc'"})
            self.content = html.encode()

    assert csp_problems(Page('<script nonce="abc">ok()</script><style nonce="abc"></style>')) == []
    assert csp_problems(Page("<script>bad()</script>")) == [
        "inline <script> without the response's nonce"
    ]
    assert csp_problems(Page('<button onclick="x()">')) == [
        "<button onclick=...> inline event handler"
    ]
    assert csp_problems(Page('<p style="color:red">')) == [
        "<p style='color:red'> inline style attribute"
    ]
    assert csp_problems(Page('<script src="https://cdn.example/x.js"></script>')) == [
        "<script src='https://cdn.example/x.js'> from another origin"
    ]
    assert csp_problems(Page("<style>p{}</style>")) == ["<style> without the response's nonce"]
