"""The OpenAPI schema tells the truth (a generated client works): it validates,
lists are documented as the pages they answer, every 4xx has the one error
shape, and errors outside any view (an unknown address, a bad page size)
answer in that shape too. Real answers of every operation are checked against
the schema by tests/test_access_matrix.py and tests/test_api_fuzz.py."""

import pytest
from django.core.management import call_command
from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.throttles import TokenObtainThrottle
from tests.factories import SiteFactory
from tests.support import openapi_document

PAGINATED_BY_HAND = [  # APIViews that page their GET themselves (core.api.PaginatedAPIView)
    "/api/v1/sites/",
    "/api/v1/nodes/",
    "/api/v1/offers/",
    "/api/v1/offers/mine/",
    "/api/v1/orders/",
    "/api/v1/leases/",
]


@pytest.fixture(scope="module")
def document() -> dict:
    return openapi_document()


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_schema_validates_without_a_warning(tmp_path):
    # drf-spectacular's own validation (openapi-spec-validator); a warning is an error
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yaml"))

    assert (tmp_path / "s.yaml").read_text().startswith("openapi: 3")


@pytest.mark.parametrize("list_path", PAGINATED_BY_HAND)
def test_a_list_is_documented_as_the_page_it_answers(document, list_path):
    ok = document["paths"][list_path]["get"]["responses"]["200"]
    page = _resolve(document, ok["content"]["application/json"]["schema"])

    assert page["type"] == "object"
    assert {"count", "results"} <= set(page["required"])
    assert page["properties"]["results"]["type"] == "array"
    assert page["properties"]["next"]["nullable"] is True
    parameters = {p["name"] for p in document["paths"][list_path]["get"]["parameters"]}
    assert {"page", "page_size"} <= parameters


def test_every_error_answer_is_documented_with_the_one_error_shape(document):
    error = document["components"]["schemas"]["ErrorOutput"]
    assert set(error["required"]) == {"detail", "errors"}
    for path_, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = [code for code in operation["responses"] if code.startswith("4")]
            assert statuses, f"{method} {path_} documents no error"
            for code in statuses:
                schema = operation["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOutput"}, (method, path_)


def test_errors_are_documented_where_they_can_happen(document):
    paths = document["paths"]

    def codes(path_, method):
        return set(paths[path_][method]["responses"])

    # anyone may sign in: no 401/403, but bad credentials are a 400, and too many
    # requests from one address or a locked-out username a 429
    assert codes("/api/v1/auth/token/", "post") == {"201", "400", "429"}
    # a public read refuses only a bad token
    assert codes("/api/v1/offers/{id}/", "get") == {"200", "401", "404"}
    # a provider's write: bad input, no token, not a provider, not its offer
    assert codes("/api/v1/offers/{id}/", "patch") == {"200", "400", "401", "403", "404"}
    # a state that moved on is a 409
    assert "409" in codes("/api/v1/vouchers/{id}/revoke/", "post")
    assert "409" in codes("/api/v1/orders/", "post")  # an Idempotency-Key reused
    # "no organisation yet" and "another node's telemetry" are declared by their views
    assert "404" in codes("/api/v1/organisations/me/", "get")
    assert "403" in codes("/api/v1/telemetry/", "post")


def test_fields_that_can_be_empty_are_nullable(document):
    schemas = document["components"]["schemas"]

    for component, field in [
        ("OfferOutput", "price_per_pflops_hour"),  # a GPU without published BF16 figures
        ("OfferOutput", "reliability"),  # a provider without history
        ("OfferOutput", "node"),  # a pool offer
        ("VoucherApplicationOutput", "voucher"),  # not approved (yet)
        ("InvoicePayOutput", "payment_intent"),  # before Stripe answered
        ("InvoiceOutput", "issued_at"),  # a draft
        ("LeaseOutput", "ended_at"),
    ]:
        assert schemas[component]["properties"][field].get("nullable") is True, (component, field)


class _ThrottledView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [TokenObtainThrottle]

    def get(self, request):
        return Response({})


def test_a_throttled_operation_documents_429_with_retry_after():
    generator = SchemaGenerator(patterns=[path("throttled/", _ThrottledView.as_view())])

    responses = generator.get_schema(request=None, public=True)["paths"]["/throttled/"]["get"][
        "responses"
    ]

    assert responses["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "address",
    ["/api/v1/sites/abc/", "/api/v1/no-such-thing/", "/api/v1/gpu-models/h800.sxm/"],
)
def test_an_api_address_that_matches_no_route_is_a_json_404(provider_client, address):
    response = provider_client.get(address)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "errors": {}}


@pytest.mark.django_db
def test_a_page_address_that_matches_no_route_is_still_an_html_page(client):
    response = client.get("/market/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", ["abc", "null", "0", "-5", "1.5"])
def test_a_page_size_that_is_not_a_positive_whole_number_is_a_400(provider_client, page_size):
    response = provider_client.get("/api/v1/sites/", {"page_size": page_size})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["page_size"]


@pytest.mark.django_db
def test_a_large_page_size_is_capped_and_an_empty_one_is_the_default(provider_org, provider_client):
    for _ in range(3):
        SiteFactory(provider=provider_org)

    capped = provider_client.get("/api/v1/sites/", {"page_size": "5000"})
    default = provider_client.get("/api/v1/sites/", {"page_size": "", "page": ""})
    one = provider_client.get("/api/v1/sites/", {"page_size": "1"})

    assert (capped.status_code, len(capped.json()["results"])) == (200, 3)
    assert (default.status_code, len(default.json()["results"])) == (200, 3)
    assert (one.json()["count"], len(one.json()["results"])) == (3, 1)
