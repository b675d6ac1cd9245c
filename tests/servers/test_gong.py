"""Gong server: every tool through an MCP client against respx-mocked Gong endpoints."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import respx
from fastmcp import Client

from servers.gong.server import create_server
from tests.servers.mcp_helpers import basic, connected, err, ok, vendor_api
from tests.servers.spec_check import check_request

BASE = "https://us-1234.api.gong.test"
KEY, SECRET = "GONGKEY123", "gong-secret-value-456"
SPEC = "gong/gong-openapi.json"
FROM, TO = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"


def meta(call_id: str) -> dict:
    """A call's metadata as Gong's spec shows it."""
    return {
        "id": call_id,
        "url": f"https://app.gong.io/call?id={call_id}",
        "title": "Acme discovery",
        "scheduled": "2026-01-05T15:00:00Z",
        "started": "2026-01-05T15:01:02Z",
        "duration": 1800,
        "primaryUserId": "234599484848423",
        "direction": "Conference",
        "system": "Zoom",
        "scope": "External",
        "media": "Video",
        "language": "eng",
        "workspaceId": "623457276584334",
        "sdrDisposition": None,
        "clientUniqueId": None,
        "customData": None,
        "purpose": None,
        "meetingUrl": "https://zoom.us/j/1",
        "isPrivate": False,
        "calendarEventId": "abc",
    }


def records(total: int, number: int, cursor: str | None = None) -> dict:
    out = {"totalRecords": total, "currentPageSize": 1, "currentPageNumber": number}
    return {**out, "cursor": cursor} if cursor else out


@pytest.fixture
def gong(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    with vendor_api(monkeypatch, BASE, GONG_ACCESS_KEY=KEY, GONG_ACCESS_KEY_SECRET=SECRET, GONG_API_BASE=BASE) as api:
        yield api


@pytest.fixture
async def mcp() -> AsyncIterator[Client]:
    async with connected(create_server) as client:
        yield client


def sent(route: respx.Route, index: int = -1) -> httpx.Request:
    request = route.calls[index].request
    assert request.headers["Authorization"] == basic(KEY, SECRET)
    return request


async def test_tools_are_read_only_with_output_schemas(mcp: Client) -> None:
    tools = {t.name: t for t in await mcp.list_tools()}
    assert set(tools) == {
        "list_calls",
        "get_call",
        "search_calls",
        "get_call_transcripts",
        "list_users",
        "get_user",
    }
    for name, tool in tools.items():
        assert tool.annotations.read_only_hint is True, name
        assert tool.output_schema and tool.description, name
    assert {"from_date_time", "to_date_time"} <= set(tools["list_calls"].input_schema["required"])


async def test_list_calls(gong: respx.MockRouter, mcp: Client) -> None:
    route = gong.get("/v2/calls").respond(
        200, json={"requestId": "r1", "records": records(2, 0, "c2"), "calls": [meta("1")]}
    )
    out = await ok(mcp, "list_calls", {"from_date_time": FROM, "to_date_time": TO, "workspace_id": "623457276584334"})
    request = sent(route)
    check_request(SPEC, request)
    assert request.url.params["fromDateTime"] == "2026-01-01T00:00:00+00:00"
    assert request.url.params["toDateTime"] == "2026-02-01T00:00:00+00:00"
    assert request.url.params["workspaceId"] == "623457276584334" and "cursor" not in request.url.params
    assert out["total_records"] == 2 and out["next_cursor"] == "c2" and out["truncated"] is False
    call = out["calls"][0]
    assert call["id"] == "1" and call["duration_seconds"] == 1800 and call["scope"] == "External"
    assert "calendarEventId" not in call


async def test_list_calls_two_pages(gong: respx.MockRouter, mcp: Client) -> None:
    route = gong.get("/v2/calls").mock(
        side_effect=[
            httpx.Response(200, json={"requestId": "r1", "records": records(2, 0, "c2"), "calls": [meta("1")]}),
            httpx.Response(200, json={"requestId": "r2", "records": records(2, 1), "calls": [meta("2")]}),
        ]
    )
    out = await ok(mcp, "list_calls", {"from_date_time": FROM, "to_date_time": TO, "max_pages": 3})
    assert [c["id"] for c in out["calls"]] == ["1", "2"] and out["next_cursor"] is None
    assert route.call_count == 2
    assert sent(route, 1).url.params["cursor"] == "c2"
    check_request(SPEC, sent(route, 1))


async def test_list_calls_limit_and_empty_range(gong: respx.MockRouter, mcp: Client) -> None:
    gong.get("/v2/calls", params={"fromDateTime": "2026-01-01T00:00:00+00:00"}).respond(
        200,
        json={"requestId": "r1", "records": records(3, 0, "c2"), "calls": [meta("1"), meta("2"), meta("3")]},
    )
    out = await ok(mcp, "list_calls", {"from_date_time": FROM, "to_date_time": TO, "limit": 2})
    assert [c["id"] for c in out["calls"]] == ["1", "2"] and out["truncated"] is True
    gong.get("/v2/calls", params={"fromDateTime": "2025-01-01T00:00:00+00:00"}).respond(
        404, json={"requestId": "r2", "errors": ["No calls found corresponding to the provided filters"]}
    )
    empty = await ok(mcp, "list_calls", {"from_date_time": "2025-01-01T00:00:00Z", "to_date_time": FROM})
    assert empty["calls"] == [] and empty["next_cursor"] is None


async def test_list_calls_limit_inside_a_page_resumes_after_the_last_record(
    gong: respx.MockRouter, mcp: Client
) -> None:
    """`limit` cuts a 3-record page after 2: the cursor must lead to record 3, then on to page 2."""
    first = {"requestId": "r1", "records": records(4, 0, "c2"), "calls": [meta("1"), meta("2"), meta("3")]}
    second = {"requestId": "r2", "records": records(4, 1), "calls": [meta("4")]}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=second if request.url.params.get("cursor") == "c2" else first)

    route = gong.get("/v2/calls").mock(side_effect=answer)
    args = {"from_date_time": FROM, "to_date_time": TO, "limit": 2}
    seen: list[str] = []
    out = await ok(mcp, "list_calls", args)
    while True:
        seen += [c["id"] for c in out["calls"]]
        if not out["next_cursor"]:
            break
        assert len(seen) < 10, seen
        out = await ok(mcp, "list_calls", {**args, "cursor": out["next_cursor"]})
    assert seen == ["1", "2", "3", "4"]
    for call in route.calls:
        check_request(SPEC, call.request)


async def test_list_calls_limit_on_a_page_boundary_passes_the_vendor_cursor(
    gong: respx.MockRouter, mcp: Client
) -> None:
    gong.get("/v2/calls").respond(
        200, json={"requestId": "r1", "records": records(3, 0, "c2"), "calls": [meta("1"), meta("2")]}
    )
    out = await ok(mcp, "list_calls", {"from_date_time": FROM, "to_date_time": TO, "limit": 2})
    assert [c["id"] for c in out["calls"]] == ["1", "2"] and out["next_cursor"] == "c2"


async def test_list_users_limit_inside_a_page_does_not_skip(gong: respx.MockRouter, mcp: Client) -> None:
    def user(uid: str, active: bool = True) -> dict:
        return {"id": uid, "emailAddress": f"{uid}@us.example", "active": active}

    page1 = {
        "requestId": "r",
        "records": records(5, 0, "u2"),
        "users": [user("1"), user("2", False), user("3"), user("4")],
    }
    page2 = {"requestId": "r", "records": records(5, 1), "users": [user("5")]}
    gong.get("/v2/users").mock(
        side_effect=lambda request: httpx.Response(
            200, json=page2 if request.url.params.get("cursor") == "u2" else page1
        )
    )
    seen: list[str] = []
    out = await ok(mcp, "list_users", {"limit": 1})
    while True:
        seen += [u["id"] for u in out["users"]]
        if not out["next_cursor"]:
            break
        assert len(seen) < 10, seen
        out = await ok(mcp, "list_users", {"limit": 1, "cursor": out["next_cursor"]})
    assert seen == ["1", "3", "4", "5"]


async def test_get_call_and_not_found(gong: respx.MockRouter, mcp: Client) -> None:
    route = gong.get("/v2/calls/7782342274025937895").respond(
        200, json={"requestId": "r", "call": meta("7782342274025937895")}
    )
    gong.get("/v2/calls/404404").respond(404, json={"requestId": "r", "errors": ["Call not found"]})
    out = await ok(mcp, "get_call", {"call_id": "7782342274025937895"})
    check_request(SPEC, sent(route))
    assert out["title"] == "Acme discovery"
    message = await err(mcp, "get_call", {"call_id": "404404"})
    assert "not found: call 404404" in message


async def test_search_calls_with_content(gong: respx.MockRouter, mcp: Client) -> None:
    extensive = {
        "metaData": meta("1"),
        "context": [
            {
                "system": "Salesforce",
                "objects": [
                    {
                        "objectType": "Opportunity",
                        "objectId": "0061",
                        "fields": [{"name": "Name", "value": "Acme renewal"}],
                        "timing": "Now",
                    }
                ],
            }
        ],
        "parties": [
            {
                "id": "p1",
                "emailAddress": "ann@acme.example",
                "name": "Ann",
                "title": "CTO",
                "userId": None,
                "speakerId": "s1",
                "affiliation": "External",
                "methods": ["Invitee"],
            }
        ],
        "content": {
            "brief": "Acme wants SSO.",
            "keyPoints": [{"text": "Needs SSO"}],
            "topics": [{"name": "Pricing", "duration": 300}],
            "trackers": [{"id": "t", "name": "Competitors", "count": 2, "type": "KEYWORD"}],
        },
        "interaction": {"speakers": [{"id": "s1", "userId": None, "talkTime": 600.5}]},
    }
    route = gong.post("/v2/calls/extensive").respond(
        200, json={"requestId": "r", "records": records(1, 0), "calls": [extensive]}
    )
    out = await ok(
        mcp,
        "search_calls",
        {
            "from_date_time": FROM,
            "to_date_time": TO,
            "primary_user_ids": ["234599484848423"],
            "include": ["parties", "brief", "key_points", "topics", "trackers", "speakers"],
            "crm_context": "Extended",
        },
    )
    request = sent(route)
    check_request(SPEC, request)
    assert json.loads(request.content) == {
        "filter": {
            "fromDateTime": "2026-01-01T00:00:00+00:00",
            "toDateTime": "2026-02-01T00:00:00+00:00",
            "primaryUserIds": ["234599484848423"],
        },
        "contentSelector": {
            "context": "Extended",
            "exposedFields": {
                "parties": True,
                "content": {"brief": True, "keyPoints": True, "topics": True, "trackers": True},
                "interaction": {"speakers": True},
            },
        },
    }
    call = out["calls"][0]
    assert call["call"]["id"] == "1" and call["brief"] == "Acme wants SSO."
    assert call["parties"][0]["email"] == "ann@acme.example" and call["key_points"] == ["Needs SSO"]
    assert call["trackers"] == [{"name": "Competitors", "count": 2}]
    assert call["crm_context"][0]["name"] == "Acme renewal" and call["highlights"] is None


async def test_search_calls_two_pages_and_needs_a_filter(gong: respx.MockRouter, mcp: Client) -> None:
    route = gong.post("/v2/calls/extensive").mock(
        side_effect=[
            httpx.Response(
                200,
                json={"requestId": "r", "records": records(2, 0, "n1"), "calls": [{"metaData": meta("1")}]},
            ),
            httpx.Response(200, json={"requestId": "r", "records": records(2, 1), "calls": [{"metaData": meta("2")}]}),
        ]
    )
    out = await ok(mcp, "search_calls", {"call_ids": ["1", "2"], "max_pages": 2})
    assert [c["call"]["id"] for c in out["calls"]] == ["1", "2"]
    assert json.loads(sent(route, 1).content)["cursor"] == "n1"
    check_request(SPEC, sent(route, 1))
    message = await err(mcp, "search_calls", {})
    assert "date range or call_ids" in message and route.call_count == 2


async def test_get_call_transcripts(gong: respx.MockRouter, mcp: Client) -> None:
    route = gong.post("/v2/calls/transcript").respond(
        200,
        json={
            "requestId": "r",
            "records": records(1, 0),
            "callTranscripts": [
                {
                    "callId": "1",
                    "transcript": [
                        {
                            "speakerId": "s1",
                            "topic": "Intro",
                            "sentences": [
                                {"start": 0, "end": 1500, "text": "Hi there."},
                                {"start": 1500, "end": 3000, "text": "Welcome."},
                            ],
                        },
                        {
                            "speakerId": "s2",
                            "topic": None,
                            "sentences": [{"start": 3100, "end": 4000, "text": "Thanks!"}],
                        },
                    ],
                }
            ],
        },
    )
    out = await ok(mcp, "get_call_transcripts", {"call_ids": ["1"]})
    check_request(SPEC, sent(route))
    assert json.loads(sent(route).content) == {"filter": {"callIds": ["1"]}}
    turns = out["transcripts"][0]["monologues"]
    assert turns[0] == {
        "speaker_id": "s1",
        "topic": "Intro",
        "start_ms": 0,
        "end_ms": 3000,
        "text": "Hi there. Welcome.",
    }
    assert turns[1]["text"] == "Thanks!"


def transcript(call_id: str, *turns: tuple[str, str]) -> dict:
    """A `callTranscripts[]` entry: one monologue per (speaker, text), one sentence each."""
    return {
        "callId": call_id,
        "transcript": [
            {"speakerId": who, "topic": None, "sentences": [{"start": i * 1000, "end": i * 1000 + 900, "text": text}]}
            for i, (who, text) in enumerate(turns)
        ],
    }


async def test_get_call_transcripts_capped_by_max_chars_with_a_cursor(gong: respx.MockRouter, mcp: Client) -> None:
    words = ["alpha " * 40, "bravo " * 40, "charlie " * 40]  # 240, 240 and 320 characters
    pages = {
        None: {
            "requestId": "r",
            "records": records(2, 0, "t2"),
            "callTranscripts": [transcript("1", ("s1", words[0]), ("s2", words[1]))],
        },
        "t2": {"requestId": "r", "records": records(2, 1), "callTranscripts": [transcript("2", ("s1", words[2]))]},
    }
    route = gong.post("/v2/calls/transcript").mock(
        side_effect=lambda request: httpx.Response(200, json=pages[json.loads(request.content).get("cursor")])
    )
    args: dict = {"from_date_time": FROM, "to_date_time": TO, "max_chars": 300, "max_pages": 2}
    texts: list[tuple[str, str]] = []
    out = await ok(mcp, "get_call_transcripts", args)
    while True:
        chars = sum(len(m["text"]) for t in out["transcripts"] for m in t["monologues"])
        assert chars <= 300
        texts += [(t["call_id"], m["text"]) for t in out["transcripts"] for m in t["monologues"]]
        if not out["next_cursor"]:
            break
        assert len(texts) < 10
        out = await ok(mcp, "get_call_transcripts", {**args, "cursor": out["next_cursor"]})
    assert [t for _, t in texts[:2]] == [words[0].strip(), words[1].strip()]
    assert [c for c, _ in texts] == ["1", "1", "2", "2"]  # the 320-character turn comes in two pieces
    assert " ".join(t for c, t in texts if c == "2").split() == words[2].split()
    for call in route.calls:
        check_request(SPEC, call.request)


async def test_get_call_transcripts_rejects_a_foreign_cursor(gong: respx.MockRouter, mcp: Client) -> None:
    message = await err(mcp, "get_call_transcripts", {"call_ids": ["1"], "cursor": "resume:!!notbase64"})
    assert "cursor" in message


async def test_search_calls_by_crm_account_and_deal(gong: respx.MockRouter, mcp: Client) -> None:
    def linked(call_id: str, account: str, deal: str) -> dict:
        objects = [
            {"objectType": "Account", "objectId": f"A-{account}", "fields": [{"name": "Name", "value": account}]},
            {"objectType": "Opportunity", "objectId": f"O-{deal}", "fields": [{"name": "Name", "value": deal}]},
        ]
        return {"metaData": meta(call_id), "context": [{"system": "Salesforce", "objects": objects}]}

    calls = [linked("1", "Acme", "Renewal"), linked("2", "Globex", "Pilot"), linked("3", "Acme", "Upsell")]
    route = gong.post("/v2/calls/extensive").respond(
        200, json={"requestId": "r", "records": records(3, 0), "calls": calls}
    )
    out = await ok(mcp, "search_calls", {"from_date_time": FROM, "to_date_time": TO, "account": "acme"})
    assert [c["call"]["id"] for c in out["calls"]] == ["1", "3"]
    sent_body = json.loads(sent(route).content)
    assert sent_body["contentSelector"]["context"] == "Extended"
    check_request(SPEC, sent(route))
    out = await ok(
        mcp, "search_calls", {"from_date_time": FROM, "to_date_time": TO, "account": "A-Acme", "deal": "Upsell"}
    )
    assert [c["call"]["id"] for c in out["calls"]] == ["3"]


async def test_list_and_get_users(gong: respx.MockRouter, mcp: Client) -> None:
    user = {
        "id": "234599484848423",
        "emailAddress": "rep@us.example",
        "created": "2025-01-01T00:00:00Z",
        "active": True,
        "emailAliases": [],
        "firstName": "Rita",
        "lastName": "Rep",
        "title": "AE",
        "phoneNumber": "+1",
        "managerId": "9",
        "settings": {"emailsImported": True},
        "spokenLanguages": [{"language": "en-US", "primary": True}],
    }
    inactive = {**user, "id": "5", "active": False}
    users = gong.get("/v2/users").respond(
        200, json={"requestId": "r", "records": records(2, 0), "users": [user, inactive]}
    )
    one = gong.get("/v2/users/234599484848423").respond(200, json={"requestId": "r", "user": user})
    listed = await ok(mcp, "list_users")
    got = await ok(mcp, "get_user", {"user_id": "234599484848423"})
    check_request(SPEC, sent(users))
    check_request(SPEC, sent(one))
    assert [u["id"] for u in listed["users"]] == ["234599484848423"]
    assert got == {
        "id": "234599484848423",
        "email": "rep@us.example",
        "first_name": "Rita",
        "last_name": "Rep",
        "title": "AE",
        "active": True,
        "manager_id": "9",
        "created": "2025-01-01T00:00:00Z",
    }


async def test_429_retry_after_is_honoured(
    gong: respx.MockRouter, mcp: Client, caplog: pytest.LogCaptureFixture
) -> None:
    route = gong.get("/v2/users/1").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}, json={"requestId": "r", "errors": ["Too many requests"]}),
            httpx.Response(200, json={"requestId": "r", "user": {"id": "1"}}),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="servers.common.http"):
        assert (await ok(mcp, "get_user", {"user_id": "1"}))["id"] == "1"
    assert route.call_count == 2 and "retry in 1.00s" in caplog.text


async def test_429_beyond_the_wait_bound_fails_fast(gong: respx.MockRouter, mcp: Client) -> None:
    route = gong.get("/v2/users/1").respond(429, headers={"Retry-After": "3600"}, json={"errors": ["quota"]})
    message = await err(mcp, "get_user", {"user_id": "1"})
    assert route.call_count == 1 and "rate limited" in message and "3600" in message


async def test_5xx_retried_for_reads_even_over_post(gong: respx.MockRouter, mcp: Client) -> None:
    route = gong.post("/v2/calls/transcript").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"requestId": "r", "callTranscripts": []})]
    )
    out = await ok(mcp, "get_call_transcripts", {"call_ids": ["1"]})
    assert out["transcripts"] == [] and route.call_count == 2


async def test_bad_credentials(gong: respx.MockRouter, mcp: Client) -> None:
    gong.get("/v2/users").respond(401, json={"requestId": "r", "errors": ["Invalid credentials"]})
    message = await err(mcp, "list_users")
    assert "token rejected" in message and "GONG_ACCESS_KEY" in message and "GONG_ACCESS_KEY_SECRET" in message
    assert KEY not in message and SECRET not in message


async def test_vendor_error_body(gong: respx.MockRouter, mcp: Client) -> None:
    gong.get("/v2/calls").respond(
        400, json={"requestId": "4al018gzaztcr8nbukw", "errors": ["fromDateTime must be before toDateTime"]}
    )
    message = await err(mcp, "list_calls", {"from_date_time": TO, "to_date_time": FROM})
    assert "400" in message and "fromDateTime must be before toDateTime" in message


async def test_missing_credentials(mcp: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GONG_ACCESS_KEY", KEY)
    monkeypatch.delenv("GONG_ACCESS_KEY_SECRET", raising=False)
    with respx.mock() as router:
        message = await err(mcp, "get_call", {"call_id": "1"})
        assert not router.calls
    assert "GONG_ACCESS_KEY_SECRET" in message and "GONG_ACCESS_KEY," not in message
