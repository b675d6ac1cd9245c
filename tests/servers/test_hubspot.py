"""HubSpot server: every tool through an MCP client against respx-mocked HubSpot endpoints."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import respx
from fastmcp import Client

from servers.common.ratelimit import SlidingWindowLimiter
from servers.hubspot import client as hubspot_client
from servers.hubspot.server import create_server
from tests.servers.mcp_helpers import FAST, connected, err, ok, vendor_api
from tests.servers.spec_check import check_request

BASE = "https://hubspot.test"
TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
SEARCH_RELAX = {"relax_required": frozenset({"after", "filterGroups", "properties", "sorts"})}
# HubSpot's spec types `sorts` items as strings; its search guide sends {propertyName, direction} objects.
SEARCH_RELAX["relax_properties"] = frozenset({"sorts"})

TOOLS = {
    "search_contacts",
    "get_contact",
    "create_contact",
    "update_contact",
    "search_companies",
    "get_company",
    "search_deals",
    "get_deal",
    "create_deal",
    "update_deal",
    "list_associations",
    "list_owners",
    "list_pipelines",
    "update_company",
    "create_company",
    "create_note",
    "create_task",
    "list_engagements",
    "associate_records",
    "remove_association",
    "list_properties",
    "search_objects",
    "batch_get",
}
WRITES = {
    "create_contact",
    "update_contact",
    "create_deal",
    "update_deal",
    "update_company",
    "create_company",
    "create_note",
    "create_task",
    "associate_records",
    "remove_association",
}


def contact(object_id: str, email: str, **extra: str | None) -> dict:
    """A contact shaped like HubSpot's SimplePublicObject."""
    props = {"email": email, "firstname": "Ada", "lastname": "Lovelace", "hs_object_id": object_id, **extra}
    return {
        "id": object_id,
        "properties": props,
        "createdAt": "2026-01-02T10:00:00.000Z",
        "updatedAt": "2026-02-03T11:00:00.000Z",
        "archived": False,
    }


def deal(object_id: str) -> dict:
    props = {
        "dealname": "Big deal",
        "amount": "5000",
        "dealstage": "appointmentscheduled",
        "pipeline": "default",
    }
    return {
        "id": object_id,
        "properties": props,
        "createdAt": "2026-01-02T10:00:00.000Z",
        "updatedAt": "2026-01-02T10:00:00.000Z",
        "archived": False,
    }


