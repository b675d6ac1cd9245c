"""Tool search (`gateway.discovery.mode: search`): the two meta-tools that stand in for the catalog in
`tools/list`, their argument parsing, and the hybrid index they search.

The index ranks the catalog's tools for a query by a weighted sum of a keyword score (BM25 Okapi from
`rank_bm25` over the words of each tool's name, description and argument names) and the cosine between the
query's and the tool's vectors from the local sentence-embedding model ai_memory uses (`embedding`). Both
scores are scaled to [0, 1] over the tools the caller may use before they are mixed. Who may use what is
the caller's business (`permitted`): the index never returns a tool it is not given leave to.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import numpy as np
from rank_bm25 import BM25Okapi

from embedding.embedder import Embedder, HashEmbedder, make_embedder
from gateway.config.features import META_TOOLS, DiscoverySettings

logger = logging.getLogger("mcp_gateway.discovery")

__all__ = ["CALL_TOOL", "DEFINITIONS", "META_TOOLS", "SEARCH_TOOLS", "ToolIndex", "ToolSearch"]

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


def _scaled(scores: np.ndarray) -> np.ndarray:
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 0 else np.zeros_like(scores)


class ToolIndex:
    """The search index over one version of the catalog's tools."""

    def __init__(
        self, tools: list[dict[str, Any]], vectors: np.ndarray | None, embedder: Embedder | None, weight: float
    ) -> None:
        self.tools = tools
        self.vectors = vectors  # (len(tools), dim), L2-normalised; None: keyword only
        self.embedder = embedder
        self.weight = weight
        corpus = [words(document(tool)) for tool in tools]
        self.bm25 = BM25Okapi(corpus) if any(corpus) else None

    def allowed(self, permitted: Callable[[str], bool]) -> np.ndarray:
        """Which of the index's tools `permitted` lets the caller use (a mask for `rank`)."""
        return np.array([permitted(tool["name"]) for tool in self.tools], dtype=bool)

    def rank(self, query: str, limit: int, allowed: np.ndarray) -> list[dict[str, Any]]:
        """The `limit` best tools for `query` among the `allowed` ones, best first (runs the model: call it
        from a worker thread)."""
        if not allowed.any():
            return []
        keyword = np.zeros(len(self.tools))
        if self.bm25 is not None:
            keyword = np.asarray(self.bm25.get_scores(words(query)), dtype=float)
        score = self.weight * _scaled(np.where(allowed, keyword, 0.0))
        if self.vectors is not None and self.embedder is not None:
            cosine = self.vectors @ self.embedder.embed([query])[0]
            score += (1 - self.weight) * _scaled(np.where(allowed, np.maximum(cosine, 0.0), 0.0))
        score[~allowed] = -1.0
        order = np.argsort(-score, kind="stable")[:limit]
        return [summary(self.tools[i]) for i in order if allowed[i] and score[i] > 0]


def load_embedder(choice: str) -> Embedder | None:
    """The embedder for `gateway.discovery.embedder`, loaded; None (keyword only) for `none` or when the
    model cannot be loaded (logged)."""
    if choice == "none":
        return None
    if choice == "hash":
        return HashEmbedder()
    try:
        embedder = make_embedder(choice)
        load = getattr(embedder, "load", None)
        if load is not None:
            load()
        return embedder
    except Exception as error:  # a missing model wheel or runtime: search still works on keywords
        logger.warning("tool search: embedding model unavailable (%s); ranking by keywords only", error)
        return None


class ToolSearch:
    """Keeps the index in step with the catalog (rebuilt in a worker thread when its version moves, at
    start and after a config reload; each tool's vector is computed once per distinct text and kept while
    the tool is in the catalog) and answers `search_tools`."""

    def __init__(self, settings: DiscoverySettings) -> None:
        self.settings = settings
        self._embedder: Embedder | None = None
        self._loaded = False
        self._vectors: dict[str, np.ndarray] = {}
        self._index: ToolIndex | None = None
        self._version = -1
        self._lock = anyio.Lock()

    def _build(self, tools: list[dict[str, Any]]) -> ToolIndex:
        if not self._loaded:
            self._embedder, self._loaded = load_embedder(self.settings.embedder), True
        vectors = None
        if self._embedder is not None:
            texts = [document(tool) for tool in tools]
            missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
            if missing:
                self._vectors.update(zip(missing, self._embedder.embed(missing), strict=True))
            self._vectors = {text: self._vectors[text] for text in texts}  # a reload's removed tools go
            vectors = np.stack([self._vectors[text] for text in texts]) if texts else None
        return ToolIndex(tools, vectors, self._embedder, self.settings.keyword_weight)

    async def index(self, tools: list[dict[str, Any]], version: int) -> ToolIndex:
        """The index for catalog `version` (whose tools are `tools`), built if it is not yet."""
        async with self._lock:
            if self._index is None or self._version != version:
                self._index = await anyio.to_thread.run_sync(self._build, tools)
                self._version = version
            return self._index

    async def search(
        self, tools: list[dict[str, Any]], version: int, query: str, limit: int, permitted: Callable[[str], bool]
    ) -> list[dict[str, Any]]:
        index = await self.index(tools, version)
        return await anyio.to_thread.run_sync(index.rank, query, limit, index.allowed(permitted))


def search_result(found: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The `CallToolResult` of `search_tools`: the matches as compact JSON text (what a model reads)."""
    text = json.dumps({"tools": list(found)}, separators=(",", ":"), ensure_ascii=False)
    return {"content": [{"type": "text", "text": text}], "isError": False}
