"""The benchmark's tool catalog: one tool per operation of the vendors' OpenAPI specs (`../shared/specs`,
served as the backends `hubspot_api`, `gong_api`, `slack_api`, the way an OpenAPI-to-MCP generator would
expose them) plus the built-in servers' own tools (`hubspot`, `gong`, `slack`, `ai_memory`), listed from
their FastMCP servers in process.

A spec operation becomes a tool named after its path and verb, described by its summary and description,
with an input schema of its parameters and of the top-level properties of its JSON body (nested objects are
not inlined: what a model needs to choose the tool, not every field it may send)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]
# `shared/` lies beside the clone (or, for a worktree under wt/, beside its parent)
SPECS = next(
    (p for p in (_ROOT.parent / "shared" / "specs", _ROOT.parents[1] / "shared" / "specs") if p.is_dir()),
    _ROOT.parent / "shared" / "specs",
)
METHODS = ("get", "post", "put", "patch", "delete")
_HUBSPOT_VERBS = {
    "getPage": "list",
    "getById": "get",
    "doSearch": "search",
    "getAll": "list",
    "getAudit": "audit",
    "request": "report",
    "purge": "gdpr_delete",
}
_HUBSPOT_OBJECTS = {"0-3": "deals"}
_SKIP_PARAMETERS = {"token"}  # Slack's auth token parameter: the server holds the credential
MAX_DESCRIPTION = 1024


def _snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-zA-Z0-9]+", "_", name).strip("_").lower()


def _dedupe(parts: list[str]) -> list[str]:
    out: list[str] = []
    for part in parts:
        if part and (not out or out[-1] != part):
            out.append(part)
    return out


def _resolve(spec: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema = node
    return schema


def _property(spec: dict[str, Any], schema: Any, description: str | None = None) -> dict[str, Any]:
    schema = _resolve(spec, schema) if isinstance(schema, dict) else {}
    out: dict[str, Any] = {"type": schema.get("type", "object" if "properties" in schema else "string")}
    text = description or schema.get("description")
    if text:
        out["description"] = str(text)[:300]
    if isinstance(schema.get("enum"), list):
        out["enum"] = schema["enum"][:20]
    return out


def _input_schema(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in operation.get("parameters", []):
        parameter = _resolve(spec, parameter)
        name = parameter.get("name")
        if not name or name in _SKIP_PARAMETERS or parameter.get("in") == "header":
            continue
        if parameter.get("in") == "body":  # Swagger 2 body
            body = _resolve(spec, parameter.get("schema", {}))
            for key, value in (body.get("properties") or {}).items():
                properties[key] = _property(spec, value)
            required += [key for key in body.get("required", []) if key in properties]
            continue
        properties[name] = _property(spec, parameter.get("schema", parameter), parameter.get("description"))
        if parameter.get("required"):
            required.append(name)
    content = (operation.get("requestBody") or {}).get("content") or {}
    body = _resolve(spec, (content.get("application/json") or {}).get("schema", {}))
    for key, value in (body.get("properties") or {}).items():
        properties[key] = _property(spec, value)
    required += [key for key in body.get("required", []) if key in properties and key not in required]
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _name(vendor: str, path: str, method: str, operation: dict[str, Any]) -> str:
    operation_id = operation.get("operationId") or f"{method}_{path}"
    if vendor == "hubspot":
        verb = operation_id.rsplit("_", 1)[-1]
        verb = _HUBSPOT_VERBS.get(verb, _snake(verb)) if not verb.startswith("/") else "list"
        segments = [
            _HUBSPOT_OBJECTS.get(part, part)
            for part in path.split("/")
            if part and not part.startswith("{") and part not in ("crm", "v3", "v4", "objects")
        ]
        return "_".join(_dedupe([_snake(part) for part in segments] + [verb]))[:60]
    return _snake(operation_id)[:60]


_STYLE = re.compile(r"<style>.*?</style>", re.S)
_TAG = re.compile(r"<[^>]+>")


def _plain(text: Any) -> str:
    """Spec text without HTML (Gong's descriptions carry a `<style>` block and tags)."""
    return re.sub(r"\s+", " ", _TAG.sub(" ", _STYLE.sub(" ", str(text or "")))).strip()


def _description(operation: dict[str, Any]) -> str:
    summary = _plain(operation.get("summary"))
    description = _plain(operation.get("description"))
    if not description or description == summary:
        text = summary
    else:
        text = f"{summary}. {description}" if summary else description
    return text[:MAX_DESCRIPTION]


def spec_tools() -> dict[str, list[dict[str, Any]]]:
    """`{backend: [tool definition, ...]}` for the operations of every vendor spec."""
    out: dict[str, list[dict[str, Any]]] = {}
    for vendor_dir in sorted(SPECS.iterdir()):
        tools: dict[str, dict[str, Any]] = {}
        for file in sorted(vendor_dir.glob("*.json")):
            spec = json.loads(file.read_text())
            for path, item in spec.get("paths", {}).items():
                for method in METHODS:
                    operation = item.get(method)
                    if not isinstance(operation, dict):
                        continue
                    name = _name(vendor_dir.name, path, method, operation)
                    while name in tools:
                        name += "_2"
                    tools[name] = {
                        "name": name,
                        "description": _description(operation),
                        "inputSchema": _input_schema(spec, operation),
                    }
        out[f"{vendor_dir.name}_api"] = list(tools.values())
    return out


async def builtin_tools() -> dict[str, list[dict[str, Any]]]:
    """`{server: [tool definition, ...]}` of the built-in servers, as their FastMCP servers list them."""
    from servers.ai_memory.server import create_server as ai_memory
    from servers.gong.server import create_server as gong
    from servers.hubspot.server import create_server as hubspot
    from servers.slack.server import create_server as slack

    out = {}
    for name, create in (("hubspot", hubspot), ("gong", gong), ("slack", slack), ("ai_memory", ai_memory)):
        server = create()
        out[name] = [
            tool.to_mcp_tool().model_dump(by_alias=True, exclude_none=True, mode="json")
            for tool in await server.list_tools()
        ]
    return out


async def catalog() -> dict[str, list[dict[str, Any]]]:
    """Every backend of the benchmark and its tools."""
    return {**await builtin_tools(), **spec_tools()}
