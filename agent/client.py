"""The HTTP side: POST batches to {url}/api/v1/telemetry/ and classify the answer."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from agent import __version__

TELEMETRY_PATH = "/api/v1/telemetry/"
# The exchange accepts at most this many samples per request.
MAX_SAMPLES_PER_POST = 5000


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # 2xx: delete from the buffer
    REJECTED = "rejected"  # 4xx other than 401/403/429: will never be accepted, drop
    UNAUTHORIZED = "unauthorized"  # 401/403: nothing will ever be accepted, stop
    RETRY = "retry"  # 429, 5xx, network: keep buffered, try again later


@dataclass(frozen=True, slots=True)
class PostResult:
    outcome: Outcome
    accepted: int = 0
    duplicates: int = 0
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None


class TelemetryClient:
    def __init__(
        self,
        *,
        url: str,
        token: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = url.rstrip("/") + TELEMETRY_PATH
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": f"Node {token}",
                "Content-Type": "application/json",
                "User-Agent": f"exchange-agent/{__version__}",
            },
        )

    def close(self) -> None:
        self._http.close()

    def post(self, samples: Sequence[dict[str, Any]]) -> PostResult:
        if len(samples) > MAX_SAMPLES_PER_POST:
            raise ValueError(f"at most {MAX_SAMPLES_PER_POST} samples per post")
        body = json.dumps({"samples": list(samples)}, separators=(",", ":"), allow_nan=False)
        try:
            response = self._http.post(self.endpoint, content=body)
        except httpx.HTTPError as exc:
            return PostResult(Outcome.RETRY, detail=f"{type(exc).__name__}: {exc}")
        return classify(response)


def classify(response: httpx.Response) -> PostResult:
    status = response.status_code
    if 200 <= status < 300:
        payload = _json(response)
        return PostResult(
            Outcome.ACCEPTED,
            status=status,
            accepted=int(payload.get("accepted", 0)),
            duplicates=int(payload.get("duplicates", 0)),
        )
    detail = _error_text(response)
    if status == 429 or status >= 500:
        return PostResult(
            Outcome.RETRY, status=status, detail=detail, retry_after=_retry_after(response)
        )
    if status in (401, 403):
        return PostResult(Outcome.UNAUTHORIZED, status=status, detail=detail)
    return PostResult(Outcome.REJECTED, status=status, detail=detail)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _error_text(response: httpx.Response) -> str:
    payload = _json(response)
    if not payload:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    text = f"HTTP {response.status_code}: {payload.get('detail', '')}"
    if payload.get("errors"):
        text += " " + json.dumps(payload["errors"], ensure_ascii=False)[:1000]
    return text


def _retry_after(response: httpx.Response) -> float | None:
    # Only the delta-seconds form: an exchange behind a proxy sends that, not HTTP dates.
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