@pytest.fixture
def hubspot(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    with vendor_api(monkeypatch, BASE, HUBSPOT_ACCESS_TOKEN=TOKEN, HUBSPOT_API_BASE=BASE) as api:
        yield api


@pytest.fixture
async def mcp() -> AsyncIterator[Client]:
    async with connected(create_server) as client:
        yield client


def sent(route: respx.Route, index: int = -1) -> httpx.Request:
    request = route.calls[index].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    return request


def body(request: httpx.Request) -> dict:
    return json.loads(request.content)


async def test_tools_schemas_and_annotations(mcp: Client) -> None:
    tools = {t.name: t for t in await mcp.list_tools()}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool.description and tool.output_schema, name
        assert tool.annotations.read_only_hint is (name not in WRITES), name
    assert tools["update_deal"].annotations.idempotent_hint is True
    assert tools["create_deal"].annotations.idempotent_hint is False
    props = tools["search_contacts"].input_schema["properties"]
    assert {"limit", "cursor", "max_pages", "properties", "filters", "query"} <= set(props)
    assert props["limit"]["maximum"] == 200


async def test_search_contacts(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.post("/crm/v3/objects/contacts/search").respond(
        200,
        json={
            "total": 42,
            "results": [contact("101", "ada@example.com", phone=None)],
            "paging": {"next": {"after": "101", "link": "?after=101"}},
        },
    )
    out = await ok(
        mcp,
        "search_contacts",
        {
            "query": "ada",
            "filters": [{"property": "lifecyclestage", "operator": "EQ", "value": "lead"}],
            "sort_by": "createdate",
            "properties": ["hs_lead_status"],
            "limit": 10,
        },
    )
    request = sent(route)
    check_request("hubspot/contacts.json", request, **SEARCH_RELAX)
    sent_body = body(request)
    assert sent_body["query"] == "ada" and sent_body["limit"] == 10
    assert sent_body["filterGroups"] == [
        {"filters": [{"propertyName": "lifecyclestage", "operator": "EQ", "value": "lead"}]}
    ]
    assert sent_body["sorts"] == [{"propertyName": "createdate", "direction": "DESCENDING"}]
    assert "email" in sent_body["properties"] and "hs_lead_status" in sent_body["properties"]
    assert "after" not in sent_body
    assert out["total"] == 42 and out["next_cursor"] == "101"
    record = out["results"][0]
    assert record["id"] == "101" and record["properties"]["email"] == "ada@example.com"
    assert "phone" not in record["properties"]  # empty values are trimmed


async def test_search_follows_two_pages(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.post("/crm/v3/objects/0-3/search").mock(
        side_effect=[
            httpx.Response(200, json={"total": 2, "results": [deal("1")], "paging": {"next": {"after": "1"}}}),
            httpx.Response(200, json={"total": 2, "results": [deal("2")]}),
        ]
    )
    out = await ok(mcp, "search_deals", {"limit": 1, "max_pages": 5, "cursor": "0"})
    assert [r["id"] for r in out["results"]] == ["1", "2"]
    assert out["next_cursor"] is None
    assert route.call_count == 2
    assert body(sent(route, 0))["after"] == "0"
    assert body(sent(route, 1))["after"] == "1"
    check_request("hubspot/deals.json", sent(route, 1), **SEARCH_RELAX)


async def test_get_contact_by_email(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.get("/crm/v3/objects/contacts/ada%40example.com").respond(
        200, json=contact("101", "ada@example.com")
    )
    out = await ok(
        mcp,
        "get_contact",
        {"object_id": "ada@example.com", "id_property": "email", "properties": ["hs_lead_status"]},
    )
    request = sent(route)
    check_request("hubspot/contacts.json", request)
    assert request.url.params["idProperty"] == "email"
    assert "hs_lead_status" in request.url.params.get_list("properties")
    assert out["id"] == "101"


async def test_create_contact(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.post("/crm/v3/objects/contacts").respond(201, json=contact("102", "grace@example.com"))
    out = await ok(
        mcp,
        "create_contact",
        {
            "email": "grace@example.com",
            "firstname": "Grace",
            "company_id": "77",
            "properties": {"phone": "+1 555"},
        },
    )
    request = sent(route)
    check_request("hubspot/contacts.json", request)
    assert body(request) == {
        "properties": {"email": "grace@example.com", "firstname": "Grace", "phone": "+1 555"},
        "associations": [
            {
                "to": {"id": "77"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}],
            }
        ],
    }
    assert out["id"] == "102"


async def test_update_contact(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.patch("/crm/v3/objects/contacts/101").respond(
        200, json=contact("101", "ada@example.com", lifecyclestage="customer")
    )
    out = await ok(
        mcp,
        "update_contact",
        {"object_id": "101", "properties": {"lifecyclestage": "customer", "hs_is_vip": True}},
    )
    check_request("hubspot/contacts.json", sent(route))
    assert body(sent(route)) == {"properties": {"lifecyclestage": "customer", "hs_is_vip": "true"}}
    assert out["properties"]["lifecyclestage"] == "customer"


async def test_search_and_get_company(hubspot: respx.MockRouter, mcp: Client) -> None:
    company = {
        "id": "77",
        "properties": {"name": "Acme", "domain": "acme.example"},
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
        "archived": False,
    }
    search = hubspot.post("/crm/v3/objects/companies/search").respond(200, json={"total": 1, "results": [company]})
    get = hubspot.get("/crm/v3/objects/companies/77").respond(200, json=company)
    found = await ok(mcp, "search_companies", {"query": "acme"})
    got = await ok(mcp, "get_company", {"object_id": "77"})
    check_request("hubspot/companies.json", sent(search), **SEARCH_RELAX)
    check_request("hubspot/companies.json", sent(get))
    assert "domain" in get.calls[0].request.url.params.get_list("properties")
    assert found["results"][0]["properties"]["name"] == "Acme" and found["next_cursor"] is None
    assert got["properties"]["domain"] == "acme.example"


async def test_get_create_update_deal(hubspot: respx.MockRouter, mcp: Client) -> None:
    get = hubspot.get("/crm/v3/objects/0-3/9").respond(200, json=deal("9"))
    create = hubspot.post("/crm/v3/objects/0-3").respond(201, json=deal("10"))
    update = hubspot.patch("/crm/v3/objects/0-3/9").respond(200, json=deal("9"))
    assert (await ok(mcp, "get_deal", {"object_id": "9"}))["properties"]["amount"] == "5000"
    created = await ok(
        mcp,
        "create_deal",
        {
            "dealname": "Big deal",
            "amount": 5000,
            "dealstage": "s1",
            "contact_ids": ["101"],
            "company_id": "77",
        },
    )
    await ok(mcp, "update_deal", {"object_id": "9", "properties": {"dealstage": "closedwon"}})
    for route in (get, create, update):
        check_request("hubspot/deals.json", sent(route))
    sent_create = body(sent(create))
    assert sent_create["properties"] == {"dealname": "Big deal", "amount": "5000.0", "dealstage": "s1"}
    assert [a["types"][0]["associationTypeId"] for a in sent_create["associations"]] == [3, 5]
    assert body(sent(update)) == {"properties": {"dealstage": "closedwon"}}
    assert created["id"] == "10"


async def test_list_associations(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.get("/crm/v4/objects/deals/9/associations/contacts").respond(
        200,
        json={
            "results": [
                {
                    "toObjectId": 101,
                    "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}],
                }
            ],
            "paging": {"next": {"after": "MTAx", "link": "?after=MTAx"}},
        },
    )
    out = await ok(
        mcp,
        "list_associations",
        {"object_type": "deals", "object_id": "9", "to_object_type": "contacts", "limit": 50},
    )
    check_request("hubspot/associations.json", sent(route))
    assert sent(route).url.params["limit"] == "50"
    assert out == {
        "results": [{"to_object_id": "101", "types": [{"category": "HUBSPOT_DEFINED", "type_id": 3, "label": None}]}],
        "next_cursor": "MTAx",
    }


async def test_list_owners_two_pages(hubspot: respx.MockRouter, mcp: Client) -> None:
    owner = {
        "id": "5",
        "email": "o@example.com",
        "firstName": "O",
        "lastName": "Wner",
        "userId": 9,
        "archived": False,
        "teams": [{"id": "1", "name": "Sales", "primary": True}],
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }
    route = hubspot.get("/crm/v3/owners").mock(
        side_effect=[
            httpx.Response(200, json={"results": [owner], "paging": {"next": {"after": "5"}}}),
            httpx.Response(200, json={"results": [{**owner, "id": "6"}], "paging": {"next": {"after": "6"}}}),
        ]
    )
    out = await ok(mcp, "list_owners", {"limit": 1, "max_pages": 2})
    check_request("hubspot/crmOwners.json", sent(route, 1))
    assert sent(route, 1).url.params["after"] == "5"
    assert [o["id"] for o in out["results"]] == ["5", "6"] and out["results"][0]["teams"] == ["Sales"]
    assert out["next_cursor"] == "6"  # max_pages reached: the vendor's cursor is handed back


async def test_list_pipelines(hubspot: respx.MockRouter, mcp: Client) -> None:
    stage = {
        "id": "closedwon",
        "label": "Closed won",
        "displayOrder": 1,
        "archived": False,
        "metadata": {"isClosed": "true", "probability": "1.0"},
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
    }
    first = {
        **stage,
        "id": "appointmentscheduled",
        "label": "Appointment",
        "displayOrder": 0,
        "metadata": {"isClosed": "false", "probability": "0.2"},
    }
    route = hubspot.get("/crm/v3/pipelines/deals").respond(
        200,
        json={
            "results": [
                {
                    "id": "default",
                    "label": "Sales",
                    "displayOrder": 0,
                    "archived": False,
                    "stages": [stage, first],
                    "createdAt": "2026-01-01T00:00:00Z",
                    "updatedAt": "2026-01-01T00:00:00Z",
                }
            ]
        },
    )
    out = await ok(mcp, "list_pipelines")
    check_request("hubspot/pipelines.json", sent(route))
    stages = out["results"][0]["stages"]
    assert [s["id"] for s in stages] == ["appointmentscheduled", "closedwon"]
    assert stages[1]["is_closed"] is True and stages[0]["probability"] == "0.2"


async def test_429_retry_after_is_honoured(
    hubspot: respx.MockRouter, mcp: Client, caplog: pytest.LogCaptureFixture
) -> None:
    route = hubspot.get("/crm/v3/objects/contacts/1").mock(
        side_effect=[
            httpx.Response(
                429,
                headers={"Retry-After": "1"},
                json={
                    "status": "error",
                    "message": "You have reached your secondly limit.",
                    "errorType": "RATE_LIMIT",
                    "policyName": "SECONDLY",
                },
            ),
            httpx.Response(200, json=contact("1", "a@example.com")),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="servers.common.http"):
        out = await ok(mcp, "get_contact", {"object_id": "1"})
    assert out["id"] == "1" and route.call_count == 2
    assert "retry in 1.00s" in caplog.text


async def test_429_backs_off_on_ratelimit_headers(
    hubspot: respx.MockRouter, mcp: Client, caplog: pytest.LogCaptureFixture
) -> None:
    limited = httpx.Response(
        429,
        headers={
            "X-HubSpot-RateLimit-Max": "100",
            "X-HubSpot-RateLimit-Remaining": "0",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "200",
        },
        json={
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "TEN_SECONDLY_ROLLING",
        },
    )
    route = hubspot.post("/crm/v3/objects/contacts").mock(
        side_effect=[limited, httpx.Response(201, json=contact("3", "c@example.com"))]
    )
    with caplog.at_level(logging.WARNING, logger="servers.common.http"):
        await ok(mcp, "create_contact", {"email": "c@example.com"})
    assert route.call_count == 2  # a 429 was not processed, so even a write is sent again
    assert "retry in 0.20s" in caplog.text


async def test_429_daily_limit_is_not_waited_for(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.get("/crm/v3/objects/contacts/1").respond(
        429,
        headers={"X-HubSpot-RateLimit-Daily-Remaining": "0"},
        json={"status": "error", "message": "You have reached your daily limit.", "policyName": "DAILY"},
    )
    message = await err(mcp, "get_contact", {"object_id": "1"})
    assert "rate limited" in message and route.call_count == 1


async def test_5xx_retried_for_read_not_for_write(hubspot: respx.MockRouter, mcp: Client) -> None:
    read = hubspot.get("/crm/v3/objects/0-3/9").mock(
        side_effect=[httpx.Response(502), httpx.ConnectError("boom"), httpx.Response(200, json=deal("9"))]
    )
    write = hubspot.post("/crm/v3/objects/0-3").respond(503, json={"status": "error", "message": "Unavailable"})
    assert (await ok(mcp, "get_deal", {"object_id": "9"}))["id"] == "9"
    assert read.call_count == 3
    message = await err(mcp, "create_deal", {"dealname": "X"})
    assert write.call_count == 1
    assert "503" in message and "not retried" in message


async def test_read_gives_up_after_bounded_retries(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.get("/crm/v3/owners").respond(500, json={"status": "error", "message": "internal"})
    message = await err(mcp, "list_owners")
    assert route.call_count == FAST.max_attempts
    assert "server error 500" in message


async def test_bad_token(hubspot: respx.MockRouter, mcp: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hubspot.get("/crm/v3/objects/contacts/1").respond(
        401,
        json={
            "status": "error",
            "category": "INVALID_AUTHENTICATION",
            "correlationId": "c0ffee",
            "message": f"Authentication credentials not found. Token {TOKEN} is invalid.",
        },
    )
    message = await err(mcp, "get_contact", {"object_id": "1"})
    assert "token rejected" in message and "HUBSPOT_ACCESS_TOKEN" in message
    assert TOKEN not in message and TOKEN not in caplog.text


async def test_missing_scope(hubspot: respx.MockRouter, mcp: Client) -> None:
    hubspot.post("/crm/v3/objects/0-3/search").respond(
        403,
        json={
            "status": "error",
            "category": "MISSING_SCOPES",
            "correlationId": "c0ffee",
            "message": "This app hasn't been granted all required scopes to make this call.",
            "errors": [
                {
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": ["crm.objects.deals.read"]},
                }
            ],
        },
    )
    message = await err(mcp, "search_deals", {})
    assert "token rejected" in message and "scope crm.objects.deals.read needed" in message


async def test_not_found_and_vendor_error(hubspot: respx.MockRouter, mcp: Client) -> None:
    hubspot.get("/crm/v3/objects/contacts/999").respond(
        404,
        json={
            "status": "error",
            "message": "resource not found",
            "correlationId": "c0ffee",
            "category": "OBJECT_NOT_FOUND",
        },
    )
    hubspot.patch("/crm/v3/objects/contacts/1").respond(
        400,
        json={
            "status": "error",
            "category": "VALIDATION_ERROR",
            "correlationId": "c0ffee",
            "message": 'Property values were not valid: [{"name":"lifecyclestage","error":"INVALID_OPTION"}]',
        },
    )
    assert "not found: contact 999" in await err(mcp, "get_contact", {"object_id": "999"})
    message = await err(mcp, "update_contact", {"object_id": "1", "properties": {"lifecyclestage": "nope"}})
    assert "400" in message and "Property values were not valid" in message and "VALIDATION_ERROR" in message


async def test_missing_credentials(mcp: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)
    with respx.mock(assert_all_mocked=True) as router:
        message = await err(mcp, "list_pipelines")
        assert not router.calls
    assert "HUBSPOT_ACCESS_TOKEN" in message


async def test_invalid_input_rejected_before_any_request(hubspot: respx.MockRouter, mcp: Client) -> None:
    message = await err(mcp, "search_contacts", {"limit": 1000})
    assert "limit" in message and not hubspot.calls


async def test_lifespan_closes_http_client(hubspot: respx.MockRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []
    original = hubspot_client.HubSpotClient.aclose

    async def aclose(self: hubspot_client.HubSpotClient) -> None:
        closed.append(self._client is not None)
        await original(self)

    monkeypatch.setattr(hubspot_client.HubSpotClient, "aclose", aclose)
    hubspot.get("/crm/v3/pipelines/deals").respond(200, json={"results": []})
    async with Client(create_server(policy=FAST)) as client:
        await ok(client, "list_pipelines")
    assert closed == [True]


def test_sliding_window_limiter_blocks_past_its_rate() -> None:
    limiter = SlidingWindowLimiter(max_calls=2, period=60.0)
    assert limiter.delay() == 0
    now = time.monotonic()
    limiter._stamps.extend([now, now])
    assert limiter.delay() > 59
    limiter._stamps.popleft()
    assert limiter.delay() == 0
    limiter.defer(30)
    assert 29 < limiter.delay() <= 30


def check_as(spec: str, request: httpx.Request, path: str, **relax: frozenset[str]) -> None:
    """Check a request to an object type the shipped specs lack (notes, tasks) against the same
    generic CRM object operation of a spec that has it (HubSpot documents one shape for all objects)."""
    check_request(
        spec, httpx.Request(request.method, request.url.copy_with(path=path), content=request.content), **relax
    )


def record(object_id: str, **props: str) -> dict:
    return {
        "id": object_id,
        "properties": {"hs_object_id": object_id, **props},
        "createdAt": "2026-01-02T10:00:00.000Z",
        "updatedAt": "2026-01-02T10:00:00.000Z",
        "archived": False,
    }


async def test_create_note_with_associations(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.post("/crm/v3/objects/notes").respond(
        201, json=record("501", hs_note_body="Acme pushed back on price", hs_timestamp="2026-03-01T10:00:00Z")
    )
    out = await ok(
        mcp,
        "create_note",
        {
            "body": "Acme pushed back on price",
            "associations": [
                {"type": "contact", "id": "101"},
                {"type": "company", "id": "7"},
                {"type": "deal", "id": "9"},
            ],
            "timestamp": "2026-03-01T10:00:00Z",
        },
    )
    request = sent(route)
    check_as("hubspot/contacts.json", request, "/crm/v3/objects/contacts")
    assert body(request) == {
        "properties": {"hs_note_body": "Acme pushed back on price", "hs_timestamp": "2026-03-01T10:00:00Z"},
        "associations": [
            {"to": {"id": i}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}]}
            for i, t in (("101", 202), ("7", 190), ("9", 214))
        ],
    }
    assert out["type"] == "note" and out["id"] == "501" and out["body"] == "Acme pushed back on price"
    message = await err(mcp, "create_note", {"body": "x", "associations": []})
    assert "associations" in message and route.call_count == 1


async def test_create_task(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.post("/crm/v3/objects/tasks").respond(
        201, json=record("601", hs_task_subject="Send SSO docs", hs_timestamp="2026-03-05T17:00:00Z")
    )
    out = await ok(
        mcp,
        "create_task",
        {
            "subject": "Send SSO docs",
            "body": "They asked twice",
            "due_date": "2026-03-05T17:00:00Z",
            "owner_id": "55",
            "priority": "HIGH",
            "associations": [{"type": "deal", "id": "9"}],
        },
    )
    request = sent(route)
    check_as("hubspot/contacts.json", request, "/crm/v3/objects/contacts")
    assert body(request)["properties"] == {
        "hs_task_subject": "Send SSO docs",
        "hs_task_body": "They asked twice",
        "hs_timestamp": "2026-03-05T17:00:00Z",
        "hubspot_owner_id": "55",
        "hs_task_priority": "HIGH",
        "hs_task_status": "NOT_STARTED",
        "hs_task_type": "TODO",
    }
    assert body(request)["associations"][0]["types"][0]["associationTypeId"] == 216
    assert out["title"] == "Send SSO docs" and out["type"] == "task"
    assert "priority" in await err(
        mcp, "create_task", {"subject": "x", "associations": [{"type": "deal", "id": "9"}], "priority": "URGENT"}
    )


async def test_list_engagements_reads_associations_then_batches(hubspot: respx.MockRouter, mcp: Client) -> None:
    def assoc(*ids: int) -> dict:
        return {
            "results": [
                {"toObjectId": i, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 190, "label": None}]}
                for i in ids
            ]
        }

    notes = hubspot.get("/crm/v4/objects/companies/7/associations/notes").respond(200, json=assoc(501, 502))
    tasks = hubspot.get("/crm/v4/objects/companies/7/associations/tasks").respond(200, json=assoc(601))
    read_notes = hubspot.post("/crm/v3/objects/notes/batch/read").respond(
        200,
        json={
            "status": "COMPLETE",
            "results": [
                record("501", hs_note_body="Old note", hs_timestamp="2026-01-01T09:00:00Z"),
                record("502", hs_note_body="New note", hs_timestamp="2026-02-01T09:00:00Z"),
            ],
            "startedAt": "2026-03-01T00:00:00Z",
            "completedAt": "2026-03-01T00:00:01Z",
        },
    )
    read_tasks = hubspot.post("/crm/v3/objects/tasks/batch/read").respond(
        200,
        json={
            "status": "COMPLETE",
            "results": [record("601", hs_task_subject="Call back", hs_timestamp="2026-01-15T09:00:00Z")],
            "startedAt": "2026-03-01T00:00:00Z",
            "completedAt": "2026-03-01T00:00:01Z",
        },
    )
    out = await ok(mcp, "list_engagements", {"object_type": "company", "object_id": "7", "types": ["notes", "tasks"]})
    assert [(e["type"], e["id"]) for e in out["results"]] == [("note", "502"), ("task", "601"), ("note", "501")]
    assert out["results"][1]["title"] == "Call back" and out["results"][0]["body"] == "New note"
    check_request("hubspot/associations.json", sent(notes))
    check_request("hubspot/associations.json", sent(tasks))
    sent_read = body(sent(read_notes))
    assert sent_read["inputs"] == [{"id": "501"}, {"id": "502"}] and "hs_note_body" in sent_read["properties"]
    check_as("hubspot/companies.json", sent(read_notes), "/crm/v3/objects/companies/batch/read")
    check_as("hubspot/companies.json", sent(read_tasks), "/crm/v3/objects/companies/batch/read")


async def test_create_and_update_company(hubspot: respx.MockRouter, mcp: Client) -> None:
    create = hubspot.post("/crm/v3/objects/companies").respond(201, json=record("7", name="Acme", domain="acme.com"))
    update = hubspot.patch("/crm/v3/objects/companies/7").respond(
        200, json=record("7", name="Acme", industry="SOFTWARE")
    )
    created = await ok(
        mcp,
        "create_company",
        {"name": "Acme", "domain": "acme.com", "associations": [{"type": "contact", "id": "101"}]},
    )
    updated = await ok(mcp, "update_company", {"object_id": "7", "properties": {"industry": "SOFTWARE"}})
    check_request("hubspot/companies.json", sent(create))
    check_request("hubspot/companies.json", sent(update))
    assert body(sent(create))["properties"] == {"name": "Acme", "domain": "acme.com"}
    assert body(sent(create))["associations"][0]["types"][0]["associationTypeId"] == 280
    assert body(sent(update)) == {"properties": {"industry": "SOFTWARE"}}
    assert created["id"] == "7" and updated["properties"]["industry"] == "SOFTWARE"


async def test_associate_and_remove_default_and_labelled(hubspot: respx.MockRouter, mcp: Client) -> None:
    default = hubspot.put("/crm/v4/objects/contacts/101/associations/default/companies/7").respond(
        200,
        json={
            "status": "COMPLETE",
            "results": [
                {
                    "from": {"id": "101"},
                    "to": {"id": "7"},
                    "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279},
                }
            ],
            "startedAt": "2026-03-01T00:00:00Z",
            "completedAt": "2026-03-01T00:00:01Z",
        },
    )
    labels = hubspot.get("/crm/v4/associations/contacts/deals/labels").respond(
        200,
        json={
            "results": [
                {"category": "HUBSPOT_DEFINED", "typeId": 4, "label": None},
                {"category": "USER_DEFINED", "typeId": 36, "label": "Decision maker"},
            ]
        },
    )
    labelled = hubspot.put("/crm/v4/objects/contacts/101/associations/deals/9").respond(
        201,
        json={
            "fromObjectTypeId": "0-1",
            "fromObjectId": "101",
            "toObjectTypeId": "0-3",
            "toObjectId": "9",
            "labels": ["Decision maker"],
        },
    )
    archive = hubspot.post("/crm/v4/associations/contacts/deals/batch/labels/archive").respond(204)
    delete = hubspot.delete("/crm/v4/objects/contacts/101/associations/companies/7").respond(204)

    out = await ok(
        mcp, "associate_records", {"from_type": "contact", "from_id": "101", "to_type": "company", "to_id": "7"}
    )
    assert out["type_ids"] == [279] and out["to_type"] == "companies"
    check_request("hubspot/associations.json", sent(default))
    args = {"from_type": "contacts", "from_id": "101", "to_type": "deals", "to_id": "9", "label": "decision maker"}
    out = await ok(mcp, "associate_records", args)
    assert body(sent(labelled)) == [{"associationCategory": "USER_DEFINED", "associationTypeId": 36}]
    check_request("hubspot/associations.json", sent(labelled))
    assert out["type_ids"] == [36] and labels.call_count == 1
    await ok(mcp, "remove_association", args)
    assert body(sent(archive)) == {
        "inputs": [
            {
                "from": {"id": "101"},
                "to": {"id": "9"},
                "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 36}],
            }
        ]
    }
    await ok(mcp, "remove_association", {"from_type": "contact", "from_id": "101", "to_type": "company", "to_id": "7"})
    check_request("hubspot/associations.json", sent(delete))
    message = await err(mcp, "associate_records", {**args, "label": "Champion"})
    assert "no association label 'Champion'" in message and "Decision maker" in message


async def test_list_properties(hubspot: respx.MockRouter, mcp: Client) -> None:
    hubspot.get("/crm/v3/properties/deals").respond(
        200,
        json={
            "results": [
                {
                    "name": "dealstage",
                    "label": "Deal Stage",
                    "type": "enumeration",
                    "fieldType": "select",
                    "groupName": "dealinformation",
                    "description": "The stage of the deal.",
                    "options": [
                        {
                            "label": "Appointment Scheduled",
                            "value": "appointmentscheduled",
                            "displayOrder": 0,
                            "hidden": False,
                        },
                        {"label": "Old", "value": "old", "displayOrder": 1, "hidden": True},
                    ],
                    "modificationMetadata": {"readOnlyValue": False, "archivable": True},
                    "hidden": False,
                },
                {"name": "hs_secret", "label": "x", "type": "string", "fieldType": "text", "hidden": True},
            ]
        },
    )
    out = await ok(mcp, "list_properties", {"object_type": "deal"})
    assert out == {
        "results": [
            {
                "name": "dealstage",
                "label": "Deal Stage",
                "type": "enumeration",
                "field_type": "select",
                "group": "dealinformation",
                "description": "The stage of the deal.",
                "options": [{"label": "Appointment Scheduled", "value": "appointmentscheduled"}],
                "read_only": False,
            }
        ]
    }


async def test_search_objects_or_of_ands_any_type(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.post("/crm/v3/objects/0-3/search").respond(
        200, json={"total": 3, "results": [deal("9")], "paging": {"next": {"after": "20"}}}
    )
    groups = [
        {
            "filters": [
                {"property": "dealstage", "value": "closedwon"},
                {"property": "amount", "operator": "GT", "value": "1000"},
            ]
        },
        {"filters": [{"property": "dealname", "operator": "CONTAINS_TOKEN", "value": "acme*"}]},
    ]
    out = await ok(
        mcp,
        "search_objects",
        {
            "object_type": "deals",
            "filter_groups": groups,
            "sorts": [{"property": "amount"}],
            "limit": 10,
            "after": "10",
        },
    )
    request = sent(route)
    check_request("hubspot/deals.json", request, **SEARCH_RELAX)
    sent_body = body(request)
    assert sent_body["filterGroups"] == [
        {
            "filters": [
                {"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"},
                {"propertyName": "amount", "operator": "GT", "value": "1000"},
            ]
        },
        {"filters": [{"propertyName": "dealname", "operator": "CONTAINS_TOKEN", "value": "acme*"}]},
    ]
    assert sent_body["sorts"] == [{"propertyName": "amount", "direction": "DESCENDING"}]
    assert sent_body["after"] == "10" and sent_body["limit"] == 10 and "dealname" in sent_body["properties"]
    assert out["next_cursor"] == "20" and out["total"] == 3 and out["results"][0]["id"] == "9"
    tickets = hubspot.post("/crm/v3/objects/tickets/search").respond(200, json={"total": 0, "results": []})
    await ok(mcp, "search_objects", {"object_type": "tickets", "filter_groups": [], "properties": ["subject"]})
    assert body(sent(tickets)) == {"filterGroups": [], "limit": 20, "properties": ["subject"]}
    six = [{"filters": [{"property": "a", "value": "1"}]}] * 6
    assert "filter_groups" in await err(mcp, "search_objects", {"object_type": "deals", "filter_groups": six})
    many = [{"filters": [{"property": "a", "value": "1"}] * 6}] * 4
    assert "at most 18 filters" in await err(mcp, "search_objects", {"object_type": "deals", "filter_groups": many})
    assert route.call_count == 1


async def test_batch_get_reports_missing(hubspot: respx.MockRouter, mcp: Client) -> None:
    route = hubspot.post("/crm/v3/objects/contacts/batch/read").respond(
        207,
        json={
            "status": "COMPLETE",
            "results": [contact("101", "ada@example.com")],
            "numErrors": 1,
            "errors": [
                {"status": "error", "category": "OBJECT_NOT_FOUND", "message": "not found", "context": {"ids": ["999"]}}
            ],
            "startedAt": "2026-03-01T00:00:00Z",
            "completedAt": "2026-03-01T00:00:01Z",
        },
    )
    out = await ok(
        mcp, "batch_get", {"object_type": "contacts", "ids": ["101", "999", "101"], "properties": ["hs_lead_status"]}
    )
    request = sent(route)
    check_request("hubspot/contacts.json", request)
    assert body(request)["inputs"] == [{"id": "101"}, {"id": "999"}]
    assert "hs_lead_status" in body(request)["properties"] and "email" in body(request)["properties"]
    assert [r["id"] for r in out["results"]] == ["101"] and out["missing"] == ["999"]
