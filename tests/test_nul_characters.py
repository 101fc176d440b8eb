"""Issue 10 item 9: a NUL character in an address is a 400, never a 500
(PostgreSQL refuses NUL in any text value a view would look up)."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("who", "method", "url"),
    [
        ("buyer_client", "delete", "/api/v1/auth/tokens/ab%00cd/"),
        ("authority_client", "get", "/api/v1/fraud-flags/?status=open%00"),
        ("api_client", "get", "/api/v1/offers/?region=%00"),
        ("api_client", "get", "/api/v1/gpu-models/?page=1%00"),
    ],
)
def test_a_nul_in_an_api_address_is_a_400_in_the_error_format(request, who, method, url):
    client = request.getfixturevalue(who)

    response = getattr(client, method)(url)

    assert response.status_code == 400
    assert response.json() == {"detail": "The address contains a NUL character.", "errors": {}}


@pytest.mark.parametrize(
    "url", ["/market/offers/?page=%00", "/market/offers/?region=a%00b", "/market/%00/"]
)
def test_a_nul_in_a_page_address_is_a_400(client, url):
    response = client.get(url)

    assert response.status_code == 400


def test_a_nul_in_a_page_form_path_is_a_400_and_revokes_nothing(client, buyer):
    from knox.models import AuthToken

    AuthToken.objects.create(user=buyer, expiry=None)
    client.force_login(buyer)

    response = client.post("/account/tokens/ab%00c/revoke/")

    assert response.status_code == 400
    assert AuthToken.objects.filter(user=buyer).count() == 1


def test_an_escaped_percent_sign_is_not_a_nul(api_client):
    response = api_client.get("/api/v1/offers/?region=%2500")

    assert response.status_code == 200
