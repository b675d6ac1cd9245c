"""The index `search_tools` searches (`gateway.discovery.mode: search`), kept in step with the catalog.

It ranks the catalog's tools for a query by a weighted sum of a keyword score (BM25 Okapi from `rank_bm25` over
`discovery.document` of each tool) and the cosine between the query's and the tool's vectors from the local
sentence-embedding model ai_memory uses (`embedding`), both scaled to [0, 1] over the tools the caller may
use before they are mixed. Imported only in search mode: numpy and the model's code stay out of a default gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
from rank_bm25 import BM25Okapi

from embedding.embedder import Embedder, HashEmbedder, make_embedder
from gateway.config.features import DiscoverySettings
from gateway.routing.discovery import document, summary, words

logger = logging.getLogger("mcp_gateway.discovery")

__all__ = ["ToolIndex", "ToolSearch", "load_embedder"]


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
