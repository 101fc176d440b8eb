"""Who may do what: every API operation of the OpenAPI schema and every page
is declared here with the roles that may use it, and the exchange is asked as
each of nine roles (anonymous, buyer A/B, provider A/B, node agent,
authority A/B, staff).

- A role not declared for an operation is refused: 401 when it is not signed
  in, 403 when it is (pages: a redirect to log in, 403 or 404).
- Ids in the path are side A's; a declared role that does not own the object
  gets 404, never a 403 that tells it the object exists.
- A list shows the caller exactly its own rows (never a foreign one).
- Every answer has a documented status and matches the documented schema.
- An operation or page without an entry here fails the suite: declare new
  endpoints when you add them.

Each request runs in a savepoint that is rolled back, so every role meets the
same exchange."""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import schemathesis
from django.db import transaction
from django.db.models import Q
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from knox.models import AuthToken
from schemathesis.core.failures import Failure, FailureGroup
from werkzeug.test import Client as WSGIClient

from accounts.models import (
    Organisation,
    OrganisationRelationship,
    SmeDeclaration,
    WebhookEndpoint,
)
from billing.models import SubsidyProgramme, Voucher, VoucherApplication
from market.models import Lease, Node, Offer, Order, Site, UsageRecord
from tests.factories import make_credit_code
from tests.market.telemetry.conftest import sample
from tests.support import InProcessWSGI, openapi_document
from tests.world import PASSWORD, ROLES, World, throttles_off, world_build

ALL = frozenset(ROLES)
BUYERS = frozenset({"buyer_a", "buyer_b"})
PROVIDERS = frozenset({"provider_a", "provider_b"})
AUTHORITIES = frozenset({"authority_a", "authority_b"})
MEMBERS = BUYERS | PROVIDERS | AUTHORITIES  # signed in, with an organisation
SIGNED_IN = MEMBERS | {"staff"}
AGENT = frozenset({"agent"})
STAFF = frozenset({"staff"})
NOT_SIGNED_IN = frozenset({"anonymous", "agent"})
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


@dataclass(frozen=True)
class Api:
    roles: frozenset[str]  # pass authentication and permissions
    path: Callable[[World], dict] | None = None  # path parameters: side A's object
    sees: frozenset[str] | None = None  # of `roles`, those that find the object (others: 404)
    body: Callable[[World, str], dict] | None = None
    ok: int | dict[str, int] = 200  # status for a role that may (dict: role -> status, "*")
    rows: Callable[[World, str], set] | None = None  # a list: exactly these row keys
    key: str = "id"

    def expected(self, role: str) -> int:
        if isinstance(self.ok, dict):
            return self.ok.get(role, self.ok["*"])
        return self.ok


def _own(role: str) -> str:
    """The role's side; side A's objects for roles of no side (they are refused anyway)."""
    return role.rsplit("_", 1)[1] if role.endswith(("_a", "_b")) else "a"


def _later(days: int) -> str:
    return (timezone.now() + dt.timedelta(days=days)).isoformat()


# --- who sees which rows: plain ownership, straight from the models ---------------------


def _org(w: World, role: str):
    return w.organisation(role)


def _ids(queryset) -> set:
    return set(queryset.values_list("pk", flat=True))


def _programmes(w: World, role: str) -> set:
    org = _org(w, role)
    if org.is_authority:
        return _ids(SubsidyProgramme.objects.filter(authority=org))
    return _ids(SubsidyProgramme.objects.filter(status=SubsidyProgramme.Status.ACTIVE))


def _by_holder(model, holder_field: str):
    def rows(w: World, role: str) -> set:
        org = _org(w, role)
        if org.is_authority:
            return _ids(model.objects.filter(programme__authority=org))
        return _ids(model.objects.filter(**{holder_field: org}))

    return rows


def _sme_declarations(w: World, role: str) -> set:
    org = _org(w, role)
    if org.is_authority:  # any authority decides any buyer's declaration
        return _ids(SmeDeclaration.objects.all())
    return _ids(SmeDeclaration.objects.filter(organisation=org))


def _site_body(w: World, role: str) -> dict:
    return {
        "name": "Zhongwei 2",
        "region": "宁夏",
        "hub": "ningxia",
        "green_share": "0.700",
        "pue": "1.15",
        "carbon_intensity_g_per_kwh": 480,
    }


def _offer_body(w: World, role: str) -> dict:
    side = getattr(w, _own(role))
    return {
        "site": side.site.pk,
        "node": side.node.pk,
        "gpus_total": 1,
        "price_amount": 2_500,
        "available_from": timezone.now().isoformat(),
        "available_until": _later(30),
    }


def _order_body(w: World, role: str) -> dict:
    return {"gpu_count": 1, "hours": 2, "max_price_amount": 3_000, "start_by": _later(1)}


def _programme_body(w: World, role: str) -> dict:
    return {
        "name": "Western compute vouchers",
        "budget_amount": 5_000_000,
        "rate_bp": 3_000,
        "valid_from": timezone.now().isoformat(),
        "valid_until": _later(300),
    }


