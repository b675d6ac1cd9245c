"""The one error type tools raise for upstream failures, and message helpers."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from fastmcp.exceptions import ToolError

MAX_DETAIL = 300


class UpstreamError(ToolError):
    """A tool error caused by the vendor API or its configuration; `status` is the HTTP status if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, log_level=logging.WARNING)
        self.status = status


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret that appears in `text`, and cut it to a readable length."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
