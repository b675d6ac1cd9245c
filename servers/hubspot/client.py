"""HubSpot REST client: bearer auth, documented rate limits, `X-HubSpot-RateLimit-*` backoff, errors."""

from __future__ import annotations

from typing import Any

import httpx

from servers.common import ApiClient, Call, RateLimiters, RetryPolicy
from servers.common.env import require_env
from servers.common.retry import retry_after_seconds

TOKEN_ENV = "HUBSPOT_ACCESS_TOKEN"
# Private apps get 100 requests per 10 s on the lowest tier (190 on higher tiers); the search
# endpoints allow about 5 requests per second per account, so stay at 4.
LIMITS = {"default": (100, 10.0), "search": (4, 1.0)}
SEARCH = ("default", "search")


class HubSpotClient(ApiClient):
    """Calls `https://api.hubapi.com` (or `$HUBSPOT_API_BASE`)."""

    vendor = "HubSpot"
    base_env = "HUBSPOT_API_BASE"
    default_base = "https://api.hubapi.com"
    credential_envs = (TOKEN_ENV,)

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        super().__init__(RateLimiters(LIMITS), policy)

    def auth_headers(self, call: Call) -> dict[str, str]:
        (token,) = require_env(self.vendor, TOKEN_ENV)
        return {"Authorization": f"Bearer {token}"}

    def rate_limit_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """`Retry-After` if sent, else the `X-HubSpot-RateLimit-*` headers; no wait on a spent daily quota."""
        explicit = retry_after_seconds(response)
        if explicit is not None:
            return explicit
        headers = response.headers
        policy = _policy_name(response)
        if policy == "DAILY" or headers.get("X-HubSpot-RateLimit-Daily-Remaining") == "0":
            return None
        if headers.get("X-HubSpot-RateLimit-Secondly-Remaining") == "0":
            return 1.0
        interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        if headers.get("X-HubSpot-RateLimit-Remaining") == "0" and interval and interval.isdigit():
            return int(interval) / 1000
        return self.policy.backoff(attempt)

    def error_detail(self, body: Any) -> str | None:
        if isinstance(body, dict) and body.get("message"):
            category = body.get("category")
            return f"{body['message']}" + (f" [{category}]" if category else "")
        return None

    def missing_scope(self, body: Any, call: Call) -> str | None:
        """HubSpot lists required scopes in `errors[].context` (or `context`) of a 403 body."""
        if isinstance(body, dict):
            contexts = [body.get("context")] + [e.get("context") for e in body.get("errors") or [] if e]
            for ctx in contexts:
                if not isinstance(ctx, dict):
                    continue
                for key in ("requiredGranularScopes", "requiredScopes", "missingScopes"):
                    if ctx.get(key):
                        return " or ".join(str(s) for s in ctx[key])
        return call.scope


def _policy_name(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("policyName") if isinstance(body, dict) else None
