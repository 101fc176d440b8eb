"""The operator's overview: counts of what waits for people, and the ledger check."""

import datetime as dt

import pytest
import time_machine

from accounts.models import Organisation
from billing.models import FraudFlag, Invoice
from core.models import ScheduledTaskStatus
from market.models import UsageRecord
from tests.billing.conftest import MAY
from tests.billing.subsidy.factories import programme
from tests.factories import (
    LeaseFactory,
    NodeFactory,
    OrderFactory,
    OrganisationFactory,
    UserFactory,
    member_of,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    client.force_login(UserFactory(username="operator", is_staff=True))
    return client


def _invoice(buyer, month: int, status: str, buyer_amount: int, paid_amount: int = 0):
    return Invoice.objects.create(
        number=f"INV-OP-{month:02d}-{status}",
        buyer=buyer,
        period_start=MAY.replace(month=month),
        period_end=MAY.replace(month=month) + dt.timedelta(days=28),
        status=status,
        buyer_amount=buyer_amount,
        paid_amount=paid_amount,
    )


def test_the_overview_counts_what_waits_for_the_operator(operator):
    # given two unverified organisations (and verified ones)
    OrganisationFactory(verified=False)
    OrganisationFactory(kind=Organisation.Kind.PROVIDER, verified=False)
    buyer = OrganisationFactory(kind=Organisation.Kind.BUYER)
    # one degraded and two offline nodes, one online, one in maintenance
    for state in ("degraded", "offline", "offline", "online", "maintenance"):
        NodeFactory(state=state)
    # open and partially filled orders count; filled and cancelled do not
    for status in ("open", "partially_filled", "filled", "cancelled"):
        OrderFactory(buyer=buyer, status=status)
    # open invoices: ¥200.00 with ¥50.00 paid, and ¥100.50; a paid and a draft one do not count
    _invoice(buyer, 5, "open", 20_000, 5_000)
    _invoice(buyer, 6, "open", 10_050)
    _invoice(buyer, 7, "paid", 30_000, 30_000)
    _invoice(buyer, 8, "draft", 40_000)
    # two open fraud flags and a dismissed one
    prog = programme(OrganisationFactory(kind=Organisation.Kind.AUTHORITY))
    for key, status in (("voucher:1", "open"), ("voucher:2", "open"), ("voucher:3", "dismissed")):
        FraudFlag.objects.create(
            rule=FraudFlag.Rule.EXPIRY_BURST, subject_key=key, programme=prog, status=status
        )

    # when
    response = operator.get("/operator/")

    # then
    overview = response.context["overview"]
    assert response.status_code == 200
    assert overview.organisations_unverified == 2
    assert (overview.nodes_degraded, overview.nodes_offline) == (1, 2)
    assert overview.orders_open == 2
    assert overview.invoices_open == 2
    assert overview.outstanding == [("CNY", 25_050)]
    assert overview.flags_open == 2
    assert overview.ledger_balanced is True
    body = response.content.decode()
    assert "¥250.50" in body and "balanced" in body
    assert "/admin/accounts/organisation/?verified__exact=0" in body
    assert "/admin/market/order/?status__in=open,partially_filled" in body


def test_the_overview_shows_an_unbalanced_ledger(operator, monkeypatch):
    # given the balance check fails (PostgreSQL's trigger refuses to commit an
    # unbalanced transaction, so the check's answer is what this test sets)
    monkeypatch.setattr("billing.operator_overview.ledger_is_balanced", lambda: False)

    response = operator.get("/operator/")

    assert response.context["overview"].ledger_balanced is False
    assert "NOT balanced" in response.content.decode()


def test_the_overview_of_an_empty_exchange_shows_zeros(operator):
    overview = operator.get("/operator/").context["overview"]

    assert overview.organisations_unverified == 0
    assert (overview.invoices_open, overview.outstanding) == (0, [])
    assert overview.ledger_balanced is True


def test_the_admin_links_of_the_overview_open_for_an_operator_with_admin_rights(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    links = client.get("/operator/").context["links"]

    for url in links.values():
        response = client.get(url)
        assert response.status_code == 200, url
        assert "?e=1" not in response.get("Location", ""), url  # the admin accepted the filter


def test_only_staff_open_the_overview_and_see_its_nav_link(client, buyer):
    client.force_login(buyer)
    assert client.get("/operator/").status_code == 403
    assert 'href="/operator/"' not in client.get("/").content.decode()
    client.logout()
    assert client.get("/operator/").status_code == 302

    client.force_login(UserFactory(username="operator", is_staff=True))
    assert 'href="/operator/"' in client.get("/").content.decode()


def test_a_staff_member_of_an_organisation_also_sees_the_overview(client):
    provider = OrganisationFactory(kind=Organisation.Kind.PROVIDER)
    user = member_of(provider, "staff-provider")
    user.is_staff = True
    user.save()
    client.force_login(user)

    assert client.get("/operator/").status_code == 200
    assert client.get("/billing/payouts/").status_code == 200


def test_a_failing_metering_run_shows_on_the_overview(operator, monkeypatch):
    # given: metering ran well at 10:00; then a lease appears whose records cannot be built
    from market.telemetry import metering
    from market.telemetry.tasks import leases_meter

    ten = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    with time_machine.travel(ten, tick=False):
        assert leases_meter.apply(throw=False).successful()
    broken = LeaseFactory(starts_at=ten - dt.timedelta(hours=2), ends_at=ten)

    def corrupt(lease, window, measure):
        raise ValueError("site PUE is missing")

    monkeypatch.setattr(metering, "_record", corrupt)
    # when: the runs of the next five minutes fail (the task raises after the others)
    for minute in range(1, 6):
        with time_machine.travel(ten + dt.timedelta(minutes=minute), tick=False):
            assert leases_meter.apply(throw=False).failed()
    with time_machine.travel(ten + dt.timedelta(minutes=5, seconds=30), tick=False):
        response = operator.get("/operator/")

    # then: the operator sees the failing task, its error and a late metering
    overview = response.context["overview"]
    assert [task.name for task in overview.tasks_failing] == ["market.leases_meter"]
    assert overview.tasks_failing[0].status.failures_in_a_row == 5
    assert overview.metering.last_success_at == ten
    assert overview.metering.late is True
    body = response.content.decode()
    assert "1 failing" in body and "failing (5 runs)" in body
    assert f"MeteringIncomplete: 1 lease(s) could not be metered ({broken.pk})" in body
    assert "late: usage is not being metered" in body
    assert "5\xa0minutes ago" in body
    assert not UsageRecord.objects.filter(lease=broken).exists()


def test_metering_that_runs_on_time_and_tasks_that_recovered_show_as_such(operator):
    from market.telemetry.tasks import leases_meter, nodes_health_check

    now = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    ScheduledTaskStatus.objects.create(
        name="market.nodes_health_check",
        last_failure_at=now - dt.timedelta(minutes=2),
        last_error="OperationalError: the database restarted",
        failures_in_a_row=1,
    )
    with time_machine.travel(now, tick=False):
        assert nodes_health_check.apply(throw=False).successful()
        assert leases_meter.apply(throw=False).successful()
    with time_machine.travel(now + dt.timedelta(seconds=50), tick=False):
        response = operator.get("/operator/")

    overview = response.context["overview"]
    assert overview.tasks_failing == []
    assert (overview.metering.late, overview.metering.age) == (False, dt.timedelta(seconds=50))
    body = response.content.decode()
    assert "none failing" in body and "on time" in body
    assert "the database restarted" not in body


def test_the_overview_counts_nodes_awaiting_their_agent(operator):
    NodeFactory(state="awaiting_agent")
    NodeFactory(state="awaiting_agent")
    NodeFactory(state="online")

    response = operator.get("/operator/")

    assert response.context["overview"].nodes_awaiting_agent == 2
    assert "2 nodes awaiting their agents" in response.content.decode()
    assert "/admin/market/node/?state__exact=awaiting_agent" in response.content.decode()


def test_the_trail_alarm_shows_when_the_last_self_check_failed_and_not_otherwise(operator):
    from billing.trail.tasks import trail_check
    from tests.billing.trail.world import CLAIM_DAY, trail_world

    # given: a month of subsidised usage, logged and sealed; nothing checked yet
    with time_machine.travel(CLAIM_DAY, tick=False):
        trail_world()
    body = operator.get("/operator/").content.decode()
    assert "Subsidy trail self-check" in body and "ALARM: logged evidence" not in body
    # when: the daily self-check runs on an untouched trail
    with time_machine.travel(CLAIM_DAY + dt.timedelta(hours=1), tick=False):
        assert trail_check.apply(throw=False).successful()
    response = operator.get("/operator/")
    # then: no alarm
    assert response.context["overview"].trail.tampered is False
    body = response.content.decode()
    assert "every logged record matches" in body and "ALARM: logged evidence" not in body
    # when: someone with database access rewrites a usage record, and the check runs again
    usage = UsageRecord.objects.order_by("pk").first()
    UsageRecord.objects.filter(pk=usage.pk).update(gpu_seconds_delivered=900_000)
    with time_machine.travel(CLAIM_DAY + dt.timedelta(days=1), tick=False):
        assert not trail_check.apply(throw=False).successful()
    response = operator.get("/operator/")
    # then: the alarm, naming what no longer matches
    trail = response.context["overview"].trail
    assert trail.tampered is True and "TrailTampered" in trail.error
    body = response.content.decode()
    assert "ALARM: logged evidence rewritten or deleted" in body
    assert f"usage {usage.pk} rewritten" in body
    assert "every logged record matches" not in body
    chinese = operator.get("/operator/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "告警：已记录的证据被改写或删除" in chinese
