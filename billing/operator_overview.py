"""What the operator (Django staff) checks first: work waiting for people,
the ledger's health and whether the scheduled work runs (failing scheduled
tasks, the age of the last metering run). Lives in billing because billing is
the layer that may read every other app (accounts, market). Pure reads, one
query per card."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, F, Sum

from accounts.models import Organisation
from billing.ledger import ledger_is_balanced
from billing.models import FraudFlag, Invoice
from billing.period_close import ClosedPeriodsCheck, closed_periods_check
from core import clock
from core.outbox import OutboxBacklog, outbox_backlog
from core.scheduled_tasks import ScheduledTask, scheduled_tasks
from market.models import Node, Order

OPEN_ORDER_STATES = (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)
# Metering is late once this many of its runs are due without a success.
METERING_LATE_AFTER_RUNS = 3

METERING_TASK = "market.leases_meter"  # beat's metering run, by its task name
TRAIL_CHECK_TASK = "billing.trail_check"  # the trail's self-verification


@dataclass(frozen=True)
class TrailCheck:
    """The subsidy trail's last self-verification (billing.trail_check)."""

    tampered: bool  # the last run found rewritten or deleted evidence
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    error: str


@dataclass(frozen=True)
class Metering:
    last_success_at: dt.datetime | None
    age: dt.timedelta | None  # since the last successful run; None: never succeeded
    late: bool


@dataclass(frozen=True)
class Overview:
    organisations_unverified: int
    nodes_degraded: int
    nodes_offline: int
    nodes_awaiting_agent: int
    orders_open: int
    invoices_open: int
    outstanding: list[tuple[str, int]]  # (currency, Σ buyer share − paid) of open invoices
    flags_open: int
    ledger_balanced: bool
    outbox: OutboxBacklog  # tasks written but not yet run to the end
    scheduled_tasks: list[ScheduledTask]  # failing ones first
    metering: Metering
    closed_periods: ClosedPeriodsCheck  # every usage record of a closed period invoiced?
    trail: TrailCheck

    @property
    def tasks_failing(self) -> list[ScheduledTask]:
        return [task for task in self.scheduled_tasks if task.failing]


def _metering(tasks: list[ScheduledTask], *, now: dt.datetime) -> Metering:
    task = next((t for t in tasks if t.name == METERING_TASK), None)
    last = task.status.last_success_at if task and task.status else None
    interval = dt.timedelta(seconds=task.interval_seconds if task else 60)
    age = now - last if last else None
    return Metering(
        last_success_at=last, age=age, late=age is None or age > METERING_LATE_AFTER_RUNS * interval
    )


def _trail(tasks: list[ScheduledTask]) -> TrailCheck:
    task = next((t for t in tasks if t.name == TRAIL_CHECK_TASK), None)
    status = task.status if task else None
    return TrailCheck(
        tampered=bool(task and task.failing),
        last_success_at=status.last_success_at if status else None,
        last_failure_at=status.last_failure_at if status else None,
        error=status.last_error if status and task and task.failing else "",
    )


def operator_overview() -> Overview:
    watched = [Node.State.DEGRADED, Node.State.OFFLINE, Node.State.AWAITING_AGENT]
    nodes = dict(
        Node.objects.filter(state__in=watched)
        .values_list("state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    invoices = list(
        Invoice.objects.filter(status=Invoice.Status.OPEN)
        .values("currency")
        .annotate(n=Count("pk"), outstanding=Sum(F("buyer_amount") - F("paid_amount")))
        .order_by("currency")
    )
    tasks = scheduled_tasks()
    now = clock.now()
    return Overview(
        organisations_unverified=Organisation.objects.filter(verified=False).count(),
        nodes_degraded=nodes.get(Node.State.DEGRADED, 0),
        nodes_offline=nodes.get(Node.State.OFFLINE, 0),
        nodes_awaiting_agent=nodes.get(Node.State.AWAITING_AGENT, 0),
        orders_open=Order.objects.filter(status__in=OPEN_ORDER_STATES).count(),
        invoices_open=sum(row["n"] for row in invoices),
        outstanding=[(row["currency"], row["outstanding"]) for row in invoices],
        flags_open=FraudFlag.objects.filter(status=FraudFlag.Status.OPEN).count(),
        ledger_balanced=ledger_is_balanced(),
        scheduled_tasks=tasks,
        metering=_metering(tasks, now=now),
        closed_periods=closed_periods_check(now=now),
        outbox=outbox_backlog(),
        trail=_trail(tasks),
    )
