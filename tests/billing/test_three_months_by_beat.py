"""Three months of billing and subsidy with only beat's schedule running.

March to May 2026 on the exchange's step clock, on PostgreSQL with a real
Celery worker: every task of CELERY_BEAT_SCHEDULE runs when it falls due
(demo.simulation's Beat; the clock moves two hours a step, so a task due more
often runs once a step, as beat catches up after a pause). Nothing is settled,
issued or metered by hand. The test plays only what people do: the agents
report every five minutes, buyers place orders (matched by beat's round), pay
their open invoices by card (localstripe), the reimburse-mode buyer presents
its paid invoices for 兑付, and on the 5th the authority claims, approves and
pays the month before.

Prices are ¥36.00 per GPU-hour, so one GPU-second is one fen.
"""

import datetime as dt
import os
from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Sum

from accounts.models import Organisation
from billing.gateways.localstripe import LocalStripe
from billing.models import Invoice, InvoiceLineUsage, Redemption, SubsidyClaim, SubsidyRefusal
from billing.payments import invoice_pay_start
from billing.subsidy import claims, programme_create, voucher_issue
from billing.subsidy.reimbursement import invoice_pending_reimbursements, reimbursement_submit
from billing.subsidy.selectors import programme_budget
from core import clock
from demo.simulation import Beat, WorkerTasks, settings_apply
from market.models import Lease, Node, TelemetrySample, UsageRecord
from market.orders import order_create
from tests.billing.subsidy.factories import spread_organisation
from tests.factories import NodeFactory, OfferFactory, SiteFactory, gpu
from tests.support import RedisServer, celery_broker

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 3, 1, 0, 0, tzinfo=SHANGHAI)
END = dt.datetime(2026, 6, 5, 12, 0, tzinfo=SHANGHAI)
STEP = dt.timedelta(hours=2)
REPORT = 300  # the agents' interval and the metering window, seconds
PRICE = 3_600  # ¥36.00 per GPU-hour: one fen per GPU-second
H800, ASCEND = "nvidia-h800-sxm", "huawei-ascend-910b3"
MONTHS = [(2026, 3), (2026, 4), (2026, 5)]


def _orders() -> list[tuple[dt.datetime, str, str, int, int]]:
    """(when, buyer, model, GPUs, hours): each month's work, and one lease
    across the end of March."""
    placed = []
    for year, month in MONTHS:
        at = dt.datetime(year, month, 3, 10, tzinfo=SHANGHAI)
        placed += [
            (at, "deduct", H800, 2, 10),
            (at, "deduct", ASCEND, 2, 10),
            (at, "reimburse", H800, 2, 10),
            (at, "none", ASCEND, 1, 10),
        ]
    placed.append((dt.datetime(2026, 3, 31, 20, tzinfo=SHANGHAI), "deduct", H800, 2, 8))
    return sorted(placed, key=lambda o: o[0])


# What each buyer's monthly invoice bills and what its vouchers pay, in fen.
GROSS = {
    "deduct": [172_800, 172_800, 144_000],  # March holds 4 h of the 8-h lease, April the rest
    "reimburse": [72_000, 72_000, 72_000],
    "none": [36_000, 36_000, 36_000],
}
SUBSIDY = {
    # 20 % on NVIDIA, 30 % on the domestic Ascend
    "deduct": [14_400 + 21_600 + 5_760, 5_760 + 14_400 + 21_600, 14_400 + 21_600],
    # 20 %, capped at ¥300.00 per enterprise: May pays the last ¥12.00
    "reimburse": [14_400, 14_400, 1_200],
    "none": [0, 0, 0],
}


class Agents:
    """Every node's agent reports each GPU every REPORT seconds, leased or not."""

    def __init__(self, nodes: list[Node], *, since: dt.datetime) -> None:
        self.nodes, self.last, self.seq = nodes, since, Counter()

    def report(self, *, until: dt.datetime) -> None:
        rows, t = [], self.last + dt.timedelta(seconds=REPORT)
        while t <= until:
            for node in self.nodes:
                for index in range(node.gpu_count):
                    self.seq[node.pk] += 1
                    rows.append(
                        TelemetrySample(
                            node=node, seq=self.seq[node.pk], gpu_index=index, ts=t,
                            utilisation=92.0, memory_used_mib=50_000, power_w=550.0,
                            temperature_c=64.0,
                        )
                    )  # fmt: skip
            t += dt.timedelta(seconds=REPORT)
        TelemetrySample.objects.bulk_create(rows)
        self.last = until


