import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model

from tests.factories import LeaseFactory, UsageRecordFactory

PROJECT_APPS = {"accounts", "market", "billing"}


def test_every_model_of_the_exchange_is_in_the_admin():
    missing = [
        model.__name__
        for model in apps.get_models()
        if model._meta.app_label in PROJECT_APPS
        and not admin.site.is_registered(model)
        # the admin cannot show composite primary keys (telemetry samples)
        and model._meta.pk.__class__.__name__ != "CompositePrimaryKey"
    ]
    assert missing == []


@pytest.mark.django_db
def test_admin_changelists_render_for_an_operator(client):
    operator = get_user_model().objects.create_superuser(
        "operator", "op@example.com", "op-password-2026"
    )
    client.force_login(operator)
    UsageRecordFactory(lease=LeaseFactory())

    for model in admin.site._registry:
        if model._meta.app_label not in PROJECT_APPS:
            continue
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = client.get(url)
        assert response.status_code == 200, url


@pytest.mark.django_db
def test_an_orders_admin_page_shows_its_history_read_only(client):
    from market.models import OrderEvent
    from tests.factories import OrderFactory

    operator = get_user_model().objects.create_superuser(
        "operator", "op@example.com", "op-password-2026"
    )
    client.force_login(operator)
    order = OrderFactory()
    OrderEvent.objects.create(
        order=order, from_status="open", to_status="cancelled", reason="buyer changed plans"
    )

    page = client.get(f"/admin/market/order/{order.pk}/change/").content.decode()
    history = client.get("/admin/market/orderevent/")

    assert "buyer changed plans" in page
    assert "buyer changed plans" in history.content.decode()
    assert client.get("/admin/market/orderevent/add/").status_code == 403


@pytest.mark.django_db
def test_the_admin_shows_a_lease_to_the_second_and_never_rewrites_it(client):
    import datetime as dt

    from market.models import Lease

    operator = get_user_model().objects.create_superuser(
        "operator", "op@example.com", "op-password-2026"
    )
    client.force_login(operator)
    start = dt.datetime(2026, 3, 2, 9, 0, 17, tzinfo=dt.UTC)
    lease = LeaseFactory(starts_at=start, ends_at=start + dt.timedelta(hours=1, seconds=29))
    url = f"/admin/market/lease/{lease.pk}/change/"

    page = client.get(url).content.decode()
    # saving the page as shown: refused, nothing moves
    saved = client.post(url, {"starts_at_0": "2026-03-02", "starts_at_1": "17:00", "gpu_count": 9})

    # shown to the second (Asia/Shanghai), and no time is a form field
    assert "2026-03-02 17:00:17" in page
    assert "2026-03-02 18:00:46" in page
    assert 'name="starts_at' not in page and 'name="ends_at' not in page
    assert saved.status_code == 403
    lease.refresh_from_db()
    assert (lease.starts_at, lease.gpu_count) == (start, 2)
    assert Lease.objects.filter(pk=lease.pk, ends_at=start + dt.timedelta(hours=1, seconds=29))


@pytest.mark.django_db
def test_invoice_and_order_times_in_the_admin_are_read_only_to_the_second(client):
    import datetime as dt

    from billing.models import Invoice
    from tests.factories import OrderFactory

    operator = get_user_model().objects.create_superuser(
        "operator", "op@example.com", "op-password-2026"
    )
    client.force_login(operator)
    buyer = OrderFactory().buyer
    invoice = Invoice.objects.create(
        number="INV-T",
        buyer=buyer,
        period_start=dt.datetime(2026, 3, 1, 16, 0, 0, tzinfo=dt.UTC),
        period_end=dt.datetime(2026, 3, 2, 16, 0, 5, tzinfo=dt.UTC),
    )
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    assert "2026-03-03 00:00:05" in page
    assert 'name="period_start' not in page and 'name="period_end' not in page
