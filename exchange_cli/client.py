"""HTTP calls to the exchange, each printed to stderr with `--explain`."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import httpx

from exchange_cli import __version__

API = "/api/v1"


class ApiError(Exception):
    """A 4xx/5xx answer: the exchange's `detail` and per-field `errors`."""

    def __init__(self, status: int, detail: str, errors: dict[str, Any]) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors

    def __str__(self) -> str:
        lines = [f"HTTP {self.status}: {self.detail}"]
        for field, messages in self.errors.items():
            text = "; ".join(messages) if isinstance(messages, list) else json.dumps(messages)
            lines.append(f"  {field}: {text}")
        return "\n".join(lines)


class Exchange:
    def __init__(
        self,
        *,
        url: str,
        token: str | None,
        explain: bool = False,
        out: TextIO | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": f"exchange-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self.url = url
        self.explain = explain
        self._out = out or sys.stderr
        self._http = httpx.Client(
            base_url=url + API, headers=headers, timeout=30.0, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        params = {k: v for k, v in (params or {}).items() if v not in (None, "", [], False)}
        request = self._http.build_request(
            method, path, params=params or None, json=body, headers=headers
        )
        if self.explain:
            self._show_request(request, body)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as error:
            raise SystemExit(f"exchange: cannot reach {self.url}: {error}") from error
        if self.explain:
            print(f"< {response.status_code} {response.reason_phrase}", file=self._out)
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = {}
            raise ApiError(
                response.status_code,
                str(payload.get("detail") or response.reason_phrase),
                payload.get("errors") or {},
            )
        return response.json() if response.content else None

    def _show_request(self, request: httpx.Request, body: dict[str, Any] | None) -> None:
        print(f"> {request.method} {request.url}", file=self._out)
        for name in ("Authorization", "Idempotency-Key"):
            if name in request.headers:
                value = request.headers[name]
                shown = "Token ****" + value[-4:] if name == "Authorization" else value
                print(f"> {name}: {shown}", file=self._out)
        if body is not None:
            print(f"> {json.dumps(body, ensure_ascii=False, sort_keys=True)}", file=self._out)

    def pages(self, path: str, *, params: dict[str, Any] | None = None, limit: int = 200) -> list:
        """The rows of a paginated list, following `next` up to `limit` rows."""
        rows: list = []
        page = 1
        while len(rows) < limit:
            answer = self.request("GET", path, params={**(params or {}), "page": page})
            rows.extend(answer["results"])
            if not answer.get("next"):
                break
            page += 1
        return rows[:limit]
