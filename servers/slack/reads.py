"""Reading conversations: history and replies with permalinks and files, the right history scope per
conversation kind, and the limits of commercially distributed non-Marketplace apps.

`MessageReader` is shared by the slack tools and by ai_memory's Slack ingestion, so both read the same way.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any

import anyio

from servers.common import Call, UpstreamError, follow_pages
from servers.slack.client import SlackClient
from servers.slack.models import Message, MessagePage

log = logging.getLogger(__name__)

DISTRIBUTION_ENV = "SLACK_APP_DISTRIBUTION"
DISTRIBUTIONS = ("internal", "marketplace", "commercial")
COMMERCIAL_LIMIT = 15
"""Since 2025-05-29, commercially distributed non-Marketplace apps get at most (and by default) 15
messages per `conversations.history` / `conversations.replies` call, and 1 call per minute."""
COMMERCIAL_BUCKETS = {"conversations.history": "history", "conversations.replies": "replies"}
HISTORY_SCOPES = {
    "public": "channels:history",
    "private": "groups:history",
    "im": "im:history",
    "mpim": "mpim:history",
}
PERMALINK_CACHE = 10_000
PERMALINK_CONCURRENCY = 8


def commercial() -> bool:
    """Whether `SLACK_APP_DISTRIBUTION` says the app is commercially distributed outside the Marketplace."""
    value = os.environ.get(DISTRIBUTION_ENV, "").strip().lower()
    if value and value not in DISTRIBUTIONS:
        raise UpstreamError(f"Slack: {DISTRIBUTION_ENV} must be one of {', '.join(DISTRIBUTIONS)}; got {value!r}")
    return value == "commercial"


def channel_kind(raw: dict[str, Any]) -> str:
    """public, private, im or mpim, from a conversation object's flags."""
    if raw.get("is_im"):
        return "im"
    if raw.get("is_mpim"):
        return "mpim"
    return "private" if raw.get("is_private") or raw.get("is_group") else "public"


class MessageReader:
    """Reads messages of one workspace through `api`, remembering conversation kinds and permalinks."""

    def __init__(self, api: SlackClient) -> None:
        self.api = api
        self.kinds: dict[str, str] = {}
        self._permalinks: OrderedDict[tuple[str, str], str] = OrderedDict()

    def remember(self, raw_channel: dict[str, Any]) -> None:
        """Note a conversation's kind (from conversations.list/info) for scope hints."""
        if raw_channel.get("id"):
            self.kinds[raw_channel["id"]] = channel_kind(raw_channel)

    def history_scope(self, channel: str) -> str:
        """The `*:history` scope reading `channel` needs, as precisely as its ID and what we know allow."""
        kind = self.kinds.get(channel)
        if kind is None and channel.startswith("D"):
            kind = "im"
        if kind is not None:
            return HISTORY_SCOPES[kind]
        if channel.startswith("G"):
            return "groups:history (mpim:history for a group DM)"
        return "channels:history (groups:history if the channel is private)"

    async def messages(
        self, method: str, params: dict[str, Any], cursor: str | None, max_pages: int, *, wait: bool = False
    ) -> MessagePage:
        """Pages of `conversations.history` or `conversations.replies`, each message with its permalink.

        For a commercially distributed non-Marketplace app the page size is capped at 15 and one call
        per minute goes out: `wait=True` (ingestion) waits for it, otherwise one page is read and a call
        that would have to wait fails at once with the time to retry.
        """
        channel = params["channel"]
        buckets: tuple[str, ...] = ("tier3",)
        if commercial():
            bucket = COMMERCIAL_BUCKETS[method]
            buckets, max_pages = (bucket,), max_pages if wait else 1
            params = {**params, "limit": min(int(params.get("limit") or COMMERCIAL_LIMIT), COMMERCIAL_LIMIT)}
            delay = self.api.limiters[bucket].delay()
            if delay > 0 and not wait:
                raise UpstreamError(
                    f"Slack: {method} allows 1 request per minute for commercially distributed non-Marketplace "
                    f"apps ({DISTRIBUTION_ENV}=commercial); retry after {delay:.0f}s"
                )

        async def fetch(after: str | None) -> tuple[list[Message], str | None]:
            call = Call(
                "GET",
                f"/{method}",
                params={**params, "cursor": after},
                what=f"channel {channel}",
                scope=self.history_scope(channel),
                buckets=buckets,
            )
            data = await self.api.send(call)
            return [Message.from_slack(m) for m in data.get("messages") or []], next_cursor(data)

        page = await follow_pages(fetch, cursor, max_pages)
        await self.add_permalinks(channel, page.items)
        return MessagePage(messages=page.items, next_cursor=page.next_cursor)

    async def add_permalinks(self, channel: str, messages: list[Message]) -> None:
        """Fill each message's `permalink` from `chat.getPermalink`, a few at a time, cached per message."""
        missing = [m for m in messages if m.permalink is None]
        for m in missing:
            cached = self._permalinks.get((channel, m.ts))
            if cached is not None:
                m.permalink = cached
                self._permalinks.move_to_end((channel, m.ts))
        todo = [m for m in missing if m.permalink is None]
        if not todo:
            return
        slots = anyio.Semaphore(PERMALINK_CONCURRENCY)

        async def one(m: Message) -> None:
            async with slots:
                call = Call(
                    "GET",
                    "/chat.getPermalink",
                    params={"channel": channel, "message_ts": m.ts},
                    what=f"message {m.ts} in {channel}",
                    buckets=("permalink",),
                )
                try:
                    m.permalink = (await self.api.send(call)).get("permalink")
                except UpstreamError as exc:  # a message without a link is still worth reading
                    log.warning("Slack: no permalink for %s in %s: %s", m.ts, channel, exc)
                    return
            if m.permalink:
                self._permalinks[(channel, m.ts)] = m.permalink
                while len(self._permalinks) > PERMALINK_CACHE:
                    self._permalinks.popitem(last=False)

        async with anyio.create_task_group() as group:
            for m in todo:
                group.start_soon(one, m)


def next_cursor(data: dict[str, Any]) -> str | None:
    """`response_metadata.next_cursor`; Slack sends an empty string on the last page."""
    return (data.get("response_metadata") or {}).get("next_cursor") or None