@pytest.mark.xdist_group("real-stack")  # one heavy stack at a time on a 2-core CI machine
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_three_months_close_issue_subsidise_and_claim_by_beat_alone(catalogue, settings, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the real worker runs on PostgreSQL")
    stripe = LocalStripe().start()
    redis = RedisServer(log=tmp_path / "redis.log").start()
    settings.REDIS_URL = redis.url
    db = django_settings.DATABASES["default"]
    env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis.url,
        "CACHE_REDIS_URL": redis.url,
        "EXCHANGE_CLOCK": f"step:{redis.url}",
    }
    source = clock.SteppedClock(redis=None, at=START - STEP)
    clock.install(source)
    publish = _publisher(redis.url)
    try:
        with celery_broker(redis.url):
            env |= settings_apply(
                {
                    "STRIPE_API_BASE": stripe.api_base,
                    "STRIPE_CONNECT_ENABLED": False,
                    "BILLING_PERIOD": "monthly",
                },
                target=settings,
                step=REPORT,
            )
            world = _world()
            tasks = WorkerTasks(env=env, log=tmp_path / "worker.log")
            try:
                checks = _play(world, tasks, source=source, publish=publish)
            finally:
                tasks.stop()
    finally:
        clock.install(None)
        redis.kill()
        stripe.stop()
    buyers, programmes = world["buyers"], world["programmes"]

    # then: no scheduled task failed
    assert tasks_failed(tmp_path / "worker.log") == []
    # every usage record is on exactly one line of an issued invoice
    records = UsageRecord.objects.count()
    assert records == sum(
        (lease.ends_at - lease.starts_at) // dt.timedelta(seconds=REPORT)
        for lease in Lease.objects.all()
    )
    on_issued = InvoiceLineUsage.objects.exclude(line__invoice__status__in=["draft", "void"])
    assert on_issued.count() == records
    assert on_issued.values("usage_record").distinct().count() == records
    # each buyer has one invoice a month, billed and subsidised to the fen, and paid
    for name, buyer in buyers.items():
        invoices = list(
            Invoice.objects.filter(buyer=buyer).exclude(status="void").order_by("period_start")
        )
        assert [i.period_start.astimezone(SHANGHAI).month for i in invoices] == [3, 4, 5], name
        assert [i.gross_amount for i in invoices] == GROSS[name], name
        assert [i.voucher_amount for i in invoices] == (
            SUBSIDY[name] if name == "deduct" else [0, 0, 0]
        ), name
        assert [i.status for i in invoices] == ["paid"] * 3, name
        redeemed = [
            Redemption.objects.filter(invoice_line__invoice=i, status="applied").aggregate(
                s=Sum("amount")
            )["s"]
            or 0
            for i in invoices
        ]
        assert redeemed == SUBSIDY[name], name
    # the cap's refusal is on May's line, with its reason and amount
    refusal = SubsidyRefusal.objects.get(programme=programmes["reimburse"])
    assert (refusal.reason, refusal.amount) == ("cap_reached", 13_200)
    # every month of each programme was claimed once and paid; after each
    # payment the budget identity held, and at the end nothing is owed
    assert checks == [
        (name, month, True) for month in (3, 4, 5) for name in ("deduct", "reimburse")
    ]
    for name, programme in programmes.items():
        paid = SubsidyClaim.objects.filter(programme=programme, status="paid")
        assert paid.count() == 3
        total = sum(c.deduct_amount + c.reimburse_amount for c in paid)
        assert total == sum(SUBSIDY[name])
        budget = programme_budget(programme=programme)
        assert budget.holds
        assert (budget.spent, budget.paid_out) == (0, total)
        assert budget.committed == world["faces"][name] - total


