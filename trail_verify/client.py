"""The exchange's trail API over HTTP (httpx). Answers are returned as they
came: nothing here is trusted, everything is checked by the caller."""

from __future__ import annotations

from typing import Any

import httpx


class ExchangeError(RuntimeError):
    """The exchange could not be asked, or refused (status and message)."""


class TrailClient:
    def __init__(self, server: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Accept": "application/json", "User-Agent": "exchange-verify"}
        if token:
            headers["Authorization"] = f"Token {token}"
        self.http = httpx.Client(
            base_url=server.rstrip("/") + "/api/v1/", headers=headers, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, **params: Any) -> Any:
        try:
            response = self.http.get(
                path, params={k: v for k, v in params.items() if v is not None}
            )
        except httpx.HTTPError as exc:
            raise ExchangeError(f"GET {path}: {exc}") from exc
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", "")
            except ValueError:
                detail = response.text[:200]
            raise ExchangeError(f"GET {path}: HTTP {response.status_code}: {detail}")
        return response.json()

    def public_key(self) -> dict[str, Any]:
        return self._get("trail/public-key/")

    def tree_head(self) -> dict[str, Any]:
        return self._get("trail/tree-head/")

    def consistency(self, first: int, second: int) -> list[bytes]:
        body = self._get("trail/consistency/", first=first, second=second)
        return [bytes.fromhex(h) for h in body["proof"]]

    def inclusion(
        self,
        *,
        tree_size: int,
        index: int | None = None,
        kind: str | None = None,
        record_id: int | None = None,
    ) -> dict[str, Any]:
        return self._get(
            "trail/inclusion/", index=index, kind=kind, record_id=record_id, tree_size=tree_size
        )

    def leaves(self, start: int, end: int) -> list[dict[str, Any]]:
        return self._get("trail/leaves/", start=start, end=end)

    def claim_report(self, claim_id: int) -> dict[str, Any]:
        return self._get(f"claims/{claim_id}/audit-report/")
