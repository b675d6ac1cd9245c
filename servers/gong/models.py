"""Trimmed Gong records returned by the tools (structured content)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CallSummary(BaseModel):
    """A call's metadata."""

    id: str
    title: str | None = None
    url: str | None = Field(None, description="Link to the call in Gong.")
    started: str | None = None
    scheduled: str | None = None
    duration_seconds: int | None = None
    direction: str | None = None
    scope: str | None = Field(None, description="Internal, External or Unknown.")
    system: str | None = None
    media: str | None = None
    language: str | None = None
    primary_user_id: str | None = None
    purpose: str | None = None
    workspace_id: str | None = None

    @classmethod
    def from_gong(cls, raw: dict[str, Any]) -> CallSummary:
        return cls(
            id=str(raw["id"]),
            title=raw.get("title"),
            url=raw.get("url"),
            started=raw.get("started"),
            scheduled=raw.get("scheduled"),
            duration_seconds=raw.get("duration"),
            direction=raw.get("direction"),
            scope=raw.get("scope"),
            system=raw.get("system"),
            media=raw.get("media"),
            language=raw.get("language"),
            primary_user_id=raw.get("primaryUserId"),
            purpose=raw.get("purpose"),
            workspace_id=raw.get("workspaceId"),
        )


class CallPage(BaseModel):
    calls: list[CallSummary]
    total_records: int | None = Field(None, description="Total matching calls Gong reports.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null when done.")
    truncated: bool = Field(
        False, description="True if `limit` stopped inside a Gong page; `next_cursor` resumes right after it."
    )


class Party(BaseModel):
    name: str | None = None
    email: str | None = None
    title: str | None = None
    affiliation: str | None = Field(None, description="Internal, External or Unknown.")
    speaker_id: str | None = None
    user_id: str | None = None


class Topic(BaseModel):
    name: str
    duration_seconds: int | None = None


class Tracker(BaseModel):
    name: str
    count: int | None = None


class Section(BaseModel):
    """A highlight group or outline section, with its points as text."""

    title: str | None = None
    items: list[str] = Field(default_factory=list)


class Speaker(BaseModel):
    id: str | None = None
    user_id: str | None = None
    talk_time_seconds: float | None = None


class CrmObject(BaseModel):
    system: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    name: str | None = None


class CallDetail(BaseModel):
    """A call with the content selected in `include`; unselected parts are null."""

    call: CallSummary
    parties: list[Party] | None = None
    brief: str | None = None
    key_points: list[str] | None = None
    topics: list[Topic] | None = None
    trackers: list[Tracker] | None = None
    highlights: list[Section] | None = None
    outline: list[Section] | None = None
    call_outcome: str | None = None
    speakers: list[Speaker] | None = None
    crm_context: list[CrmObject] | None = None


class CallDetailPage(BaseModel):
    calls: list[CallDetail]
    total_records: int | None = None
    next_cursor: str | None = None
    truncated: bool = Field(
        False, description="True if `limit` stopped inside a Gong page; `next_cursor` resumes right after it."
    )


class Monologue(BaseModel):
    """One speaker's uninterrupted turn."""

    speaker_id: str | None = None
    topic: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    text: str


class Transcript(BaseModel):
    call_id: str
    monologues: list[Monologue]


class TranscriptPage(BaseModel):
    transcripts: list[Transcript]
    next_cursor: str | None = Field(None, description="Pass as `cursor` (same arguments) to read on.")
    truncated: bool = Field(False, description="True if `max_chars` stopped inside a Gong page.")


class User(BaseModel):
    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    active: bool | None = None
    manager_id: str | None = None
    created: str | None = None

    @classmethod
    def from_gong(cls, raw: dict[str, Any]) -> User:
        return cls(
            id=str(raw["id"]),
            email=raw.get("emailAddress"),
            first_name=raw.get("firstName"),
            last_name=raw.get("lastName"),
            title=raw.get("title"),
            active=raw.get("active"),
            manager_id=raw.get("managerId"),
            created=raw.get("created"),
        )


class UserPage(BaseModel):
    users: list[User]
    total_records: int | None = None
    next_cursor: str | None = None