def _publisher(url: str):
    import redis

    client = redis.Redis.from_url(url)
    return lambda at: client.set(clock.STEP_KEY, repr(at.timestamp()))


def _world() -> dict:
    now = START - STEP
    authority = spread_organisation(Organisation.Kind.AUTHORITY, legal_name="Municipal Bureau")
    nvidia = spread_organisation(Organisation.Kind.PROVIDER, legal_name="Beijing H800 Cloud")
    domestic = spread_organisation(Organisation.Kind.PROVIDER, legal_name="Guiyang Ascend Centre")
    buyers = {
        name: spread_organisation(Organisation.Kind.BUYER, legal_name=f"{name.title()} AI Co.")
        for name in ("deduct", "reimburse", "none")
    }
    nodes = []
    for provider, slug, hub in ((nvidia, H800, "jingjinji"), (domestic, ASCEND, "guizhou")):
        node = NodeFactory(
            site=SiteFactory(provider=provider, hub=hub), gpu_model=gpu(slug), gpu_count=8
        )
        OfferFactory(
            node=node,
            price_amount=PRICE,
            available_from=now,
            available_until=END + dt.timedelta(days=30),
        )
        nodes.append(node)
    window = {"valid_from": now, "valid_until": END + dt.timedelta(days=30)}
    programmes = {
        "deduct": programme_create(
            authority=authority, name="Hangzhou compute vouchers", budget_amount=100_000_000,
            rate_bp=2_000, domestic_rate_bp=3_000, **window,
        ),
        "reimburse": programme_create(
            authority=authority, name="Beijing compute subsidy", budget_amount=50_000_000,
            rate_bp=2_000, cap_per_enterprise_amount=30_000, settlement_mode="reimburse",
            forbid_affiliated=True, eligible_providers=[nvidia], **window,
        ),
    }  # fmt: skip
    faces = {"deduct": 500_000, "reimburse": 100_000}
    for name, programme in programmes.items():
        voucher_issue(programme=programme, holder=buyers[name], face_amount=faces[name], **window)
    return {"buyers": buyers, "programmes": programmes, "faces": faces, "nodes": nodes}


def _play(world: dict, tasks: WorkerTasks, *, source, publish) -> list:
    buyers, programmes = world["buyers"], world["programmes"]
    agents = Agents(world["nodes"], since=START - STEP)
    beat = Beat(start=START)
    orders = _orders()
    checks = []
    now = START
    while now <= END:
        source.set(now)
        publish(now)
        agents.report(until=now)
        # people: orders due now, card payments of open invoices, 兑付 of paid ones
        for _at, name, slug, gpus, hours in [o for o in orders if o[0] == now]:
            order_create(
                buyer=buyers[name], placed_by=None, gpu_count=gpus, hours=hours,
                max_price_amount=PRICE, start_by=now + dt.timedelta(hours=1),
                accepted_models=[gpu(slug)],
            )  # fmt: skip
        for invoice in Invoice.objects.filter(status="open", buyer__in=buyers.values()):
            invoice_pay_start(invoice=invoice, payment_method="pm_card_visa")
        for invoice in Invoice.objects.filter(status="paid", buyer=buyers["reimburse"]):
            if any(
                p.reimbursement is None for p in invoice_pending_reimbursements(invoice=invoice)
            ):
                reimbursement_submit(invoice=invoice)
        # the authority's finance office on the 5th at 10:00: last month's claims
        local = now.astimezone(SHANGHAI)
        if (local.day, local.hour) == (5, 10) and local.month > START.month:
            month = (local.replace(day=1) - dt.timedelta(days=1)).month
            for name, programme in programmes.items():
                claim = claims.claim_submit(programme=programme, year=2026, month=month)
                claims.claim_approve(claim=claim)
                claims.claim_mark_paid(claim=claim, paid_at=now, reference=f"{name}-{month}")
                checks.append((name, month, programme_budget(programme=programme).holds))
        for name, args in beat.due(now):
            tasks.run(name, args)
        tasks.settle()
        now += STEP
    return checks


def tasks_failed(log) -> list[str]:
    """The worker's log lines of tasks that raised."""
    return [line for line in log.read_text().splitlines() if " raised unexpected" in line]
