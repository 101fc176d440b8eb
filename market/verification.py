"""Host verification: a node is verified by its agent's self-test (GPUs seen,
memory, dense BF16 TFLOPS measured against the catalogue) and de-verified by
a failed self-test or by new XID/ECC errors in its telemetry (health.py).

Rules (a self-test passes when all hold):
- the agent saw exactly the node's GPU count;
- the smallest GPU's memory is at least MEMORY_FLOOR of the catalogue's;
- the slowest GPU's measured dense TFLOPS is at least TFLOPS_FLOOR of the
  catalogue's published peak (a burst never reaches the peak; 60 % is a
  healthy card under a short GEMM burst, a throttled or fake one is far below);
- the node had no XID/ECC fault in the last ERROR_WINDOW;
- it was measured on the node, not simulated (unless
  settings.NODE_SELF_TEST_ACCEPT_SIMULATED: development and the demo).
A verified node stays verified until a failing self-test or a new error."""

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from core.cache import generation_bump
from market.models import Node, NodeHealthCursor, NodeSelfTest
from market.models.capacity import BOARD_CACHE

MEMORY_FLOOR = Decimal("0.90")
TFLOPS_FLOOR = Decimal("0.60")
ERROR_WINDOW = dt.timedelta(hours=24)


def _failures(
    *,
    node: Node,
    gpus_seen: int,
    memory_gb: Decimal,
    tflops: Decimal | None,
    simulated: bool,
    now: dt.datetime,
) -> list[str]:
    model = node.gpu_model
    failures = []
    if simulated and not settings.NODE_SELF_TEST_ACCEPT_SIMULATED:
        failures.append("a simulated self-test does not verify a node on this exchange")
    if gpus_seen != node.gpu_count:
        failures.append(f"saw {gpus_seen} GPUs; the node has {node.gpu_count}")
    if memory_gb < MEMORY_FLOOR * model.memory_gb:
        failures.append(f"{memory_gb} GB per GPU; the {model} has {model.memory_gb} GB")
    if tflops is None:
        failures.append("no compute burst was measured")
    elif model.dense_tflops and tflops < TFLOPS_FLOOR * model.dense_tflops:
        failures.append(
            f"{tflops} dense TFLOPS; at least {(TFLOPS_FLOOR * model.dense_tflops):.0f} "
            f"expected of the {model}"
        )
    cursor = NodeHealthCursor.objects.filter(node=node).first()
    if (
        cursor is not None
        and cursor.last_fault_at is not None
        and cursor.last_fault_at > now - ERROR_WINDOW
        and ("XID" in cursor.last_fault_reason or "ECC" in cursor.last_fault_reason)
    ):
        failures.append(f"errors in the last 24 h: {cursor.last_fault_reason}")
    return failures


def node_self_test_record(
    *,
    node: Node,
    gpus_seen: int,
    memory_gb: Decimal,
    now: dt.datetime,
    gpu_name: str = "",
    bandwidth_gb_s: Decimal | None = None,
    tflops: Decimal | None = None,
    simulated: bool = False,
) -> NodeSelfTest:
    """Store a self-test and verify or de-verify its node by the rules above."""
    with transaction.atomic():
        locked = Node.objects.select_for_update().select_related("gpu_model").get(pk=node.pk)
        failures = _failures(
            node=locked,
            gpus_seen=gpus_seen,
            memory_gb=memory_gb,
            tflops=tflops,
            simulated=simulated,
            now=now,
        )
        passed = not failures
        reason = "; ".join(failures) if failures else "self-test passed"
        if simulated:
            reason = f"simulated: {reason}"
        test = NodeSelfTest.objects.create(
            node=locked,
            gpus_seen=gpus_seen,
            gpu_name=gpu_name[:120],
            memory_gb=memory_gb,
            bandwidth_gb_s=bandwidth_gb_s,
            tflops=tflops,
            simulated=simulated,
            passed=passed,
            reason=reason[:300],
            at=now,
        )
        Node.objects.filter(pk=locked.pk).update(
            verified=passed,
            verified_at=now if passed else locked.verified_at,
            verification_reason=reason[:300],
        )
        if passed != locked.verified:
            generation_bump(BOARD_CACHE)  # the search shows offers as verified or not
    return test


def node_deverify(*, node: Node, reason: str) -> bool:
    """Take a node's verification away (errors in its telemetry); True if it had one."""
    changed = bool(
        Node.objects.filter(pk=node.pk, verified=True).update(
            verified=False, verification_reason=reason[:300]
        )
    )
    if changed:
        generation_bump(BOARD_CACHE)
    return changed
