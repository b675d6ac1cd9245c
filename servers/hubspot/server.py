"""The HubSpot MCP server: CRM contacts, companies, deals, associations, owners and pipelines."""

from typing import Annotated
from urllib.parse import quote

from fastmcp import FastMCP
from pydantic import Field

from servers.common import Call, RetryPolicy, follow_pages
from servers.common.tooling import CREATE, READ, Cursor, MaxPages, client_lifespan
from servers.hubspot.client import HubSpotClient
from servers.hubspot.crm import (
    COMPANIES,
    CONTACTS,
    DEALS,
    PropertyValues,
    as_strings,
    association,
    create_object,
    register_object_tools,
)
from servers.hubspot.models import (
    Association,
    AssociationPage,
    AssociationType,
    CrmObject,
    Owner,
    OwnerPage,
    Pipeline,
    PipelineList,
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
ExtraProperties = Annotated[
    PropertyValues | None, Field(description="Any other properties to set, by internal name.")
]


def create_server(*, policy: RetryPolicy | None = None) -> FastMCP:
    """Build the server; no network I/O happens until a tool runs."""
    api = HubSpotClient(policy)
    mcp = FastMCP(
        "hubspot",
        instructions="HubSpot CRM: find and edit contacts, companies and deals; owners and pipelines.",
        lifespan=client_lifespan(api),
    )
    register_object_tools(mcp, api, CONTACTS)
    register_object_tools(mcp, api, COMPANIES, update=False)
    register_object_tools(mcp, api, DEALS)

    @mcp.tool(annotations=CREATE)
    async def create_contact(
        email: Annotated[
            str, Field(pattern=r"^[^@\s]+@[^@\s]+$", description="Email (the unique key for contacts).")
        ],
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
                        AssociationType(
                            category=t.get("category"), type_id=t.get("typeId"), label=t.get("label")
                        )
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
