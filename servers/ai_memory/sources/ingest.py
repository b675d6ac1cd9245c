"""Write what a source yields into memory, idempotently, and keep its cursor.

Memories are written only through the memory service's `store_memories`, each under the key
`{source}:{source_id}`: storing an item again updates its memory in place (same id), or leaves it
as it is when nothing changed, so an item is never stored twice, and two items with the same text
stay two memories.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastmcp.exceptions import ToolError
from pydantic import BaseModel, ValidationError

from servers.ai_memory.sources.items import Item
from servers.ai_memory.sources.state import SourceState, scope_key
from servers.common import RetryPolicy

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
# Ingestion runs long and unattended: it waits out rate limits for longer than an interactive tool call.
INGEST_POLICY = RetryPolicy(max_rate_limit_attempts=10, max_total_wait=600.0)
READERS = {  # each source's reader, imported on its first use (the vendors' clients and models stay out of start-up)
    "slack": "servers.ai_memory.sources.slack:SlackSource",
    "gong": "servers.ai_memory.sources.gong:GongSource",
    "hubspot": "servers.ai_memory.sources.hubspot:HubSpotSource",
}
STORE_CHUNK = 1000
"""Items per `store_memories` call (within the service's AI_MEMORY_MAX_BATCH, and SQLite's bound variables)."""


class MemoryTools(Protocol):
    """The memory service function ingestion needs (the one the `store_memories` tool calls)."""

    async def store_memories(self, memories: list[dict[str, Any]], namespace: str) -> dict[str, Any]: ...


class Ingestor:
    """Runs `ingest_source`: one run at a time per namespace, source and scope."""

    def __init__(self, memory: MemoryTools, state: SourceState, policy: RetryPolicy = INGEST_POLICY) -> None:
        self.memory = memory
        self.state = state
        self.policy = policy
        self._readers: dict[str, Any] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._running = dict.fromkeys(READERS, 0)

    def reader(self, source: str) -> Any:
        """The reader of `source` (built on first use), or a tool error naming the sources there are."""
        if source not in READERS:
            raise ToolError(f"source must be one of {', '.join(READERS)}; got {source!r}")
        if source not in self._readers:
            module, name = READERS[source].split(":")
            self._readers[source] = getattr(importlib.import_module(module), name)(self.policy)
        return self._readers[source]

    def parse_scope(self, source: str, scope: Any) -> tuple[Any, dict[str, Any]]:
        """The validated scope model and its canonical JSON form, or a tool error saying what is wrong."""
        reader = self.reader(source)
        if not isinstance(scope, dict):
            raise ToolError("scope must be a JSON object")
        model: type[BaseModel] = reader.scope_model
        try:
            parsed = model.model_validate(scope)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'scope'}: {e['msg']}" for e in exc.errors())
            raise ToolError(f"invalid {source} scope: {problems}") from None
        return parsed, parsed.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def ingest(self, source: str, scope: Any, namespace: str, progress: Progress) -> dict[str, Any]:
        parsed, canonical = self.parse_scope(source, scope)
        key = (namespace, source, scope_key(canonical))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            return await self._run(source, parsed, canonical, namespace, progress)

    async def _run(
        self, source: str, parsed: Any, canonical: dict[str, Any], namespace: str, progress: Progress
    ) -> dict[str, Any]:
        reader = self.reader(source)
        cursor = await self.state.cursor(namespace, source, canonical)
        counts = {"ingested": 0, "updated": 0, "skipped": 0}
        seen = 0
        self._running[source] += 1
        try:
            await progress(0, None, f"{source}: reading")
            async for items, batch_cursor in reader.batches(parsed, cursor):
                batch = await self.write(namespace, items) if items else {"ingested": 0}
                for name, n in batch.items():
                    counts[name] += n
                cursor, seen = batch_cursor, seen + len(items)
                # a checkpoint per batch: a run cut short (timeout, rate limit, restart) resumes here
                await self.state.checkpoint(
                    namespace, source, canonical, cursor, batch["ingested"], {**counts, "cursor": cursor}
                )
                await progress(
                    seen,
                    None,
                    f"{source}: {seen} items read, {counts['ingested']} new, {counts['updated']} updated",
                )
        finally:
            self._running[source] -= 1
            if not self._running[source]:  # the pooled connections close when no run of the source needs them
                await reader.api.aclose()
        return {**counts, "cursor": cursor}

    async def write(self, namespace: str, items: list[Item]) -> dict[str, int]:
        """Upsert the batch under each item's key: the store reports unchanged items as deduplicated;
        of the rest, a key this namespace has ingested before is an update, any other is new."""
        latest = list({item.key: item for item in items}.values())  # the last copy of an item in a batch wins
        counts = {"ingested": 0, "updated": 0, "skipped": 0}
        for start in range(0, len(latest), STORE_CHUNK):
            chunk = latest[start : start + STORE_CHUNK]
            stored = await self.memory.store_memories(
                [{"content": i.content, "metadata": i.metadata, "key": i.key} for i in chunk], namespace
            )
            known = await self.state.seen(namespace, [i.key for i in chunk])
            for item, result in zip(chunk, stored["items"], strict=True):
                status = "skipped" if result["deduplicated"] else "updated" if item.key in known else "ingested"
                counts[status] += 1
        return counts
