import orjson
import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Organisation
from demo.market import demo_nodes
from market.capacity import node_token_rotate
from market.matching import match_round
from market.models import Lease, Node, Order
from market.telemetry.ingest import telemetry_ingest
from tests.market.telemetry.conftest import sample


@pytest.mark.django_db
def test_demo_data_loads_twice_without_change(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # matching runs after commit
        call_command("demo_data")
    counts = (Organisation.objects.count(), Order.objects.count(), Lease.objects.count())

    call_command("demo_data")

    assert counts[1] == 3
    assert (Organisation.objects.count(), Order.objects.count(), Lease.objects.count()) == counts


@pytest.mark.django_db
def test_demo_orders_wait_for_the_demo_agents_and_fill_once_they_reported(
    django_capture_on_commit_callbacks,
):
    # given: the demo data, its nodes awaiting their agents
    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo_data")
    nodes = demo_nodes()
    assert len(nodes) == 12
    assert {node.state for node in nodes} == {Node.State.AWAITING_AGENT}
    assert not Lease.objects.exists()
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.OPEN}
    # when: each demo node's agent posts its first batch (as `manage.py demo`
    # starts one per demo node), and the matching round runs
    now = timezone.now()
    for node in nodes:
        node_token_rotate(node=node)
        samples = [sample(g, ts=now.timestamp(), gpu=g) for g in range(node.gpu_count)]
        telemetry_ingest(node=node, body=orjson.dumps({"samples": samples}), now=now)
    match_round(now=now)
    # then: every demo order is filled
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.FILLED}
    assert Lease.objects.count() >= 3
