"""Trimmed Slack objects returned by the tools (structured content)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Channel(BaseModel):
    id: str
    name: str | None = None
    is_private: bool | None = None
    is_archived: bool | None = None
    is_member: bool | None = Field(None, description="Whether the bot is in the channel (needed to read it).")
    num_members: int | None = None
    topic: str | None = None
    purpose: str | None = None

    @classmethod
    def from_slack(cls, raw: dict[str, Any]) -> Channel:
        return cls(
            id=raw["id"],
            name=raw.get("name"),
            is_private=raw.get("is_private"),
            is_archived=raw.get("is_archived"),
            is_member=raw.get("is_member"),
            num_members=raw.get("num_members"),
            topic=(raw.get("topic") or {}).get("value") or None,
            purpose=(raw.get("purpose") or {}).get("value") or None,
        )


class ChannelPage(BaseModel):
    channels: list[Channel]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null when done.")


class Reaction(BaseModel):
    name: str
    count: int | None = None


class File(BaseModel):
    """A file attached to a message (metadata only; `permalink` opens it in Slack)."""

    id: str | None = None
    name: str | None = None
    title: str | None = None
    filetype: str | None = None
    mimetype: str | None = None
    size: int | None = Field(None, description="Bytes.")
    permalink: str | None = None

    @classmethod
    def from_slack(cls, raw: dict[str, Any]) -> File:
        return cls(
            id=raw.get("id"),
            name=raw.get("name"),
            title=raw.get("title"),
            filetype=raw.get("filetype"),
            mimetype=raw.get("mimetype"),
            size=raw.get("size"),
            permalink=raw.get("permalink"),
        )


def files_of(raw: dict[str, Any]) -> list[File]:
    return [File.from_slack(f) for f in raw.get("files") or [] if isinstance(f, dict)]


class Message(BaseModel):
    ts: str = Field(description="Message timestamp: its ID within the channel.")
    user: str | None = None
    text: str | None = None
    thread_ts: str | None = Field(None, description="Parent message ts if the message is in a thread.")
    reply_count: int | None = None
    subtype: str | None = None
    bot_id: str | None = None
    reactions: list[Reaction] = Field(default_factory=list)
    files: list[File] = Field(default_factory=list)
    permalink: str | None = Field(None, description="Link to the message in Slack.")

    @classmethod
    def from_slack(cls, raw: dict[str, Any]) -> Message:
        return cls(
            ts=raw["ts"],
            user=raw.get("user"),
            text=raw.get("text"),
            thread_ts=raw.get("thread_ts"),
            reply_count=raw.get("reply_count"),
            subtype=raw.get("subtype"),
            bot_id=raw.get("bot_id"),
            reactions=[Reaction(name=r["name"], count=r.get("count")) for r in raw.get("reactions") or []],
            files=files_of(raw),
            permalink=raw.get("permalink"),
        )


class MessagePage(BaseModel):
    messages: list[Message]
    next_cursor: str | None = None


class PostedMessage(BaseModel):
    channel: str
    ts: str = Field(description="The new message's ts; use it as `thread_ts` to reply in its thread.")
    thread_ts: str | None = None


class ReactionResult(BaseModel):
    ok: bool
    already_reacted: bool = Field(False, description="The reaction was already there; nothing changed.")


class SearchMatch(BaseModel):
    ts: str
    text: str | None = None
    user: str | None = None
    username: str | None = None
    channel_id: str | None = None
    channel_name: str | None = None
    permalink: str | None = None
    files: list[File] = Field(default_factory=list)


class SearchPage(BaseModel):
    matches: list[SearchMatch]
    total: int | None = None
    next_cursor: str | None = Field(None, description="Next result page number; pass as `cursor`.")


class User(BaseModel):
    id: str
    name: str | None = None
    real_name: str | None = None
    display_name: str | None = None
    title: str | None = None
    email: str | None = Field(None, description="Present only with the users:read.email scope.")
    is_bot: bool | None = None
    is_admin: bool | None = None
    deleted: bool | None = None
    tz: str | None = None

    @classmethod
    def from_slack(cls, raw: dict[str, Any]) -> User:
        profile = raw.get("profile") or {}
        return cls(
            id=raw["id"],
            name=raw.get("name"),
            real_name=raw.get("real_name") or profile.get("real_name"),
            display_name=profile.get("display_name") or None,
            title=profile.get("title") or None,
            email=profile.get("email"),
            is_bot=raw.get("is_bot"),
            is_admin=raw.get("is_admin"),
            deleted=raw.get("deleted"),
            tz=raw.get("tz"),
        )


class UserPage(BaseModel):
    users: list[User]
    next_cursor: str | None = None
