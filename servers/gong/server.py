"""The Gong MCP server: calls, call content, transcripts and users."""

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastmcp import FastMCP
from pydantic import AwareDatetime, Field

from servers.common import Call, RetryPolicy, UpstreamError, follow_pages
from servers.common.tooling import READ, Cursor, MaxPages, client_lifespan
from servers.gong.client import GongClient, next_cursor, send_listing
from servers.gong.extensive import Include, call_detail, content_selector
from servers.gong.models import (
    CallDetail,
    CallDetailPage,
    CallPage,
    CallSummary,
    Monologue,
    Transcript,
    TranscriptPage,
    User,
    UserPage,
)
from servers.gong.transcripts import monologues, pieces

From = Annotated[AwareDatetime, Field(description="Start of the range (ISO 8601 with time zone), inclusive.")]
To = Annotated[AwareDatetime, Field(description="End of the range (ISO 8601 with time zone), exclusive.")]
Limit = Annotated[
    int,
    Field(ge=1, le=1000, description="Most records to return. Gong pages hold up to 100 records."),
]
WorkspaceId = Annotated[str | None, Field(description="Only calls of this Gong workspace.")]
ACCOUNT_TYPES = frozenset({"account", "company"})
DEAL_TYPES = frozenset({"opportunity", "deal"})
CallIds = Annotated[list[str] | None, Field(max_length=100, description="Only these call IDs.")]


