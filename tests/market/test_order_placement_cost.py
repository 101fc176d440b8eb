"""Placing an order costs a fixed, small number of queries (load bench: order
placement is the write every buyer waits on), and the catalogue it validates
against is cached until an entry changes."""

import datetime as dt

import pytest

from market.models import GPUModel, Order

pytestmark = pytest.mark.django_db


def _payload(**overrides):
    start_by = dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)
    return {
        "accepted_models": ["nvidia-h800-sxm", "nvidia-h100-sxm"],
        "gpu_count": 8,
        "hours": 24,
        "max_price_amount": 2_500,
        "start_by": start_by.isoformat(),
    } | overrides


def test_placing_an_order_runs_a_fixed_number_of_queries(
    buyer_client, django_assert_max_num_queries
):
    buyer_client.post("/api/v1/orders/", _payload(), format="json")  # the catalogue is cached
    # token, membership, the key's earlier order, funding terms; begin, order, its
    # models, its event, its outbox row, commit; the models in the answer
    with django_assert_max_num_queries(11):
        response = buyer_client.post(
            "/api/v1/orders/", _payload(), format="json", HTTP_IDEMPOTENCY_KEY="cost-1"
        )
    assert response.status_code == 201, response.json()
    assert response.json()["accepted_models"] == ["nvidia-h100-sxm", "nvidia-h800-sxm"]
    order = Order.objects.get(pk=response.json()["id"])
    assert sorted(order.accepted_models.values_list("slug", flat=True)) == [
        "nvidia-h100-sxm",
        "nvidia-h800-sxm",
    ]


def test_a_model_added_to_the_catalogue_can_be_ordered_at_once(buyer_client):
    buyer_client.post("/api/v1/orders/", _payload(), format="json")  # the catalogue is cached
    refused = buyer_client.post(
        "/api/v1/orders/", _payload(accepted_models=["acme-x1"]), format="json"
    )
    assert refused.status_code == 400
    assert "acme-x1" in str(refused.json())

    GPUModel.objects.create(
        slug="acme-x1", vendor="Acme", name="X1", memory_gb=96, bf16_tflops=800, domestic=True
    )
    placed = buyer_client.post(
        "/api/v1/orders/", _payload(accepted_models=["acme-x1"]), format="json"
    )

    assert placed.status_code == 201, placed.json()
    assert placed.json()["accepted_models"] == ["acme-x1"]


def test_a_model_the_floors_exclude_after_an_edit_is_refused(buyer_client):
    buyer_client.post("/api/v1/orders/", _payload(), format="json")  # the catalogue is cached
    model = GPUModel.objects.get(slug="nvidia-h800-sxm")
    model.memory_gb = 8
    model.save()

    response = buyer_client.post(
        "/api/v1/orders/",
        _payload(accepted_models=["nvidia-h800-sxm"], min_memory_gb=40),
        format="json",
    )

    assert response.status_code == 400
    assert "accepted_models" in response.json()["errors"]
