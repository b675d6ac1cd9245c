"""Who may call what: a client's tool allow/deny patterns (narrowed by a profile's, `gateway.profiles`) and
rate limit, and the catalog as that client sees it (recomputed only when the catalog changes)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from gateway.config.loader import AuthSettings, RateLimitConfig
from gateway.routing.hub import Hub


@dataclass(eq=False)
class Client:
    """An authenticated caller and what it may do."""

    name: str
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    rate_limit: RateLimitConfig | None = None
    memory_owner: str = ""
    profile: tuple[str, ...] | None = None  # a profile's tool patterns: the client sees only what they match too
    _version: int = field(default=-1, repr=False)
    _tools: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _permitted: dict[str, bool] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # `!pattern` in `allow` is a deny entry
        self.deny = (*self.deny, *(p[1:] for p in self.allow if p.startswith("!")))
        self.allow = tuple(p for p in self.allow if not p.startswith("!"))
        self.memory_owner = self.memory_owner or self.name

    def matches(self, tool: str) -> bool:
        if self.profile is not None and not any(fnmatchcase(tool, p) for p in self.profile):
            return False
        return any(fnmatchcase(tool, p) for p in self.allow) and not any(fnmatchcase(tool, p) for p in self.deny)

    def within(self, patterns: tuple[str, ...]) -> Client:
        """This client seen through a profile: the intersection of its allow list and `patterns`."""
        return replace(self, profile=patterns, _version=-1, _tools=[], _permitted={})

    def sync(self, hub: Hub) -> None:
        catalog = hub.catalog
        if catalog.version != self._version:
            self._permitted = {name: self.matches(name) for name in catalog.routes}
            self._tools = [tool for tool in catalog.tools if self._permitted.get(tool["name"])]
            self._version = catalog.version

    def permits(self, hub: Hub, tool: str) -> bool:
        self.sync(hub)
        return self._permitted.get(tool, False)

    def tools(self, hub: Hub) -> list[dict[str, Any]]:
        self.sync(hub)
        return self._tools


def make_client(name: str, auth: AuthSettings, template: str | None = None) -> Client:
    """The `Client` for `name`, with the policy of the config entry `template` (default: `name`)."""
    entry = auth.clients[template or name]
    return Client(
        name=name,
        allow=tuple(entry.allow),
        deny=tuple(entry.deny),
        rate_limit=entry.rate_limit or auth.rate_limit,
        memory_owner=entry.memory_owner or "",
    )


ANONYMOUS = "anonymous"  # the caller of a profile's endpoint when gateway.auth is off
