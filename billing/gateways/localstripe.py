"""Start and stop a loopback localstripe for the demo and the tests.

Never used in production: there STRIPE_API_BASE is empty and the SDK talks
to Stripe itself.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStripe:
    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.process: subprocess.Popen | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 20.0) -> "LocalStripe":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "billing.gateways.localstripe_server", "--port", str(self.port)],
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("localstripe exited at start")
            try:
                urllib.request.urlopen(self.api_base + "/v1/events", timeout=1)  # noqa: S310
                return self
            except urllib.error.HTTPError:
                return self  # it answers (401 without a key): up
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError("localstripe did not start")

    def configure_webhook(self, *, url: str, secret: str, name: str = "exchange") -> None:
        """Ask localstripe to POST signed events to `url` (its /_config API)."""
        request = urllib.request.Request(  # noqa: S310 - loopback only
            f"{self.api_base}/_config/webhooks/{name}",
            data=json.dumps({"url": url, "secret": secret}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=5).read()  # noqa: S310

    def flush(self) -> None:
        request = urllib.request.Request(f"{self.api_base}/_config/data", method="DELETE")  # noqa: S310
        urllib.request.urlopen(request, timeout=5).read()  # noqa: S310

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
