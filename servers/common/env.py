"""Read credentials and base URLs from the environment at call time."""

from __future__ import annotations

import os

from servers.common.errors import UpstreamError


def require_env(vendor: str, *names: str) -> tuple[str, ...]:
    """Return the values of `names`, or raise a tool error naming every one that is unset."""
    values = tuple(os.environ.get(name, "").strip() for name in names)
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        names_list = ", ".join(missing)
        raise UpstreamError(f"{vendor} is not configured: set the environment variable(s) {names_list}")
    return values


def base_url(env_name: str, default: str) -> str:
    """The API base URL: `env_name` if set, else the vendor's default; no trailing slash."""
    return (os.environ.get(env_name, "").strip() or default).rstrip("/")
