import copy
import uuid

import pytest
from django.conf import settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.models import Organisation
from tests.factories import OrganisationFactory, member_of


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` need PostgreSQL: on the SQLite run they are
    skipped, and .ci/run runs the suite a second time on PostgreSQL."""
    if settings.IS_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL=postgres://...)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _gpu_catalogue(request):
    """Transactional tests flush every table, including the catalogue rows the
    data migration seeded; reload them for each test that uses the database."""
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(
        request.fixturenames
    )
    if not uses_db:
        return
    request.getfixturevalue("db")
    from market.catalogue import gpu_models_load
    from market.models import GPUModel

    if not GPUModel.objects.exists():
        gpu_models_load()


@pytest.fixture(autouse=True)
def _own_cache_keys(settings):
    """Throttle counters live in the cache, and the database ids they are keyed by repeat
    from test to test: each test gets its own key space in the same cache backend (Redis
    when REDIS_URL is set), so no test is throttled by requests another test made."""
    caches = copy.deepcopy(settings.CACHES)
    space = f"test-{uuid.uuid4().hex}"
    caches["default"]["KEY_PREFIX"] = space
    if caches["default"]["BACKEND"].endswith("LocMemCache"):
        caches["default"]["LOCATION"] = space
    settings.CACHES = caches


@pytest.fixture(autouse=True)
def _pages_obey_the_csp(monkeypatch):
    """Every HTML page a test fetches through Django's test client must run whole under
    its Content-Security-Policy (tests/csp.py): no inline code without the nonce, no
    inline handlers or style attributes, nothing from another origin."""
    from django.test.client import Client

    from tests.csp import csp_problems

    request = Client.request

    def checked(self, **kwargs):
        response = request(self, **kwargs)
        if response.status_code == 200 and response.get("Content-Type", "").startswith("text/html"):
            problems = csp_problems(response)
            assert not problems, f"{kwargs.get('PATH_INFO')}: {problems}"
        return response

    monkeypatch.setattr(Client, "request", checked)


@pytest.fixture
def throttle_rates(settings):
    """Set some scopes' rates for one test: `throttle_rates(orders="2/min")`."""

    def set_rates(**rates: str) -> None:
        config = copy.deepcopy(settings.REST_FRAMEWORK)
        for scope, rate in rates.items():
            config["DEFAULT_THROTTLE_RATES"][scope.replace("_", "-")] = rate
        settings.REST_FRAMEWORK = config

    return set_rates


@pytest.fixture(autouse=True)
def _english_by_default(settings):
    """Assertions read English; tests of the Chinese UI set the language themselves."""
    from django.utils import translation

    settings.LANGUAGE_CODE = "en"
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def _celery_eager_unless_integration(request):
    """Unit tests run tasks in-process even when REDIS_URL is set; tests marked
    `integration` talk to a real worker they start themselves."""
    from config.celery import app

    if "integration" in request.keywords:
        yield
        return
    before = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def _client_for(user) -> APIClient:
    client = APIClient()
    _instance, key = AuthToken.objects.create(user=user, expiry=None)
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    client.user = user
    return client


@pytest.fixture
def buyer_org(db) -> Organisation:
    return OrganisationFactory(kind=Organisation.Kind.BUYER, legal_name="Eastern AI Lab Co., Ltd.")


@pytest.fixture
def provider_org(db) -> Organisation:
    return OrganisationFactory(
        kind=Organisation.Kind.PROVIDER, legal_name="Qingyang Green Compute Co., Ltd."
    )


@pytest.fixture
def authority_org(db) -> Organisation:
    return OrganisationFactory(
        kind=Organisation.Kind.AUTHORITY, legal_name="Municipal Bureau of Economy and IT"
    )


@pytest.fixture
def buyer(buyer_org):
    return member_of(buyer_org, "buyer")


@pytest.fixture
def provider(provider_org):
    return member_of(provider_org, "provider")


@pytest.fixture
def authority(authority_org):
    return member_of(authority_org, "authority")


@pytest.fixture
def buyer_client(buyer) -> APIClient:
    return _client_for(buyer)


@pytest.fixture
def provider_client(provider) -> APIClient:
    return _client_for(provider)


@pytest.fixture
def authority_client(authority) -> APIClient:
    return _client_for(authority)


@pytest.fixture
def client_for():
    return _client_for
