"""Issue 10 item 4: every number a client sends is bounded.

Each write endpoint of the API and each page form that takes a number is
sent numbers past its bound: just past core.limits, just under the bigint
column's limit (which used to be stored), past it (which used to be a 500)
and past 64 bits. Every one is a 400 (API) or the form again (pages) naming
the field, and nothing is stored.
"""

import datetime as dt
import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.contrib.messages import get_messages
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Organisation, OrganisationRelationship
from billing.models import (
    FundingTerms,
    LedgerTransaction,
    SubsidyProgramme,
    TopUp,
    Voucher,
    VoucherApplication,
)
from billing.subsidy.services import application_create
from core import limits
from market.models import Lease, Node, Offer, OfferEvent, Order, Site, TelemetrySample
from tests.billing.subsidy.factories import programme, spread_organisation
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrganisationFactory,
    SiteFactory,
    make_credit_code,
    member_of,
)
from tests.market.telemetry.conftest import node_with_token, sample

pytestmark = pytest.mark.django_db

BIGINT = 2**63 - 1


def _iso(delta: dt.timedelta) -> str:
    return (timezone.now() + delta).isoformat()


def _local(delta: dt.timedelta) -> str:
    return timezone.localtime(timezone.now() + delta).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The world below makes three users per test; a slow hash is not what is tested here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db):
    """A provider with a site, a node and an offer; a buyer; an authority with
    a programme and a pending application from the buyer."""
    provider_org = spread_organisation(Organisation.Kind.PROVIDER)
    buyer_org = spread_organisation(Organisation.Kind.BUYER)
    authority_org = spread_organisation(Organisation.Kind.AUTHORITY)
    site = SiteFactory(provider=provider_org)
    node = NodeFactory(site=site, gpu_count=8)
    offer = OfferFactory(node=node, price_amount=2_000)
    prog = programme(authority_org, budget_amount=100_000_000)
    application = application_create(
        applicant=buyer_org,
        programme=prog,
        purpose="fine-tuning",
        expected_gpu_hours=100,
        requested_amount=50_000,
    )
    _telemetry_node, telemetry_token = node_with_token(site=site, gpu_count=2)
    return SimpleNamespace(
        provider=member_of(provider_org),
        buyer=member_of(buyer_org),
        authority=member_of(authority_org),
        buyer_org=buyer_org,
        site=site,
        node=node,
        offer=offer,
        programme=prog,
        application=application,
        telemetry_token=telemetry_token,
    )


def _stored(world) -> tuple:
    """Everything a refused request must leave as it was."""
    world.site.refresh_from_db()
    world.offer.refresh_from_db()
    world.application.refresh_from_db()
    counts = tuple(
        model.objects.count()
        for model in (
            Site,
            Node,
            Offer,
            OfferEvent,
            Order,
            Lease,
            SubsidyProgramme,
            Voucher,
            VoucherApplication,
            LedgerTransaction,
            TelemetrySample,
            OrganisationRelationship,
            FundingTerms,
            TopUp,
        )
    )
    return (
        *counts,
        world.site.carbon_intensity_g_per_kwh,
        world.site.pue,
        world.offer.price_amount,
        world.application.status,
    )


# --- the API -------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    role: str
    method: str
    url: str  # formatted with the world
    body: dict  # a valid request; the case overrides one field

    # an integer id of no object of the caller's is a 404, a float there a 400
    statuses: tuple[int, ...] = (400,)

    def send(self, world, field: str, value) -> tuple[int, dict]:
        client = APIClient()
        url = self.url.format(w=world)
        if self.role == "node":
            client.credentials(HTTP_AUTHORIZATION=f"Node {world.telemetry_token}")
            body = {"samples": [sample(0, ts=timezone.now().timestamp() - 10, **{field: value})]}
        else:
            client.force_authenticate(getattr(world, self.role))
            body = _resolve(self.body, world) | {field: value}
        raw = json.dumps(body)  # the standard library writes integers of any size
        response = getattr(client, self.method)(url, data=raw, content_type="application/json")
        return response.status_code, response.json()


