"""The operator's overview: counts of what waits for people, and the ledger check."""

import datetime as dt

import pytest

from accounts.models import Organisation
from billing.models import FraudFlag, Invoice
from tests.billing.conftest import MAY
from tests.factories import NodeFactory, OrderFactory, OrganisationFactory, UserFactory, member_of
from tests.vouchers.factories import programme

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
