"""Notes, tasks, calls, emails and meetings: logging notes and tasks, and reading a record's timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import anyio

from servers.common import Call
from servers.hubspot.associations import associated_ids, create_associations
from servers.hubspot.client import HubSpotClient
from servers.hubspot.crm import batch_read, objects_url
from servers.hubspot.models import CrmObject, Engagement, RecordRef

EngagementType = Literal["notes", "tasks", "calls", "emails", "meetings"]
ENGAGEMENT_TYPES: tuple[EngagementType, ...] = ("notes", "tasks", "calls", "emails", "meetings")
# (title property, body property, other properties) per engagement type.
FIELDS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "notes": (None, "hs_note_body", ()),
    "tasks": ("hs_task_subject", "hs_task_body", ("hs_task_status", "hs_task_priority", "hs_task_type")),
    "calls": ("hs_call_title", "hs_call_body", ("hs_call_direction", "hs_call_duration", "hs_call_status")),
    "emails": ("hs_email_subject", "hs_email_text", ("hs_email_direction", "hs_email_status")),
    "meetings": ("hs_meeting_title", "hs_meeting_body", ("hs_meeting_start_time", "hs_meeting_end_time")),
}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def properties_of(kind: str) -> list[str]:
    title, body, extra = FIELDS[kind]
    return [p for p in (title, body, "hs_timestamp", "hubspot_owner_id", *extra) if p]


async def create_engagement(
    api: HubSpotClient, kind: Literal["notes", "tasks"], properties: dict[str, str], refs: list[RecordRef]
) -> Engagement:
    """POST /crm/v3/objects/{notes|tasks} with default associations to `refs` (never retried on 5xx)."""
    body = {"properties": properties, "associations": create_associations(kind, refs)}
    call = Call("POST", objects_url(kind), body=body, read=False, scope=f"crm.objects.{refs[0].type}s.write")
    return engagement(kind, CrmObject.from_hubspot(await api.send(call)))


def engagement(kind: str, record: CrmObject) -> Engagement:
    title, body, _ = FIELDS[kind]
    props = record.properties
    return Engagement(
        type=kind[:-1],  # type: ignore[arg-type]
        id=record.id,
        timestamp=props.get("hs_timestamp"),
        title=props.get(title) if title else None,
        body=props.get(body),
        owner_id=props.get("hubspot_owner_id"),
        properties=props,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


async def list_engagements(
    api: HubSpotClient, object_type: str, object_id: str, types: list[EngagementType]
) -> list[Engagement]:
    """The engagements of `types` associated with one record, newest first (associations, then batch reads)."""
    found: list[Engagement] = []

    async def one(kind: EngagementType) -> None:
        ids = await associated_ids(api, object_type, object_id, kind)
        if ids:
            records, _ = await batch_read(api, kind, ids, properties_of(kind))
            found.extend(engagement(kind, r) for r in records)

    async with anyio.create_task_group() as group:
        for kind in dict.fromkeys(types):
            group.start_soon(one, kind)
    return sorted(found, key=lambda e: (e.timestamp or e.created_at or "", e.id), reverse=True)


def task_properties(
    subject: str, body: str | None, due_date: str | None, owner_id: str | None, priority: str | None
) -> dict[str, str]:
    named: dict[str, Any] = {
        "hs_task_subject": subject,
        "hs_task_body": body,
        "hs_timestamp": due_date or now_iso(),
        "hubspot_owner_id": owner_id,
        "hs_task_priority": priority,
        "hs_task_status": "NOT_STARTED",
        "hs_task_type": "TODO",
    }
    return {k: str(v) for k, v in named.items() if v is not None}
