"""Write what a source yields into memory, idempotently, and keep its cursor.

Memories are written only through the memory service's tool-level functions (`list_memories`,
`store_memories`, `update_memory`): an item is found again by its metadata `source` + `source_id`,
so re-ingesting updates it when it changed and skips it when it did not; it is never stored twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastmcp.exceptions import ToolError
from pydantic import BaseModel, ValidationError

from servers.ai_memory.sources.gong import GongSource
from servers.ai_memory.sources.hubspot import HubSpotSource
from servers.ai_memory.sources.items import Item
from servers.ai_memory.sources.slack import SlackSource
from servers.ai_memory.sources.state import SourceState, scope_key
from servers.common import RetryPolicy

Progress = Callable[[float, float | None, str | None], Awaitable[None]]
# Ingestion runs long and unattended: it waits out rate limits for longer than an interactive tool call.
INGEST_POLICY = RetryPolicy(max_rate_limit_attempts=10, max_total_wait=600.0)
LOOKUP_PAGE = 1000


class MemoryTools(Protocol):
    """The memory service functions ingestion needs (the same ones the memory tools call)."""

    async def list_memories(
        self, namespace: str, limit: int, cursor: str | None, filters: dict[str, Any] | None
    ) -> dict[str, Any]: ...

    async def store_memories(self, memories: list[dict[str, Any]], namespace: str) -> dict[str, Any]: ...

    async def update_memory(
        self, memory_id: str, content: str | None, metadata: dict[str, Any] | None
    ) -> dict[str, Any]: ...


class Ingestor:
    """Runs `ingest_source`: one run at a time per namespace, source and scope."""

    def __init__(self, memory: MemoryTools, state: SourceState, policy: RetryPolicy = INGEST_POLICY) -> None:
        self.memory = memory
        self.state = state
        self.sources = {s.name: s for s in (SlackSource(policy), GongSource(policy), HubSpotSource(policy))}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._running = dict.fromkeys(self.sources, 0)

    def parse_scope(self, source: str, scope: Any) -> tuple[Any, dict[str, Any]]:
        """The validated scope model and its canonical JSON form, or a tool error saying what is wrong."""
        reader = self.sources.get(source)
        if reader is None:
            raise ToolError(f"source must be one of {', '.join(self.sources)}; got {source!r}")
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
        reader = self.sources[source]
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
        """Store new items, update changed ones, skip the rest."""
        latest = {item.source_id: item for item in items}  # the last copy of an item in a batch wins
        existing = await self._existing(namespace, items[0].source, list(latest))
        counts = {"ingested": 0, "updated": 0, "skipped": 0}
        new: list[Item] = []
        for source_id, item in latest.items():
            memory = existing.get(source_id)
            if memory is None:
                new.append(item)
            elif memory["content"] == item.content and memory["metadata"] == item.metadata:
                counts["skipped"] += 1
            else:
                content = item.content if memory["content"] != item.content else None
                await self.memory.update_memory(memory["id"], content, item.metadata)
                counts["updated"] += 1
        if new:
            stored = await self.memory.store_memories(
                [{"content": i.content, "metadata": i.metadata} for i in new], namespace
            )
            # The same text already remembered without this source_id counts as skipped, not a duplicate.
            counts["ingested"] += stored["stored"]
            counts["skipped"] += len(new) - stored["stored"]
        return counts

    async def _existing(self, namespace: str, source: str, source_ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        filters = {"source": source, "source_id": {"$in": source_ids}}
        cursor: str | None = None
        while True:
            page = await self.memory.list_memories(namespace, LOOKUP_PAGE, cursor, filters)
            for memory in page["memories"]:
                found.setdefault(memory["metadata"]["source_id"], memory)
            cursor = page.get("next_cursor")
            if not cursor:
                return found
