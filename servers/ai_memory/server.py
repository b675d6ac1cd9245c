"""The ai_memory MCP server: long-term memory for agents over three tiers.

`create_server()` is cheap: it builds the FastMCP app and a `MemoryService` that opens
nothing until the lifespan starts it (or the first tool call does). See docs/ai_memory.md.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from fastmcp.server.lifespan import lifespan
from fastmcp.tools.base import ToolResult
from mcp.types import TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.service import MemoryService
from servers.ai_memory.sources.tools import register_source_tools

INSTRUCTIONS = """Long-term memory. store_memory saves a fact (idempotent: the same content in a
namespace returns the same id), recall_memory finds memories by meaning and keywords, with
optional metadata filters such as {"topic": "billing", "priority": {"$gte": 2}}."""


class StoredMemory(BaseModel):
    id: str
    namespace: str
    created_at: str
    deduplicated: bool = Field(description="True when this content was already stored; id is the first one")


class StoredBatch(BaseModel):
    namespace: str
    ids: list[str] = Field(description="One id per input memory, in input order")
    stored: int = Field(description="How many new memories were written")
    deduplicated: int = Field(description="How many inputs matched content already stored")


class MemoryHit(BaseModel):
    id: str
    content: str
    score: float
    metadata: dict[str, Any]
    created_at: str


class Memory(BaseModel):
    id: str
    namespace: str
    content: str
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    expires_at: str | None = None


class UpdatedMemory(Memory):
    reembedded: bool


class MemoryPage(BaseModel):
    namespace: str
    memories: list[Memory]
    next_cursor: str | None = None


class Deleted(BaseModel):
    id: str
    deleted: bool


class NamespaceDeleted(BaseModel):
    namespace: str
    deleted: int


class MemoryStats(BaseModel):
    namespace: str | None
    l1: dict[str, Any]
    l2: dict[str, Any]
    l3: dict[str, Any]
    problems: list[str] = Field(
        default_factory=list, description="What needs an operator: L3 unreachable, dead letters (with the reason)"
    )


KEY_DOC = (
    "Your own identity for this memory within the namespace (an upstream record id, say): storing "
    "again with the same key updates that memory in place instead of adding one"
)


class MemoryInput(BaseModel):
    content: str
    metadata: dict[str, Any] | None = None
    ttl_seconds: float | None = None
    key: str | None = Field(default=None, description=KEY_DOC)


class DeadLetter(BaseModel):
    seq: int
    op: str | None
    id: str | None
    reason: str


class DeadLetters(BaseModel):
    action: str
    namespace: str | None = None  # the namespace whose dead letters these are (None: every namespace's)
    affected: int
    dead_letters: list[DeadLetter]


class RecallHits(BaseModel):
    result: list[MemoryHit]


FILTERS_DOC = (
    'Metadata filter. {"field": value} is equality; operators $eq $ne $in $nin $gt $gte $lt $lte '
    "$exists; $and/$or/$not combine; ranges work on numbers and ISO-8601 dates; dotted paths reach "
    'nested keys. Example: {"$or": [{"topic": "billing"}, {"priority": {"$gte": 3}}]}'
)

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def create_server(config: MemoryConfig | None = None, service: MemoryService | None = None) -> FastMCP:
    svc = service or MemoryService(config)

    @lifespan
    async def memory_lifespan(server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        await svc.start()
        try:
            yield {"ai_memory": svc}
        finally:
            await svc.close()

    mcp = FastMCP("ai_memory", instructions=INSTRUCTIONS, lifespan=memory_lifespan)
    mcp.memory_service = svc  # type: ignore[attr-defined]  # for tests and the gateway

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
    )
    async def store_memory(
        content: Annotated[str, Field(description="The text to remember")],
        namespace: str = "default",
        metadata: Annotated[dict[str, Any] | None, Field(description="JSON object stored with the memory")] = None,
        ttl_seconds: Annotated[float | None, Field(description="Forget after this many seconds")] = None,
        key: Annotated[str | None, Field(description=KEY_DOC)] = None,
    ) -> StoredMemory:
        """Store one memory. Acknowledged once durable; findable by id and keyword at once, by meaning
        once embedded (moments later). Storing the same content again in the same namespace returns the
        first id (deduplicated=true), so retries never duplicate; with a key, storing again updates."""
        return StoredMemory(**await svc.store_memory(content, namespace, metadata, ttl_seconds, key))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
    )
    async def store_memories(memories: list[MemoryInput], namespace: str = "default") -> StoredBatch:
        """Store many memories in one durable batch (embedded behind the acknowledgement, in batches).
        Returns ids in input order."""
        payload = [m.model_dump() for m in memories]
        out = await svc.store_memories(payload, namespace)
        return StoredBatch(
            namespace=out["namespace"], ids=out["ids"], stored=out["stored"], deduplicated=out["deduplicated"]
        )

    @mcp.tool(annotations=READ, output_schema=RecallHits.model_json_schema())
    async def recall_memory(
        query: str,
        namespace: str = "default",
        k: Annotated[int, Field(description="How many memories to return (1-100)")] = 5,
        filters: Annotated[dict[str, Any] | None, Field(description=FILTERS_DOC)] = None,
        min_score: Annotated[float | None, Field(description="Drop hits scoring below this (0..1)")] = None,
        consistency: Annotated[
            Literal["eventual", "indexed"],
            Field(
                description='"eventual": answer now (memories not yet embedded match by keyword only); '
                '"indexed": first wait until every memory stored before this call is embedded'
            ),
        ] = "eventual",
    ) -> ToolResult:
        """Find the memories most relevant to a query: semantic similarity fused with keyword (BM25)
        relevance, best first. Expired memories are never returned."""
        out = await svc.recall(query, namespace, k, filters, min_score, consistency=consistency)
        hits = RecallHits(result=[MemoryHit(**h) for h in out.hits]).model_dump(mode="json")
        content = [TextContent(type="text", text=json.dumps(hits["result"]))]
        content += [TextContent(type="text", text="note: " + n) for n in out.notes]
        meta = {"ai_memory/" + k: v for k, v in out.meta.items()} or None
        return ToolResult(content=content, structured_content=hits, meta=meta)

    @mcp.tool(annotations=READ)
    async def get_memory(id: str) -> Memory:
        """Fetch one memory by id."""
        return Memory(**await svc.get_memory(id))

    @mcp.tool(annotations=READ)
    async def list_memories(
        namespace: str = "default",
        limit: int = 50,
        cursor: str | None = None,
        filters: Annotated[dict[str, Any] | None, Field(description=FILTERS_DOC)] = None,
    ) -> MemoryPage:
        """List memories oldest first, a page at a time; pass next_cursor back for the next page."""
        return MemoryPage(**await svc.list_memories(namespace, limit, cursor, filters))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    async def update_memory(
        id: str,
        content: str | None = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="Replaces the metadata object")] = None,
    ) -> UpdatedMemory:
        """Change a memory's content (re-embedded) and/or replace its metadata."""
        return UpdatedMemory(**await svc.update_memory(id, content, metadata))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        )
    )
    async def delete_memory(id: str) -> Deleted:
        """Delete one memory by id."""
        return Deleted(**await svc.delete_memory(id))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        )
    )
    async def delete_namespace(namespace: str) -> NamespaceDeleted:
        """Delete every memory in a namespace."""
        return NamespaceDeleted(**await svc.delete_namespace(namespace))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        )
    )
    async def memory_dead_letters(
        action: Annotated[
            Literal["list", "replay", "discard"],
            Field(description="list them; replay = queue them for L3 again; discard = drop them for good"),
        ] = "list",
        seqs: Annotated[list[int] | None, Field(description="Which dead letters (their seq); all when omitted")] = None,
        namespace: Annotated[
            str | None, Field(description="Only this namespace's dead letters; every namespace's when omitted")
        ] = None,
    ) -> DeadLetters:
        """Writes that L3 refused for good after they were acknowledged (kept aside so later writes
        are not held up): list, replay or discard them."""
        return DeadLetters(**await svc.dead_letters(action, seqs, namespace))

    @mcp.tool(annotations=READ)
    async def memory_stats(namespace: str | None = None) -> MemoryStats:
        """Counts per tier, L1 hit rate, index size and lag (memories not yet embedded), the embedder in
        use, the outbox (depth, oldest age, dead letters) and whether L3 is reachable now. With a namespace,
        every count is of that namespace alone."""
        return MemoryStats(**await svc.memory_stats(namespace))

    register_source_tools(mcp, svc, svc.config.data_dir)  # ingest_source, list_sources
    return mcp