def _resolve(body: dict, world) -> dict:
    return {key: value(world) if callable(value) else value for key, value in body.items()}


SITE = {
    "name": "Zhongwei 2",
    "region": "宁夏",
    "hub": "ningxia",
    "green_share": "0.700",
    "pue": "1.15",
    "carbon_intensity_g_per_kwh": 500,
}
NODE = {"site": lambda w: w.site.pk, "name": "n-9", "gpu_model": "nvidia-h800-sxm", "gpu_count": 8}
OFFER = {
    "site": lambda w: w.site.pk,
    "node": lambda w: w.node.pk,
    "gpus_total": 1,
    "price_amount": 2_000,
    "available_from": lambda w: _iso(dt.timedelta(0)),
    "available_until": lambda w: _iso(dt.timedelta(days=30)),
    "min_hours": 1,
    "max_hours": 720,
}
ORDER = {
    "accepted_models": ["nvidia-h800-sxm"],
    "gpu_count": 2,
    "hours": 24,
    "max_price_amount": 3_000,
    "start_by": lambda w: _iso(dt.timedelta(hours=6)),
}
PROGRAMME = {
    "name": "Bounded vouchers",
    "budget_amount": 10_000_000,
    "rate_bp": 3_000,
    "valid_from": lambda w: _iso(dt.timedelta(0)),
    "valid_until": lambda w: _iso(dt.timedelta(days=365)),
}
VOUCHER = {
    "programme": lambda w: w.programme.pk,
    "holder": lambda w: w.buyer_org.pk,
    "face_amount": 10_000,
}
APPLICATION = {
    "programme": lambda w: w.programme.pk,
    "purpose": "inference",
    "expected_gpu_hours": 10,
    "requested_amount": 10_000,
}
RELATIONSHIP = {
    "kind": "shareholder",
    "related_credit_code": make_credit_code(660_001),
    "share_bp": 2_500,
}
FUNDING_TERMS = {"at_zero": "stop_leases", "grace_minutes": 30}
TOP_UP = {"amount": 10_000}

