"""Plumbing shared by the SaaS integration servers: HTTP client, retries, rate limits, paging, errors."""

from servers.common.errors import UpstreamError
from servers.common.http import ApiClient, Call
from servers.common.paging import Page, follow_pages
from servers.common.ratelimit import RateLimiters, SlidingWindowLimiter
from servers.common.retry import RetryPolicy

__all__ = [
    "ApiClient",
    "Call",
    "Page",
    "RateLimiters",
    "RetryPolicy",
    "SlidingWindowLimiter",
    "UpstreamError",
    "follow_pages",
]
