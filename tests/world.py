"""A small, complete exchange with two of everything, for the tests that go
over every endpoint: the role x endpoint matrix and the schemathesis run.

Side "a" and side "b" each have a buyer, a provider and an authority with
the objects they own: a site, node, offer, order, lease, usage record,
invoices (an open one with a voucher redemption, a paid one presented for
兑付), a payout, a programme, voucher, application, fraud flag and claim, the
buyer's declared parent and its pending start-up / SME declaration. Buyer A leases from
provider A, buyer B from provider B, so nothing of A's is B's."""

import datetime as dt
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from knox.models import AuthToken

from accounts.models import (
    Organisation,
    OrganisationRelationship,
    SmeDeclaration,
    WebhookDelivery,
    WebhookEndpoint,
)
from billing.models import (
    FraudFlag,
    Invoice,
    Payout,
    PayoutLine,
    PayoutRun,
    Redemption,
    Reimbursement,
    SubsidyClaim,
    VoucherApplication,
)
from billing.subsidy import claim_export_request, claim_export_run
from billing.subsidy.redemption import invoice_redeem_vouchers
from billing.trail import claim_seal
from market.capacity import node_token_digest
from market.models import Offer, Order
from tests.billing.subsidy.factories import (
    invoice_with_lines,
    programme,
    spread_organisation,
    usage_line_spec,
    voucher,
)
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OfferFactory,
    OrderFactory,
    SiteFactory,
    UsageRecordFactory,
    UserFactory,
    make_credit_code,
    member_of,
)

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
ROLES = (
    "anonymous",
    "buyer_a",
    "buyer_b",
    "provider_a",
    "provider_b",
    "agent",
    "authority_a",
    "authority_b",
    "staff",
)


