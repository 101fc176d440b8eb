import pytest

from agent.simulator import MEM_TOTAL_MIB, Fault, Simulator, parse_fault


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def simulator(*specs: str, gpus: int = 2, seed: int = 1) -> tuple[Simulator, FakeClock]:
    clock = FakeClock()
    sim = Simulator(gpus=gpus, faults=[parse_fault(s) for s in specs], seed=seed, clock=clock)
    sim.read()  # the agent's first round, at t=0: fault times count from here
    return sim, clock


def read_at(sim: Simulator, clock: FakeClock, t: float):
    clock.now = 1000.0 + t
    return sim.read()


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("gpu-lost@30", Fault("gpu-lost", 30.0)),
        ("gpu-lost@30:20,gpu=2", Fault("gpu-lost", 30.0, 20.0, gpu=2)),
        ("xid-burst@1.5,count=4", Fault("xid-burst", 1.5, count=4)),
        ("ecc-burst@10s,gpu=1", Fault("ecc-burst", 10.0, gpu=1)),
        ("overheat@60:30", Fault("overheat", 60.0, 30.0)),
        ("silence@40s:15s", Fault("silence", 40.0, 15.0)),
    ],
)
def test_fault_specs_parse(spec, fault):
    assert parse_fault(spec) == fault


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("meltdown@3", "kind must be one of"),
        ("gpu-lost", "expected KIND@T"),
        ("gpu-lost@-1", "expected KIND@T"),
        ("xid-burst@3:10", "happens at an instant"),
        ("overheat@3,count=2", "count= only applies"),
        ("silence@3:1,gpu=1", "whole node"),
        ("gpu-lost@3,gpu=one", "expected KIND@T"),
        ("gpu-lost@3,slot=1", "unknown option"),
    ],
)
def test_bad_fault_specs_are_refused_with_a_reason(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_fault(spec)


def test_a_fault_on_a_gpu_the_node_does_not_have_is_refused():
    with pytest.raises(ValueError, match="node has 2 GPUs"):
        simulator("gpu-lost@1,gpu=2")


def test_values_are_plausible_for_a_busy_data_centre_gpu():
    sim, clock = simulator(gpus=8)
    readings = [r for t in range(1, 51) for r in read_at(sim, clock, t)]

    assert len(readings) == 400
    assert all(0.0 <= r.util <= 100.0 for r in readings)
    assert all(0 < r.mem_used_mib <= MEM_TOTAL_MIB for r in readings)
    assert all(50.0 <= r.power_w <= 750.0 for r in readings)
    assert all(25.0 <= r.temp_c <= 90.0 for r in readings)
    assert sum(r.util for r in readings) / len(readings) > 60.0
    assert not any(r.missing or r.ecc_errors or r.xid_errors for r in readings)


def test_fault_times_count_from_the_first_read_not_from_construction():
    clock = FakeClock()
    sim = Simulator(gpus=1, faults=[parse_fault("gpu-lost@5")], clock=clock)
    clock.now += 60.0  # a slow start

    assert read_at(sim, clock, 60.0)[0].missing is False
    assert read_at(sim, clock, 64.9)[0].missing is False
    assert read_at(sim, clock, 65.0)[0].missing is True


def test_same_seed_and_clock_give_the_same_readings():
    first, clock1 = simulator(seed=42)
    second, clock2 = simulator(seed=42)

    assert [read_at(first, clock1, t) for t in range(5)] == [
        read_at(second, clock2, t) for t in range(5)
    ]


def test_gpu_lost_starts_at_its_time_and_ends_after_its_duration():
    sim, clock = simulator("gpu-lost@10:5,gpu=1")

    before = read_at(sim, clock, 9.9)
    during = read_at(sim, clock, 10.0)
    late = read_at(sim, clock, 14.9)
    after = read_at(sim, clock, 15.0)

    assert [r.missing for r in before] == [False, False]
    assert [r.missing for r in during] == [False, True]
    assert (during[1].util, during[1].power_w, during[1].mem_used_mib) == (0.0, 0.0, 0)
    assert [r.missing for r in late] == [False, True]
    assert [r.missing for r in after] == [False, False]


def test_gpu_lost_without_duration_never_comes_back():
    sim, clock = simulator("gpu-lost@3")

    assert read_at(sim, clock, 3)[0].missing
    assert read_at(sim, clock, 3600)[0].missing


def test_xid_burst_raises_the_cumulative_counter_once():
    sim, clock = simulator("xid-burst@5,count=3,gpu=1")

    assert [r.xid_errors for r in read_at(sim, clock, 4.9)] == [0, 0]
    assert [r.xid_errors for r in read_at(sim, clock, 5.2)] == [0, 3]
    assert [r.xid_errors for r in read_at(sim, clock, 60)] == [0, 3]


def test_ecc_burst_raises_the_ecc_counter():
    sim, clock = simulator("ecc-burst@2", "ecc-burst@4,count=2")

    assert [read_at(sim, clock, t)[0].ecc_errors for t in (1, 2, 3, 4, 5)] == [0, 1, 1, 3, 3]


def test_overheat_runs_hot_and_throttles_during_its_window_only():
    sim, clock = simulator("overheat@2:3")

    normal = read_at(sim, clock, 1)[0]
    hot = [read_at(sim, clock, t)[0] for t in (2, 3, 4)]
    cooled = read_at(sim, clock, 5)[0]

    assert normal.temp_c < 80.0
    assert all(r.temp_c >= 95.0 for r in hot)
    assert hot[-1].util < normal.util - 20.0
    assert cooled.temp_c < 95.0


def test_silence_reports_nothing_during_its_window_and_bursts_fire_after_it():
    sim, clock = simulator("silence@4:2", "xid-burst@5")

    assert len(read_at(sim, clock, 3.9)) == 2
    assert read_at(sim, clock, 4.0) == []
    assert read_at(sim, clock, 5.9) == []
    after = read_at(sim, clock, 6.0)
    assert len(after) == 2
    assert after[0].xid_errors == 1
