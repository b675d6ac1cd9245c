"""Pieces every integration server's tools share: annotations, paging parameters, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastmcp.server.lifespan import Lifespan, lifespan
from mcp_types import ToolAnnotations
from pydantic import Field

from servers.common.http import ApiClient

READ = ToolAnnotations(read_only_hint=True, open_world_hint=True)
"""Reads: safe to cache and retry."""
CREATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
"""Additive writes that make something new each time."""
UPDATE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)
"""Writes that overwrite values; repeating them has no further effect."""
ADD_IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
"""Additive writes that are no-ops when repeated."""

Cursor = Annotated[
    str | None,
    Field(description="Cursor from a previous result's `next_cursor` to continue; omit for the first page."),
]
MaxPages = Annotated[
    int,
    Field(ge=1, le=10, description="Follow up to this many pages in one call (1 = just one page)."),
]


def client_lifespan(api: ApiClient) -> Lifespan:
    """A server lifespan that closes `api`'s pooled HTTP client on shutdown (it opens lazily)."""

    @lifespan
    async def _lifespan(server: Any) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await api.aclose()

    return _lifespan
