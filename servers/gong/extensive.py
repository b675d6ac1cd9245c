"""`POST /v2/calls/extensive`: build the content selector and trim what comes back."""

from __future__ import annotations

from typing import Any, Literal

from servers.gong.models import (
    CallDetail,
    CallSummary,
    CrmObject,
    Party,
    Section,
    Speaker,
    Topic,
    Tracker,
)

Include = Literal[
    "parties",
    "brief",
    "key_points",
    "topics",
    "trackers",
    "highlights",
    "outline",
    "call_outcome",
    "speakers",
]
CONTENT_FIELDS: dict[str, str] = {
    "brief": "brief",
    "key_points": "keyPoints",
    "topics": "topics",
    "trackers": "trackers",
    "highlights": "highlights",
    "outline": "outline",
    "call_outcome": "callOutcome",
}


def content_selector(include: list[Include], context: str) -> dict[str, Any]:
    """The request's `contentSelector` for the chosen parts."""
    exposed: dict[str, Any] = {}
    if "parties" in include:
        exposed["parties"] = True
    content = {CONTENT_FIELDS[name]: True for name in include if name in CONTENT_FIELDS}
    if content:
        exposed["content"] = content
    if "speakers" in include:
        exposed["interaction"] = {"speakers": True}
    return {"context": context, "exposedFields": exposed}


def call_detail(raw: dict[str, Any], include: list[Include]) -> CallDetail:
    """One `calls[]` entry of the response, trimmed to the selected parts."""
    content = raw.get("content") or {}
    detail = CallDetail(call=CallSummary.from_gong(raw.get("metaData") or {}))
    if "parties" in include:
        detail.parties = [
            Party(
                name=p.get("name"),
                email=p.get("emailAddress"),
                title=p.get("title"),
                affiliation=p.get("affiliation"),
                speaker_id=p.get("speakerId"),
                user_id=p.get("userId"),
            )
            for p in raw.get("parties") or []
        ]
    if "brief" in include:
        detail.brief = content.get("brief")
    if "key_points" in include:
        detail.key_points = [k["text"] for k in content.get("keyPoints") or [] if k.get("text")]
    if "topics" in include:
        detail.topics = [Topic(name=t["name"], duration_seconds=t.get("duration")) for t in content.get("topics") or []]
    if "trackers" in include:
        detail.trackers = [Tracker(name=t["name"], count=t.get("count")) for t in content.get("trackers") or []]
    if "highlights" in include:
        detail.highlights = [
            Section(title=h.get("title"), items=[i["text"] for i in h.get("items") or [] if i.get("text")])
            for h in content.get("highlights") or []
        ]
    if "outline" in include:
        detail.outline = [
            Section(title=o.get("section"), items=[i["text"] for i in o.get("items") or [] if i.get("text")])
            for o in content.get("outline") or []
        ]
    if "call_outcome" in include:
        detail.call_outcome = (content.get("callOutcome") or {}).get("name")
    if "speakers" in include:
        detail.speakers = [
            Speaker(id=s.get("id"), user_id=s.get("userId"), talk_time_seconds=s.get("talkTime"))
            for s in (raw.get("interaction") or {}).get("speakers") or []
        ]
    if raw.get("context"):
        detail.crm_context = [
            CrmObject(
                system=ctx.get("system"),
                object_type=obj.get("objectType"),
                object_id=obj.get("objectId"),
                name=next((str(f.get("value")) for f in obj.get("fields") or [] if f.get("name") == "Name"), None),
            )
            for ctx in raw["context"]
            for obj in ctx.get("objects") or []
        ]
    return detail
