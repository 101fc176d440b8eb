"""Where the client finds the exchange and its token."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("EXCHANGE_CONFIG"):
        return Path(os.environ["EXCHANGE_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "exchange" / "config.json"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None


def settings_load(*, url: str | None, token: str | None, path: Path) -> Settings:
    """Flags, then the environment, then the config file."""
    stored: dict = {}
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SystemExit(f"exchange: cannot read {path}: {error}") from error
    return Settings(
        url=(url or os.environ.get("EXCHANGE_URL") or stored.get("url") or DEFAULT_URL).rstrip("/"),
        token=token or os.environ.get("EXCHANGE_TOKEN") or stored.get("token"),
    )


def settings_save(*, path: Path, url: str, token: str) -> None:
    """Write the config file readable by its owner only: it holds a secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps({"url": url, "token": token}, indent=2) + "\n", encoding="utf-8")
