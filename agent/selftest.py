"""The node self-test: what the exchange verifies a node by.

On a real node: NVML gives each GPU's name and memory; a short compute burst
(a bfloat16 matrix product, a few seconds) measures dense TFLOPS and a
device-to-device copy measures memory bandwidth, through PyTorch when it is
installed (the agent itself does not depend on it; without it only memory is
measured and the exchange will not verify the node). Under `--simulate` the
figures are those of the simulated card (80 GB, ~75 % of 989 TFLOPS), scaled
by `--sim-speed` so a slow or fake card can be played.

The report goes to POST {url}/api/v1/telemetry/self-test/ with the node token.
Each figure is the worst GPU's: a node is as good as its weakest card."""

from __future__ import annotations

import contextlib
import importlib
import time
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import httpx

from agent import __version__
from agent.nvml import NvmlUnavailable, load_nvml

SELF_TEST_PATH = "/api/v1/telemetry/self-test/"
SIM_MEMORY_GB = 80.0
SIM_TFLOPS = 742.0  # 75 % of an H800's 989.4 dense BF16 peak: what a short burst reaches
SIM_BANDWIDTH_GB_S = 2900.0


@dataclass(frozen=True)
class SelfTestReport:
    gpus_seen: int
    gpu_name: str
    memory_gb: float
    bandwidth_gb_s: float | None
    tflops: float | None
    simulated: bool

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["memory_gb"] = f"{self.memory_gb:.2f}"
        for key in ("bandwidth_gb_s", "tflops"):
            value = body[key]
            body[key] = None if value is None else f"{value:.1f}"
        return body


def simulated_self_test(*, gpus: int, speed: float = 1.0) -> SelfTestReport:
    return SelfTestReport(
        gpus_seen=gpus,
        gpu_name="Simulated 80GB GPU",
        memory_gb=SIM_MEMORY_GB,
        bandwidth_gb_s=round(SIM_BANDWIDTH_GB_S * speed, 1),
        tflops=round(SIM_TFLOPS * speed, 1),
        simulated=True,
    )


def _torch() -> ModuleType | None:
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _burst(torch: ModuleType, index: int, seconds: float) -> tuple[float, float]:
    """(dense BF16 TFLOPS, memory bandwidth GB/s) of one GPU over a short burst."""
    device = torch.device(f"cuda:{index}")
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    torch.matmul(a, b)  # warm-up
    torch.cuda.synchronize(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.matmul(a, b)
        runs += 1
        torch.cuda.synchronize(device)
    tflops = 2 * n**3 * runs / (time.perf_counter() - start) / 1e12
    size = 1 << 30
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize(device)
    copies, start = 10, time.perf_counter()
    for _ in range(copies):
        dst.copy_(src)
    torch.cuda.synchronize(device)
    bandwidth = 2 * size * copies / (time.perf_counter() - start) / 1e9  # read + write
    return tflops, bandwidth


def nvml_self_test(*, seconds: float = 3.0, nvml: ModuleType | None = None) -> SelfTestReport:
    nvml = nvml if nvml is not None else load_nvml()
    try:
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        names = [nvml.nvmlDeviceGetName(h) for h in handles]
        memory = [nvml.nvmlDeviceGetMemoryInfo(h).total / 1e9 for h in handles]
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):  # shutting down after a failed init
            nvml.nvmlShutdown()
    torch = _torch()
    tflops = bandwidth = None
    if torch is not None and count:
        figures = [_burst(torch, i, seconds) for i in range(count)]
        tflops = min(f[0] for f in figures)
        bandwidth = min(f[1] for f in figures)
    name = names[0] if names else ""
    return SelfTestReport(
        gpus_seen=count,
        gpu_name=name.decode() if isinstance(name, bytes) else str(name),
        memory_gb=min(memory, default=0.0),
        bandwidth_gb_s=bandwidth,
        tflops=tflops,
        simulated=False,
    )


def self_test_post(
    *,
    url: str,
    token: str,
    report: SelfTestReport,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST the report; returns (HTTP status, the exchange's JSON answer)."""
    with httpx.Client(timeout=timeout, transport=transport) as http:
        response = http.post(
            url.rstrip("/") + SELF_TEST_PATH,
            json=report.as_json(),
            headers={
                "Authorization": f"Node {token}",
                "User-Agent": f"exchange-agent/{__version__}",
            },
        )
    try:
        answer = response.json()
    except ValueError:
        answer = {"detail": response.text[:200]}
    return response.status_code, answer
