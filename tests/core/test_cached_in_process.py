"""A value kept in the process is read until its generation moves, then fetched
afresh: an edit in any process (it bumps the shared generation) is seen at once."""

import uuid

from core.cache import _bump, cached_in_process


def test_a_kept_value_is_read_until_its_generation_moves():
    name = f"test-{uuid.uuid4().hex}"
    computed = []

    def compute():
        computed.append(1)
        return [len(computed)]

    assert cached_in_process(name, "k", compute) == [1]
    assert cached_in_process(name, "k", compute) == [1]
    assert len(computed) == 1

    _bump(name)  # what another process's generation_bump does to the shared counter
    assert cached_in_process(name, "k", compute) == [2]
    assert cached_in_process(name, "k", compute) == [2]
    assert len(computed) == 2


def test_keys_of_one_name_are_kept_apart():
    name = f"test-{uuid.uuid4().hex}"
    assert cached_in_process(name, "a", lambda: "A") == "A"
    assert cached_in_process(name, "b", lambda: "B") == "B"
    assert cached_in_process(name, "a", lambda: "not read") == "A"
