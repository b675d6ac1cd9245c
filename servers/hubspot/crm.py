"""Search, get and update tools for HubSpot CRM objects (contacts, companies, deals)."""

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastmcp import FastMCP
from pydantic import Field

from servers.common import Call, follow_pages
from servers.common.tooling import READ, UPDATE, Cursor, MaxPages
from servers.hubspot.client import SEARCH, HubSpotClient
from servers.hubspot.models import CrmObject, CrmObjectPage, SearchFilter

PropertyNames = Annotated[
    list[str] | None,
    Field(description="Extra property names to return on top of the default set (internal names)."),
]
PropertyValues = dict[str, str | int | float | bool]


@dataclass(frozen=True)
class CrmType:
    """One CRM object type as the tools expose it."""

    singular: str
    plural: str
    path: str
    """Path segment under /crm/v3/objects/ (deals are `0-3` in HubSpot's spec)."""
    defaults: tuple[str, ...]

    @property
    def read_scope(self) -> str:
        return f"crm.objects.{self.plural}.read"

    @property
    def write_scope(self) -> str:
        return f"crm.objects.{self.plural}.write"

    def url(self, object_id: str | None = None) -> str:
        base = f"/crm/v3/objects/{self.path}"
        return base if object_id is None else f"{base}/{quote(object_id, safe='')}"

    def props(self, extra: list[str] | None) -> list[str]:
        return list(dict.fromkeys([*self.defaults, *(extra or [])]))


CONTACTS = CrmType(
    "contact",
    "contacts",
    "contacts",
    ("email", "firstname", "lastname", "phone", "company", "jobtitle", "lifecyclestage", "hubspot_owner_id"),
)
COMPANIES = CrmType(
    "company",
    "companies",
    "companies",
    (
        "name",
        "domain",
        "industry",
        "city",
        "country",
        "numberofemployees",
        "annualrevenue",
        "hubspot_owner_id",
    ),
)
DEALS = CrmType(
    "deal",
    "deals",
    "0-3",
    ("dealname", "amount", "dealstage", "pipeline", "closedate", "hubspot_owner_id"),
)


def as_strings(values: PropertyValues) -> dict[str, str]:
    """HubSpot takes property values as strings; booleans as `true`/`false`."""
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()}


async def search_objects(
    api: HubSpotClient,
    kind: CrmType,
    *,
    query: str | None,
    filters: list[SearchFilter] | None,
    sort_by: str | None,
    sort_direction: str,
    properties: list[str] | None,
    limit: int,
    cursor: str | None,
    max_pages: int,
) -> CrmObjectPage:
    """POST /crm/v3/objects/{type}/search, following `paging.next.after` up to `max_pages`."""
    body: dict[str, Any] = {"limit": limit, "properties": kind.props(properties)}
    if query:
        body["query"] = query
    if filters:
        body["filterGroups"] = [{"filters": [f.to_hubspot() for f in filters]}]
    if sort_by:
        body["sorts"] = [{"propertyName": sort_by, "direction": sort_direction}]
    totals: list[int] = []

    async def fetch(after: str | None) -> tuple[list[CrmObject], str | None]:
        page_body = body if after is None else {**body, "after": after}
        call = Call("POST", f"{kind.url()}/search", body=page_body, scope=kind.read_scope, buckets=SEARCH)
        data = await api.send(call)
        if isinstance(data.get("total"), int):
            totals.append(data["total"])
        return [CrmObject.from_hubspot(r) for r in data.get("results", [])], _next_after(data)

    page = await follow_pages(fetch, cursor, max_pages)
    total = totals[0] if totals else None
    return CrmObjectPage(results=page.items, total=total, next_cursor=page.next_cursor)


async def get_object(
    api: HubSpotClient, kind: CrmType, object_id: str, id_property: str | None, properties: list[str] | None
) -> CrmObject:
    """GET /crm/v3/objects/{type}/{id}."""
    params = {"properties": kind.props(properties), "idProperty": id_property}
    what = f"{kind.singular} {object_id}"
    data = await api.send(Call("GET", kind.url(object_id), params=params, what=what, scope=kind.read_scope))
    return CrmObject.from_hubspot(data)


async def create_object(
    api: HubSpotClient, kind: CrmType, properties: dict[str, str], associations: list[dict[str, Any]]
) -> CrmObject:
    """POST /crm/v3/objects/{type} (never retried on 5xx)."""
    body = {"properties": properties, "associations": associations}
    data = await api.send(Call("POST", kind.url(), body=body, read=False, scope=kind.write_scope))
    return CrmObject.from_hubspot(data)


def association(to_id: str, type_id: int) -> dict[str, Any]:
    """A HubSpot-defined association for a create body."""
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


def _next_after(data: dict[str, Any]) -> str | None:
    return ((data.get("paging") or {}).get("next") or {}).get("after")


