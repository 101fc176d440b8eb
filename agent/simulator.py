"""A built-in GPU simulator with fault injection, for demos and tests without hardware.

Fault syntax (one --fault flag per fault), times in seconds after the first read (when
the agent starts sampling):

    KIND@T[:DURATION][,gpu=N][,count=N]

    gpu-lost@30            GPU 0 falls off the bus at t=30 s and never comes back
    gpu-lost@30:20,gpu=2   GPU 2 is lost from t=30 s to t=50 s
    xid-burst@10,count=4   GPU 0 reports 4 critical XID errors at t=10 s
    ecc-burst@10,gpu=1     GPU 1 reports 1 uncorrected ECC error at t=10 s
    overheat@60:30         GPU 0 runs at ~97 C (and throttles) from t=60 s to t=90 s
    silence@40:15          the node reports nothing from t=40 s to t=55 s (a hung agent)

Values are plausible for an 80 GB, 700 W data-centre GPU running a training job. With a
seed and an injectable clock the output is fully deterministic.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agent.readings import Reading

FAULT_KINDS = ("gpu-lost", "xid-burst", "ecc-burst", "overheat", "silence")
# Bursts happen at an instant; the others last for a window (forever without a duration).
INSTANT_KINDS = ("xid-burst", "ecc-burst")

_FAULT_RE = re.compile(
    r"^(?P<kind>[a-z-]+)@(?P<at>\d+(?:\.\d+)?)s?(?::(?P<duration>\d+(?:\.\d+)?)s?)?"
    r"(?P<options>(?:,[a-z]+=\d+)*)$"
)

MEM_TOTAL_MIB = 81_559
IDLE_POWER_W = 70.0
MAX_POWER_W = 700.0
OVERHEAT_TEMP_C = 97.0


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    at: float
    duration: float | None = None
    gpu: int = 0
    count: int = 1

    def active(self, t: float) -> bool:
        if t < self.at:
            return False
        return self.duration is None or t < self.at + self.duration


def parse_fault(spec: str) -> Fault:
    """Parse one --fault value; raises ValueError with a message fit for the command line."""
    match = _FAULT_RE.match(spec.strip())
    if match is None:
        raise ValueError(f"bad fault {spec!r}: expected KIND@T[:DURATION][,gpu=N][,count=N]")
    kind = match["kind"]
    if kind not in FAULT_KINDS:
        raise ValueError(f"bad fault {spec!r}: kind must be one of {', '.join(FAULT_KINDS)}")
    options = dict(opt.split("=") for opt in match["options"].split(",") if opt)
    unknown = set(options) - {"gpu", "count"}
    if unknown:
        raise ValueError(f"bad fault {spec!r}: unknown option(s) {', '.join(sorted(unknown))}")
    duration = float(match["duration"]) if match["duration"] else None
    if duration is not None and kind in INSTANT_KINDS:
        raise ValueError(f"bad fault {spec!r}: {kind} happens at an instant, no duration")
    if "count" in options and kind not in INSTANT_KINDS:
        raise ValueError(f"bad fault {spec!r}: count= only applies to {', '.join(INSTANT_KINDS)}")
    if kind == "silence" and "gpu" in options:
        raise ValueError(f"bad fault {spec!r}: silence affects the whole node, no gpu=")
    return Fault(
        kind=kind,
        at=float(match["at"]),
        duration=duration,
        gpu=int(options.get("gpu", 0)),
        count=int(options.get("count", 1)),
    )


@dataclass(slots=True)
class _GpuState:
    target_util: float
    util: float
    mem_used_mib: float
    temp_c: float
    ecc_errors: int = 0
    xid_errors: int = 0
    lost: bool = field(default=False)


class Simulator:
    """GpuReader that invents readings; fault times count from the first read.

    Counting from the first read rather than from construction keeps fault times true to
    the samples even when the agent is slow to start (imports, a loaded machine).
    """

    def __init__(
        self,
        *,
        gpus: int,
        faults: Iterable[Fault] = (),
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if gpus < 1:
            raise ValueError("the simulator needs at least one GPU")
        self._faults = list(faults)
        for fault in self._faults:
            if fault.kind != "silence" and not 0 <= fault.gpu < gpus:
                raise ValueError(
                    f"fault {fault.kind}@{fault.at} targets GPU {fault.gpu}, "
                    f"but the node has {gpus} GPUs"
                )
        self._rng = random.Random(seed)
        self._clock = clock
        self._start: float | None = None
        self._fired: set[int] = set()
        self._gpus = [self._new_gpu() for _ in range(gpus)]

    def _new_gpu(self) -> _GpuState:
        target = self._rng.uniform(75.0, 99.0)
        return _GpuState(
            target_util=target,
            util=target,
            mem_used_mib=self._rng.uniform(0.6, 0.9) * MEM_TOTAL_MIB,
            temp_c=self._rng.uniform(55.0, 65.0),
        )

    def read(self) -> list[Reading]:
        now = self._clock()
        if self._start is None:
            self._start = now
        t = now - self._start
        if any(f.kind == "silence" and f.active(t) for f in self._faults):
            return []
        self._fire_bursts(t)
        return [self._read_gpu(index, state, t) for index, state in enumerate(self._gpus)]

    def close(self) -> None:
        pass

    def _fire_bursts(self, t: float) -> None:
        # A burst fires at the first read at or after its time, even if a silence hid it.
        for i, fault in enumerate(self._faults):
            if fault.kind in INSTANT_KINDS and fault.at <= t and i not in self._fired:
                self._fired.add(i)
                state = self._gpus[fault.gpu]
                if fault.kind == "xid-burst":
                    state.xid_errors += fault.count
                else:
                    state.ecc_errors += fault.count

    def _gpu_fault(self, kind: str, gpu: int, t: float) -> bool:
        return any(f.kind == kind and f.gpu == gpu and f.active(t) for f in self._faults)

    def _read_gpu(self, index: int, state: _GpuState, t: float) -> Reading:
        if self._gpu_fault("gpu-lost", index, t):
            return Reading(
                gpu=index, ecc_errors=state.ecc_errors, xid_errors=state.xid_errors, missing=True
            )
        overheating = self._gpu_fault("overheat", index, t)
        # Random walk pulled back towards the job's typical load; a hot GPU throttles.
        target = 40.0 if overheating else state.target_util
        state.util += 0.3 * (target - state.util) + self._rng.gauss(0.0, 2.0)
        state.util = min(100.0, max(0.0, state.util))
        state.mem_used_mib += self._rng.gauss(0.0, 0.002 * MEM_TOTAL_MIB)
        state.mem_used_mib = min(MEM_TOTAL_MIB, max(0.0, state.mem_used_mib))
        power = IDLE_POWER_W + state.util / 100.0 * (MAX_POWER_W - IDLE_POWER_W)
        power += self._rng.gauss(0.0, 8.0)
        temp_target = OVERHEAT_TEMP_C if overheating else 30.0 + power * 0.06
        # Overheating is a cooling failure: the temperature jumps, it does not drift.
        state.temp_c = (
            temp_target if overheating else state.temp_c + 0.3 * (temp_target - state.temp_c)
        )
        return Reading(
            gpu=index,
            util=round(state.util, 1),
            mem_used_mib=int(state.mem_used_mib),
            power_w=round(max(0.0, power), 1),
            temp_c=round(state.temp_c + self._rng.gauss(0.0, 0.3), 1),
            ecc_errors=state.ecc_errors,
            xid_errors=state.xid_errors,
        )
