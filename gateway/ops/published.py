"""What backends publish about themselves (`"statusTool"` in a server entry): the figures the gateway polls
from each such backend, keeps for `/health` and `/status`, and exports to Prometheus.

A backend with `"statusTool": "TOOL"` is asked `TOOL` with no arguments every `gateway.status_interval`
seconds over its pooled session (the caller injects that call: this module knows no backend). Its answer is
a JSON object (the `structuredContent`, else the first text block); the gateway keeps:
- every scalar at any depth, named by its dotted path (`{"l3": {"outbox_pending": 3}}` is
  `l3.outbox_pending`): numbers and booleans are exported as `mcp_gateway_backend_status{backend, figure}`,
  strings are shown on `/health` and `/status` only; lists and nulls are left out;
- `problems`, a list of strings: the backend's own reasons it is not well (e.g. writes it could not store);
  any problem makes `/health` say `degraded`, with the reasons under that backend.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("mcp_gateway.published")

Figure = float | int | bool | str
PROBLEMS = "problems"
MAX_FIGURES = 200  # per backend: what a status document can add to /metrics is bounded
MAX_TEXT = 300  # characters of a string figure or a problem


def figures(document: dict[str, Any], prefix: str = "") -> dict[str, Figure]:
    """The scalars of `document` by dotted path (numbers, booleans, strings; not `problems`)."""
    out: dict[str, Figure] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if not prefix and key == PROBLEMS:
            continue
        if isinstance(value, dict):
            out.update(figures(value, name + "."))
        elif isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
            out[name] = value[:MAX_TEXT] if isinstance(value, str) else value
    return out


def problems(document: dict[str, Any]) -> list[str]:
    listed = document.get(PROBLEMS)
    if not isinstance(listed, list):
        return []
    return [str(item)[:MAX_TEXT] for item in listed if isinstance(item, str) and item.strip()]


def document_of(result: dict[str, Any]) -> dict[str, Any]:
    """The status document in a `CallToolResult`; ValueError when there is none (or the tool failed)."""
    texts = [block.get("text", "") for block in result.get("content") or () if isinstance(block, dict)]
    if result.get("isError"):
        raise ValueError(f"the status tool failed: {' '.join(texts)[:MAX_TEXT]}")
    structured = result.get("structuredContent")
    if isinstance(structured, dict):
        return structured
    for text in texts:
        try:
            parsed = json.loads(text)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            return parsed
    raise ValueError("the status tool answered no JSON object")


@dataclass
class Published:
    """One backend's last answer."""

    figures: dict[str, Figure] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    at: float | None = None  # time.time() of the last good answer
    error: str | None = None  # why the last poll failed, if it did

    def health(self, now: float) -> dict[str, Any]:
        return {
            "figures": dict(self.figures),
            "problems": list(self.problems),
            "age_s": round(now - self.at, 3) if self.at is not None else None,
            "error": self.error,
        }


class PublishedFigures:
    """Every polled backend's `Published`, by backend name."""

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.by_backend: dict[str, Published] = {}

    def record(self, backend: str, result: dict[str, Any]) -> None:
        """Keep a status tool's result (a `CallToolResult`); a result without a document is an error."""
        entry = self.by_backend.setdefault(backend, Published())
        try:
            document = document_of(result)
        except ValueError as error:
            self.failed(backend, str(error))
            return
        found = figures(document)
        if len(found) > MAX_FIGURES:
            found = dict(list(found.items())[:MAX_FIGURES])
        entry.figures, entry.problems, entry.at, entry.error = found, problems(document), time.time(), None

    def failed(self, backend: str, error: str) -> None:
        """The poll failed: the last figures stay (their age shows it), the error is shown beside them."""
        entry = self.by_backend.setdefault(backend, Published())
        if entry.error != error:
            logger.warning("backend %s: its status tool failed: %s", backend, error)
        entry.error = error[:MAX_TEXT]

    def forget(self, backend: str) -> None:
        self.by_backend.pop(backend, None)

    def health(self, backend: str) -> dict[str, Any] | None:
        entry = self.by_backend.get(backend)
        return entry.health(time.time()) if entry is not None else None

    async def poll(
        self, backend: str, fetch: Callable[[], Awaitable[dict[str, Any]]], is_up: Callable[[], bool]
    ) -> None:
        """Ask `fetch` (the status tool's call) every `interval` seconds while `is_up()`, until cancelled."""
        while True:
            if is_up():
                try:
                    with anyio.fail_after(self.timeout):
                        result = await fetch()
                except Exception as error:
                    self.failed(backend, str(error) or type(error).__name__)
                else:
                    self.record(backend, result)
            await anyio.sleep(self.interval)

    def collector(self) -> Collector:
        return _Collector(self)


class _Collector(Collector):
    """The published figures as metric families, built when `/metrics` is scraped."""

    def __init__(self, published: PublishedFigures) -> None:
        self.published = published

    def collect(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "mcp_gateway_backend_status",
            "A figure the backend publishes about itself (statusTool), by dotted name",
            labels=["backend", "figure"],
        )
        count = GaugeMetricFamily(
            "mcp_gateway_backend_problems", "Problems the backend reports about itself", labels=["backend"]
        )
        age = GaugeMetricFamily(
            "mcp_gateway_backend_status_age_seconds",
            "Seconds since the backend's figures were read",
            labels=["backend"],
        )
        now = time.time()
        for backend, entry in self.published.by_backend.items():
            if entry.at is None:
                continue
            for name, value in entry.figures.items():
                if not isinstance(value, str):
                    status.add_metric([backend, name], float(value))
            count.add_metric([backend], len(entry.problems))
            age.add_metric([backend], now - entry.at)
        yield from (status, count, age)
