"""Read credentials and base URLs from the environment at call time.

A call that fails only because credentials are missing is logged as that: one warning naming the vendor
and the unset variables (`require_env`), and FastMCP's own `Error calling tool` line for it is demoted to
debug (`MissingCredentials.log_level`), so an unconfigured vendor is neither an error nor a traceback.
"""

from __future__ import annotations

import logging
import os

from servers.common.errors import UpstreamError

log = logging.getLogger("servers.credentials")


class MissingCredentials(UpstreamError):
    """A tool error: the vendor's credentials are not set (`names`, the unset variables)."""

    def __init__(self, vendor: str, names: list[str]) -> None:
        super().__init__(f"{vendor} is not configured: set the environment variable(s) {', '.join(names)}")
        self.log_level = logging.DEBUG  # require_env has said it, in one line
        self.vendor, self.names = vendor, names


def require_env(vendor: str, *names: str) -> tuple[str, ...]:
    """Return the values of `names`, or log one warning and raise a tool error naming every one unset."""
    values = tuple(os.environ.get(name, "").strip() for name in names)
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        log.warning("%s call refused: missing credentials: %s not set", vendor, ", ".join(missing))
        raise MissingCredentials(vendor, missing)
    return values


def base_url(env_name: str, default: str) -> str:
    """The API base URL: `env_name` if set, else the vendor's default; no trailing slash."""
    return (os.environ.get(env_name, "").strip() or default).rstrip("/")