def _telemetry_body(w: World, role: str) -> dict:
    return {"samples": [sample(1, ts=timezone.now().timestamp(), gpu=g) for g in (0, 1)]}


def _invitation_token(w: World) -> str:
    from accounts.invitations import invitation_create

    _invitation, token = invitation_create(
        organisation=w.a.buyer,
        email="invited@example.com",
        role="member",
        invited_by=w.users["buyer_a"],
    )
    return token


V1 = "/api/v1"
API: dict[tuple[str, str], Api] = {
    # accounts
    (f"{V1}/auth/token/", "post"): Api(
        ALL, body=lambda w, r: {"username": "buyer-a", "password": PASSWORD}, ok=201
    ),
    (f"{V1}/auth/tokens/", "get"): Api(
        SIGNED_IN,
        rows=lambda w, r: set(
            AuthToken.objects.filter(user=w.users[r]).values_list("token_key", flat=True)
        ),
        key="token_prefix",
    ),
    (f"{V1}/auth/tokens/", "post"): Api(SIGNED_IN, ok=201),
    (f"{V1}/auth/tokens/{{prefix}}/", "delete"): Api(
        SIGNED_IN, path=lambda w: {"prefix": w.a.token_prefix}, sees={"buyer_a"}, ok=204
    ),
    (f"{V1}/organisations/", "post"): Api(
        SIGNED_IN,
        body=lambda w, r: {
            "kind": "buyer",
            "legal_name": "Chengdu Vision Co., Ltd.",
            "credit_code": make_credit_code(),
        },
        ok={"staff": 201, "*": 400},  # a member already belongs to an organisation
    ),
    (f"{V1}/organisations/me/", "get"): Api(SIGNED_IN, ok={"staff": 404, "*": 200}),
    (f"{V1}/organisations/", "get"): Api(STAFF, rows=lambda w, r: _ids(Organisation.objects.all())),
    (f"{V1}/organisations/{{id}}/verify/", "post"): Api(
        STAFF, path=lambda w: {"id": w.a.buyer.pk}, sees=STAFF
    ),
    (f"{V1}/organisations/me/invitations/", "get"): Api(MEMBERS),
    (f"{V1}/organisations/me/invitations/", "post"): Api(
        MEMBERS, body=lambda w, r: {"email": "new.member@example.com", "role": "member"}, ok=201
    ),
    (f"{V1}/organisations/{{id}}/invitations/", "post"): Api(
        STAFF,
        path=lambda w: {"id": w.a.buyer.pk},
        sees=STAFF,
        body=lambda w, r: {"email": "new.member@example.com", "role": "read_only"},
        ok=201,
    ),
    (f"{V1}/organisations/me/members/", "get"): Api(MEMBERS),
    # side A's buyer's own membership is an owner's: its role is not set here (400)
    (f"{V1}/organisations/me/members/{{id}}/", "patch"): Api(
        MEMBERS,
        path=lambda w: {"id": w.users["buyer_a"].memberships.get().pk},
        sees={"buyer_a"},
        body=lambda w, r: {"role": "member"},
        ok=400,
    ),
    # webhooks: the organisation's owners and admins (every world member is an owner)
    (f"{V1}/webhooks/", "get"): Api(
        MEMBERS, rows=lambda w, r: _ids(WebhookEndpoint.objects.filter(organisation=_org(w, r)))
    ),
    (f"{V1}/webhooks/", "post"): Api(
        MEMBERS, body=lambda w, r: {"url": "https://hooks.example.com/new"}, ok=201
    ),
    (f"{V1}/webhooks/{{id}}/", "get"): Api(
        MEMBERS, path=lambda w: {"id": w.a.objects["webhook"].pk}, sees={"buyer_a"}
    ),
    (f"{V1}/webhooks/{{id}}/", "patch"): Api(
        MEMBERS,
        path=lambda w: {"id": w.a.objects["webhook"].pk},
        sees={"buyer_a"},
        body=lambda w, r: {"description": "our scheduler"},
    ),
    (f"{V1}/webhooks/{{id}}/", "delete"): Api(
        MEMBERS, path=lambda w: {"id": w.a.objects["webhook"].pk}, sees={"buyer_a"}, ok=204
    ),
    (f"{V1}/webhooks/{{id}}/rotate-secret/", "post"): Api(
        MEMBERS, path=lambda w: {"id": w.a.objects["webhook"].pk}, sees={"buyer_a"}
    ),
    (f"{V1}/webhooks/{{id}}/test/", "post"): Api(
        MEMBERS, path=lambda w: {"id": w.a.objects["webhook"].pk}, sees={"buyer_a"}, ok=202
    ),
    (f"{V1}/webhooks/{{id}}/deliveries/", "get"): Api(
        MEMBERS, path=lambda w: {"id": w.a.objects["webhook"].pk}, sees={"buyer_a"}
    ),
    (f"{V1}/webhooks/{{id}}/deliveries/{{delivery_pk}}/redeliver/", "post"): Api(
        MEMBERS,
        path=lambda w: {
            "id": w.a.objects["webhook"].pk,
            "delivery_pk": w.a.objects["webhook_delivery"].pk,
        },
        sees={"buyer_a"},
        ok=202,
    ),
    (f"{V1}/authorities/", "post"): Api(
        STAFF,
        body=lambda w, r: {
            "legal_name": "Gansu Compute Voucher Office",
            "credit_code": make_credit_code(),
            "email": "office@gs.gov.cn",
        },
        ok=201,
    ),
    (f"{V1}/invitations/accept/", "post"): Api(
        ALL,
        body=lambda w, r: {
            "token": _invitation_token(w),
            "username": "invited-one",
            "password": "quiet-river-stone-2026",
        },
        ok=201,
    ),
    (f"{V1}/auth/sign-up/", "post"): Api(
        ALL,
        body=lambda w, r: {
            "username": "new-signup",
            "email": "new@example.com",
            "password": "quiet-river-stone-2026",
            "kind": "provider",
            "legal_name": "Qinghai Green Compute Co., Ltd.",
            "credit_code": make_credit_code(),
        },
        ok=201,
    ),
    # catalogue, capacity, offers
    (f"{V1}/gpu-models/", "get"): Api(ALL),
    (f"{V1}/gpu-models/{{slug}}/", "get"): Api(
        ALL, path=lambda w: {"slug": "nvidia-h800-sxm"}, sees=ALL
    ),
    (f"{V1}/sites/", "get"): Api(
        PROVIDERS, rows=lambda w, r: _ids(Site.objects.filter(provider=_org(w, r)))
    ),
    (f"{V1}/sites/", "post"): Api(PROVIDERS, body=_site_body, ok=201),
    (f"{V1}/sites/{{id}}/", "get"): Api(
        PROVIDERS, path=lambda w: {"id": w.a.site.pk}, sees={"provider_a"}
    ),
    (f"{V1}/sites/{{id}}/", "patch"): Api(
        PROVIDERS,
        path=lambda w: {"id": w.a.site.pk},
        sees={"provider_a"},
        body=lambda w, r: {"name": "Qingyang 1 (renamed)"},
    ),
    (f"{V1}/nodes/", "get"): Api(
        PROVIDERS, rows=lambda w, r: _ids(Node.objects.filter(site__provider=_org(w, r)))
    ),
    (f"{V1}/nodes/", "post"): Api(
        PROVIDERS,
        body=lambda w, r: {
            "site": getattr(w, _own(r)).site.pk,
            "name": "node-new",
            "gpu_model": "nvidia-h800-sxm",
            "gpu_count": 8,
        },
        ok=201,
    ),
    (f"{V1}/nodes/{{id}}/", "get"): Api(
        PROVIDERS, path=lambda w: {"id": w.a.node.pk}, sees={"provider_a"}
    ),
    (f"{V1}/nodes/{{id}}/token/rotate/", "post"): Api(
        PROVIDERS, path=lambda w: {"id": w.a.node.pk}, sees={"provider_a"}
    ),
    (f"{V1}/nodes/{{id}}/token/revoke/", "post"): Api(
        PROVIDERS, path=lambda w: {"id": w.a.node.pk}, sees={"provider_a"}
    ),
    (f"{V1}/nodes/{{id}}/drain/", "post"): Api(
        PROVIDERS,
        path=lambda w: {"id": w.a.node.pk},
        sees={"provider_a"},
        body=lambda w, r: {"notice_minutes": 30, "reason": "firmware"},
    ),
    # no drain announced on side A's node: the owner gets as far as "nothing to withdraw"
    (f"{V1}/nodes/{{id}}/drain/cancel/", "post"): Api(
        PROVIDERS, path=lambda w: {"id": w.a.node.pk}, sees={"provider_a"}, ok=409
    ),
    (f"{V1}/offers/", "get"): Api(ALL),  # public search
    (f"{V1}/offers/", "post"): Api(PROVIDERS, body=_offer_body, ok=201),
    (f"{V1}/offers/mine/", "get"): Api(
        PROVIDERS, rows=lambda w, r: _ids(Offer.objects.filter(provider=_org(w, r)))
    ),
    (f"{V1}/offers/{{id}}/", "get"): Api(ALL, path=lambda w: {"id": w.a.offer.pk}, sees=ALL),
    (f"{V1}/offers/{{id}}/", "patch"): Api(
        PROVIDERS,
        path=lambda w: {"id": w.a.offer.pk},
        sees={"provider_a"},
        body=lambda w, r: {"price_amount": 2_100},
    ),
    (f"{V1}/offers/{{id}}/pause/", "post"): Api(
        PROVIDERS, path=lambda w: {"id": w.a.offer.pk}, sees={"provider_a"}
    ),
    (f"{V1}/offers/{{id}}/resume/", "post"): Api(
        PROVIDERS, path=lambda w: {"id": w.a.paused_offer.pk}, sees={"provider_a"}
    ),
    (f"{V1}/offers/{{id}}/withdraw/", "post"): Api(
        PROVIDERS, path=lambda w: {"id": w.a.offer.pk}, sees={"provider_a"}
    ),
    # the public book and quotes
    (f"{V1}/book/", "get"): Api(ALL),
    (f"{V1}/quotes/", "post"): Api(ALL, body=_order_body),
    (f"{V1}/price-index/", "get"): Api(ALL),
    (f"{V1}/price-index/verify/", "get"): Api(ALL),
    # orders, leases, usage
    (f"{V1}/orders/", "get"): Api(
        BUYERS, rows=lambda w, r: _ids(Order.objects.filter(buyer=_org(w, r)))
    ),
    (f"{V1}/orders/", "post"): Api(BUYERS, body=_order_body, ok=201),
    (f"{V1}/orders/{{id}}/", "get"): Api(
        BUYERS, path=lambda w: {"id": w.a.order.pk}, sees={"buyer_a"}
    ),
    (f"{V1}/orders/{{id}}/cancel/", "post"): Api(
        BUYERS, path=lambda w: {"id": w.a.open_order.pk}, sees={"buyer_a"}
    ),
    (f"{V1}/leases/", "get"): Api(
        MEMBERS,
        rows=lambda w, r: _ids(Lease.objects.filter(Q(buyer=_org(w, r)) | Q(provider=_org(w, r)))),
    ),
    (f"{V1}/leases/{{id}}/", "get"): Api(
        MEMBERS, path=lambda w: {"id": w.a.lease.pk}, sees={"buyer_a", "provider_a"}
    ),
    (f"{V1}/leases/{{id}}/end/", "post"): Api(
        BUYERS,
        path=lambda w: {"id": w.a.lease.pk},
        sees={"buyer_a"},
        body=lambda w, r: {"reason": "done"},
    ),
    # side A's lease has less than a whole hour left to resell: its buyer hears so (409)
    (f"{V1}/leases/{{id}}/resell/", "post"): Api(
        BUYERS,
        path=lambda w: {"id": w.a.lease.pk},
        sees={"buyer_a"},
        body=lambda w, r: {"price_amount": 2_100},
        ok=409,
    ),
    # nothing of side A's lease is up for resale: its buyer hears so (409)
    (f"{V1}/leases/{{id}}/resell/cancel/", "post"): Api(
        BUYERS, path=lambda w: {"id": w.a.lease.pk}, sees={"buyer_a"}, ok=409
    ),
    (f"{V1}/usage-records/", "get"): Api(
        MEMBERS,
        rows=lambda w, r: _ids(
            UsageRecord.objects.filter(Q(lease__buyer=_org(w, r)) | Q(lease__provider=_org(w, r)))
        ),
    ),
    (f"{V1}/telemetry/", "post"): Api(AGENT, body=_telemetry_body),
    (f"{V1}/telemetry/self-test/", "post"): Api(
        AGENT, body=lambda w, r: {"gpus_seen": 8, "memory_gb": "80.00", "tflops": "700.00"}
    ),
    # billing
    (f"{V1}/invoices/", "get"): Api(
        BUYERS,
        rows=lambda w, r: {getattr(w, _own(r)).invoice.pk, getattr(w, _own(r)).paid_invoice.pk},
    ),
    # the world's lease is still running: nothing metered is left to settle (409)
    (f"{V1}/invoices/settle-now/", "post"): Api(BUYERS, ok=409),
    (f"{V1}/invoices/{{id}}/", "get"): Api(
        BUYERS, path=lambda w: {"id": w.a.invoice.pk}, sees={"buyer_a"}
    ),
    # A paid invoice: the owner gets as far as "nothing to pay" (no card is charged here).
    (f"{V1}/invoices/{{id}}/pay/", "post"): Api(
        BUYERS,
        path=lambda w: {"id": w.a.paid_invoice.pk},
        sees={"buyer_a"},
        body=lambda w, r: {},
        ok=409,
    ),
    # prepaid balance and credit
    (f"{V1}/balance/", "get"): Api(BUYERS),
    (f"{V1}/balance/", "put"): Api(
        BUYERS, body=lambda w, r: {"at_zero": "stop_leases", "grace_minutes": 30}
    ),
    # a top-up of nothing: the buyer gets as far as the field error (no card is charged here)
    (f"{V1}/balance/top-ups/", "post"): Api(BUYERS, body=lambda w, r: {"amount": 0}, ok=400),
    (f"{V1}/buyers/{{id}}/credit-limit/", "put"): Api(
        STAFF,
        path=lambda w: {"id": w.a.buyer.pk},
        sees=STAFF,
        body=lambda w, r: {"credit_limit_amount": 100_000},
    ),
    (f"{V1}/payouts/", "get"): Api(PROVIDERS, rows=lambda w, r: {getattr(w, _own(r)).payout.pk}),
    (f"{V1}/payout-runs/", "get"): Api(STAFF),
    (f"{V1}/payout-runs/", "post"): Api(STAFF, ok=202),
    (f"{V1}/payout-account/", "get"): Api(PROVIDERS),
    (f"{V1}/payout-account/", "put"): Api(
        PROVIDERS,
        body=lambda w, r: {
            "account_number": "6222021234567890123",
            "account_name": getattr(w, _own(r)).provider.legal_name,
            "bank_name": "中国工商银行庆阳分行",
            "bank_code": "102826000015",
        },
    ),
    # subsidy
    (f"{V1}/programmes/", "get"): Api(MEMBERS, rows=_programmes),
    (f"{V1}/programmes/", "post"): Api(AUTHORITIES, body=_programme_body, ok=201),
    (f"{V1}/programmes/{{id}}/", "get"): Api(
        MEMBERS, path=lambda w: {"id": w.a.programme.pk}, sees=MEMBERS - {"authority_b"}
    ),
    (f"{V1}/vouchers/", "get"): Api(MEMBERS, rows=_by_holder(Voucher, "holder")),
    (f"{V1}/vouchers/", "post"): Api(
        AUTHORITIES,
        body=lambda w, r: {
            "programme": getattr(w, _own(r)).programme.pk,
            "holder": w.a.buyer.pk,
            "face_amount": 100_000,
        },
        ok=201,
    ),
    (f"{V1}/vouchers/{{id}}/revoke/", "post"): Api(
        AUTHORITIES,
        path=lambda w: {"id": w.a.voucher.pk},
        sees={"authority_a"},
        body=lambda w, r: {"reason": "The company was dissolved."},
    ),
    (f"{V1}/voucher-applications/", "get"): Api(
        MEMBERS, rows=_by_holder(VoucherApplication, "applicant")
    ),
    (f"{V1}/voucher-applications/", "post"): Api(
        BUYERS,
        body=lambda w, r: {
            "programme": w.a.programme.pk,  # active programmes are open to every buyer
            "purpose": "Training a speech model",
            "expected_gpu_hours": 200,
            "requested_amount": 80_000,
        },
        ok=201,
    ),
    (f"{V1}/voucher-applications/{{id}}/approve/", "post"): Api(
        AUTHORITIES,
        path=lambda w: {"id": w.a.application.pk},
        sees={"authority_a"},
        body=lambda w, r: {"amount": 40_000},
        ok=201,
    ),
    (f"{V1}/voucher-applications/{{id}}/reject/", "post"): Api(
        AUTHORITIES,
        path=lambda w: {"id": w.a.application.pk},
        sees={"authority_a"},
        body=lambda w, r: {"reason": "Outside the programme's regions."},
    ),
    (f"{V1}/redemptions/{{id}}/{{action}}/", "post"): Api(
        AUTHORITIES,
        path=lambda w: {"id": w.a.redemption.pk, "action": "hold"},
        sees={"authority_a"},
        body=lambda w, r: {"reason": "Utilisation looks idle."},
    ),
    # subsidy trail: heads, the key and consistency proofs are public (sizes and hashes only);
    # leaves and inclusion proofs carry the records: authorities only. Without their query
    # parameters the ones that take them answer 400 to whoever may ask.
    (f"{V1}/trail/tree-head/", "get"): Api(ALL),
    (f"{V1}/trail/public-key/", "get"): Api(ALL),
    (f"{V1}/trail/consistency/", "get"): Api(ALL, ok=400),
    (f"{V1}/trail/inclusion/", "get"): Api(AUTHORITIES, ok=400),
    (f"{V1}/trail/leaves/", "get"): Api(AUTHORITIES, ok=400),
    (f"{V1}/claims/{{id}}/audit-report/", "get"): Api(
        AUTHORITIES, path=lambda w: {"id": w.a.claim.pk}, sees={"authority_a"}
    ),
    # subsidy eligibility: a buyer declares its owners and start-up / SME status (any
    # authority decides: the status is the buyer's, read by every programme)
    (f"{V1}/relationships/", "get"): Api(
        BUYERS,
        rows=lambda w, r: _ids(OrganisationRelationship.objects.filter(organisation=_org(w, r))),
    ),
    (f"{V1}/relationships/", "post"): Api(
        BUYERS,
        body=lambda w, r: {
            "kind": "shareholder",
            "related_credit_code": make_credit_code(950_001),
            "related_name": "Angel Fund LP",
            "share_bp": 1_500,
        },
        ok=201,
    ),
    (f"{V1}/sme-declarations/", "get"): Api(BUYERS | AUTHORITIES, rows=_sme_declarations),
    (f"{V1}/sme-declarations/", "post"): Api(
        BUYERS,
        body=lambda w, r: {"evidence": "45 staff, revenue ¥20M, founded 2023"},
        ok=409,  # each buyer's declaration of the world is still waiting for the authority
    ),
    (f"{V1}/sme-declarations/{{id}}/decide/", "post"): Api(
        AUTHORITIES,
        path=lambda w: {"id": w.a.sme_declaration.pk},
        body=lambda w, r: {"accept": True},
    ),
    (f"{V1}/fraud-flags/", "get"): Api(
        AUTHORITIES, rows=lambda w, r: {getattr(w, _own(r)).flag.pk}
    ),
    (f"{V1}/fraud-flags/{{id}}/review/", "post"): Api(
        AUTHORITIES,
        path=lambda w: {"id": w.a.flag.pk},
        sees={"authority_a"},
        body=lambda w, r: {"decision": "dismissed", "note": "Checked with the provider."},
    ),
}


