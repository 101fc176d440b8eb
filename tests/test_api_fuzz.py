"""schemathesis against the exchange's own OpenAPI schema, in process.

Every operation is called with generated input (valid and invalid) as each of
buyer A, provider A and authority A that the access matrix lets use it (the
node agent for telemetry), against the small exchange of tests/world.py.
Every answer must be documented and match its schema, and none may be a 5xx.

Bounded for CI: a fixed number of examples per operation, derandomised (the
same inputs every run, so a red run is reproducible), no example database.
Select it with `-m fuzz`; `--hypothesis-seed` or FUZZ_EXAMPLES widen a local run.
"""

import itertools
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.support import InProcessWSGI, openapi_document
from tests.test_access_matrix import API
from tests.world import throttles_off, world_build

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
FUZZ_ROLES = ("buyer_a", "provider_a", "authority_a")


def _json_bodies_only(document: dict) -> dict:
    """Request bodies as JSON only. The API takes JSON; the form parsers are
    for the browsable API, where a field is a string whatever its type (DRF
    reads a boolean from "0", which schemathesis 4.32 calls schema-violating)
    and a mangled multipart body is a 415, not a documented answer."""
    for operations in document["paths"].values():
        for operation in operations.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body and "application/json" in body["content"]:
                body["content"] = {"application/json": body["content"]["application/json"]}
    return document


schema = schemathesis.openapi.from_dict(_json_bodies_only(openapi_document()))
schema.app = InProcessWSGI()


def _roles(path: str, method: str) -> list[str]:
    allowed = API[(path, method.lower())].roles
    return [role for role in FUZZ_ROLES if role in allowed] or sorted(allowed)[:1]


# Each operation's cases go to its roles in turn: every role gets a share of
# the valid and the invalid input without sending every case three times.
_turns = {(path, method): itertools.cycle(_roles(path, method)) for path, method in API}


@pytest.fixture
def world(settings, monkeypatch):
    throttles_off(settings, monkeypatch)
    # A card payment the fuzzer starts must not leave the machine: nothing listens here.
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    return world_build()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_schema_says(case, world):
    role = next(_turns[(case.operation.path, case.operation.method.lower())])
    # Every check but "schema-valid input is accepted": input that fits the
    # schema may still break a business rule (a wrong password, an id that is
    # not the caller's), answered with a documented 400/404.
    # Nor "schema-violating input is refused" (schemathesis 4.32 added cases for
    # it): DRF's fields coerce JSON scalars by design - 0 to false for a boolean,
    # 0 to "0" for a string, "1.5" to a number - and such input is stored as the
    # value it reads as. Out-of-range numbers, unknown choices and missing fields
    # are refused with field errors, which the endpoint tests assert.
    case.call_and_validate(
        headers=world.headers[role],
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
