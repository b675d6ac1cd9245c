"""Gong as a memory source: call transcripts as speaker turns, named and placed, for calls since the cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from servers.ai_memory.sources.items import Item, parts
from servers.common import Call, RetryPolicy
from servers.gong.client import GongClient, next_cursor, send_listing
from servers.gong.extensive import call_detail, content_selector
from servers.gong.models import CallDetail
from servers.gong.transcripts import monologues

IDS_PER_REQUEST = 100
MIN_WORDS = 3
ACCOUNT_TYPES = frozenset({"account", "company"})


class GongScope(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", description="Calls started on or after this (ISO 8601 date or date-time).")
    to: str | None = Field(None, description="Calls started before this (ISO 8601 date or date-time).")

    @field_validator("from_", "to")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            _aware(value)
        return value


def _aware(value: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC if it names no zone)."""
    try:
        if len(value.strip()) == 10:
            return datetime.combine(date.fromisoformat(value.strip()), time(), UTC)
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class GongSource:
    """Calls through the gong server's client: `/v2/calls/extensive` for who and where, then transcripts."""

    name = "gong"
    scope_model = GongScope

    def __init__(self, policy: RetryPolicy) -> None:
        self.api = GongClient(policy)

    async def batches(self, scope: GongScope, cursor: Any) -> AsyncIterator[tuple[list[Item], Any]]:
        """One batch per page of calls; the cursor is the latest call start seen (re-read inclusively), plus
        the next page while a run is under way."""
        cursor = cursor or {}
        start = _aware(scope.from_)
        if cursor.get("latest_started"):
            start = max(start, datetime.fromisoformat(cursor["latest_started"]))
        flt: dict[str, Any] = {"fromDateTime": start.isoformat()}
        if scope.to is not None:
            flt["toDateTime"] = _aware(scope.to).isoformat()
        body = {"filter": flt, "contentSelector": content_selector(["parties"], "Extended")}
        resume = cursor.get("resume") or {}
        latest = _parse(resume.get("latest") or cursor.get("latest_started"))
        page_cursor: str | None = resume.get("page")
        while True:
            page_body = body if page_cursor is None else {**body, "cursor": page_cursor}
            data = await send_listing(
                self.api, Call("POST", "/v2/calls/extensive", body=page_body, scope="api:calls:read:extensive")
            )
            calls = [call_detail(raw, ["parties"]) for raw in data.get("calls") or []]
            items = await self._turns(calls)
            for started in (_parse(c.call.started) for c in calls):
                if started is not None and (latest is None or started > latest):
                    latest = started
            page_cursor = next_cursor(data)
            seen = latest.isoformat() if latest else None
            if page_cursor is None:
                yield items, {"latest_started": seen} if seen else None
                return
            yield items, {**cursor, "resume": {"page": page_cursor, "latest": seen}}

    async def _turns(self, calls: list[CallDetail]) -> list[Item]:
        by_id = {c.call.id: c for c in calls}
        items: list[Item] = []
        ids = list(by_id)
        for start in range(0, len(ids), IDS_PER_REQUEST):
            body: dict[str, Any] = {"filter": {"callIds": ids[start : start + IDS_PER_REQUEST]}}
            while True:
                call = Call("POST", "/v2/calls/transcript", body=body, scope="api:calls:read:transcript")
                data = await send_listing(self.api, call)
                for raw in data.get("callTranscripts") or []:
                    detail = by_id.get(str(raw.get("callId")))
                    if detail is not None:
                        items += self._items(detail, raw)
                following = next_cursor(data)
                if following is None:
                    break
                body = {**body, "cursor": following}
        return items

    def _items(self, detail: CallDetail, raw: dict[str, Any]) -> list[Item]:
        meta = detail.call
        speakers = {p.speaker_id: p for p in detail.parties or [] if p.speaker_id}
        account = next(
            (o.name for o in detail.crm_context or [] if (o.object_type or "").casefold() in ACCOUNT_TYPES and o.name),
            None,
        )
        started = _parse(meta.started)
        title = meta.title or f"call {meta.id}"
        items = []
        for index, turn in enumerate(monologues(raw), start=1):
            if len(turn.text.split()) < MIN_WORDS:  # "Yes." and "Okay." are not worth remembering
                continue
            party = speakers.get(turn.speaker_id)
            name = (party.name if party else None) or f"speaker {turn.speaker_id}"
            affiliation = party.affiliation if party else None
            when = started + timedelta(milliseconds=turn.start_ms or 0) if started else None
            ts = when.isoformat(timespec="seconds").replace("+00:00", "Z") if when else None
            side = [x for x in (account if affiliation == "External" else None, affiliation) if x]
            who = f"{name} ({', '.join(side)})" if side else name
            chunks = parts(turn.text)
            for piece, chunk in enumerate(chunks, start=1):
                items.append(
                    Item(
                        source="gong",
                        source_id=f"{meta.id}:{index}" + (f"#{piece}" if len(chunks) > 1 else ""),
                        content=f"{who}: {chunk}",
                        url=meta.url,
                        author=name,
                        ts=ts,
                        account=account,
                        extra={"call_id": meta.id, "title": title, "affiliation": affiliation, "topic": turn.topic},
                    )
                )
        return items
