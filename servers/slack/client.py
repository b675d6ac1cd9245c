"""Slack Web API client: bearer tokens, per-method tier limits, `Retry-After`, `{"ok": false}` errors."""

from __future__ import annotations

from typing import Any

import httpx

from servers.common import ApiClient, Call, RateLimiters, RetryPolicy, UpstreamError
from servers.common.env import require_env

BOT_ENV = "SLACK_BOT_TOKEN"
USER_ENV = "SLACK_USER_TOKEN"
# Slack's per-method tiers (per workspace per app): Tier 2 20+/min, Tier 3 50+/min, Tier 4 100+/min;
# chat.postMessage allows about one message per second per channel; chat.getPermalink has a "special"
# limit, paced here like Tier 4. `history` and `replies` are conversations.history and .replies for a
# commercially distributed non-Marketplace app (SLACK_APP_DISTRIBUTION=commercial): 1 per minute each.
LIMITS = {
    "tier2": (20, 60.0),
    "tier3": (50, 60.0),
    "tier4": (100, 60.0),
    "post": (1, 1.0),
    "permalink": (100, 60.0),
    "history": (1, 60.0),
    "replies": (1, 60.0),
}
AUTH_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "not_allowed_token_type",
    }
)
NOT_FOUND_ERRORS = frozenset(
    {"channel_not_found", "user_not_found", "users_not_found", "thread_not_found", "message_not_found"}
)


class SlackError(UpstreamError):
    """A Slack `{"ok": false, "error": code}` answer."""

    def __init__(self, message: str, code: str, status: int | None = None) -> None:
        super().__init__(message, status)
        self.code = code


class SlackClient(ApiClient):
    """Calls `https://slack.com/api/<method>` (or `$SLACK_API_BASE`)."""

    vendor = "Slack"
    base_env = "SLACK_API_BASE"
    default_base = "https://slack.com/api"
    credential_envs = (BOT_ENV, USER_ENV)

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        super().__init__(RateLimiters(LIMITS), policy)

    @staticmethod
    def token_env(call: Call) -> str:
        return USER_ENV if call.credential == "user" else BOT_ENV

    def auth_headers(self, call: Call) -> dict[str, str]:
        (token,) = require_env(self.vendor, self.token_env(call))
        headers = {"Authorization": f"Bearer {token}"}
        if call.method == "POST":
            headers["Content-Type"] = "application/json; charset=utf-8"
        return headers

    def error_detail(self, body: Any) -> str | None:
        return body.get("error") if isinstance(body, dict) else None

    def unwrap(self, response: httpx.Response, body: Any, call: Call) -> Any:
        """Slack reports most errors as HTTP 200 with `ok: false`."""
        if not isinstance(body, dict):
            raise UpstreamError("Slack: the response was not JSON", response.status_code)
        if body.get("ok") is False:
            raise self.slack_error(body, call)
        return body

    def slack_error(self, body: dict[str, Any], call: Call) -> SlackError:
        code = str(body.get("error") or "unknown_error")
        env = self.token_env(call)
        if code == "missing_scope":
            needed = body.get("needed") or call.scope or "unknown"
            provided = body.get("provided")
            has = f" (token has: {provided})" if provided else ""
            message = f"Slack: token rejected, scope {needed} needed for {env}{has}"
        elif code in AUTH_ERRORS:
            message = f"Slack: token rejected ({code}), check {env}"
        elif code in NOT_FOUND_ERRORS:
            message = f"Slack: not found: {call.what or call.path} ({code})"
        else:
            notes = (body.get("response_metadata") or {}).get("messages") or []
            message = f"Slack: {call.path.lstrip('/')} failed: {code}" + (f" ({'; '.join(notes)})" if notes else "")
        return SlackError(message, code)
