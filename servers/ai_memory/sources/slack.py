"""Slack as a memory source: a channel's messages and their thread replies, newer than the cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from servers.ai_memory.sources.items import Item, iso_from_epoch, parts
from servers.common import Call, RetryPolicy, UpstreamError
from servers.slack.client import SlackClient
from servers.slack.models import Message
from servers.slack.reads import MessageReader

PAGE = 50
"""Messages per history page: each needs a permalink, so a page is also a checkpoint of the run."""


class SlackScope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(min_length=1, description="Channel ID, e.g. C0123ABCD.")
    oldest: str | None = Field(None, pattern=r"^\d+(\.\d+)?$", description="Only messages after this Slack ts.")
    account: str | None = Field(None, description="Tag every message with this account (e.g. a shared channel).")


class SlackSource:
    """Reads through the slack server's own client and `MessageReader` (permalinks, files, limits)."""

    name = "slack"
    scope_model = SlackScope

    def __init__(self, policy: RetryPolicy) -> None:
        self.api = SlackClient(policy)
        self.reader = MessageReader(self.api)
        self._names: dict[str, str] = {}

    async def batches(self, scope: SlackScope, cursor: Any) -> AsyncIterator[tuple[list[Item], Any]]:
        """Pages of messages (newest first) with their threads; the cursor is the newest ts seen, plus the
        next page while a run is under way."""
        cursor = cursor or {}
        since = cursor.get("latest_ts") or scope.oldest
        resume = cursor.get("resume") or {}
        newest, page_cursor = resume.get("newest") or since, resume.get("page")
        label = await self._channel_label(scope.channel)
        while True:
            params = {"channel": scope.channel, "oldest": since, "limit": PAGE}
            page = await self.reader.messages("conversations.history", params, page_cursor, 1, wait=True)
            items: list[Item] = []
            for message in page.messages:
                newest = message.ts if newest is None or float(message.ts) > float(newest) else newest
                items += await self._items(scope, label, message)
                if message.reply_count and message.thread_ts == message.ts:
                    items += await self._thread(scope, label, message.ts)
            page_cursor = page.next_cursor
            if page_cursor is None:
                yield items, {"latest_ts": newest} if newest else None
                return
            # history pages run newest to oldest: a run cut short resumes at the next page
            yield items, {"latest_ts": since, "resume": {"page": page_cursor, "newest": newest}}

    async def _thread(self, scope: SlackScope, label: str | None, thread_ts: str) -> list[Item]:
        items: list[Item] = []
        page_cursor: str | None = None
        while True:
            params = {"channel": scope.channel, "ts": thread_ts, "limit": PAGE}
            page = await self.reader.messages("conversations.replies", params, page_cursor, 1, wait=True)
            for reply in page.messages:
                if reply.ts != thread_ts:
                    items += await self._items(scope, label, reply)
            page_cursor = page.next_cursor
            if page_cursor is None:
                return items

    async def _items(self, scope: SlackScope, label: str | None, m: Message) -> list[Item]:
        text = (m.text or "").strip()
        files = ", ".join(f.name or f.title or "file" for f in m.files)
        if files:
            text = f"{text} [files: {files}]".strip()
        if not text or m.subtype in ("channel_join", "channel_leave"):
            return []
        author = await self._user_name(m.user) if m.user else (m.bot_id and f"bot {m.bot_id}")
        when = iso_from_epoch(float(m.ts))
        chunks = parts(text)
        # the channel's name and the thread say where, in metadata; the text keeps who said what
        extra = {"channel": scope.channel, "channel_name": label, "thread_ts": m.thread_ts}
        return [
            Item(
                source="slack",
                source_id=f"{scope.channel}:{m.ts}" + (f"#{n}" if len(chunks) > 1 else ""),
                content=f"{author}: {chunk}" if author else chunk,
                url=m.permalink,
                author=author,
                ts=when,
                account=scope.account,
                extra=extra,
            )
            for n, chunk in enumerate(chunks, start=1)
        ]

    async def _channel_label(self, channel: str) -> str | None:
        call = Call(
            "GET", "/conversations.info", params={"channel": channel}, what=f"channel {channel}", buckets=("tier3",)
        )
        try:
            raw = (await self.api.send(call)).get("channel") or {}
        except UpstreamError:
            return None
        self.reader.remember(raw)
        return f"#{raw['name']}" if raw.get("name") else None

    async def _user_name(self, user: str) -> str:
        if user not in self._names:
            call = Call("GET", "/users.info", params={"user": user}, what=f"user {user}", buckets=("tier4",))
            try:
                raw = (await self.api.send(call)).get("user") or {}
            except UpstreamError:
                raw = {}
            profile = raw.get("profile") or {}
            self._names[user] = raw.get("real_name") or profile.get("real_name") or raw.get("name") or user
        return self._names[user]
