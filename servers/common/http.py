"""One pooled `httpx.AsyncClient` per server, with rate limiting, bounded retries and error mapping.

Vendors subclass `ApiClient` and override the hooks: `auth_headers`, `rate_limit_delay`,
`error_detail`, `missing_scope` and `unwrap`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx

from servers.common.env import base_url
from servers.common.errors import UpstreamError, redact
from servers.common.ratelimit import RateLimiters
from servers.common.retry import RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
POOL = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=60.0)


@dataclass(frozen=True)
class Call:
    """One API call as a tool describes it."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    read: bool = True
    """True for calls without side effects: only these are retried on 5xx and transport errors."""
    what: str | None = None
    """What the call is about, for a 404 message: "contact 123"."""
    scope: str | None = None
    """The scope the vendor documents for this call, named when the token lacks it."""
    buckets: tuple[str, ...] = ("default",)
    credential: str = "default"


class ApiClient:
    """Sends `Call`s to one vendor; subclasses set the class attributes and hooks."""

    vendor: ClassVar[str]
    base_env: ClassVar[str]
    default_base: ClassVar[str]
    credential_envs: ClassVar[tuple[str, ...]]

    def __init__(self, limiters: RateLimiters, policy: RetryPolicy | None = None) -> None:
        self.limiters = limiters
        self.policy = policy or RetryPolicy()
        self._client: httpx.AsyncClient | None = None

    # ---- hooks -------------------------------------------------------------------------------------
    def auth_headers(self, call: Call) -> dict[str, str]:
        """Headers that authenticate `call`; raise `UpstreamError` naming any missing env variable."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Credential values to scrub from any message."""
        return [os.environ.get(name, "") for name in self.credential_envs]

    def rate_limit_delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait after a 429, or None when waiting would not help."""
        delay = retry_after_seconds(response)
        return delay if delay is not None else self.policy.backoff(attempt)

    def error_detail(self, body: Any) -> str | None:
        """The vendor's human message from an error body."""
        return None

    def missing_scope(self, body: Any, call: Call) -> str | None:
        """The scope a 403 says is missing; defaults to the scope documented for the call."""
        return call.scope

    def unwrap(self, response: httpx.Response, body: Any, call: Call) -> Any:
        """Turn a 2xx response into the payload, or raise for a vendor error carried in a 2xx."""
        return body

    # ---- client lifecycle --------------------------------------------------------------------------
    def http(self) -> httpx.AsyncClient:
        """The pooled client, opened on first use."""
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=TIMEOUT,
                limits=POOL,
                headers={"User-Agent": "mcp-gateway/0.1", "Accept": "application/json"},
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pooled client, if open."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- sending -----------------------------------------------------------------------------------
    async def send(self, call: Call) -> Any:
        """Send `call` within the rate limit, retrying as the policy allows, and return its JSON."""
        headers = self.auth_headers(call)
        url = base_url(self.base_env, self.default_base) + call.path
        policy, waited, attempt = self.policy, 0.0, 0
        while True:
            attempt += 1
            await self.limiters.acquire(call.buckets)
            try:
                response = await self.http().request(
                    call.method, url, params=_clean(call.params), json=call.body, headers=headers
                )
            except httpx.TransportError as exc:
                delay = policy.backoff(attempt)
                if call.read and attempt < policy.max_attempts and waited + delay <= policy.max_total_wait:
                    log.warning(
                        "%s %s %s failed (%s); retry in %.2fs",
                        self.vendor,
                        call.method,
                        call.path,
                        type(exc).__name__,
                        delay,
                    )
                    waited += delay
                    self.limiters.defer(call.buckets, delay)
                    continue
                reason = type(exc).__name__
                note = "" if call.read else "; the write was not retried (check before repeating it)"
                raise UpstreamError(f"{self.vendor}: could not reach the API ({reason}){note}") from None
            status = response.status_code
            log.debug("%s %s %s -> %s", self.vendor, call.method, call.path, status)
            if status == 429:
                retry_in = self.rate_limit_delay(response, attempt)
                if (
                    retry_in is not None
                    and attempt < policy.max_rate_limit_attempts
                    and waited + retry_in <= policy.max_total_wait
                ):
                    log.warning("%s rate limited (429) on %s; retry in %.2fs", self.vendor, call.path, retry_in)
                    waited += retry_in
                    self.limiters.defer(call.buckets, retry_in)
                    continue
                hint = f"; retry after {retry_in:g}s" if retry_in is not None else ""
                raise UpstreamError(f"{self.vendor}: rate limited (429){hint}", status)
            if status in RETRYABLE_STATUSES and call.read and attempt < policy.max_attempts:
                delay = retry_after_seconds(response) or policy.backoff(attempt)
                if waited + delay <= policy.max_total_wait:
                    log.warning("%s %s %s -> %s; retry in %.2fs", self.vendor, call.method, call.path, status, delay)
                    waited += delay
                    self.limiters.defer(call.buckets, delay)
                    continue
            body = _json(response)
            if status >= 400:
                raise self.error_for(status, body, call, response.reason_phrase)
            return self.unwrap(response, body, call)

    def error_for(self, status: int, body: Any, call: Call, reason: str = "") -> UpstreamError:
        """The tool error for an HTTP error status."""
        detail = self.error_detail(body) or reason or "no detail"
        if status == 401:
            msg = f"{self.vendor}: token rejected (401), check {', '.join(self.credential_envs)}: {detail}"
        elif status == 403:
            scope = self.missing_scope(body, call)
            need = f", scope {scope} needed" if scope else ""
            msg = f"{self.vendor}: token rejected (403){need}: {detail}"
        elif status == 404:
            msg = f"{self.vendor}: not found: {call.what or call.path} ({detail})"
        elif status >= 500:
            note = "" if call.read else "; the write was not retried"
            msg = f"{self.vendor}: server error {status}{note}: {detail}"
        else:
            msg = f"{self.vendor}: request rejected ({status}): {detail}"
        return UpstreamError(redact(msg, self.secrets()), status)


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Drop unset query parameters."""
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None and v != []}


def _json(response: httpx.Response) -> Any:
    """The response body as JSON, `{}` for an empty body, or None if it is not JSON."""
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return None