API_CASES = [
    (Api("provider", "post", "/api/v1/sites/", SITE), "carbon_intensity_g_per_kwh", None),
    (
        Api("provider", "patch", "/api/v1/sites/{w.site.pk}/", {}),
        "carbon_intensity_g_per_kwh",
        None,
    ),
    (Api("provider", "post", "/api/v1/nodes/", NODE), "gpu_count", limits.MAX_NODE_GPUS),
    (Api("provider", "post", "/api/v1/nodes/", NODE), "site", None),
    (Api("provider", "post", "/api/v1/offers/", OFFER), "price_amount", limits.MAX_PRICE_AMOUNT),
    (Api("provider", "post", "/api/v1/offers/", OFFER), "gpus_total", limits.MAX_OFFER_GPUS),
    (Api("provider", "post", "/api/v1/offers/", OFFER), "min_hours", limits.MAX_LEASE_HOURS),
    (Api("provider", "post", "/api/v1/offers/", OFFER), "max_hours", limits.MAX_LEASE_HOURS),
    (Api("provider", "post", "/api/v1/offers/", OFFER), "node", None),
    (Api("provider", "patch", "/api/v1/offers/{w.offer.pk}/", {}), "price_amount", None),
    (Api("buyer", "post", "/api/v1/orders/", ORDER), "gpu_count", limits.MAX_ORDER_GPUS),
    (Api("buyer", "post", "/api/v1/orders/", ORDER), "hours", limits.MAX_ORDER_HOURS),
    (Api("buyer", "post", "/api/v1/orders/", ORDER), "max_price_amount", None),
    (Api("buyer", "post", "/api/v1/orders/", ORDER), "min_memory_gb", limits.MAX_MEMORY_GB),
    (Api("authority", "post", "/api/v1/programmes/", PROGRAMME), "budget_amount", None),
    (Api("authority", "post", "/api/v1/programmes/", PROGRAMME), "rate_bp", None),
    (Api("authority", "post", "/api/v1/programmes/", PROGRAMME), "domestic_rate_bp", None),
    (Api("authority", "post", "/api/v1/programmes/", PROGRAMME), "cap_per_enterprise_amount", None),
    (
        Api("authority", "post", "/api/v1/programmes/", PROGRAMME),
        "cap_per_enterprise_year_amount",
        None,
    ),
    (Api("authority", "post", "/api/v1/programmes/", PROGRAMME), "max_contract_days", None),
    (Api("authority", "post", "/api/v1/vouchers/", VOUCHER), "face_amount", limits.MAX_AMOUNT),
    (
        Api("authority", "post", "/api/v1/vouchers/", VOUCHER, statuses=(400, 404)),
        "programme",
        None,
    ),
    (Api("authority", "post", "/api/v1/vouchers/", VOUCHER), "holder", None),
    (Api("buyer", "post", "/api/v1/voucher-applications/", APPLICATION), "requested_amount", None),
    (
        Api("buyer", "post", "/api/v1/voucher-applications/", APPLICATION),
        "expected_gpu_hours",
        limits.MAX_GPU_HOURS,
    ),
    (
        Api("authority", "post", "/api/v1/voucher-applications/{w.application.pk}/approve/", {}),
        "amount",
        None,
    ),
    (
        Api("buyer", "post", "/api/v1/relationships/", RELATIONSHIP),
        "share_bp",
        limits.MAX_BASIS_POINTS,
    ),
    (
        Api("buyer", "put", "/api/v1/balance/", FUNDING_TERMS),
        "grace_minutes",
        limits.MAX_FUNDING_GRACE_MINUTES,
    ),
    (
        Api("buyer", "put", "/api/v1/balance/", FUNDING_TERMS),
        "auto_top_up_amount",
        limits.MAX_AMOUNT,
    ),
    (
        Api("buyer", "put", "/api/v1/balance/", FUNDING_TERMS),
        "auto_top_up_below_amount",
        limits.MAX_AMOUNT,
    ),
    (Api("buyer", "post", "/api/v1/balance/top-ups/", TOP_UP), "amount", limits.MAX_AMOUNT),
    (Api("node", "post", "/api/v1/telemetry/", {}), "mem_used_mib", None),
    (Api("node", "post", "/api/v1/telemetry/", {}), "ecc_errors", None),
]

# Just under the bigint limit (stored before), past it (a 500 before), past 64 bits.
HUGE = [BIGINT, BIGINT + 1, 2**64 + 1]


@pytest.mark.parametrize("value", HUGE, ids=["bigint", "bigint+1", "2^64+1"])
@pytest.mark.parametrize(
    ("endpoint", "field", "_bound"),
    API_CASES,
    ids=[f"{case[0].method} {case[0].url} {case[1]}" for case in API_CASES],
)
def test_a_huge_number_is_a_400_naming_the_field_and_stores_nothing(
    world, endpoint, field, _bound, value
):
    # given
    before = _stored(world)
    # when
    status, answer = endpoint.send(world, field, value)
    # then
    assert status in endpoint.statuses, answer
    errors = answer["errors"]
    if endpoint.role == "node":
        assert field in errors["samples"]["0"]
    else:
        assert field in errors
    assert _stored(world) == before


BOUNDED = [case for case in API_CASES if case[2] is not None]


@pytest.mark.parametrize(
    ("endpoint", "field", "bound"),
    BOUNDED,
    ids=[f"{case[0].method} {case[0].url} {case[1]}" for case in BOUNDED],
)
def test_one_past_the_limit_is_a_400_naming_the_field(world, endpoint, field, bound):
    before = _stored(world)

    status, answer = endpoint.send(world, field, bound + 1)

    assert status == 400, answer
    assert field in answer["errors"]
    assert _stored(world) == before


