"""The HubSpot MCP server: CRM records, notes and tasks, associations, properties, owners and pipelines."""

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastmcp import FastMCP
from pydantic import Field

from servers.common import Call, RetryPolicy, UpstreamError, follow_pages
from servers.common.tooling import ADD_IDEMPOTENT, CREATE, READ, UPDATE, Cursor, MaxPages, client_lifespan
from servers.hubspot.associations import associate, create_associations, dissociate
from servers.hubspot.client import HubSpotClient
from servers.hubspot.crm import (
    COMPANIES,
    CONTACTS,
    DEALS,
    KNOWN,
    PropertyValues,
    as_strings,
    association,
    batch_read,
    create_object,
    plural,
    register_object_tools,
    search_page,
)
from servers.hubspot.engagements import (
    ENGAGEMENT_TYPES,
    EngagementType,
    create_engagement,
    list_engagements,
    now_iso,
    task_properties,
)
from servers.hubspot.models import (
    Association,
    AssociationPage,
    AssociationResult,
    AssociationType,
    BatchResult,
    CrmObject,
    CrmObjectPage,
    Engagement,
    EngagementList,
    FilterGroup,
    Owner,
    OwnerPage,
    Pipeline,
    PipelineList,
    Property,
    PropertyList,
    PropertyOption,
    RecordRef,
    Sort,
    Stage,
)

# HubSpot-defined association type IDs.
CONTACT_TO_COMPANY_PRIMARY = 1
DEAL_TO_CONTACT = 3
DEAL_TO_COMPANY_PRIMARY = 5

ObjectType = Annotated[
    str,
    Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="CRM object type: contacts, companies, deals, tickets, or an object type ID like 0-3.",
    ),
]
RecordId = Annotated[str, Field(min_length=1, description="A HubSpot record ID.")]
Refs = Annotated[
    list[RecordRef],
    Field(min_length=1, max_length=100, description='Records to attach it to: [{"type": "contact", "id": "101"}].'),
]
OptionalRefs = Annotated[
    list[RecordRef] | None,
    Field(max_length=100, description='Records to associate: [{"type": "contact", "id": "101"}].'),
]
Label = Annotated[
    str | None,
    Field(description="An association label (e.g. `Decision maker`); omit for the default association."),
]
ExtraProperties = Annotated[PropertyValues | None, Field(description="Any other properties to set, by internal name.")]