@pytest.fixture
def world(db, settings, monkeypatch) -> World:
    throttles_off(settings, monkeypatch)
    return world_build()


@pytest.fixture(scope="module")
def document() -> dict:
    return openapi_document()


def _operations(document: dict) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, operations in document["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }


def test_every_api_operation_is_declared_in_the_matrix(document):
    operations = _operations(document)

    undeclared = sorted(operations - set(API))
    stale = sorted(set(API) - operations)

    assert not undeclared, f"declare who may use these operations in API: {undeclared}"
    assert not stale, f"these entries name no operation of the schema: {stale}"


def schema_mismatches(operation, response) -> list[str]:
    """What in `response` the schema does not document, one line per mismatch."""
    try:
        operation.validate_response(response)
    except (Failure, FailureGroup) as exc:
        failures = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
        return [" ".join(f"{f.title}: {f.message}".split())[:300] for f in failures]
    return []


def _answer(client, method: str, url: str, headers: dict, body: dict | None):
    if body is None:
        return client.open(url, method=method.upper(), headers=headers)
    return client.open(url, method=method.upper(), headers=headers, json=body)


def _problems_of(
    rule: Api, role: str, response, world: World, documented: dict, operation
) -> list[str]:
    status = response.status_code
    problems = []
    if role not in rule.roles:
        wanted = {401} if role == "anonymous" else {401, 403}
    elif rule.path is not None and rule.sees is not None and role not in rule.sees:
        wanted = {404}
    else:
        wanted = {rule.expected(role)}
    if status not in wanted:
        problems.append(f"answered {status}, declared {sorted(wanted)}: {response.text[:200]}")
    if str(status) not in documented:
        problems.append(f"status {status} is not documented")
    elif status != 204:
        problems += schema_mismatches(operation, response)
    if rule.rows is not None and status == 200:
        body = response.json
        rows = body["results"] if isinstance(body, dict) else body
        shown = {row[rule.key] for row in rows}
        own = rule.rows(world, role)
        if shown != own:
            problems.append(f"lists {sorted(shown)}, its own rows are {sorted(own)}")
    return problems


def test_each_role_may_do_what_the_matrix_declares_and_nothing_else(world, document):
    """One exchange, every operation, every role; all mismatches reported at once."""
    schema = schemathesis.openapi.from_dict(document)
    client = WSGIClient(InProcessWSGI())
    problems = []
    for (path, method), rule in sorted(API.items()):
        url = path.format(**rule.path(world)) if rule.path else path
        operation = schema[path][method.upper()]
        documented = document["paths"][path][method]["responses"]
        for role in ROLES:
            with transaction.atomic():
                body = rule.body(world, role) if rule.body else None
                response = _answer(client, method, url, world.headers[role], body)
                found = _problems_of(rule, role, response, world, documented, operation)
                transaction.set_rollback(True)
            problems += [f"{method.upper()} {url} as {role}: {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_own_lists_are_not_empty_so_the_foreign_row_check_means_something(world):
    for (path, _method), rule in API.items():
        if rule.rows is not None:
            assert any(rule.rows(world, role) for role in rule.roles), f"{path}: no rows"


# --- pages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    roles: frozenset[str]  # may open it
    kwargs: Callable[[World], dict] | None = None  # URL arguments: side A's object
    sees: frozenset[str] | None = None  # of `roles`, those that find the object (others: 404)
    method: str = "get"  # "post" for the buttons (require_POST)
    data: Callable[[World], dict] | None = None


_PROGRAMME = {"pk": lambda w: w.a.programme.pk}
PAGES: dict[str, Page] = {
    "home": Page(ALL),
    "healthz": Page(ALL),
    "set_language": Page(ALL, method="post", data=lambda w: {"language": "zh-hans"}),
    "admin": Page(STAFF),  # the whole admin site: Django's own staff check
    "sign_up": Page(ALL),
    "login": Page(ALL),
    "logout": Page(ALL, method="post"),
    "account": Page(SIGNED_IN),
    "token_create": Page(SIGNED_IN, method="post"),
    "token_revoke": Page(
        SIGNED_IN, kwargs=lambda w: {"prefix": w.a.token_prefix}, sees={"buyer_a"}, method="post"
    ),
    "invitation_create": Page(
        MEMBERS, method="post", data=lambda w: {"email": "x@example.com", "role": "member"}
    ),
    "member_role": Page(
        MEMBERS,
        kwargs=lambda w: {"pk": w.users["buyer_a"].memberships.get().pk},
        sees={"buyer_a"},
        method="post",
        data=lambda w: {"role": "member"},
    ),
    "webhook_create": Page(
        MEMBERS, method="post", data=lambda w: {"url": "https://hooks.example.com/page"}
    ),
    "webhook_action": Page(
        MEMBERS,
        kwargs=lambda w: {"pk": w.a.objects["webhook"].pk, "action": "off"},
        sees={"buyer_a"},
        method="post",
    ),
    "authority_invite": Page(STAFF),
    "invitation_accept": Page(ALL, kwargs=lambda w: {"token": _invitation_token(w)}),
    "market:catalogue": Page(ALL),
    "market:find_compute": Page(ALL),
    "market:board": Page(ALL),
    "market:book": Page(ALL),
    "market:quote": Page(ALL),
    "market:price_index": Page(ALL),
    "market:price_index_csv": Page(ALL),
    "market:price_index_method": Page(ALL),
    "market:capacity": Page(PROVIDERS),
    "market:site_create": Page(PROVIDERS, method="post"),
    "market:node_create": Page(PROVIDERS, method="post"),
    "market:node_connect": Page(
        PROVIDERS, kwargs=lambda w: {"pk": w.a.node.pk}, sees={"provider_a"}
    ),
    "market:node_status": Page(
        PROVIDERS, kwargs=lambda w: {"pk": w.a.node.pk}, sees={"provider_a"}
    ),
    "market:node_token": Page(
        PROVIDERS,
        kwargs=lambda w: {"pk": w.a.node.pk, "action": "rotate"},
        sees={"provider_a"},
        method="post",
    ),
    "market:offer_create": Page(PROVIDERS, method="post"),
    "market:offer_action": Page(
        PROVIDERS,
        kwargs=lambda w: {"pk": w.a.offer.pk, "action": "pause"},
        sees={"provider_a"},
        method="post",
    ),
    "market:orders": Page(BUYERS),
    "market:order_new": Page(BUYERS),
    "market:order_estimate": Page(BUYERS),
    "market:order_cancel": Page(
        BUYERS, kwargs=lambda w: {"pk": w.a.open_order.pk}, sees={"buyer_a"}, method="post"
    ),
    "market:lease_end": Page(
        BUYERS, kwargs=lambda w: {"pk": w.a.lease.pk}, sees={"buyer_a"}, method="post"
    ),
    "market:lease_resell": Page(
        BUYERS,
        kwargs=lambda w: {"pk": w.a.lease.pk, "action": "offer"},
        sees={"buyer_a"},
        method="post",
        data=lambda w: {"price": "21.00"},
    ),
    "market:node_drain": Page(
        PROVIDERS,
        kwargs=lambda w: {"pk": w.a.node.pk, "action": "schedule"},
        sees={"provider_a"},
        method="post",
        data=lambda w: {"notice_minutes": 30},
    ),
    "lease-usage": Page(
        BUYERS | PROVIDERS, kwargs=lambda w: {"pk": w.a.lease.pk}, sees={"buyer_a", "provider_a"}
    ),
    "node-health": Page(PROVIDERS, kwargs=lambda w: {"pk": w.a.node.pk}, sees={"provider_a"}),
    "billing-invoices": Page(BUYERS),
    "billing-invoice-settle-now": Page(BUYERS, method="post"),
    # an empty form: the buyer's field errors (400); nothing is charged
    "billing-funding-top-up": Page(BUYERS, method="post"),
    "billing-funding-terms": Page(
        BUYERS,
        method="post",
        data=lambda w: {"held": "false", "at_zero": "stop_orders", "grace_minutes": "60"},
    ),
    "billing-invoice": Page(BUYERS, kwargs=lambda w: {"pk": w.a.invoice.pk}, sees={"buyer_a"}),
    "billing-invoice-status": Page(
        BUYERS, kwargs=lambda w: {"pk": w.a.invoice.pk}, sees={"buyer_a"}
    ),
    "billing-invoice-pdf": Page(BUYERS, kwargs=lambda w: {"pk": w.a.invoice.pk}, sees={"buyer_a"}),
    "billing-invoice-line": Page(
        BUYERS, kwargs=lambda w: {"pk": w.a.invoice.lines.first().pk}, sees={"buyer_a"}
    ),
    "billing-invoice-line-csv": Page(
        BUYERS, kwargs=lambda w: {"pk": w.a.invoice.lines.first().pk}, sees={"buyer_a"}
    ),
    "billing-invoice-print": Page(
        BUYERS, kwargs=lambda w: {"pk": w.a.invoice.pk}, sees={"buyer_a"}
    ),
    "billing-invoice-pay": Page(
        BUYERS, kwargs=lambda w: {"pk": w.a.paid_invoice.pk}, sees={"buyer_a"}, method="post"
    ),
    "billing-invoice-reimbursement": Page(
        BUYERS, kwargs=lambda w: {"pk": w.a.paid_invoice.pk}, sees={"buyer_a"}, method="post"
    ),
    "billing-payouts": Page(PROVIDERS | STAFF),
    "billing-payout-statement": Page(
        PROVIDERS | STAFF, kwargs=lambda w: {"pk": w.a.payout.pk}, sees={"provider_a", "staff"}
    ),
    "billing-payout-run-bank-batch": Page(
        STAFF, kwargs=lambda w: {"pk": w.a.payout_run.pk}, sees=STAFF
    ),
    "billing-payout-run-start": Page(STAFF, method="post"),
    "billing-payout-run-progress": Page(
        STAFF, kwargs=lambda w: {"key": w.a.payout_run.key}, sees=STAFF
    ),
    "operator-overview": Page(STAFF),
    "operator-buyer-settle-now": Page(
        STAFF, kwargs=lambda w: {"pk": w.a.buyer.pk}, sees=STAFF, method="post"
    ),
    "subsidy-dashboard": Page(AUTHORITIES),
    "subsidy-programme-new": Page(AUTHORITIES),
    "subsidy-programme": Page(
        AUTHORITIES, kwargs=lambda w: {"pk": w.a.programme.pk}, sees={"authority_a"}
    ),
    "subsidy-voucher-issue": Page(
        AUTHORITIES, kwargs=lambda w: {"pk": w.a.programme.pk}, sees={"authority_a"}
    ),
    "subsidy-claim": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.programme.pk, "year": 2026, "month": 5},
        sees={"authority_a"},
    ),
    "subsidy-claim-csv": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.programme.pk, "year": 2026, "month": 5},
        sees={"authority_a"},
    ),
    "subsidy-claim-export": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.programme.pk, "year": 2026, "month": 5},
        sees={"authority_a"},
        method="post",
    ),
    "subsidy-claim-export-status": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.programme.pk, "token": w.a.claim_export},
        sees={"authority_a"},
    ),
    "subsidy-claim-export-download": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.programme.pk, "token": w.a.claim_export},
        sees={"authority_a"},
    ),
    "subsidy-claim-submit": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.programme.pk, "year": 2026, "month": 5},
        sees={"authority_a"},
        method="post",
    ),
    "subsidy-claim-decide": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.claim.pk, "action": "approve"},
        sees={"authority_a"},
        method="post",
    ),
    "subsidy-application-decide": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.application.pk, "decision": "reject"},
        sees={"authority_a"},
        method="post",
        data=lambda w: {"reason": "Outside the programme's regions."},
    ),
    "subsidy-redemption-review": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.redemption.pk, "action": "hold"},
        sees={"authority_a"},
        method="post",
    ),
    "subsidy-flag-review": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.flag.pk},
        sees={"authority_a"},
        method="post",
        data=lambda w: {"decision": "dismissed"},
    ),
    "my-vouchers": Page(BUYERS),
    "my-invoice-splits": Page(BUYERS),
    "my-eligibility": Page(BUYERS),
    "subsidy-reviews": Page(AUTHORITIES),
    "subsidy-sme-decide": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.sme_declaration.pk, "decision": "accept"},
        method="post",
    ),
    "subsidy-reimbursement-reject": Page(
        AUTHORITIES,
        kwargs=lambda w: {"pk": w.a.reimbursement.pk},
        sees={"authority_a"},
        method="post",
        data=lambda w: {"reason": "The invoice is not the one paid."},
    ),
}