@pytest.mark.parametrize(
    "params",
    [
        {"max_price": BIGINT + 1},
        {"min_gpus": 2**64 + 1},
        {"min_memory_gb": BIGINT},
        {"min_tflops": "1e30"},
        {"min_green_share": "7"},
    ],
    ids=lambda params: next(iter(params)),
)
def test_offer_search_refuses_a_huge_filter_with_a_field_error(api_client, params):
    response = api_client.get("/api/v1/offers/", params)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == list(params)


# --- the pages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    role: str
    url: str
    form: dict
    redirects: bool = False  # answers with a redirect and a message instead of the form

    def send(self, client, world, field: str, value: str):
        client.force_login(getattr(world, self.role))
        data = _resolve(self.form, world) | {field: value}
        return client.post(self.url.format(w=world), data)


SITE_FORM = SITE | {"latency_class": "national"}
NODE_FORM = {"site": lambda w: w.site.pk, "name": "n-9", "gpu_model": lambda w: w.node.gpu_model_id}
NODE_FORM |= {"gpu_count": "8"}
OFFER_FORM = {
    "site": lambda w: w.site.pk,
    "node": lambda w: w.node.pk,
    "gpus_total": "1",
    "price": "20.00",
    "available_from": lambda w: _local(dt.timedelta(0)),
    "available_until": lambda w: _local(dt.timedelta(days=30)),
    "min_hours": "1",
    "max_hours": "720",
}
ORDER_FORM = {
    "accepted_models": lambda w: [w.node.gpu_model_id],
    "gpu_count": "2",
    "hours": "24",
    "max_price": "30.00",
    "start_by": lambda w: _local(dt.timedelta(hours=6)),
    "failover_allowed": "on",
}
PROGRAMME_FORM = {
    "name": "Bounded vouchers",
    "budget": "100000",
    "funding": "reserved",
    "rate": "30",
    "valid_from": lambda w: _local(dt.timedelta(0)),
    "valid_until": lambda w: _local(dt.timedelta(days=365)),
    "settlement_mode": "deduct",
    "beneficiary": "buyers",
}
VOUCHER_FORM = {"holder": lambda w: w.buyer_org.pk, "face_amount": "100"}
APPLY_FORM = {
    "programme": lambda w: w.programme.pk,
    "purpose": "inference",
    "expected_gpu_hours": "10",
    "requested_amount": "100",
}

YUAN_PRICE_PAST = f"{limits.MAX_PRICE_AMOUNT / 100 + 0.01:.2f}"
YUAN_PAST = f"{limits.MAX_AMOUNT / 100 + 0.01:.2f}"
PAGE_CASES = [
    (Page("provider", "/market/capacity/sites/", SITE_FORM), "carbon_intensity_g_per_kwh", None),
    (Page("provider", "/market/capacity/sites/", SITE_FORM), "pue", "99.99"),
    (Page("provider", "/market/capacity/nodes/", NODE_FORM), "gpu_count", "65"),
    (Page("provider", "/market/capacity/offers/", OFFER_FORM), "price", YUAN_PRICE_PAST),
    (Page("provider", "/market/capacity/offers/", OFFER_FORM), "gpus_total", None),
    (Page("provider", "/market/capacity/offers/", OFFER_FORM), "max_hours", None),
    (
        Page("provider", "/market/capacity/offers/{w.offer.pk}/reprice/", {}, redirects=True),
        "price",
        YUAN_PRICE_PAST,
    ),
    (Page("buyer", "/market/orders/new/", ORDER_FORM), "gpu_count", None),
    (Page("buyer", "/market/orders/new/", ORDER_FORM), "hours", None),
    (Page("buyer", "/market/orders/new/", ORDER_FORM), "max_price", YUAN_PRICE_PAST),
    (Page("buyer", "/market/orders/new/", ORDER_FORM), "min_memory_gb", None),
    (Page("authority", "/subsidy/programmes/new/", PROGRAMME_FORM), "budget", YUAN_PAST),
    (Page("authority", "/subsidy/programmes/new/", PROGRAMME_FORM), "cap_per_enterprise", None),
    (Page("authority", "/subsidy/programmes/new/", PROGRAMME_FORM), "max_contract_days", None),
    (
        Page("authority", "/subsidy/programmes/{w.programme.pk}/vouchers/new/", VOUCHER_FORM),
        "face_amount",
        YUAN_PAST,
    ),
    (Page("buyer", "/vouchers/", APPLY_FORM), "expected_gpu_hours", None),
    (Page("buyer", "/vouchers/", APPLY_FORM), "requested_amount", YUAN_PAST),
    (
        Page("authority", "/subsidy/applications/{w.application.pk}/approve/", {}, redirects=True),
        "amount",
        "1e30",
    ),
]


