"""Fixtures for the node agent's tests: a fake NVML module and a fake exchange server.

The agent is standalone, so nothing here touches Django.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pynvml  # the real module: importing it does not load the driver
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_FIELDS = {
    "seq": int,
    "ts": float,
    "gpu": int,
    "util": float,
    "mem_used_mib": int,
    "power_w": float,
    "temp_c": float,
    "ecc_errors": int,
    "xid_errors": int,
    "missing": bool,
}


# -- fake NVML -------------------------------------------------------------------------------


@dataclass
class FakeGpu:
    util: int = 50
    mem_used_bytes: int = 40 * 1024 * 1024 * 1024
    power_mw: int = 350_000
    temp_c: int = 60
    ecc_volatile: int = 0
    lost: bool = False
    unsupported: set[str] = field(default_factory=set)


@dataclass
class FakeEvent:
    device: Any
    eventType: int  # noqa: N815 - NVML's field name
    eventData: int  # noqa: N815


@dataclass(frozen=True)
class FakeHandle:
    index: int


class FakeNvml(types.ModuleType):
    """Enough of pynvml for NvmlReader, with the real error classes and constants."""

    def __init__(self, gpus: list[FakeGpu], *, events_supported: bool = True) -> None:
        super().__init__("pynvml")
        for name in dir(pynvml):
            if name.startswith(("NVML_", "NVMLError", "nvmlEventType")):
                setattr(self, name, getattr(pynvml, name))
        self.gpus = gpus
        self.events_supported = events_supported
        self.pending_events: list[FakeEvent] = []
        self.registered: set[int] = set()
        self.shut_down = False

    def _error(self, code: int) -> pynvml.NVMLError:
        return pynvml.NVMLError(code)

    def _gpu(self, handle: FakeHandle, what: str) -> FakeGpu:
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise self._error(pynvml.NVML_ERROR_GPU_IS_LOST)
        if what in gpu.unsupported:
            raise self._error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's names
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:  # noqa: N802
        if self.gpus[index].lost:
            raise self._error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return FakeHandle(index)

    def nvmlDeviceGetIndex(self, handle: FakeHandle) -> int:  # noqa: N802
        return handle.index

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> Any:  # noqa: N802
        return types.SimpleNamespace(gpu=self._gpu(handle, "util").util, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle) -> Any:  # noqa: N802
        used = self._gpu(handle, "memory").mem_used_bytes
        return types.SimpleNamespace(used=used, total=80 * 1024**3, free=80 * 1024**3 - used)

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:  # noqa: N802
        return self._gpu(handle, "power").power_mw

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:  # noqa: N802
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu(handle, "temperature").temp_c

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeHandle, error_type: int, counter: int) -> int:  # noqa: N802
        assert error_type == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        assert counter == pynvml.NVML_VOLATILE_ECC
        return self._gpu(handle, "ecc").ecc_volatile

    def nvmlEventSetCreate(self) -> object:  # noqa: N802
        return object()

    def nvmlDeviceRegisterEvents(self, handle: FakeHandle, types_: int, event_set: object) -> None:  # noqa: N802
        if not self.events_supported:
            raise self._error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        assert types_ & pynvml.nvmlEventTypeXidCriticalError
        self.registered.add(handle.index)

    def nvmlEventSetWait(self, event_set: object, timeout_ms: int) -> FakeEvent:  # noqa: N802
        assert timeout_ms == 0, "the agent must never block on events"
        if not self.pending_events:
            raise self._error(pynvml.NVML_ERROR_TIMEOUT)
        return self.pending_events.pop(0)

    def nvmlEventSetFree(self, event_set: object) -> None:  # noqa: N802
        pass

    def xid(self, index: int, code: int = 79) -> None:
        self.pending_events.append(
            FakeEvent(FakeHandle(index), pynvml.nvmlEventTypeXidCriticalError, code)
        )


@pytest.fixture
def fake_nvml() -> Callable[..., FakeNvml]:
    def make(gpu_count: int = 2, **kwargs: Any) -> FakeNvml:
        return FakeNvml([FakeGpu() for _ in range(gpu_count)], **kwargs)

    return make


# -- fake exchange ---------------------------------------------------------------------------


@dataclass
class ExchangeRecord:
    """What the fake exchange saw; shared across restarts, like the real database."""

    token: str
    stored: dict[int, dict[str, Any]] = field(default_factory=dict)
    first_arrivals: list[int] = field(default_factory=list)
    requests: list[list[int]] = field(default_factory=list)
    # Statuses to answer instead of 200, one per request, consumed in order.
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connections: set[socket.socket] = field(default_factory=set)

    def seqs(self) -> list[int]:
        with self.lock:
            return sorted(self.stored)


def _validate(body: Any) -> dict[str, Any]:
    """The contract, checked strictly so that a drift in the agent's output fails here."""
    if (
        not isinstance(body, dict)
        or set(body) != {"samples"}
        or not isinstance(body["samples"], list)
    ):
        return {"body": ['expected {"samples": [...]}']}
    if len(body["samples"]) > 5000:
        return {"samples": ["at most 5000 samples per request"]}
    errors: dict[str, Any] = {}
    for i, sample in enumerate(body["samples"]):
        if not isinstance(sample, dict) or set(sample) != set(SAMPLE_FIELDS):
            errors[str(i)] = ["wrong fields"]
            continue
        for name, kind in SAMPLE_FIELDS.items():
            value = sample[name]
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if kind is float:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok:
                errors.setdefault(str(i), []).append(f"{name}: expected {kind.__name__}")
    return errors


