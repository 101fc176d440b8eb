"""What a GPU reader produces, and the wire format of one telemetry sample."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Reading:
    """One GPU at one instant, before the agent stamps it with seq and ts.

    ecc_errors and xid_errors are cumulative since the agent started: the exchange diffs
    consecutive values, so a counter that goes back to 0 means the agent restarted.
    """

    gpu: int
    util: float = 0.0
    mem_used_mib: int = 0
    power_w: float = 0.0
    temp_c: float = 0.0
    ecc_errors: int = 0
    xid_errors: int = 0
    missing: bool = False

    def to_sample(self, *, seq: int, ts: float) -> dict[str, Any]:
        return {"seq": seq, "ts": round(ts, 3), **asdict(self)}


class GpuReader(Protocol):
    """A source of readings: NVML on a real node, the simulator elsewhere."""

    def read(self) -> list[Reading]:
        """Read every GPU once; an empty list means the node has nothing to report."""
        ...

    def close(self) -> None: ...
