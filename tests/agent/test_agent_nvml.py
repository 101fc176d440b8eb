import sys

import pynvml
import pytest

from agent.nvml import NvmlReader, NvmlUnavailable
from agent.readings import Reading


def test_readings_are_converted_to_the_wire_units(fake_nvml):
    nvml = fake_nvml(2)
    nvml.gpus[1].util = 97
    nvml.gpus[1].mem_used_bytes = 71234 * 1024 * 1024 + 512  # a partial MiB is not rounded up
    nvml.gpus[1].power_mw = 612_500
    nvml.gpus[1].temp_c = 71

    readings = NvmlReader(nvml).read()

    assert readings[1] == Reading(
        gpu=1, util=97.0, mem_used_mib=71234, power_w=612.5, temp_c=71.0,
        ecc_errors=0, xid_errors=0, missing=False,
    )  # fmt: skip
    assert [r.gpu for r in readings] == [0, 1]


def test_the_real_pynvml_module_is_used_when_none_is_given(fake_nvml, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(3))

    assert NvmlReader().gpu_count == 3


def test_no_driver_is_reported_as_nvml_unavailable(fake_nvml, monkeypatch):
    nvml = fake_nvml(1)

    def no_library():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(nvml, "nvmlInit", no_library)

    with pytest.raises(NvmlUnavailable, match="Library Not Found"):
        NvmlReader(nvml)


def test_unsupported_queries_read_as_zero_and_the_rest_still_reports(fake_nvml):
    nvml = fake_nvml(1)
    nvml.gpus[0].unsupported = {"ecc", "power"}
    nvml.events_supported = False

    [reading] = NvmlReader(nvml).read()

    assert reading.ecc_errors == 0
    assert reading.power_w == 0.0
    assert reading.util == 50.0
    assert reading.missing is False


def test_ecc_errors_count_from_agent_start_and_survive_a_counter_reset(fake_nvml):
    nvml = fake_nvml(1)
    nvml.gpus[0].ecc_volatile = 5  # errors from before the agent started are not ours
    reader = NvmlReader(nvml)
    assert reader.read()[0].ecc_errors == 0

    nvml.gpus[0].ecc_volatile = 7
    assert reader.read()[0].ecc_errors == 2

    nvml.gpus[0].ecc_volatile = 1  # GPU reset: the driver's counter restarts at 0
    assert reader.read()[0].ecc_errors == 3


def test_xid_events_are_counted_cumulatively_per_gpu(fake_nvml):
    nvml = fake_nvml(2)
    reader = NvmlReader(nvml)
    reader.read()  # registers for events
    assert nvml.registered == {0, 1}

    nvml.xid(1, 79)
    nvml.xid(1, 48)
    first = reader.read()
    nvml.xid(0, 13)
    second = reader.read()

    assert [r.xid_errors for r in first] == [0, 2]
    assert [r.xid_errors for r in second] == [1, 2]


def test_xid_events_not_supported_are_tolerated(fake_nvml):
    nvml = fake_nvml(1, events_supported=False)

    [reading] = NvmlReader(nvml).read()

    assert reading.xid_errors == 0
    assert reading.missing is False


def test_a_gpu_that_fell_off_the_bus_gives_a_missing_sample(fake_nvml):
    nvml = fake_nvml(2)
    reader = NvmlReader(nvml)
    nvml.gpus[1].ecc_volatile = 1
    reader.read()
    nvml.xid(1, 79)
    nvml.gpus[1].lost = True

    readings = reader.read()

    assert readings[0].missing is False
    assert readings[1] == Reading(gpu=1, ecc_errors=0, xid_errors=1, missing=True)


def test_a_gpu_lost_in_the_middle_of_a_read_is_missing(fake_nvml, monkeypatch):
    nvml = fake_nvml(1)
    reader = NvmlReader(nvml)

    def lost(handle):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    monkeypatch.setattr(nvml, "nvmlDeviceGetPowerUsage", lost)

    assert reader.read()[0].missing is True


def test_a_lost_gpu_that_comes_back_reports_again(fake_nvml):
    nvml = fake_nvml(1)
    reader = NvmlReader(nvml)
    nvml.gpus[0].lost = True
    assert reader.read()[0].missing is True

    nvml.gpus[0].lost = False

    assert reader.read()[0].missing is False


def test_close_shuts_nvml_down(fake_nvml):
    nvml = fake_nvml(1)

    NvmlReader(nvml).close()

    assert nvml.shut_down
