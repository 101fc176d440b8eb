import sqlite3

import pytest

from agent.buffer import DB_NAME, SampleBuffer, StateDirBusy
from agent.readings import Reading


def readings(n: int) -> list[Reading]:
    return [Reading(gpu=i, util=50.0) for i in range(n)]


def test_seqs_continue_across_a_restart(tmp_path):
    with SampleBuffer(tmp_path, max_samples=100) as buffer:
        assert buffer.append(readings(2), ts=1.0) == [1, 2]
        buffer.remove(buffer.oldest(10))
        assert buffer.append(readings(3), ts=2.0) == [3, 4, 5]

    with SampleBuffer(tmp_path, max_samples=100) as buffer:
        assert buffer.next_seq == 6
        assert [s["seq"] for s in buffer.oldest(10)] == [3, 4, 5]
        assert buffer.append(readings(1), ts=3.0) == [6]


def test_buffered_samples_have_the_wire_format(tmp_path):
    with SampleBuffer(tmp_path, max_samples=100) as buffer:
        buffer.append([Reading(gpu=3, util=97.0, mem_used_mib=71234, power_w=612.5,
                               temp_c=71.0)], ts=1732200000.1234)  # fmt: skip

        assert buffer.oldest(1) == [{
            "seq": 1, "ts": 1732200000.123, "gpu": 3, "util": 97.0, "mem_used_mib": 71234,
            "power_w": 612.5, "temp_c": 71.0, "ecc_errors": 0, "xid_errors": 0,
            "missing": False,
        }]  # fmt: skip


def test_oldest_comes_in_seq_order_and_respects_the_limit(tmp_path):
    with SampleBuffer(tmp_path, max_samples=100) as buffer:
        for ts in range(5):
            buffer.append(readings(2), ts=float(ts))

        assert [s["seq"] for s in buffer.oldest(3)] == [1, 2, 3]
        buffer.remove(buffer.oldest(3))
        assert [s["seq"] for s in buffer.oldest(100)] == [4, 5, 6, 7, 8, 9, 10]


def test_a_full_buffer_drops_the_oldest_samples_with_a_warning(tmp_path, caplog):
    with SampleBuffer(tmp_path, max_samples=5) as buffer:
        buffer.append(readings(4), ts=1.0)
        buffer.append(readings(3), ts=2.0)

        assert [s["seq"] for s in buffer.oldest(100)] == [3, 4, 5, 6, 7]
        assert buffer.next_seq == 8
    assert "dropped the 2 oldest" in caplog.text


def test_an_empty_round_uses_no_seq(tmp_path):
    with SampleBuffer(tmp_path, max_samples=5) as buffer:
        assert buffer.append([], ts=1.0) == []
        assert buffer.next_seq == 1


def test_a_sample_that_is_not_json_leaves_nothing_behind(tmp_path):
    with SampleBuffer(tmp_path, max_samples=5) as buffer:
        with pytest.raises(ValueError):
            buffer.append([Reading(gpu=0), Reading(gpu=1, util=float("nan"))], ts=1.0)

        assert len(buffer) == 0
        assert buffer.next_seq == 1


def test_a_second_agent_on_the_same_state_dir_is_refused(tmp_path):
    with SampleBuffer(tmp_path, max_samples=5), pytest.raises(StateDirBusy):
        SampleBuffer(tmp_path, max_samples=5)

    SampleBuffer(tmp_path, max_samples=5).close()  # free again once the first one closed


def test_samples_are_on_disk_as_soon_as_append_returns(tmp_path):
    buffer = SampleBuffer(tmp_path, max_samples=5)
    buffer.append(readings(2), ts=1.0)

    # A separate connection, as after a crash: the commit is already durable.
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT count(*) FROM sample").fetchone() == (2,)
    buffer.close()


def test_the_count_stays_exact_across_appends_removals_trims_and_restarts(tmp_path):
    with SampleBuffer(tmp_path, max_samples=6) as buffer:
        buffer.append(readings(4), ts=1.0)
        buffer.remove(buffer.oldest(1) + [{"seq": 999}])  # an unknown seq removes nothing
        assert len(buffer) == 3
        buffer.append(readings(5), ts=2.0)
        assert len(buffer) == 6

    with SampleBuffer(tmp_path, max_samples=6) as buffer:
        assert len(buffer) == 6
        assert [s["seq"] for s in buffer.oldest(10)] == [4, 5, 6, 7, 8, 9]
