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