def register_object_tools(mcp: FastMCP, api: HubSpotClient, kind: CrmType, *, update: bool = True) -> None:
    """Register `search_<plural>`, `get_<singular>` and (optionally) `update_<singular>`."""
    defaults = ", ".join(kind.defaults)
    id_doc = f"The {kind.singular}'s HubSpot record ID."

    async def search(
        query: Annotated[
            str | None, Field(description="Free-text search across the default searchable properties.")
        ] = None,
        filters: Annotated[
            list[SearchFilter] | None,
            Field(max_length=6, description="Property filters, all of which must match (AND)."),
        ] = None,
        sort_by: Annotated[str | None, Field(description="Property to sort by, e.g. `createdate`.")] = None,
        sort_direction: Annotated[
            Literal["ASCENDING", "DESCENDING"], Field(description="Sort direction.")
        ] = "DESCENDING",
        properties: PropertyNames = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Results per page (max 200).")] = 20,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> CrmObjectPage:
        return await search_objects(
            api,
            kind,
            query=query,
            filters=filters,
            sort_by=sort_by,
            sort_direction=sort_direction,
            properties=properties,
            limit=limit,
            cursor=cursor,
            max_pages=max_pages,
        )

    async def get(
        object_id: Annotated[str, Field(min_length=1, description=id_doc)],
        id_property: Annotated[
            str | None,
            Field(description="Look the record up by this unique property instead of the ID, e.g. `email`."),
        ] = None,
        properties: PropertyNames = None,
    ) -> CrmObject:
        return await get_object(api, kind, object_id, id_property, properties)

    async def update_(
        object_id: Annotated[str, Field(min_length=1, description=id_doc)],
        properties: Annotated[
            PropertyValues,
            Field(min_length=1, description="Property values to set by internal name; others are kept."),
        ],
    ) -> CrmObject:
        call = Call(
            "PATCH",
            kind.url(object_id),
            body={"properties": as_strings(properties)},
            read=False,
            what=f"{kind.singular} {object_id}",
            scope=kind.write_scope,
        )
        return CrmObject.from_hubspot(await api.send(call))

    mcp.tool(
        search,
        name=f"search_{kind.plural}",
        annotations=READ,
        description=(
            f"Search HubSpot {kind.plural} by free text and/or property filters, newest first by default. "
            f"Returns id and these properties unless more are asked for: {defaults}."
        ),
    )
    mcp.tool(
        get,
        name=f"get_{kind.singular}",
        annotations=READ,
        description=f"Get one HubSpot {kind.singular} by ID (or a unique property) with {defaults}.",
    )
    if update:
        mcp.tool(
            update_,
            name=f"update_{kind.singular}",
            annotations=UPDATE,
            description=f"Update properties of an existing HubSpot {kind.singular}; returns the record.",
        )


PLURALS = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "ticket": "tickets",
    "note": "notes",
    "task": "tasks",
    "call": "calls",
    "email": "emails",
    "meeting": "meetings",
}
KNOWN = {kind.plural: kind for kind in (CONTACTS, COMPANIES, DEALS)}
TYPE_IDS = {
    "contacts": "0-1",
    "companies": "0-2",
    "deals": "0-3",
    "tickets": "0-5",
    "tasks": "0-27",
    "notes": "0-46",
    "meetings": "0-47",
    "calls": "0-48",
    "emails": "0-49",
}
BATCH_MAX = 100


def plural(object_type: str) -> str:
    """`contact` or `contacts` → `contacts`; object type IDs (`0-3`, `2-123`) and custom names pass through."""
    name = object_type.strip().lower()
    return PLURALS.get(name, name)


def objects_url(object_type: str, suffix: str = "") -> str:
    """`/crm/v3/objects/{type}{suffix}`, with deals as `0-3` as in HubSpot's spec."""
    name = plural(object_type)
    path = KNOWN[name].path if name in KNOWN else name
    return f"/crm/v3/objects/{quote(path, safe='')}{suffix}"


def read_scope(object_type: str) -> str:
    return f"crm.objects.{plural(object_type)}.read"


async def batch_read(
    api: HubSpotClient, object_type: str, ids: list[str], properties: list[str] | None
) -> tuple[list[CrmObject], list[str]]:
    """POST /crm/v3/objects/{type}/batch/read in chunks of 100: (records in ID order, IDs not found)."""
    name = plural(object_type)
    props = KNOWN[name].props(properties) if name in KNOWN else list(properties or [])
    found: dict[str, CrmObject] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), BATCH_MAX):
        chunk = unique[start : start + BATCH_MAX]
        body = {"inputs": [{"id": i} for i in chunk], "properties": props, "propertiesWithHistory": []}
        call = Call("POST", objects_url(name, "/batch/read"), body=body, scope=read_scope(name))
        data = await api.send(call)
        for raw in data.get("results") or []:
            record = CrmObject.from_hubspot(raw)
            found[record.id] = record
    return [found[i] for i in unique if i in found], [i for i in unique if i not in found]


async def search_page(api: HubSpotClient, object_type: str, body: dict[str, Any]) -> CrmObjectPage:
    """One page of POST /crm/v3/objects/{type}/search."""
    name = plural(object_type)
    call = Call("POST", objects_url(name, "/search"), body=body, scope=read_scope(name), buckets=SEARCH)
    data = await api.send(call)
    total = data.get("total") if isinstance(data.get("total"), int) else None
    results = [CrmObject.from_hubspot(r) for r in data.get("results", [])]
    return CrmObjectPage(results=results, total=total, next_cursor=_next_after(data))
