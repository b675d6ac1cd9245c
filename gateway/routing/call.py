"""One tool call as it travels: built once by `Hub.call_tool` after routing, then handed whole to every
stage after it (single-flight, L2 cache, breaker, bulkhead, retry) and to the backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from gateway.backends.pipe import ProgressCallback
from gateway.backends.rounds import InputRound
from gateway.resilience.cache import Key
from gateway.resilience.policy import ToolPolicy
from gateway.routing.catalog import Route


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A routed `tools/call` (its arguments are checked against the tool's input schema by `problem`), frozen:
    a retry after `input_required` is a `dataclasses.replace` copy. (Frozen costs its `__init__` about 1 µs,
    `object.__setattr__` per field, on an uncached call: kept, since nothing downstream may change a call.)"""

    route: Route
    arguments: dict[str, Any]
    meta: dict[str, Any] | None  # the backend hop's `_meta`: the client's, less what each hop stamps itself
    identity: str | None  # the authenticated client, when there is one (cache keys)
    on_progress: ProgressCallback | None
    policy: ToolPolicy
    key: Key | None  # the cache key; None when the tool is not cacheable (or the call answers input rounds)
    echo: InputRound | None = None  # a retry's answers to the backend's `input_required`, sent along

    @property
    def exposed(self) -> str:
        return self.route.exposed

    @property
    def server(self) -> str:
        return self.route.backend.name

    def problem(self) -> str | None:
        """Why the arguments do not fit the tool's input schema (None: they do). Asked only before the call
        reaches the backend: an answer cached for the very same arguments needs no check."""
        return self.route.validation_error(self.arguments)


class Answered(NamedTuple):
    """A call that ended at routing: an unknown tool or a fresh cache hit."""

    result: dict[str, Any]
    outcome: str
    server: str | None = None
