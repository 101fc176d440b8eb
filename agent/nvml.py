"""Read real GPUs through NVML (the `pynvml` module of nvidia-ml-py).

The NVML module is injectable so the reader can be tested without a GPU or a driver.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from agent.readings import Reading

log = logging.getLogger(__name__)

T = TypeVar("T")

MIB = 1024 * 1024
# Bound the events drained per read so a storm of events cannot stall sampling.
MAX_EVENTS_PER_READ = 1000
# Error names that mean the GPU is gone from the bus (or unusable until reset), as opposed
# to one query being unsupported. The driver is not consistent about which one it uses.
LOST_ERRORS = ("GPU_IS_LOST", "UNKNOWN", "NOT_FOUND", "GPU_NOT_FOUND", "RESET_REQUIRED")


class NvmlUnavailable(RuntimeError):
    """NVML could not be initialised: no driver, no library, or no permission."""


class _GpuLost(Exception):
    pass


def load_nvml() -> ModuleType:
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise NvmlUnavailable("the nvidia-ml-py package is not installed") from exc


class NvmlReader:
    """GpuReader over NVML. ECC and XID counters are cumulative since this reader started."""

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._nvml = nvml if nvml is not None else load_nvml()
        try:
            self._nvml.nvmlInit()
            self._count: int = self._nvml.nvmlDeviceGetCount()
        except self._nvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVML: {exc}") from exc
        if self._count == 0:
            log.warning("NVML sees no GPU on this node: nothing will be reported")
        self._lost_codes = {getattr(self._nvml, f"NVML_ERROR_{name}", None) for name in LOST_ERRORS}
        self._ecc_base: dict[int, int] = {}
        self._ecc_last: dict[int, int] = {}
        self._xid_errors = [0] * self._count
        self._lost = [False] * self._count
        self._registered: set[int] = set()
        self._warned: set[tuple[int, str]] = set()
        self._event_set: Any = self._create_event_set()

    @property
    def gpu_count(self) -> int:
        return self._count

    def read(self) -> list[Reading]:
        self._drain_xid_events()
        return [self._read_gpu(index) for index in range(self._count)]

    def close(self) -> None:
        nvml = self._nvml
        try:
            if self._event_set is not None:
                nvml.nvmlEventSetFree(self._event_set)
            nvml.nvmlShutdown()
        except nvml.NVMLError as exc:
            log.debug("NVML shutdown: %s", exc)

    # -- per GPU -------------------------------------------------------------------------

    def _read_gpu(self, index: int) -> Reading:
        nvml = self._nvml
        try:
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as exc:
                # Any failure to even find a GPU that was there at start means it is gone.
                raise _GpuLost(str(exc)) from exc
            self._register_xid_events(index, handle)
            reading = self._query_gpu(index, handle)
        except _GpuLost as exc:
            if not self._lost[index]:
                log.error("GPU %d is lost (fell off the bus?): %s", index, exc)
            self._lost[index] = True
            return Reading(
                gpu=index,
                ecc_errors=self._ecc_since_start(index, None),
                xid_errors=self._xid_errors[index],
                missing=True,
            )
        if self._lost[index]:
            log.warning("GPU %d is back", index)
            self._lost[index] = False
        return reading

    def _query_gpu(self, index: int, handle: Any) -> Reading:
        nvml = self._nvml
        util = self._query(index, "utilisation", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        memory = self._query(index, "memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power_mw = self._query(index, "power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        temp = self._query(
            index,
            "temperature",
            lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
        )
        ecc = self._query(
            index,
            "ecc",
            lambda: nvml.nvmlDeviceGetTotalEccErrors(
                handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
            ),
        )
        return Reading(
            gpu=index,
            util=float(util.gpu) if util is not None else 0.0,
            mem_used_mib=int(memory.used // MIB) if memory is not None else 0,
            power_w=power_mw / 1000.0 if power_mw is not None else 0.0,
            temp_c=float(temp) if temp is not None else 0.0,
            ecc_errors=self._ecc_since_start(index, ecc),
            xid_errors=self._xid_errors[index],
        )

    def _query(self, index: int, what: str, call: Callable[[], T]) -> T | None:
        """One NVML query: None when unsupported or failing, _GpuLost when the GPU is gone."""
        nvml = self._nvml
        try:
            return call()
        except nvml.NVMLError as exc:
            if exc.value in self._lost_codes:
                raise _GpuLost(str(exc)) from exc
            if (index, what) not in self._warned:
                # Not supported is normal (e.g. no ECC on consumer boards): say it once.
                level = (
                    logging.INFO if exc.value == nvml.NVML_ERROR_NOT_SUPPORTED else logging.WARNING
                )
                log.log(level, "GPU %d %s: %s; reporting 0", index, what, exc)
                self._warned.add((index, what))
            return None

    def _ecc_since_start(self, index: int, volatile_total: int | None) -> int:
        """Uncorrected ECC errors since the agent started (NVML's run since driver load)."""
        if volatile_total is not None:
            last = self._ecc_last.get(index)
            if last is None:
                self._ecc_base[index] = volatile_total
            elif volatile_total < last:
                # The driver reset its counter (GPU reset): keep what we had counted so far.
                self._ecc_base[index] -= last
            self._ecc_last[index] = volatile_total
        if index not in self._ecc_last:
            return 0
        return self._ecc_last[index] - self._ecc_base[index]

    # -- XID events ----------------------------------------------------------------------

    def _create_event_set(self) -> Any:
        nvml = self._nvml
        try:
            return nvml.nvmlEventSetCreate()
        except nvml.NVMLError as exc:
            log.info("NVML events unavailable, XID errors will not be reported: %s", exc)
            return None

    def _register_xid_events(self, index: int, handle: Any) -> None:
        nvml = self._nvml
        if self._event_set is None or index in self._registered:
            return
        self._registered.add(index)
        try:
            nvml.nvmlDeviceRegisterEvents(
                handle, nvml.nvmlEventTypeXidCriticalError, self._event_set
            )
        except nvml.NVMLError as exc:
            # NotSupported on many boards and in containers without the right capabilities.
            log.info("GPU %d: XID events not available: %s", index, exc)

    def _drain_xid_events(self) -> None:
        nvml = self._nvml
        if self._event_set is None or not self._registered:
            return
        for _ in range(MAX_EVENTS_PER_READ):
            try:
                event = nvml.nvmlEventSetWait(self._event_set, 0)
            except nvml.NVMLError as exc:
                if exc.value != nvml.NVML_ERROR_TIMEOUT:
                    log.debug("NVML event wait: %s", exc)
                return
            if event.eventType & nvml.nvmlEventTypeXidCriticalError:
                self._count_xid(event)

    def _count_xid(self, event: Any) -> None:
        nvml = self._nvml
        try:
            index = nvml.nvmlDeviceGetIndex(event.device)
        except nvml.NVMLError as exc:
            log.warning("XID %s on an unidentified GPU: %s", event.eventData, exc)
            return
        if 0 <= index < self._count:
            self._xid_errors[index] += 1
            log.warning("GPU %d: XID %s", index, event.eventData)
