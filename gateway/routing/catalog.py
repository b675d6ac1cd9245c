"""The merged tool catalog: exposed names (`<server>_<tool>`), routes back to the backend, and the
cached `tools/list` answer that every client is served from."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

if TYPE_CHECKING:
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
        """Describe why `arguments` fail the tool's input schema, or return None if they pass."""
        if self._validator is None:
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


def exposed_name(server: str, tool: str, separator: str = "_") -> str:
    """`server<sep>tool` (just `tool` when `server` is the empty namespace), made valid for MCP
    (letters, digits, `_`, `-`; at most 64 characters)."""
    name = _INVALID_CHARS.sub("_", f"{server}{separator}{tool}" if server else tool)
    if len(name) > 64:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


class Catalog:
    """All exposed tools of all backends; rebuilt whenever a backend's list changes."""

    def __init__(self, separator: str = "_") -> None:
        self.separator = separator
        self.routes: dict[str, Route] = {}
        self.by_tool: dict[tuple[str, str], Route] = {}  # (backend, backend's tool name) -> route
        self.tools: list[dict[str, Any]] = []
        self.tools_json = b"[]"
        self.version = 0

    def rebuild(self, backends: list[Backend]) -> bool:
        """Recompute routes from the backends (in config order); return True if the exposed list changed."""
        routes: dict[str, Route] = {}
        for backend in backends:
            # A backend that went down keeps its last-known tools: calls get a clear "down" error.
            for definition in backend.tools:
                name = exposed_name(backend.namespace, definition["name"], self.separator)
                if name in routes:
                    base, suffix = name[:61], 2
                    while f"{base}_{suffix}" in routes:
                        suffix += 1
                    renamed = f"{base}_{suffix}"
                    logger.warning(
                        "tool name collision: %s.%s would be %r (taken by %s.%s); exposed as %r",
                        backend.name,
                        definition["name"],
                        name,
                        routes[name].backend.name,
                        routes[name].tool,
                        renamed,
                    )
                    name = renamed
                routes[name] = Route(name, backend, definition["name"], definition)
        tools = [{**route.definition, "name": route.exposed} for route in routes.values()]
        changed = tools != self.tools
        self.routes = routes
        self.by_tool = {(route.backend.name, route.tool): route for route in routes.values()}
        self.tools = tools
        self.tools_json = json.dumps(tools, separators=(",", ":")).encode()
        if changed:
            self.version += 1
        return changed

    def resolve(self, exposed: str) -> Route | None:
        return self.routes.get(exposed)
