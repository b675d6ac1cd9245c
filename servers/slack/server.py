"""The Slack MCP server: channels, history, threads, posting, reactions, search and users."""

from typing import Annotated, Any, Literal

from fastmcp import FastMCP
from pydantic import Field

from servers.common import Call, RetryPolicy, follow_pages
from servers.common.tooling import ADD_IDEMPOTENT, CREATE, READ, Cursor, MaxPages, client_lifespan
from servers.slack.client import SlackClient, SlackError
from servers.slack.models import (
    Channel,
    ChannelPage,
    MessagePage,
    PostedMessage,
    ReactionResult,
    SearchMatch,
    SearchPage,
    User,
    UserPage,
    files_of,
)
from servers.slack.reads import MessageReader, next_cursor

ChannelId = Annotated[str, Field(min_length=1, description="Channel ID, e.g. C0123ABCD (see list_channels).")]
Ts = Annotated[str, Field(pattern=r"^\d+\.\d+$", description="A message ts, e.g. 1712345678.000200.")]
Text = Annotated[str, Field(min_length=1, max_length=40000, description="Message text (Slack mrkdwn).")]
OptionalTs = Annotated[str | None, Field(pattern=r"^\d+(\.\d+)?$", description="A Slack ts / Unix time.")]


def create_server(*, policy: RetryPolicy | None = None) -> FastMCP:
    """Build the server; no network I/O happens until a tool runs."""
    api = SlackClient(policy)
    mcp = FastMCP(
        "slack",
        instructions="Slack: read channels and threads, search messages, post replies and reactions.",
        lifespan=client_lifespan(api),
    )
    reader = MessageReader(api)

    @mcp.tool(annotations=READ)
    async def list_channels(
        types: Annotated[
            str,
            Field(description="Comma-separated: public_channel, private_channel, mpim, im."),
        ] = "public_channel",
        exclude_archived: Annotated[bool, Field(description="Leave out archived channels.")] = True,
        limit: Annotated[int, Field(ge=1, le=1000, description="Channels per page (Slack advises ≤200).")] = 200,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> ChannelPage:
        """List Slack channels the bot can see, with IDs needed by the other tools."""

        async def fetch(after: str | None) -> tuple[list[Channel], str | None]:
            params = {"types": types, "exclude_archived": exclude_archived, "limit": limit, "cursor": after}
            call = Call("GET", "/conversations.list", params=params, scope="channels:read", buckets=("tier2",))
            data = await api.send(call)
            for raw in data.get("channels") or []:
                reader.remember(raw)
            return [Channel.from_slack(c) for c in data.get("channels") or []], next_cursor(data)

        page = await follow_pages(fetch, cursor, max_pages)
        return ChannelPage(channels=page.items, next_cursor=page.next_cursor)

    @mcp.tool(annotations=READ)
    async def get_channel_history(
        channel: ChannelId,
        oldest: OptionalTs = None,
        latest: OptionalTs = None,
        limit: Annotated[int, Field(ge=1, le=999, description="Messages per page, newest first.")] = 50,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> MessagePage:
        """Read a channel's messages, newest first, optionally between `oldest` and `latest`."""
        params = {"channel": channel, "oldest": oldest, "latest": latest, "limit": limit}
        return await reader.messages("conversations.history", params, cursor, max_pages)

    @mcp.tool(annotations=READ)
    async def get_thread_replies(
        channel: ChannelId,
        thread_ts: Annotated[Ts, Field(description="ts of the thread's parent message.")],
        limit: Annotated[int, Field(ge=1, le=999, description="Messages per page, parent first.")] = 100,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> MessagePage:
        """Read a thread: the parent message and its replies, oldest first."""
        params = {"channel": channel, "ts": thread_ts, "limit": limit}
        return await reader.messages("conversations.replies", params, cursor, max_pages)

    async def post(body: dict[str, Any]) -> PostedMessage:
        call = Call(
            "POST",
            "/chat.postMessage",
            body=body,
            read=False,
            what=f"channel {body['channel']}",
            scope="chat:write",
            buckets=("post",),
        )
        data = await api.send(call)
        posted = data.get("message") or {}
        return PostedMessage(
            channel=data.get("channel", body["channel"]), ts=data["ts"], thread_ts=posted.get("thread_ts")
        )

    @mcp.tool(annotations=CREATE)
    async def post_message(
        channel: ChannelId,
        text: Text,
        unfurl_links: Annotated[bool, Field(description="Show link previews.")] = False,
    ) -> PostedMessage:
        """Post a new message to a channel as the bot (the bot must be a member)."""
        return await post({"channel": channel, "text": text, "unfurl_links": unfurl_links})

    @mcp.tool(annotations=CREATE)
    async def reply_to_thread(
        channel: ChannelId,
        thread_ts: Annotated[Ts, Field(description="ts of the thread's parent message.")],
        text: Text,
        reply_broadcast: Annotated[bool, Field(description="Also show the reply in the channel.")] = False,
    ) -> PostedMessage:
        """Reply in a message's thread as the bot."""
        body = {"channel": channel, "thread_ts": thread_ts, "text": text, "reply_broadcast": reply_broadcast}
        return await post(body)

    @mcp.tool(annotations=ADD_IDEMPOTENT)
    async def add_reaction(
        channel: ChannelId,
        timestamp: Annotated[Ts, Field(description="ts of the message to react to.")],
        name: Annotated[str, Field(min_length=1, description="Emoji name, e.g. thumbsup or :eyes:.")],
    ) -> ReactionResult:
        """Add an emoji reaction to a message; adding one that is already there is a no-op."""
        body = {"channel": channel, "timestamp": timestamp, "name": name.strip(":")}
        call = Call(
            "POST",
            "/reactions.add",
            body=body,
            read=False,
            what=f"message {timestamp} in {channel}",
            scope="reactions:write",
            buckets=("tier3",),
        )
        try:
            await api.send(call)
        except SlackError as exc:
            if exc.code != "already_reacted":
                raise
            return ReactionResult(ok=True, already_reacted=True)
        return ReactionResult(ok=True)

    @mcp.tool(annotations=READ)
    async def search_messages(
        query: Annotated[
            str,
            Field(min_length=1, description="Slack search query; supports in:#channel from:@user before:..."),
        ],
        sort: Annotated[Literal["score", "timestamp"], Field(description="Order by relevance or time.")] = "score",
        sort_dir: Annotated[Literal["asc", "desc"], Field(description="Sort direction.")] = "desc",
        limit: Annotated[int, Field(ge=1, le=100, description="Matches per page (max 100).")] = 20,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> SearchPage:
        """Search messages across the workspace (uses the user token SLACK_USER_TOKEN with search:read)."""
        totals: list[int] = []

        async def fetch(page_no: str | None) -> tuple[list[SearchMatch], str | None]:
            params = {
                "query": query,
                "sort": sort,
                "sort_dir": sort_dir,
                "count": limit,
                "page": page_no or "1",
            }
            call = Call(
                "GET",
                "/search.messages",
                params=params,
                scope="search:read",
                buckets=("tier2",),
                credential="user",
            )
            found = (await api.send(call)).get("messages") or {}
            if isinstance(found.get("total"), int) and not totals:
                totals.append(found["total"])
            paging = found.get("paging") or {}
            page, pages = int(paging.get("page", 1)), int(paging.get("pages", 1))
            matches = [_match(m) for m in found.get("matches") or []]
            return matches, str(page + 1) if page < pages else None

        if cursor is not None and not cursor.isdigit():
            raise SlackError("Slack: search_messages cursor must be a page number from next_cursor", "bad_cursor")
        page = await follow_pages(fetch, cursor, max_pages)
        return SearchPage(matches=page.items, total=totals[0] if totals else None, next_cursor=page.next_cursor)

    @mcp.tool(annotations=READ)
    async def list_users(
        include_bots: Annotated[bool, Field(description="Also return bot users.")] = False,
        include_deleted: Annotated[bool, Field(description="Also return deactivated users.")] = False,
        limit: Annotated[int, Field(ge=1, le=1000, description="Users per page (Slack advises ≤200).")] = 200,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> UserPage:
        """List the workspace's members with names and titles."""

        async def fetch(after: str | None) -> tuple[list[User], str | None]:
            call = Call(
                "GET",
                "/users.list",
                params={"limit": limit, "cursor": after},
                scope="users:read",
                buckets=("tier2",),
            )
            data = await api.send(call)
            users = [User.from_slack(u) for u in data.get("members") or []]
            kept = [u for u in users if (include_bots or not u.is_bot) and (include_deleted or not u.deleted)]
            return kept, next_cursor(data)

        page = await follow_pages(fetch, cursor, max_pages)
        return UserPage(users=page.items, next_cursor=page.next_cursor)

    @mcp.tool(annotations=READ)
    async def get_user(
        user: Annotated[str, Field(min_length=1, description="User ID, e.g. U0123ABCD.")],
    ) -> User:
        """Get one Slack user's profile by ID."""
        call = Call(
            "GET",
            "/users.info",
            params={"user": user},
            what=f"user {user}",
            scope="users:read",
            buckets=("tier4",),
        )
        return User.from_slack((await api.send(call))["user"])

    return mcp


def _match(raw: dict[str, Any]) -> SearchMatch:
    channel = raw.get("channel") or {}
    return SearchMatch(
        ts=raw["ts"],
        text=raw.get("text"),
        user=raw.get("user"),
        username=raw.get("username"),
        channel_id=channel.get("id"),
        channel_name=channel.get("name"),
        permalink=raw.get("permalink"),
        files=files_of(raw),
    )
