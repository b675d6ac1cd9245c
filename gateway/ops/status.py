"""The status page for people (`GET /status`): server-rendered HTML that refreshes itself, and the ring of
recent tool calls it shows (tool, client, outcome, ms; never arguments).

What a viewer sees is decided by `visible` (the caller's allow list, from the transport): backends with no
visible tool, their breakers, the figures they publish (statusTool) and calls of tools it may not see are left
out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from typing import Any

# Outcomes that are not errors (`input_required`: the backend asks the client first, see gateway.backends.rounds).
REFUSALS = frozenset({"ok", "input_required", "denied", "unknown_tool", "invalid_arguments", "rate_limited"})
WINDOW_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Call:
    at: float  # time.time()
    tool: str
    client: str | None
    outcome: str
    ms: float


class CallLog:
    """The last `size` tool calls, newest last."""

    def __init__(self, size: int = 500) -> None:
        self.calls: deque[Call] = deque(maxlen=size)

    def record(self, tool: str, client: str | None, outcome: str, began: float) -> None:
        """One finished call; `began` is its `time.perf_counter()` start."""
        self.calls.append(Call(time.time(), tool, client, outcome, (time.perf_counter() - began) * 1000))

    def recent(self, visible: Callable[[str], bool], limit: int = 25) -> list[Call]:
        return [call for call in reversed(self.calls) if visible(call.tool)][:limit]

    def rates(self, visible: Callable[[str], bool], now: float | None = None) -> dict[str, tuple[float, float]]:
        """`{tool: (calls/s, error ratio)}` over the last `WINDOW_SECONDS` (of the calls still in the ring)."""
        since = (now or time.time()) - WINDOW_SECONDS
        counts: dict[str, list[int]] = {}
        for call in self.calls:
            if call.at >= since and visible(call.tool):
                count = counts.setdefault(call.tool, [0, 0])
                count[0] += 1
                count[1] += call.outcome not in REFUSALS
        return {tool: (n / WINDOW_SECONDS, errors / n) for tool, (n, errors) in sorted(counts.items())}


def _table(head: Iterable[str], rows: Iterable[Iterable[Any]], empty: str) -> str:
    rows = list(rows)
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    header = "".join(f"<th>{escape(str(cell))}</th>" for cell in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _published(backend: str, published: dict[str, Any]) -> str:
    """One backend's published figures (its statusTool's answer, `gateway.ops.published`) and problems."""
    age = published.get("age_s")
    note = f"read {age:.0f} s ago" if age is not None else "not read yet"
    if published.get("error"):
        note += f"; last poll failed: {published['error']}"
    problems = "".join(f"<li>{escape(problem)}</li>" for problem in published.get("problems") or ())
    rows = [(name, _value(value)) for name, value in sorted(published.get("figures", {}).items())]
    return (
        f'<section class="published" data-backend="{escape(backend)}"><h3>{escape(backend)}</h3>'
        f"<p>{escape(note)}</p>"
        + (f'<ul class="problems">{problems}</ul>' if problems else "")
        + _table(["figure", "value"], rows, "no figures")
        + "</section>"
    )


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


STYLE = (
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.1em;"
    "margin-top:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;"
    "text-align:left}th{background:#f3f3f3}h3{font-size:1em}.problems{color:#b00}.up{color:#070}.down,.starting{color:#b00}.empty{color:#777}"
)


def render(
    health: dict[str, Any],
    tools: dict[str, list[str]],
    log: CallLog,
    visible: Callable[[str], bool],
    refresh_seconds: int = 5,
) -> str:
    """The page: `health` is the hub's `/health` document, `tools` each backend's exposed tool names."""
    shown = {name: [tool for tool in tools.get(name, []) if visible(tool)] for name in health["backends"]}
    shown = {name: names for name, names in shown.items() if names or not tools.get(name)}
    backends = _table(
        ["backend", "state", "transport", "tools", "restarts", "last error", "reasons"],
        [
            (
                name,
                doc["state"],
                doc["transport"],
                ", ".join(shown[name]) or "-",
                doc["restarts"],
                doc["last_error"] or "",
                "; ".join(doc.get("reasons") or ()),
            )
            for name, doc in health["backends"].items()
            if name in shown
        ],
        "no backends",
    )
    published = (
        "".join(
            _published(name, doc["published"])
            for name, doc in health["backends"].items()
            if name in shown and "published" in doc
        )
        or '<p class="empty">no backend publishes figures (statusTool)</p>'
    )
    breakers = _table(
        ["breaker", "state", "failures", "opened", "rejected"],
        [
            (name, doc["state"], doc["failures"], doc["opened"], doc["rejected"])
            for name, doc in health.get("breakers", {}).items()
            if name.split(".", 1)[0] in shown
        ],
        "no breakers",
    )
    cache = health.get("cache", {})
    lookups = cache.get("hits", 0) + cache.get("l2_hits", 0) + cache.get("misses", 0)
    ratio = f"{(cache.get('hits', 0) + cache.get('l2_hits', 0)) / lookups:.1%}" if lookups else "no lookups yet"
    rates = _table(
        ["tool", "calls/s", "error rate"],
        [(tool, f"{per_s:.3f}", f"{errors:.1%}") for tool, (per_s, errors) in log.rates(visible).items()],
        f"no calls in the last {WINDOW_SECONDS // 60} minutes",
    )
    recent = _table(
        ["time (UTC)", "tool", "client", "outcome", "ms"],
        [
            (
                time.strftime("%H:%M:%S", time.gmtime(call.at)),
                call.tool,
                call.client or "-",
                call.outcome,
                f"{call.ms:.1f}",
            )
            for call in log.recent(visible)
        ],
        "no calls yet",
    )
    config = health.get("config") or {}
    loaded = f" · config {escape(str(config.get('hash', ''))[:12])}" if config else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{refresh_seconds}"><title>mcp-gateway status</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<h1>mcp-gateway <span class="{escape(health["status"])}">{escape(health["status"])}</span></h1>'
        f"<p>version {escape(str(health.get('version', '')))}{loaded} · refreshes every {refresh_seconds} s · "
        f"cache hit ratio {escape(ratio)}</p>"
        f'<h2>Backends</h2><div id="backends">{backends}</div>'
        f'<h2>Published by backends</h2><div id="published">{published}</div>'
        f'<h2>Breakers</h2><div id="breakers">{breakers}</div>'
        f'<h2>Calls per tool, last {WINDOW_SECONDS // 60} minutes</h2><div id="rates">{rates}</div>'
        f'<h2>Recent calls</h2><div id="recent">{recent}</div>'
        "</body></html>"
    )