def _page_patterns() -> dict[str, str]:
    """Every URL pattern outside the API (which the schema covers), by name;
    the admin site counts as one page, "admin"."""
    names: dict[str, str] = {}

    def walk(patterns, prefix: str, namespace: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                if route.startswith("admin/"):
                    names["admin"] = "admin/"
                    continue
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, route, inner)
            elif isinstance(pattern, URLPattern) and not route.startswith("api/"):
                assert pattern.name, f"the page {route} has no name to declare it by"
                names[f"{namespace}{pattern.name}"] = route

    walk(get_resolver().url_patterns, "", "")
    return names


def test_every_page_is_declared_in_the_matrix():
    pages = _page_patterns()

    undeclared = sorted(set(pages) - set(PAGES))
    stale = sorted(set(PAGES) - set(pages))

    assert not undeclared, f"declare who may open these pages in PAGES: {undeclared}"
    assert not stale, f"these entries name no page: {stale}"


def _page_client(world: World, role: str) -> Client:
    client = Client()
    user = world.users.get(role)
    if user is not None:
        client.force_login(user)
    return client


def _opened(response) -> bool:
    """The page answered as to someone allowed: not refused, not sent to log in."""
    if response.status_code in (401, 403, 404) or response.status_code >= 500:
        return False
    location = response.get("Location", "")
    return not (response.status_code == 302 and "login" in location)


def test_each_role_may_open_the_pages_the_matrix_declares_and_nothing_else(world):
    from django.urls import reverse

    problems = []
    for name, rule in sorted(PAGES.items()):
        url = (
            "/admin/"
            if name == "admin"
            else reverse(name, kwargs=rule.kwargs(world) if rule.kwargs else None)
        )
        for role in ROLES:
            client = _page_client(world, role)
            with transaction.atomic():
                data = rule.data(world) if rule.data else {}
                response = getattr(client, rule.method)(url, data)
                transaction.set_rollback(True)
            status = response.status_code
            if role not in rule.roles:
                if _opened(response):
                    problems.append(f"{url} as {role}: opened ({status}), not declared")
            elif rule.sees is not None and role not in rule.sees:
                if status != 404:
                    problems.append(f"{url} as {role}: {status}, a foreign id must be 404")
            elif not _opened(response) or status == 405:
                problems.append(f"{url} as {role}: refused ({status}), declared allowed")
    assert not problems, "\n".join(problems)