def create_server(*, policy: RetryPolicy | None = None) -> FastMCP:
    """Build the server; no network I/O happens until a tool runs."""
    api = HubSpotClient(policy)
    mcp = FastMCP(
        "hubspot",
        instructions="HubSpot CRM: find and edit contacts, companies and deals; owners and pipelines.",
        lifespan=client_lifespan(api),
    )
    register_object_tools(mcp, api, CONTACTS)
    register_object_tools(mcp, api, COMPANIES)
    register_object_tools(mcp, api, DEALS)

    @mcp.tool(annotations=CREATE)
    async def create_contact(
        email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", description="Email (the unique key for contacts).")],
        firstname: Annotated[str | None, Field(description="First name.")] = None,
        lastname: Annotated[str | None, Field(description="Last name.")] = None,
        company_id: Annotated[str | None, Field(description="Company record ID to set as primary.")] = None,
        properties: ExtraProperties = None,
    ) -> CrmObject:
        """Create a HubSpot contact (fails with a conflict if the email already exists)."""
        props = as_strings({**(properties or {}), "email": email})
        props.update({k: v for k, v in (("firstname", firstname), ("lastname", lastname)) if v})
        links = [association(company_id, CONTACT_TO_COMPANY_PRIMARY)] if company_id else []
        return await create_object(api, CONTACTS, props, links)

    @mcp.tool(annotations=CREATE)
    async def create_deal(
        dealname: Annotated[str, Field(min_length=1, description="Deal name.")],
        dealstage: Annotated[
            str | None, Field(description="Stage ID (see list_pipelines); defaults to the pipeline's first.")
        ] = None,
        pipeline: Annotated[str | None, Field(description="Pipeline ID; the default one if omitted.")] = None,
        amount: Annotated[float | None, Field(description="Deal amount in the account currency.")] = None,
        closedate: Annotated[str | None, Field(description="Expected close date, ISO 8601.")] = None,
        owner_id: Annotated[str | None, Field(description="Owner ID (see list_owners).")] = None,
        contact_ids: Annotated[list[str] | None, Field(description="Contact IDs to associate.")] = None,
        company_id: Annotated[str | None, Field(description="Company ID to associate as primary.")] = None,
        properties: ExtraProperties = None,
    ) -> CrmObject:
        """Create a HubSpot deal, optionally associated with contacts and a company."""
        named = {
            "dealname": dealname,
            "dealstage": dealstage,
            "pipeline": pipeline,
            "amount": amount,
            "closedate": closedate,
            "hubspot_owner_id": owner_id,
        }
        props = as_strings({**(properties or {}), **{k: v for k, v in named.items() if v is not None}})
        links = [association(c, DEAL_TO_CONTACT) for c in contact_ids or []]
        if company_id:
            links.append(association(company_id, DEAL_TO_COMPANY_PRIMARY))
        return await create_object(api, DEALS, props, links)

    @mcp.tool(annotations=CREATE)
    async def create_company(
        name: Annotated[str, Field(min_length=1, description="Company name.")],
        domain: Annotated[
            str | None, Field(description="Website domain, e.g. acme.com (HubSpot's dedupe key).")
        ] = None,
        owner_id: Annotated[str | None, Field(description="Owner ID (see list_owners).")] = None,
        associations: OptionalRefs = None,
        properties: ExtraProperties = None,
    ) -> CrmObject:
        """Create a HubSpot company, optionally associated with contacts and deals."""
        named = {"name": name, "domain": domain, "hubspot_owner_id": owner_id}
        props = as_strings({**(properties or {}), **{k: v for k, v in named.items() if v is not None}})
        return await create_object(api, COMPANIES, props, create_associations("companies", associations or []))

    @mcp.tool(annotations=CREATE)
    async def create_note(
        body: Annotated[str, Field(min_length=1, max_length=65_536, description="The note's text (HTML allowed).")],
        associations: Refs,
        owner_id: Annotated[str | None, Field(description="Owner shown as the note's author.")] = None,
        timestamp: Annotated[str | None, Field(description="When it happened (ISO 8601); now if omitted.")] = None,
    ) -> Engagement:
        """Log a note on contacts, companies and/or deals (it shows on each record's timeline)."""
        props = {"hs_note_body": body, "hs_timestamp": timestamp or now_iso()}
        if owner_id:
            props["hubspot_owner_id"] = owner_id
        return await create_engagement(api, "notes", props, associations)

    @mcp.tool(annotations=CREATE)
    async def create_task(
        subject: Annotated[str, Field(min_length=1, description="The task's title.")],
        associations: Refs,
        body: Annotated[str | None, Field(description="Notes on the task.")] = None,
        due_date: Annotated[str | None, Field(description="Due date/time (ISO 8601); now if omitted.")] = None,
        owner_id: Annotated[str | None, Field(description="Owner the task is assigned to.")] = None,
        priority: Annotated[Literal["LOW", "MEDIUM", "HIGH"] | None, Field(description="Task priority.")] = None,
    ) -> Engagement:
        """Create a to-do task on contacts, companies and/or deals (status NOT_STARTED)."""
        props = task_properties(subject, body, due_date, owner_id, priority)
        return await create_engagement(api, "tasks", props, associations)

    @mcp.tool(name="list_engagements", annotations=READ)
    async def engagements(
        object_type: ObjectType,
        object_id: RecordId,
        types: Annotated[
            list[EngagementType] | None,
            Field(description="Which of notes, tasks, calls, emails, meetings (all if omitted)."),
        ] = None,
    ) -> EngagementList:
        """The notes, tasks, calls, emails and meetings associated with one record, newest first."""
        found = await list_engagements(api, object_type, object_id, list(types or ENGAGEMENT_TYPES))
        return EngagementList(results=found)

    @mcp.tool(annotations=ADD_IDEMPOTENT)
    async def associate_records(
        from_type: ObjectType, from_id: RecordId, to_type: ObjectType, to_id: RecordId, label: Label = None
    ) -> AssociationResult:
        """Associate two existing records (v4), with the default association or a labelled one."""
        return await associate(api, from_type, from_id, to_type, to_id, label)

    @mcp.tool(annotations=UPDATE)
    async def remove_association(
        from_type: ObjectType, from_id: RecordId, to_type: ObjectType, to_id: RecordId, label: Label = None
    ) -> AssociationResult:
        """Remove the association between two records: all of it, or only the labelled one (v4)."""
        return await dissociate(api, from_type, from_id, to_type, to_id, label)

    @mcp.tool(annotations=READ)
    async def list_properties(object_type: ObjectType) -> PropertyList:
        """The properties of an object type: internal name, label, type and the options of enumerations."""
        name = plural(object_type)
        call = Call(
            "GET",
            f"/crm/v3/properties/{quote(name, safe='')}",
            what=f"properties of {name}",
            scope=f"crm.schemas.{name}.read",
        )
        data = await api.send(call)
        props = [
            Property(
                name=p["name"],
                label=p.get("label"),
                type=p.get("type"),
                field_type=p.get("fieldType"),
                group=p.get("groupName"),
                description=p.get("description") or None,
                options=[
                    PropertyOption(label=o.get("label"), value=str(o["value"]))
                    for o in p.get("options") or []
                    if "value" in o and not o.get("hidden")
                ],
                read_only=(p.get("modificationMetadata") or {}).get("readOnlyValue"),
            )
            for p in data.get("results", [])
            if p.get("name") and not p.get("hidden")
        ]
        return PropertyList(results=props)

    @mcp.tool(annotations=READ)
    async def search_objects(
        object_type: ObjectType,
        filter_groups: Annotated[
            list[FilterGroup],
            Field(
                max_length=5,
                description="Up to 5 groups (OR) of up to 6 filters (AND), at most 18 filters in all; [] matches all.",
            ),
        ],
        sorts: Annotated[list[Sort] | None, Field(description="Sort rules (HubSpot applies one).")] = None,
        properties: Annotated[list[str] | None, Field(description="Properties to return (internal names).")] = None,
        query: Annotated[str | None, Field(description="Free text across the default searchable properties.")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Results per page (max 200).")] = 20,
        after: Annotated[str | None, Field(description="`next_cursor` of the previous page.")] = None,
    ) -> CrmObjectPage:
        """Search any CRM object type (contacts, companies, deals, tickets, notes, custom) with OR-ed groups of
        AND-ed filters, one page at a time."""
        if sum(len(g.filters) for g in filter_groups) > 18:
            raise UpstreamError("HubSpot: a search takes at most 18 filters across its filter groups")
        body: dict[str, Any] = {"filterGroups": [g.to_hubspot() for g in filter_groups], "limit": limit}
        if sorts:
            body["sorts"] = [s.to_hubspot() for s in sorts]
        name = plural(object_type)
        props = properties or (list(KNOWN[name].defaults) if name in KNOWN else None)
        if props:
            body["properties"] = props
        if query:
            body["query"] = query
        if after:
            body["after"] = after
        return await search_page(api, name, body)

    @mcp.tool(annotations=READ)
    async def batch_get(
        object_type: ObjectType,
        ids: Annotated[list[str], Field(min_length=1, max_length=1000, description="Record IDs to read.")],
        properties: Annotated[
            list[str] | None, Field(description="Properties to return (on top of the defaults for the type).")
        ] = None,
    ) -> BatchResult:
        """Read many records of one type by ID in batches of 100; IDs HubSpot does not know are in `missing`."""
        found, missing = await batch_read(api, object_type, [str(i) for i in ids], properties)
        return BatchResult(results=found, missing=missing)

    @mcp.tool(annotations=READ)
    async def list_associations(
        object_type: ObjectType,
        object_id: Annotated[str, Field(min_length=1, description="ID of the record to start from.")],
        to_object_type: ObjectType,
        limit: Annotated[int, Field(ge=1, le=500, description="Results per page (max 500).")] = 100,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> AssociationPage:
        """List records of `to_object_type` associated with one record (e.g. a deal's contacts), v4 API."""
        path = f"/crm/v4/objects/{object_type}/{quote(object_id, safe='')}/associations/{to_object_type}"

        async def fetch(after: str | None) -> tuple[list[Association], str | None]:
            call = Call(
                "GET",
                path,
                params={"limit": limit, "after": after},
                what=f"{object_type} {object_id}",
                scope=f"crm.objects.{object_type}.read",
            )
            data = await api.send(call)
            items = [
                Association(
                    to_object_id=str(r["toObjectId"]),
                    types=[
                        AssociationType(category=t.get("category"), type_id=t.get("typeId"), label=t.get("label"))
                        for t in r.get("associationTypes", [])
                    ],
                )
                for r in data.get("results", [])
            ]
            return items, _next_after(data)

        page = await follow_pages(fetch, cursor, max_pages)
        return AssociationPage(results=page.items, next_cursor=page.next_cursor)

    @mcp.tool(annotations=READ)
    async def list_owners(
        email: Annotated[str | None, Field(description="Only the owner with this email.")] = None,
        archived: Annotated[bool, Field(description="List archived (deactivated) owners instead.")] = False,
        limit: Annotated[int, Field(ge=1, le=500, description="Results per page (max 500).")] = 100,
        cursor: Cursor = None,
        max_pages: MaxPages = 1,
    ) -> OwnerPage:
        """List HubSpot owners (users who can own records); their `id` is `hubspot_owner_id`."""

        async def fetch(after: str | None) -> tuple[list[Owner], str | None]:
            params = {"email": email, "archived": archived, "limit": limit, "after": after}
            call = Call("GET", "/crm/v3/owners", params=params, scope="crm.objects.owners.read")
            data = await api.send(call)
            owners = [
                Owner(
                    id=str(o["id"]),
                    email=o.get("email"),
                    first_name=o.get("firstName"),
                    last_name=o.get("lastName"),
                    user_id=o.get("userId"),
                    archived=o.get("archived"),
                    teams=[t["name"] for t in o.get("teams") or [] if t.get("name")],
                )
                for o in data.get("results", [])
            ]
            return owners, _next_after(data)

        page = await follow_pages(fetch, cursor, max_pages)
        return OwnerPage(results=page.items, next_cursor=page.next_cursor)

    @mcp.tool(annotations=READ)
    async def list_pipelines(object_type: ObjectType = "deals") -> PipelineList:
        """List the pipelines of an object type (deals by default) with their stages in order."""
        call = Call(
            "GET",
            f"/crm/v3/pipelines/{object_type}",
            what=f"pipelines for {object_type}",
            scope=f"crm.objects.{object_type}.read",
        )
        data = await api.send(call)
        pipelines = [
            Pipeline(
                id=str(p["id"]),
                label=p.get("label", ""),
                display_order=p.get("displayOrder"),
                archived=p.get("archived"),
                stages=[
                    Stage(
                        id=str(s["id"]),
                        label=s.get("label", ""),
                        display_order=s.get("displayOrder"),
                        probability=_meta(s, "probability"),
                        is_closed=_meta(s, "isClosed") == "true",
                    )
                    for s in sorted(p.get("stages", []), key=lambda s: s.get("displayOrder", 0))
                ],
            )
            for p in sorted(data.get("results", []), key=lambda p: p.get("displayOrder", 0))
        ]
        return PipelineList(results=pipelines)

    return mcp


def _next_after(data: dict) -> str | None:
    return ((data.get("paging") or {}).get("next") or {}).get("after")


def _meta(stage: dict, key: str) -> str | None:
    value = (stage.get("metadata") or {}).get(key)
    return None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
