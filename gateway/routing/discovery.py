"""Tool search (`gateway.discovery.mode: search`): the two meta-tools that stand in for the catalog in
`tools/list`, their argument parsing, the text a tool is found by, and the answer of `search_tools`.

The index they search, and its ranking, are `gateway.routing.search_index` (numpy, `rank_bm25` and the
embedding model: the hub imports it only in search mode, so a default gateway loads none of them). Who may
use what is the caller's business (`permitted`): the index never returns a tool it is not given leave to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from gateway.config.features import META_TOOLS

__all__ = ["CALL_TOOL", "DEFINITIONS", "META_TOOLS", "SEARCH_TOOLS", "document", "search_result", "words"]

SEARCH_TOOLS, CALL_TOOL = META_TOOLS
MAX_LIMIT = 50

DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": SEARCH_TOOLS,
        "description": (
            "Find the tools for a task among every tool this gateway offers. Returns the best matches, best "
            "first, each with its name, description and inputSchema; run one with call_tool."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "what you want to do, in a few words"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 5},
            },
            "required": ["query"],
        },
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": CALL_TOOL,
        "description": "Call a tool found with search_tools: its name and its arguments (an object).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "the tool's name, as search_tools gave it"},
                "arguments": {"type": "object", "default": {}},
            },
            "required": ["name"],
        },
    },
]


def parse_search(arguments: Any) -> tuple[str, int] | str:
    """`(query, limit)` from `search_tools` arguments, or the reason they are invalid."""
    if not isinstance(arguments, dict):
        return "search_tools needs an object of arguments"
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        return "search_tools: 'query' must be a non-empty string"
    limit = arguments.get("limit", 5)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        return f"search_tools: 'limit' must be an integer from 1 to {MAX_LIMIT}"
    unknown = sorted(set(arguments) - {"query", "limit"})
    if unknown:
        return f"search_tools: unknown argument {unknown[0]!r}"
    return query, limit


def parse_call(arguments: Any) -> tuple[str, dict[str, Any]] | str:
    """`(name, arguments)` from `call_tool` arguments, or the reason they are invalid."""
    if not isinstance(arguments, dict):
        return "call_tool needs an object of arguments"
    name = arguments.get("name")
    if not isinstance(name, str) or not name:
        return "call_tool: 'name' must be the name of a tool (a string)"
    inner = arguments.get("arguments", {})
    if inner is None:
        inner = {}
    if not isinstance(inner, dict):
        return "call_tool: 'arguments' must be an object"
    unknown = sorted(set(arguments) - {"name", "arguments"})
    if unknown:
        return f"call_tool: unknown argument {unknown[0]!r}"
    return name, inner


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lower-case words of `text`: `snake_case`, `camelCase`, dotted and dashed names split; a plural `s`
    dropped (`contacts` and `contact` are one word to the keyword score)."""
    out = []
    for word in _WORD.findall(_CAMEL.sub(" ", text)):
        word = word.lower()
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def argument_names(definition: dict[str, Any]) -> list[str]:
    schema = definition.get("inputSchema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    return list(properties) if isinstance(properties, dict) else []


def document(definition: dict[str, Any]) -> str:
    """The text a tool is found by: its name's words, its description, its argument names."""
    name = " ".join(words(str(definition.get("name", ""))))
    description = str(definition.get("description") or "").strip()
    arguments = " ".join(" ".join(words(argument)) for argument in argument_names(definition))
    return f"{name}. {description}" + (f" Arguments: {arguments}." if arguments else "")


def summary(definition: dict[str, Any]) -> dict[str, Any]:
    """What `search_tools` answers for one tool."""
    return {
        "name": definition["name"],
        "description": definition.get("description") or "",
        "inputSchema": definition.get("inputSchema") or {"type": "object"},
    }


def search_result(found: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The `CallToolResult` of `search_tools`: the matches as compact JSON text (what a model reads)."""
    text = json.dumps({"tools": list(found)}, separators=(",", ":"), ensure_ascii=False)
    return {"content": [{"type": "text", "text": text}], "isError": False}