@pytest.mark.parametrize(
    ("page", "field", "past_limit"),
    PAGE_CASES,
    ids=[f"{case[0].url} {case[1]}" for case in PAGE_CASES],
)
@pytest.mark.parametrize("huge", [str(BIGINT), str(2**64 + 1), "1e30"])
def test_a_page_form_refuses_huge_numbers_on_the_field_and_stores_nothing(
    client, world, page, field, past_limit, huge
):
    for value in (huge, past_limit):
        if value is None:
            continue
        # given
        before = _stored(world)
        # when
        response = page.send(client, world, field, value)
        # then
        if page.redirects:
            assert response.status_code == 302
            levels = [message.level_tag for message in get_messages(response.wsgi_request)]
            assert set(levels) == {"error"}
        else:
            assert response.status_code == 200
            assert field in response.context["form"].errors, response.context["form"].errors
        assert _stored(world) == before


# --- the database --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "constraint"),
    [
        (lambda: OfferFactory(price_amount=limits.MAX_PRICE_AMOUNT + 1), "offer_price_bounded"),
        (lambda: OfferFactory(max_hours=limits.MAX_LEASE_HOURS + 1), "offer_hours_bounded"),
        (lambda: NodeFactory(gpu_count=limits.MAX_NODE_GPUS + 1), "node_gpus_bounded"),
        (
            lambda: SiteFactory(carbon_intensity_g_per_kwh=limits.MAX_CARBON_INTENSITY + 1),
            "site_carbon_intensity_bounded",
        ),
        (lambda: LeaseFactory(price_amount=BIGINT), "lease_price_bounded"),
        (lambda: LeaseFactory(gpu_count=limits.MAX_ORDER_GPUS + 1), "lease_gpus_bounded"),
        (
            lambda: OrganisationRelationship.objects.create(
                organisation=OrganisationFactory(),
                kind="shareholder",
                related_credit_code=make_credit_code(660_002),
                share_bp=limits.MAX_BASIS_POINTS + 1,
            ),
            "relationship_share_bounded",
        ),
        (
            lambda: FundingTerms.objects.create(
                buyer=OrganisationFactory(), grace_minutes=limits.MAX_FUNDING_GRACE_MINUTES + 1
            ),
            "funding_terms_grace_bounded",
        ),
        (
            lambda: FundingTerms.objects.create(
                buyer=OrganisationFactory(), credit_limit_amount=limits.MAX_AMOUNT + 1
            ),
            "funding_terms_amounts_bounded",
        ),
        (
            lambda: TopUp.objects.create(
                buyer=OrganisationFactory(), amount=limits.MAX_AMOUNT + 1, idempotency_key="k"
            ),
            "top_up_bounded",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_the_database_refuses_what_the_app_must_never_store(make, constraint):
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        make()
