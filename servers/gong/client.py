"""Gong REST client: Basic auth from the access key pair, 3 calls/s, `Retry-After` on 429."""

from __future__ import annotations

import base64
from typing import Any

from servers.common import ApiClient, Call, RateLimiters, RetryPolicy, UpstreamError
from servers.common.env import require_env

KEY_ENV = "GONG_ACCESS_KEY"
SECRET_ENV = "GONG_ACCESS_KEY_SECRET"
# Gong allows 3 API calls per second (and 10,000 per day) per company by default.
LIMITS = {"default": (3, 1.0)}


class GongClient(ApiClient):
    """Calls `https://api.gong.io` (or `$GONG_API_BASE`, e.g. a customer's own API host)."""

    vendor = "Gong"
    base_env = "GONG_API_BASE"
    default_base = "https://api.gong.io"
    credential_envs = (KEY_ENV, SECRET_ENV)

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        super().__init__(RateLimiters(LIMITS), policy)

    def auth_headers(self, call: Call) -> dict[str, str]:
        key, secret = require_env(self.vendor, KEY_ENV, SECRET_ENV)
        token = base64.b64encode(f"{key}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def secrets(self) -> list[str]:
        values = super().secrets()
        if all(values):
            values.append(base64.b64encode(":".join(values).encode()).decode())
        return values

    def error_detail(self, body: Any) -> str | None:
        if isinstance(body, dict) and body.get("errors"):
            return "; ".join(str(e) for e in body["errors"])
        return None


async def send_listing(api: GongClient, call: Call) -> dict[str, Any]:
    """Send a list call; Gong answers 404 when no record matches, which is an empty page here."""
    try:
        return await api.send(call)
    except UpstreamError as exc:
        if exc.status == 404:
            return {}
        raise


def next_cursor(data: dict[str, Any]) -> str | None:
    """Gong sends `records.cursor` only while more pages exist."""
    return (data.get("records") or {}).get("cursor") or None