def _make_handler(record: ExchangeRecord) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like a real server behind a proxy

        def setup(self) -> None:
            super().setup()
            with record.lock:
                record.connections.add(self.connection)

        def finish(self) -> None:
            with record.lock:
                record.connections.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status in (429, 503):
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/api/v1/telemetry/":
                self._answer(404, {"detail": "not found"})
                return
            if self.headers.get("Authorization") != f"Node {record.token}":
                self._answer(401, {"detail": "invalid node token"})
                return
            try:
                payload = json.loads(body)
            except ValueError:
                self._answer(400, {"detail": "invalid JSON", "errors": {}})
                return
            errors = _validate(payload)
            if errors:
                self._answer(400, {"detail": "invalid samples", "errors": errors})
                return
            samples = payload["samples"]
            with record.lock:
                record.requests.append([s["seq"] for s in samples])
                status = record.script.pop(0) if record.script else 200
                if status != 200:
                    self._answer(status, {"detail": f"scripted {status}", "errors": {}})
                    return
                accepted = 0
                for sample in samples:
                    if sample["seq"] not in record.stored:
                        record.stored[sample["seq"]] = sample
                        record.first_arrivals.append(sample["seq"])
                        accepted += 1
            self._answer(200, {"accepted": accepted, "duplicates": len(samples) - accepted})

    return Handler


class FakeExchange:
    """The telemetry endpoint of the exchange, idempotent on seq, restartable on one port."""

    def __init__(self, token: str = "12.TestToken") -> None:  # noqa: S107 - a test token
        self.record = ExchangeRecord(token=token)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _make_handler(self.record))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        # Drop kept-alive connections too, as a crashed server would; otherwise
        # server_close() waits for the agent to hang up first.
        with self.record.lock:
            for connection in self.record.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join()
        self._server = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    server = FakeExchange()
    server.start()
    yield server
    if server._server is not None:
        server.stop()


# -- running the agent -----------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "") -> None:
    """Poll with a deadline: never a fixed sleep that is too short on a slow machine."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.02)


@dataclass
class AgentRunner:
    state_dir: Path
    log_path: Path
    url: str
    token: str

    def args(self, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "agent",
            "--url", self.url, "--state-dir", str(self.state_dir),
            "--simulate", "--gpus", "2", "--seed", "7", "--timeout", "2",
            *extra,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {"EXCHANGE_NODE_TOKEN": self.token, "PATH": "/usr/bin:/bin"}

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        return subprocess.Popen(
            self.args(*extra), cwd=REPO_ROOT, env=self.env(), stdout=log, stderr=log
        )

    def run(self, *extra: str, timeout: float = 15.0) -> int:
        with self.log_path.open("ab") as log:
            return subprocess.run(
                self.args(*extra), cwd=REPO_ROOT, env=self.env(), stdout=log, stderr=log,
                timeout=timeout, check=False,
            ).returncode  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def buffered(self) -> int:
        """Samples in the agent's buffer; 0 before the agent has created it."""
        path = self.state_dir / "buffer.sqlite3"
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                return int(db.execute("SELECT count(*) FROM sample").fetchone()[0])
            finally:
                db.close()
        except sqlite3.OperationalError:
            return 0


@pytest.fixture
def agent_runner(tmp_path: Path, exchange: FakeExchange) -> AgentRunner:
    return AgentRunner(
        state_dir=tmp_path / "state",
        log_path=tmp_path / "agent.log",
        url=exchange.url,
        token=exchange.record.token,
    )


@pytest.fixture
def wait() -> Callable[..., None]:
    return wait_until
