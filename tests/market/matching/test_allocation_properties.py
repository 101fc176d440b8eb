"""Property: whatever mix of orders arrives - immediate ones, forward blocks
starting at later hours, interruptible ones and higher bids that pre-empt them
with notice - no node's GPU is promised twice at any instant. A lease under
notice counts until its notice ends, when the pre-empting lease starts.

Each example runs the real engine (order_match, orders_preempt, match_round)
on the database and is rolled back afterwards."""

import datetime as dt

import pytest
import time_machine
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.matching import match_round, order_match, orders_preempt
from market.models import Lease, Node
from tests.factories import NodeFactory, OfferFactory, OrderFactory, gpu

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
H800 = "nvidia-h800-sxm"
HOLDING = (Lease.Status.PENDING, Lease.Status.ACTIVE)

# (GPUs on the node, its regular ask in ¥, its interruptible ask in ¥ or none)
NODES = st.lists(
    st.tuples(
        st.sampled_from([4, 8]), st.integers(15, 30), st.one_of(st.none(), st.integers(6, 14))
    ),
    min_size=1,
    max_size=3,
)
# (GPUs, hours, bid in ¥, accepts interruptible, starts this many hours from now: 0 = now)
ORDERS = st.lists(
    st.tuples(
        st.sampled_from([1, 2, 4, 8]),
        st.sampled_from([1, 2, 4]),
        st.integers(8, 40),
        st.booleans(),
        st.sampled_from([0, 0, 1, 2, 3]),
    ),
    min_size=1,
    max_size=8,
)


def _promised_twice() -> list[tuple]:
    """(node, instant, GPUs promised, GPUs it has) wherever leases holding a node
    overlap beyond its GPUs; the most overlap begins where some lease starts."""
    problems = []
    for node_id, gpu_count in Node.objects.values_list("id", "gpu_count"):
        held = list(
            Lease.objects.filter(
                node_id=node_id, status__in=HOLDING, resold_from__isnull=True
            ).values_list("starts_at", "ends_at", "gpu_count")
        )
        for instant in sorted({start for start, _end, _gpus in held}):
            used = sum(gpus for start, end, gpus in held if start <= instant < end)
            if used > gpu_count:
                problems.append((node_id, instant, used, gpu_count))
    return problems


@pytest.mark.django_db
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(nodes=NODES, orders=ORDERS)
def test_no_gpu_is_promised_twice_across_forward_blocks_and_pre_emption(nodes, orders):
    with time_machine.travel(T0, tick=False), transaction.atomic():
        for count, price, spot in nodes:
            node = NodeFactory(gpu_count=count)
            OfferFactory(node=node, price_amount=price * 100)
            if spot is not None:
                OfferFactory(node=node, price_amount=spot * 100, interruptible=True)
        leases = 0
        for gpus, hours, bid, interruptible, offset in orders:
            fields = {}
            if offset:
                fields = {"start_at": T0 + offset * HOUR, "start_by": T0 + (offset + 1) * HOUR}
            order = OrderFactory(
                accepted_models=[gpu(H800)],
                gpu_count=gpus,
                hours=hours,
                max_price_amount=bid * 100,
                interruptible=interruptible,
                **fields,
            )
            leases += len(order_match(order_id=order.pk))
            leases += len(orders_preempt())
            assert _promised_twice() == []
        leases += match_round().leases_created + len(orders_preempt())
        assert _promised_twice() == []
        assert Lease.objects.count() == leases  # every lease made was counted and checked
        transaction.set_rollback(True)
