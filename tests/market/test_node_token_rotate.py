import json
import time

import pytest
from django.test import Client

from market.capacity import node_create, node_token_rotate
from tests.factories import SiteFactory, gpu


def _post(token: str, seq: int) -> int:
    sample = {
        "seq": seq,
        "ts": time.time(),
        "gpu": 0,
        "util": 50.0,
        "mem_used_mib": 1000,
        "power_w": 300.0,
        "temp_c": 60.0,
        "ecc_errors": 0,
        "xid_errors": 0,
        "missing": False,
    }
    response = Client().post(
        "/api/v1/telemetry/",
        json.dumps({"samples": [sample]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Node {token}",
    )
    return response.status_code


@pytest.mark.django_db
def test_rotating_a_node_token_revokes_the_old_one_at_once():
    node, first = node_create(
        site=SiteFactory(), name="n1", gpu_model=gpu("nvidia-h20"), gpu_count=8
    )
    assert _post(first, 1) == 200

    second = node_token_rotate(node=node)

    assert second != first and second.startswith(f"{node.pk}.")
    assert _post(first, 2) == 401
    assert _post(second, 3) == 200