@dataclass
class Side:
    """One side's organisations and what they own."""

    buyer: Organisation
    provider: Organisation
    authority: Organisation
    objects: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["objects"][name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class World:
    a: Side
    b: Side
    users: dict[str, Any]
    headers: dict[str, dict[str, str]]  # role -> HTTP headers that authenticate it
    agent_token: str

    def organisation(self, role: str) -> Organisation | None:
        if role in ("anonymous", "agent", "staff"):
            return None
        kind, side = role.split("_")
        return getattr(getattr(self, side), kind)

    def side(self, role: str) -> Side | None:
        return getattr(self, role.rsplit("_", 1)[1]) if role.endswith(("_a", "_b")) else None


def _side(name: str) -> Side:
    buyer = spread_organisation(Organisation.Kind.BUYER, legal_name=f"Buyer {name.upper()} Co.")
    provider = spread_organisation(
        Organisation.Kind.PROVIDER, legal_name=f"Provider {name.upper()} Co."
    )
    authority = spread_organisation(
        Organisation.Kind.AUTHORITY, legal_name=f"Authority {name.upper()}"
    )
    side = Side(buyer=buyer, provider=provider, authority=authority)
    o = side.objects
    now = timezone.now()

    o["site"] = SiteFactory(provider=provider, name=f"Site {name}")
    o["node"] = NodeFactory(site=o["site"], name=f"node-{name}", gpu_count=2)
    o["offer"] = OfferFactory(node=o["node"], gpus_total=2, gpus_available=1)
    o["paused_offer"] = OfferFactory(
        node=NodeFactory(site=o["site"], name=f"node-{name}-2"), status=Offer.Status.PAUSED
    )
    o["order"] = OrderFactory(buyer=buyer, gpu_count=1, status=Order.Status.FILLED, gpus_filled=1)
    o["open_order"] = OrderFactory(buyer=buyer, gpu_count=1)
    o["lease"] = LeaseFactory(offer=o["offer"], order=o["order"], gpu_count=1)
    o["usage"] = UsageRecordFactory(lease=o["lease"])

    o["programme"] = programme(authority, name=f"Programme {name}")
    o["voucher"] = voucher(o["programme"], buyer, 1_000_000)
    o["invoice"] = invoice_with_lines(buyer, [usage_line_spec(provider=provider, amount=100_000)])
    invoice_redeem_vouchers(invoice=o["invoice"])
    o["redemption"] = Redemption.objects.get(voucher=o["voucher"])
    o["paid_invoice"] = Invoice.objects.create(
        number=f"INV-W-{name}",
        buyer=buyer,
        period_start=now - dt.timedelta(days=60),
        period_end=now - dt.timedelta(days=30),
        status=Invoice.Status.PAID,
        gross_amount=10_000,
        total_amount=10_000,
        buyer_amount=10_000,
        paid_amount=10_000,
        issued_at=now - dt.timedelta(days=29),
        paid_at=now - dt.timedelta(days=28),
    )
    o["application"] = VoucherApplication.objects.create(
        programme=o["programme"],
        applicant=buyer,
        purpose="Fine-tuning a model for Gansu dialects",
        expected_gpu_hours=100,
        requested_amount=50_000,
    )
    o["flag"] = FraudFlag.objects.create(
        rule=FraudFlag.Rule.EXPIRY_BURST,
        subject_key=f"voucher:{o['voucher'].pk}",
        programme=o["programme"],
        voucher=o["voucher"],
    )
    o["relationship"] = OrganisationRelationship.objects.create(
        organisation=buyer,
        kind=OrganisationRelationship.Kind.PARENT,
        related_credit_code=make_credit_code(900_000 + ord(name)),
        related_name=f"Parent {name.upper()} Holdings",
    )
    o["sme_declaration"] = SmeDeclaration.objects.create(
        organisation=buyer, evidence=f"Buyer {name.upper()}: 40 staff, founded 2024"
    )
    o["reimbursement"] = Reimbursement.objects.create(  # 兑付 of the paid invoice
        invoice=o["paid_invoice"], programme=o["programme"], amount=3_000, submitted_at=now
    )
    o["claim"] = SubsidyClaim.objects.create(programme=o["programme"], year=now.year, month=1)
    claim_seal(claim=o["claim"])  # the subsidy trail's signed tree head it was computed under
    o["claim_export"] = claim_export_request(programme=o["programme"], year=2026, month=5)
    claim_export_run(token=o["claim_export"])  # the worker's part: the CSV is ready
    o["webhook"] = WebhookEndpoint.objects.create(
        organisation=buyer,
        url=f"https://hooks.buyer-{name}.example.com/exchange",
        secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
        created_at=now,
    )
    o["webhook_delivery"] = WebhookDelivery.objects.create(
        endpoint=o["webhook"],
        event_id=f"evt_world_{name}",
        event_type="webhook.test",
        payload={"id": f"evt_world_{name}", "type": "webhook.test", "data": {}},
        status=WebhookDelivery.Status.FAILED,
        attempts=12,
        last_status_code=503,
        last_error="HTTP 503",
        created_at=now,
    )
    run = PayoutRun.objects.create(
        key=f"world run {name}",
        status=PayoutRun.Status.COMPLETED,
        completed_at=now,
        bank_batch_csv="收款账号,金额\n6222021234567890123,95.00\n",
    )
    o["payout_run"] = run
    o["payout"] = Payout.objects.create(
        run=run, provider=provider, method="bank_transfer", amount=9_500, reference=f"PO-{name}"
    )
    PayoutLine.objects.create(
        payout=o["payout"], invoice=o["paid_invoice"], provider=provider, amount=9_500
    )
    return side


def _token_header(user) -> dict[str, str]:
    _instance, key = AuthToken.objects.create(user=user, expiry=None)
    return {"Authorization": f"Token {key}"}


def world_build() -> World:
    a, b = _side("a"), _side("b")
    users = {}
    for side_name, side in (("a", a), ("b", b)):
        for kind in ("buyer", "provider", "authority"):
            users[f"{kind}_{side_name}"] = member_of(getattr(side, kind), f"{kind}-{side_name}")
    users["staff"] = UserFactory(username="staff", is_staff=True)
    headers = {role: _token_header(user) for role, user in users.items()}
    headers["anonymous"] = {}
    agent_token = f"{a.node.pk}.{secrets.token_urlsafe(32)}"
    a.node.token_digest = node_token_digest(token=agent_token)
    a.node.save(update_fields=["token_digest"])
    headers["agent"] = {"Authorization": f"Node {agent_token}"}
    # A second API token of buyer A's, for the token-revoke routes.
    extra, _key = AuthToken.objects.create(user=users["buyer_a"], expiry=None)
    a.objects["token_prefix"] = extra.token_key
    return World(a=a, b=b, users=users, headers=headers, agent_token=agent_token)


def world_password() -> str:
    return PASSWORD


def throttles_off(settings, monkeypatch) -> None:
    """No 429s: the tests that go over every endpoint are not about rate limits.
    Every throttle rate is set to None (DRF lets such a scope through); DRF
    reads the rates into a class attribute at import, so that is patched too."""
    from rest_framework.throttling import SimpleRateThrottle

    rates = dict.fromkeys(settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}))
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
