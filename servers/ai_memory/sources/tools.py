"""The `ingest_source` and `list_sources` tools, registered on the ai_memory server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from servers.ai_memory.sources.ingest import Ingestor, MemoryTools
from servers.ai_memory.sources.state import SourceState

SCOPE_DOC = (
    'slack: {"channel": ID, "oldest"?: ts, "account"?: name}; gong: {"from": ISO date, "to"?: ISO date}; '
    'hubspot: {"object_type": "contact"|"company"|"deal", "ids"?: [...]}'
)


class IngestResult(BaseModel):
    ingested: int = Field(description="New memories written")
    updated: int = Field(description="Memories whose source item changed since it was ingested")
    skipped: int = Field(description="Items already remembered as they are")
    cursor: Any = Field(description="Where the next run of this source and scope starts")


class SourceInfo(BaseModel):
    namespace: str
    source: str
    scope: dict[str, Any]
    cursor: Any
    items: int = Field(description="Memories this source and scope has added")
    last_run: str | None
    last_result: dict[str, Any] | None


def register_source_tools(mcp: FastMCP, memory: MemoryTools, data_dir: Path) -> Ingestor:
    """Add the two tools to `mcp`; the cursors live in `data_dir`/ai_memory_sources.sqlite3."""
    ingestor = Ingestor(memory, SourceState(data_dir / "ai_memory_sources.sqlite3"))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        )
    )
    async def ingest_source(
        source: Literal["slack", "gong", "hubspot"],
        scope: Annotated[dict[str, Any], Field(description=SCOPE_DOC)],
        ctx: Context,
        namespace: str = "default",
    ) -> IngestResult:
        """Remember what Slack, Gong or HubSpot already know: a channel's messages and threads, call
        transcripts as speaker turns, or CRM records and their notes. Each item becomes a memory with
        metadata source, source_id, url, author, ts and account; a second run adds only what is new,
        and re-ingesting an item updates it, never duplicates it. Reports progress while it runs."""
        return IngestResult(**await ingestor.ingest(source, scope, namespace, ctx.report_progress))

    @mcp.tool(
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
    )
    async def list_sources(
        namespace: Annotated[str | None, Field(description="Only this namespace (all if omitted).")] = None,
    ) -> list[SourceInfo]:
        """Each ingested source and scope with its cursor, item count and last run."""
        return [SourceInfo(**row) for row in await ingestor.state.listing(namespace)]

    return ingestor