def create_server(*, policy: RetryPolicy | None = None) -> FastMCP:
    """Build the server; no network I/O happens until a tool runs."""
    api = GongClient(policy)
    mcp = FastMCP(
        "gong",
        instructions="Gong conversation intelligence: find recorded calls, their content and transcripts.",
        lifespan=client_lifespan(api),
    )

    @mcp.tool(annotations=READ)
    async def list_calls(
        from_date_time: From,
        to_date_time: To,
        workspace_id: WorkspaceId = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> CallPage:
        """List recorded calls that started in a date range (metadata only; see search_calls for content)."""
        totals: list[int] = []

        async def fetch(after: str | None) -> tuple[list[CallSummary], str | None]:
            params = {
                "fromDateTime": _iso(from_date_time),
                "toDateTime": _iso(to_date_time),
                "workspaceId": workspace_id,
                "cursor": after,
            }
            data = await send_listing(api, Call("GET", "/v2/calls", params=params, scope="api:calls:read:basic"))
            _total(data, totals)
            return [CallSummary.from_gong(c) for c in data.get("calls") or []], next_cursor(data)

        page = await follow_pages(fetch, cursor, max_pages, max_items=limit)
        return CallPage(
            calls=page.items,
            total_records=totals[0] if totals else None,
            next_cursor=page.next_cursor,
            truncated=page.cut,
        )

    @mcp.tool(annotations=READ)
    async def get_call(
        call_id: Annotated[str, Field(min_length=1, description="Gong call ID.")],
    ) -> CallSummary:
        """Get one call's metadata by ID."""
        call = Call(
            "GET",
            f"/v2/calls/{quote(call_id, safe='')}",
            what=f"call {call_id}",
            scope="api:calls:read:basic",
        )
        data = await api.send(call)
        return CallSummary.from_gong(data.get("call") or {})

    @mcp.tool(annotations=READ)
    async def search_calls(
        from_date_time: Annotated[AwareDatetime | None, Field(description="Calls started at or after this.")] = None,
        to_date_time: Annotated[AwareDatetime | None, Field(description="Calls started before this.")] = None,
        call_ids: CallIds = None,
        primary_user_ids: Annotated[
            list[str] | None, Field(description="Only calls hosted by these Gong user IDs.")
        ] = None,
        workspace_id: WorkspaceId = None,
        include: Annotated[
            list[Include],
            Field(
                description="Parts of each call to return: parties, brief, key_points, topics, trackers, "
                "highlights, outline, call_outcome, speakers."
            ),
        ] = ["parties", "brief"],  # noqa: B006 - pydantic copies defaults
        crm_context: Annotated[
            Literal["None", "Basic", "Extended"],
            Field(description="CRM objects linked to each call: None, Basic (IDs) or Extended (with fields)."),
        ] = "None",
        account: Annotated[
            str | None,
            Field(description="Only calls linked to this CRM account/company (its CRM ID or name)."),
        ] = None,
        deal: Annotated[
            str | None,
            Field(description="Only calls linked to this CRM deal/opportunity (its CRM ID or name)."),
        ] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> CallDetailPage:
        """Find calls by date range, IDs, host, CRM account or deal and return their content (brief,
        parties, topics, ...). Gong's filter has no CRM field, so `account`/`deal` are matched against
        each call's CRM context after the fetch (`limit` counts matching calls)."""
        if not (from_date_time or to_date_time or call_ids):
            raise UpstreamError("search_calls needs a date range or call_ids")
        wanted = [(ACCOUNT_TYPES, account), (DEAL_TYPES, deal)]
        if (account or deal) and crm_context == "None":
            crm_context = "Extended"  # names as well as IDs, to match either
        flt: dict[str, Any] = {
            "fromDateTime": _iso(from_date_time),
            "toDateTime": _iso(to_date_time),
            "workspaceId": workspace_id,
            "callIds": call_ids,
            "primaryUserIds": primary_user_ids,
        }
        body: dict[str, Any] = {
            "filter": {k: v for k, v in flt.items() if v},
            "contentSelector": content_selector(include, crm_context),
        }
        totals: list[int] = []

        async def fetch(after: str | None) -> tuple[list[CallDetail], str | None]:
            page_body = body if after is None else {**body, "cursor": after}
            call = Call("POST", "/v2/calls/extensive", body=page_body, scope="api:calls:read:extensive")
            data = await send_listing(api, call)
            _total(data, totals)
            calls = [call_detail(c, include) for c in data.get("calls") or []]
            return [c for c in calls if all(_linked(c, t, v) for t, v in wanted if v)], next_cursor(data)

        page = await follow_pages(fetch, cursor, max_pages, max_items=limit)
        return CallDetailPage(
            calls=page.items,
            total_records=totals[0] if totals else None,
            next_cursor=page.next_cursor,
            truncated=page.cut,
        )

    @mcp.tool(annotations=READ)
    async def get_call_transcripts(
        call_ids: CallIds = None,
        from_date_time: Annotated[AwareDatetime | None, Field(description="Calls started at or after this.")] = None,
        to_date_time: Annotated[AwareDatetime | None, Field(description="Calls started before this.")] = None,
        workspace_id: WorkspaceId = None,
        max_chars: Annotated[
            int,
            Field(
                ge=200,
                le=1_000_000,
                description="Most transcript characters to return; `next_cursor` continues from there.",
            ),
        ] = 20_000,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> TranscriptPage:
        """Get call transcripts as speaker turns (speaker IDs match `speakers`/`parties` of search_calls),
        at most `max_chars` characters of text per call of this tool (pass the same arguments with the
        returned cursor to read on)."""
        if not (call_ids or from_date_time or to_date_time):
            raise UpstreamError("get_call_transcripts needs call_ids or a date range")
        flt = {
            "fromDateTime": _iso(from_date_time),
            "toDateTime": _iso(to_date_time),
            "workspaceId": workspace_id,
            "callIds": call_ids,
        }
        body = {"filter": {k: v for k, v in flt.items() if v}}

        async def fetch(after: str | None) -> tuple[list[tuple[str, Monologue]], str | None]:
            page_body = body if after is None else {**body, "cursor": after}
            call = Call("POST", "/v2/calls/transcript", body=page_body, scope="api:calls:read:transcript")
            data = await send_listing(api, call)
            turns = [
                (str(t.get("callId")), piece)
                for t in data.get("callTranscripts") or []
                for turn in monologues(t)
                for piece in pieces(turn, max_chars)
            ]
            return turns, next_cursor(data)

        page = await follow_pages(fetch, cursor, max_pages, size=lambda turn: len(turn[1].text), max_size=max_chars)
        transcripts: list[Transcript] = []
        for call_id, turn in page.items:
            if not transcripts or transcripts[-1].call_id != call_id:
                transcripts.append(Transcript(call_id=call_id, monologues=[]))
            transcripts[-1].monologues.append(turn)
        return TranscriptPage(transcripts=transcripts, next_cursor=page.next_cursor, truncated=page.cut)

    @mcp.tool(annotations=READ)
    async def list_users(
        include_inactive: Annotated[bool, Field(description="Also return deactivated users.")] = False,
        limit: Limit = 100,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> UserPage:
        """List Gong users (call hosts and participants from your company)."""
        totals: list[int] = []

        async def fetch(after: str | None) -> tuple[list[User], str | None]:
            call = Call("GET", "/v2/users", params={"cursor": after}, scope="api:users:read")
            data = await api.send(call)
            _total(data, totals)
            users = [User.from_gong(u) for u in data.get("users") or []]
            return [u for u in users if include_inactive or u.active is not False], next_cursor(data)

        page = await follow_pages(fetch, cursor, max_pages, max_items=limit)
        return UserPage(
            users=page.items,
            total_records=totals[0] if totals else None,
            next_cursor=page.next_cursor,
        )

    @mcp.tool(annotations=READ)
    async def get_user(user_id: Annotated[str, Field(min_length=1, description="Gong user ID.")]) -> User:
        """Get one Gong user by ID."""
        call = Call("GET", f"/v2/users/{quote(user_id, safe='')}", what=f"user {user_id}", scope="api:users:read")
        data = await api.send(call)
        return User.from_gong(data.get("user") or {})

    return mcp


def _linked(detail: CallDetail, types: frozenset[str], wanted: str) -> bool:
    """Whether the call's CRM context holds an object of one of `types` with ID or name `wanted`."""
    want = wanted.strip().casefold()
    return any(
        (obj.object_type or "").casefold() in types
        and want in {(obj.object_id or "").casefold(), (obj.name or "").casefold()}
        for obj in detail.crm_context or []
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _total(data: dict[str, Any], totals: list[int]) -> None:
    total = (data.get("records") or {}).get("totalRecords")
    if isinstance(total, int) and not totals:
        totals.append(total)
