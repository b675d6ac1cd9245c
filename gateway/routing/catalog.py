"""The merged tool catalog: exposed names (`<server>_<tool>`), routes back to the backend, and the
cached `tools/list` answer that every client is served from."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.routing.schema_check import Check, compile_schema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

    from gateway.backends.session import Backend

logger = logging.getLogger("mcp_gateway.catalog")

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass
class Route:
    """Where an exposed tool goes: which backend, under which name, with which schema."""

    exposed: str
    backend: Backend
    tool: str
    definition: dict[str, Any]
    _validator: Draft202012Validator | None = field(default=None, repr=False)

    @property
    def server(self) -> str:
        """The backend's name."""
        return self.backend.name

    @property
    def annotations(self) -> dict[str, Any]:
        return self.definition.get("annotations") or {}

    def validation_error(self, arguments: dict[str, Any]) -> str | None:
        """Describe why `arguments` fail the tool's input schema, or return None if they pass. The common
        flat schemas are answered by a predicate compiled once (`gateway.routing.schema_check`); jsonschema
        decides the rest, and words every error."""
        quick = self._quick
        if quick is not None and quick(arguments):
            return None
        if self._validator is None:
            from jsonschema import Draft202012Validator  # on the first call: listing tools needs none
            from jsonschema.exceptions import SchemaError

            schema = self.definition.get("inputSchema") or {"type": "object"}
            try:
                self._validator = Draft202012Validator(schema)
            except SchemaError:
                self._validator = Draft202012Validator({"type": "object"})
        error = next(iter(self._validator.iter_errors(arguments)), None)
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path) or "(arguments)"
        return f"Invalid arguments for tool '{self.exposed}': {where}: {error.message}"

    @functools.cached_property
    def _quick(self) -> Check | None:
        return compile_schema(self.definition.get("inputSchema") or {"type": "object"})


def exposed_name(server: str, tool: str, separator: str = "_") -> str:
    """`server<sep>tool` (just `tool` when `server` is the empty namespace), made valid for MCP
    (letters, digits, `_`, `-`; at most 64 characters)."""
    name = _INVALID_CHARS.sub("_", f"{server}{separator}{tool}" if server else tool)
    if len(name) > 64:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


class Catalog:
    """All exposed tools of all backends; rebuilt whenever a backend's list changes.

    A server entry's `tools` overrides rename, re-describe or hide backend tools here; a renamed tool that
    lands on a name already taken, or any tool exposed under a `reserved` name (the meta-tools of search
    mode), is a conflict: it is left out and described in `conflicts` (a config error at start-up)."""

    def __init__(self, separator: str = "_", reserved: frozenset[str] = frozenset()) -> None:
        self.separator = separator
        self.reserved = reserved
        self.routes: dict[str, Route] = {}
        self.by_tool: dict[tuple[str, str], Route] = {}  # (backend, backend's tool name) -> route
        self.tools: list[dict[str, Any]] = []
        self.tools_json = b"[]"
        self.version = 0
        self.conflicts: list[tuple[str, str]] = []  # (JSON path in the config, problem)

    def rebuild(self, backends: list[Backend]) -> bool:
        """Recompute routes from the backends (in config order); return True if the exposed list changed."""
        routes, conflicts = self._routes(backends, self.reserved)
        for where, problem in conflicts:
            if (where, problem) not in self.conflicts:
                logger.error("config error: %s: %s", where, problem)
        self.conflicts = conflicts
        tools = [{**route.definition, "name": route.exposed} for route in routes.values()]
        changed = tools != self.tools
        self.routes = routes
        self.by_tool = {(route.backend.name, route.tool): route for route in routes.values()}
        self.tools = tools
        self.tools_json = json.dumps(tools, separators=(",", ":")).encode()
        if changed:
            self.version += 1
        return changed

    def conflicts_of(self, backends: list[Backend], reserved: frozenset[str] | None = None) -> list[tuple[str, str]]:
        """The conflicts a catalog of `backends` would have (with `reserved` names, default this catalog's),
        changing nothing: a config reload is refused on the first."""
        return self._routes(backends, self.reserved if reserved is None else reserved)[1]

    def _routes(
        self, backends: list[Backend], reserved: frozenset[str]
    ) -> tuple[dict[str, Route], list[tuple[str, str]]]:
        routes: dict[str, Route] = {}
        conflicts: list[tuple[str, str]] = []
        renamed: set[str] = set()  # names given by an override: no silent `_2` suffix for these
        for backend in backends:
            overrides = backend.config.tools
            # A backend that went down keeps its last-known tools: calls get a clear "down" error.
            for definition in backend.tools:
                tool = definition["name"]
                override = overrides.get(tool)
                if override is not None and override.disabled:
                    continue  # hidden: neither listed nor callable
                where = f"$.mcpServers.{backend.name}.tools.{tool}"
                name = exposed_name(
                    backend.namespace, override.name if override and override.name else tool, self.separator
                )
                if override is not None and override.description is not None:
                    definition = {**definition, "description": override.description}
                if name in reserved:
                    conflicts.append(
                        (
                            where,
                            f"tool {backend.name}.{tool} would be exposed as {name!r}, the "
                            "name of a tool-search meta-tool; rename it in mcpServers",
                        )
                    )
                    continue
                renamed_here = override is not None and override.name is not None
                if name in routes and (renamed_here or name in renamed):
                    taken = routes[name]
                    first, second = (backend, tool), (taken.backend, taken.tool)
                    if not renamed_here:  # the override is the earlier tool's: point at it
                        first, second = second, first
                        where = f"$.mcpServers.{taken.backend.name}.tools.{taken.tool}"
                    conflicts.append(
                        (
                            where,
                            f"{first[0].name}.{first[1]} and {second[0].name}.{second[1]} would "
                            f"both be exposed as {name!r}",
                        )
                    )
                    continue
                if renamed_here:
                    renamed.add(name)
                if name in routes:
                    base, suffix = name[:61], 2
                    while f"{base}_{suffix}" in routes:
                        suffix += 1
                    suffixed = f"{base}_{suffix}"
                    logger.warning(
                        "tool name collision: %s.%s would be %r (taken by %s.%s); exposed as %r",
                        backend.name,
                        tool,
                        name,
                        routes[name].backend.name,
                        routes[name].tool,
                        suffixed,
                    )
                    name = suffixed
                routes[name] = Route(name, backend, tool, definition)
        return routes, conflicts

    def resolve(self, exposed: str) -> Route | None:
        return self.routes.get(exposed)
