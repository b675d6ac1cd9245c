"""HubSpot as a memory source: records of one type (a summary each) and the notes on them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from servers.ai_memory.sources.items import Item, parts, plain_text
from servers.common import Call, RetryPolicy, UpstreamError
from servers.hubspot.associations import associated_ids
from servers.hubspot.client import HubSpotClient
from servers.hubspot.crm import KNOWN, TYPE_IDS, batch_read, search_page
from servers.hubspot.engagements import properties_of
from servers.hubspot.models import CrmObject

PORTAL_ENV = "HUBSPOT_PORTAL_ID"
PAGE = 100
MODIFIED = ("hs_lastmodifieddate", "notes_last_updated")
SLACK_SECONDS = 300
"""The cursor is the run's start less this margin, so records changed during a run are read again."""
TITLES = {"contacts": ("firstname", "lastname"), "companies": ("name",), "deals": ("dealname",)}


class HubSpotScope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object_type: Literal["contact", "company", "deal"]
    ids: list[str] | None = Field(None, max_length=1000, description="Only these records (all if omitted).")


class HubSpotSource:
    """Reads through the hubspot server's client and CRM helpers (search, batch read, v4 associations)."""

    name = "hubspot"
    scope_model = HubSpotScope

    def __init__(self, policy: RetryPolicy) -> None:
        self.api = HubSpotClient(policy)
        self._portal: tuple[str, str] | None = None
        self._owners: dict[str, str] = {}

    async def batches(self, scope: HubSpotScope, cursor: Any) -> AsyncIterator[tuple[list[Item], Any]]:
        """A batch per page of records (modified since the cursor, or the given IDs) with their notes; while a
        run is under way the cursor also holds where it stopped and when it began."""
        kind = KNOWN[f"{scope.object_type}s" if scope.object_type != "company" else "companies"]
        cursor = cursor or {}
        resume = cursor.get("resume") or {}
        began = resume.get("began") or (datetime.now(UTC) - timedelta(seconds=SLACK_SECONDS)).isoformat(
            timespec="seconds"
        )
        done = {"modified_since": began}
        props = [*kind.defaults, *MODIFIED]
        if scope.ids:
            for start in range(resume.get("index", 0), len(scope.ids), PAGE):
                records, _ = await batch_read(self.api, kind.plural, scope.ids[start : start + PAGE], props)
                following = start + PAGE
                step = {**cursor, "resume": {"index": following, "began": began}}
                yield await self._items(kind.plural, records), done if following >= len(scope.ids) else step
            return
        since = cursor.get("modified_since")
        groups = []
        if since:
            ms = str(int(datetime.fromisoformat(since).timestamp() * 1000))
            groups = [{"filters": [{"propertyName": p, "operator": "GT", "value": ms}]} for p in MODIFIED]
        body: dict[str, Any] = {
            "filterGroups": groups,
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "properties": props,
            "limit": PAGE,
        }
        if resume.get("after"):
            body["after"] = resume["after"]
        while True:
            page = await search_page(self.api, kind.plural, body)
            if page.next_cursor is None:
                yield await self._items(kind.plural, page.results), done
                return
            step = {**cursor, "resume": {"after": page.next_cursor, "began": began}}
            yield await self._items(kind.plural, page.results), step
            body = {**body, "after": page.next_cursor}

    async def _items(self, plural: str, records: list[CrmObject]) -> list[Item]:
        items: list[Item] = []
        singular = plural[:-1] if plural != "companies" else "company"
        for record in records:
            url = await self._url(plural, record.id)
            title = " ".join(record.properties[p] for p in TITLES[plural] if record.properties.get(p)) or record.id
            account = await self._account(plural, record)
            owner = await self._owner(record.properties.get("hubspot_owner_id"))
            facts = "; ".join(
                f"{k}: {v}" for k, v in record.properties.items() if k not in (*MODIFIED, "hs_object_id") and v
            )
            items.append(
                Item(
                    source="hubspot",
                    source_id=f"{singular}:{record.id}",
                    content=f"{singular.capitalize()} {title}: {facts}",
                    url=url,
                    author=owner,
                    ts=record.updated_at,
                    account=account,
                    extra={"object_type": singular, "object_id": record.id, "kind": "record"},
                )
            )
            note_ids = await associated_ids(self.api, plural, record.id, "notes")
            notes, _ = await batch_read(self.api, "notes", note_ids, properties_of("notes")) if note_ids else ([], [])
            for note in notes:
                text = plain_text(note.properties.get("hs_note_body") or "")
                author = await self._owner(note.properties.get("hubspot_owner_id"))
                ts = note.properties.get("hs_timestamp") or note.created_at
                chunks = parts(text)
                for n, chunk in enumerate(chunks, start=1):
                    items.append(
                        Item(
                            source="hubspot",
                            source_id=f"note:{note.id}" + (f"#{n}" if len(chunks) > 1 else ""),
                            content=f"Note on {singular} {title}: {chunk}",
                            url=url,
                            author=author,
                            ts=ts,
                            account=account,
                            extra={"object_type": singular, "object_id": record.id, "kind": "note"},
                        )
                    )
        return items

    async def _account(self, plural: str, record: CrmObject) -> str | None:
        """The company the record belongs to: itself, a contact's `company`, a deal's associated company."""
        if plural == "companies":
            return record.properties.get("name")
        if plural == "contacts":
            return record.properties.get("company")
        company_ids = await associated_ids(self.api, plural, record.id, "companies", max_pages=1)
        if not company_ids:
            return None
        companies, _ = await batch_read(self.api, "companies", company_ids[:1], ["name"])
        return companies[0].properties.get("name") if companies else None

    async def _owner(self, owner_id: str | None) -> str | None:
        if not owner_id:
            return None
        if owner_id not in self._owners:
            call = Call("GET", f"/crm/v3/owners/{owner_id}", what=f"owner {owner_id}", scope="crm.objects.owners.read")
            try:
                raw = await self.api.send(call)
            except UpstreamError:
                raw = {}
            name = " ".join(x for x in (raw.get("firstName"), raw.get("lastName")) if x)
            self._owners[owner_id] = name or raw.get("email") or f"owner {owner_id}"
        return self._owners[owner_id]

    async def _url(self, plural: str, record_id: str) -> str:
        """`https://app.hubspot.com/contacts/{portal}/record/{type}/{id}` (portal from env or account-info)."""
        if self._portal is None:
            portal = os.environ.get(PORTAL_ENV, "").strip()
            domain = "app.hubspot.com"
            if not portal:
                data = await self.api.send(Call("GET", "/account-info/v3/details", what="account details"))
                portal, domain = str(data.get("portalId") or ""), data.get("uiDomain") or domain
            self._portal = (portal, domain)
        portal, domain = self._portal
        return f"https://{domain}/contacts/{portal}/record/{TYPE_IDS[plural]}/{record_id}"
