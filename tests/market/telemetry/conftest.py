import pytest

from market.capacity import node_token_rotate
from tests.factories import NodeFactory


def node_with_token(**kwargs):
    """A node and its agent token `<node id>.<secret>` (only the digest is stored)."""
    node = NodeFactory(**kwargs)
    return node, node_token_rotate(node=node)


def sample(seq: int, *, ts: float, gpu: int = 0, **overrides) -> dict:
    reading = {
        "seq": seq,
        "ts": ts,
        "gpu": gpu,
        "util": 87.5,
        "mem_used_mib": 61_440,
        "power_w": 600.0,
        "temp_c": 64.0,
        "ecc_errors": 0,
        "xid_errors": 0,
        "missing": False,
    }
    reading.update(overrides)
    return reading


@pytest.fixture
def node_and_token(db):
    return node_with_token(gpu_count=2)
