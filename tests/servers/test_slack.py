"""Slack server: every tool through an MCP client against respx-mocked Slack Web API methods."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import respx
from fastmcp import Client

from servers.slack.server import create_server
from tests.servers.mcp_helpers import connected, err, ok, vendor_api
from tests.servers.spec_check import check_request

BASE = "https://slack.test/api"
BOT, USER = "xoxb-1111-2222-botsecret", "xoxp-3333-4444-usersecret"
SPEC = "slack/slack_web_openapi_v2.json"
WRITES = {"post_message", "reply_to_thread", "add_reaction"}


def check(request: httpx.Request, token: str = BOT) -> None:
    assert request.headers["Authorization"] == f"Bearer {token}"
    check_request(SPEC, request, strip_prefix="/api")


def message(ts: str, text: str = "hello", **extra: object) -> dict:
    return {"type": "message", "user": "U061F7AUR", "text": text, "ts": ts, **extra}


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    with vendor_api(monkeypatch, BASE, SLACK_BOT_TOKEN=BOT, SLACK_USER_TOKEN=USER, SLACK_API_BASE=BASE) as api:
        yield api


def link(channel: str, ts: str) -> str:
    return f"https://ghostbusters.slack.com/archives/{channel}/p{ts.replace('.', '')}"


def permalinks(slack: respx.MockRouter) -> respx.Route:
    """`chat.getPermalink` answering as Slack documents it, for any message."""

    def answer(request: httpx.Request) -> httpx.Response:
        channel, ts = request.url.params["channel"], request.url.params["message_ts"]
        return httpx.Response(200, json={"ok": True, "channel": channel, "permalink": link(channel, ts)})

    return slack.get("/chat.getPermalink").mock(side_effect=answer)


@pytest.fixture
async def mcp() -> AsyncIterator[Client]:
    async with connected(create_server) as client:
        yield client


async def test_tools_schemas_and_annotations(mcp: Client) -> None:
    tools = {t.name: t for t in await mcp.list_tools()}
    assert set(tools) == {
        "list_channels",
        "get_channel_history",
        "get_thread_replies",
        "post_message",
        "reply_to_thread",
        "add_reaction",
        "search_messages",
        "list_users",
        "get_user",
    }
    for name, tool in tools.items():
        assert tool.annotations.read_only_hint is (name not in WRITES), name
        assert tool.output_schema and tool.description, name
    assert tools["add_reaction"].annotations.idempotent_hint is True
    assert tools["post_message"].annotations.idempotent_hint is False


async def test_list_channels_two_pages(slack: respx.MockRouter, mcp: Client) -> None:
    channel = {
        "id": "C012AB3CD",
        "name": "general",
        "is_channel": True,
        "is_private": False,
        "is_archived": False,
        "is_member": True,
        "num_members": 4,
        "topic": {"value": "Company-wide", "creator": "", "last_set": 0},
        "purpose": {"value": "", "creator": "", "last_set": 0},
        "created": 1449252889,
    }
    route = slack.get("/conversations.list").mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "ok": True,
                    "channels": [channel],
                    "response_metadata": {"next_cursor": "dGVhbTpDMDYxRkE1UEI="},
                },
            ),
            httpx.Response(
                200,
                json={
                    "ok": True,
                    "channels": [{**channel, "id": "C2", "name": "random"}],
                    "response_metadata": {"next_cursor": ""},
                },
            ),
        ]
    )
    out = await ok(mcp, "list_channels", {"limit": 1, "max_pages": 2})
    first, second = route.calls[0].request, route.calls[1].request
    check(first)
    check(second)
    assert first.url.params["limit"] == "1" and first.url.params["exclude_archived"] == "true"
    assert "cursor" not in first.url.params and second.url.params["cursor"] == "dGVhbTpDMDYxRkE1UEI="
    assert [c["name"] for c in out["channels"]] == ["general", "random"] and out["next_cursor"] is None
    assert out["channels"][0]["topic"] == "Company-wide" and out["channels"][0]["purpose"] is None


async def test_channel_history(slack: respx.MockRouter, mcp: Client) -> None:
    links = permalinks(slack)
    route = slack.get("/conversations.history").respond(
        200,
        json={
            "ok": True,
            "has_more": True,
            "pin_count": 0,
            "messages": [
                message(
                    "1512085950.000216",
                    "I find you punny",
                    reply_count=2,
                    thread_ts="1512085950.000216",
                    reactions=[{"name": "joy", "users": ["U1"], "count": 1}],
                )
            ],
            "response_metadata": {"next_cursor": "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz"},
        },
    )
    out = await ok(mcp, "get_channel_history", {"channel": "C012AB3CD", "oldest": "1512000000", "limit": 10})
    request = route.calls[0].request
    check(request)
    assert dict(request.url.params) == {"channel": "C012AB3CD", "oldest": "1512000000", "limit": "10"}
    assert out["next_cursor"] == "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz"
    assert out["messages"][0]["reactions"] == [{"name": "joy", "count": 1}]
    assert out["messages"][0]["reply_count"] == 2
    assert out["messages"][0]["permalink"] == link("C012AB3CD", "1512085950.000216")
    check(links.calls[0].request)


async def test_thread_replies(slack: respx.MockRouter, mcp: Client) -> None:
    permalinks(slack)
    route = slack.get("/conversations.replies").respond(
        200,
        json={
            "ok": True,
            "has_more": False,
            "messages": [
                message("1482960137.003543", "parent", thread_ts="1482960137.003543", reply_count=1),
                message("1483037603.017503", "reply", thread_ts="1482960137.003543"),
            ],
            "response_metadata": {"next_cursor": ""},
        },
    )
    out = await ok(mcp, "get_thread_replies", {"channel": "C012AB3CD", "thread_ts": "1482960137.003543"})
    check(route.calls[0].request)
    assert route.calls[0].request.url.params["ts"] == "1482960137.003543"
    assert [m["text"] for m in out["messages"]] == ["parent", "reply"] and out["next_cursor"] is None
    assert [m["permalink"] for m in out["messages"]] == [
        link("C012AB3CD", "1482960137.003543"),
        link("C012AB3CD", "1483037603.017503"),
    ]


FILE = {
    "id": "F0S43PZDF",
    "created": 1531763342,
    "timestamp": 1531763342,
    "name": "tedair.gif",
    "title": "tedair.gif",
    "mimetype": "image/gif",
    "filetype": "gif",
    "pretty_type": "GIF",
    "user": "U061F7AUR",
    "size": 137531,
    "url_private": "https://files.slack.com/files-pri/T061EG9R6-F0S43PZDF/tedair.gif",
    "permalink": "https://ghostbusters.slack.com/files/U061F7AUR/F0S43PZDF/tedair.gif",
}


async def test_history_files_and_permalinks_cached(slack: respx.MockRouter, mcp: Client) -> None:
    links = permalinks(slack)
    body = {
        "ok": True,
        "has_more": False,
        "messages": [
            message("1531763342.000300", "see attached", files=[FILE], upload=True),
            message("1531763340.000100", "plain"),
        ],
        "response_metadata": {"next_cursor": ""},
    }
    slack.get("/conversations.history").respond(200, json=body)
    first = await ok(mcp, "get_channel_history", {"channel": "C012AB3CD"})
    again = await ok(mcp, "get_channel_history", {"channel": "C012AB3CD"})
    assert first == again and links.call_count == 2  # one getPermalink per message, then cached
    assert first["messages"][0]["files"] == [
        {
            "id": "F0S43PZDF",
            "name": "tedair.gif",
            "title": "tedair.gif",
            "filetype": "gif",
            "mimetype": "image/gif",
            "size": 137531,
            "permalink": "https://ghostbusters.slack.com/files/U061F7AUR/F0S43PZDF/tedair.gif",
        }
    ]
    assert first["messages"][1]["files"] == [] and first["messages"][1]["permalink"]


async def test_permalink_failure_leaves_the_message_readable(slack: respx.MockRouter, mcp: Client) -> None:
    slack.get("/chat.getPermalink").respond(200, json={"ok": False, "error": "message_not_found"})
    slack.get("/conversations.history").respond(
        200, json={"ok": True, "messages": [message("1.000001")], "response_metadata": {"next_cursor": ""}}
    )
    out = await ok(mcp, "get_channel_history", {"channel": "C1"})
    assert out["messages"][0]["text"] == "hello" and out["messages"][0]["permalink"] is None


@pytest.mark.parametrize(
    ("channel", "listed", "scope"),
    [
        ("D024BE91L", None, "im:history"),
        ("C0PRIV", {"is_channel": True, "is_private": True}, "groups:history"),
        ("C0MPIM", {"is_mpim": True, "is_private": True}, "mpim:history"),
        ("C0PUB", {"is_channel": True, "is_private": False}, "channels:history"),
        ("C0UNKNOWN", None, "channels:history (groups:history if the channel is private)"),
    ],
)
async def test_missing_scope_hint_fits_the_conversation(
    slack: respx.MockRouter, mcp: Client, channel: str, listed: dict | None, scope: str
) -> None:
    if listed is not None:
        slack.get("/conversations.list").respond(
            200, json={"ok": True, "channels": [{"id": channel, **listed}], "response_metadata": {"next_cursor": ""}}
        )
        await ok(mcp, "list_channels", {"types": "public_channel,private_channel,mpim,im"})
    slack.get("/conversations.history").respond(200, json={"ok": False, "error": "missing_scope"})
    text = await err(mcp, "get_channel_history", {"channel": channel})
    assert f"scope {scope} needed" in text


async def test_commercial_distribution_limits_history(
    slack: respx.MockRouter, mcp: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_APP_DISTRIBUTION", "commercial")
    permalinks(slack)
    route = slack.get("/conversations.history").respond(
        200,
        json={"ok": True, "messages": [message("2.000001")], "response_metadata": {"next_cursor": "more"}},
    )
    out = await ok(mcp, "get_channel_history", {"channel": "C1", "limit": 200, "max_pages": 5})
    assert route.call_count == 1 and route.calls[0].request.url.params["limit"] == "15"
    assert out["next_cursor"] == "more"  # one page per minute: the rest is left to the cursor
    check(route.calls[0].request)
    text = await err(mcp, "get_channel_history", {"channel": "C1", "cursor": "more"})
    assert "1 request per minute" in text and "retry after" in text and route.call_count == 1
    replies = slack.get("/conversations.replies").respond(
        200, json={"ok": True, "messages": [message("2.000001")], "response_metadata": {"next_cursor": ""}}
    )
    await ok(mcp, "get_thread_replies", {"channel": "C1", "thread_ts": "2.000001"})  # its own minute
    assert replies.calls[0].request.url.params["limit"] == "15"
    monkeypatch.setenv("SLACK_APP_DISTRIBUTION", "sideloaded")
    assert "SLACK_APP_DISTRIBUTION must be one of" in await err(mcp, "get_channel_history", {"channel": "C1"})


async def test_post_and_reply(slack: respx.MockRouter, mcp: Client) -> None:
    route = slack.post("/chat.postMessage").mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "ok": True,
                    "channel": "C012AB3CD",
                    "ts": "1503435956.000247",
                    "message": message("1503435956.000247", "Here's a message for you"),
                },
            ),
            httpx.Response(
                200,
                json={
                    "ok": True,
                    "channel": "C012AB3CD",
                    "ts": "1503435957.000300",
                    "message": message("1503435957.000300", "re", thread_ts="1503435956.000247"),
                },
            ),
        ]
    )
    posted = await ok(mcp, "post_message", {"channel": "C012AB3CD", "text": "Here's a message for you"})
    replied = await ok(mcp, "reply_to_thread", {"channel": "C012AB3CD", "thread_ts": posted["ts"], "text": "re"})
    first, second = route.calls[0].request, route.calls[1].request
    check(first)
    check(second)
    assert first.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(first.content) == {
        "channel": "C012AB3CD",
        "text": "Here's a message for you",
        "unfurl_links": False,
    }
    assert json.loads(second.content) == {
        "channel": "C012AB3CD",
        "thread_ts": "1503435956.000247",
        "text": "re",
        "reply_broadcast": False,
    }
    assert posted == {"channel": "C012AB3CD", "ts": "1503435956.000247", "thread_ts": None}
    assert replied["thread_ts"] == "1503435956.000247"


async def test_add_reaction_is_idempotent(slack: respx.MockRouter, mcp: Client) -> None:
    route = slack.post("/reactions.add").mock(
        side_effect=[
            httpx.Response(200, json={"ok": True}),
            httpx.Response(200, json={"ok": False, "error": "already_reacted"}),
        ]
    )
    args = {"channel": "C012AB3CD", "timestamp": "1234567890.123456", "name": ":thumbsup:"}
    assert await ok(mcp, "add_reaction", args) == {"ok": True, "already_reacted": False}
    assert await ok(mcp, "add_reaction", args) == {"ok": True, "already_reacted": True}
    check(route.calls[0].request)
    assert json.loads(route.calls[0].request.content)["name"] == "thumbsup"


async def test_search_messages_uses_user_token_and_pages(slack: respx.MockRouter, mcp: Client) -> None:
    def found(page: int, ts: str) -> dict:
        return {
            "ok": True,
            "query": "pickleball",
            "messages": {
                "total": 2,
                "pagination": {"total_count": 2, "page": page, "per_page": 1, "page_count": 2},
                "paging": {"count": 1, "total": 2, "page": page, "pages": 2},
                "matches": [
                    {
                        "iid": "x",
                        "team": "T1",
                        "type": "message",
                        "user": "U1",
                        "username": "spengler",
                        "ts": ts,
                        "text": "pickleball at noon?",
                        "permalink": f"https://x.slack.com/p{ts}",
                        "files": [FILE],
                        "channel": {"id": "C1", "name": "sports", "is_private": False},
                    }
                ],
            },
        }

    route = slack.get("/search.messages").mock(
        side_effect=[httpx.Response(200, json=found(1, "1.1")), httpx.Response(200, json=found(2, "2.2"))]
    )
    out = await ok(mcp, "search_messages", {"query": "pickleball", "limit": 1, "max_pages": 2})
    first, second = route.calls[0].request, route.calls[1].request
    check(first, USER)
    check(second, USER)
    assert first.url.params["count"] == "1" and first.url.params["page"] == "1" and second.url.params["page"] == "2"
    assert [m["ts"] for m in out["matches"]] == ["1.1", "2.2"] and out["next_cursor"] is None
    assert out["total"] == 2 and out["matches"][0]["channel_name"] == "sports"
    assert out["matches"][0]["permalink"] == "https://x.slack.com/p1.1"
    assert out["matches"][0]["files"][0]["name"] == "tedair.gif" and out["matches"][0]["files"][0]["size"] == 137531


async def test_users(slack: respx.MockRouter, mcp: Client) -> None:
    member = {
        "id": "W012A3CDE",
        "team_id": "T1",
        "name": "spengler",
        "deleted": False,
        "real_name": "Egon Spengler",
        "tz": "America/Los_Angeles",
        "is_admin": True,
        "is_bot": False,
        "profile": {
            "real_name": "Egon Spengler",
            "display_name": "spengler",
            "title": "Ghostbuster",
            "email": "spengler@ghostbusters.example.com",
            "image_24": "https://...",
        },
    }
    bot = {**member, "id": "B1", "is_bot": True}
    listed = slack.get("/users.list").respond(
        200, json={"ok": True, "members": [member, bot], "response_metadata": {"next_cursor": "abc"}}
    )
    info = slack.get("/users.info").respond(200, json={"ok": True, "user": member})
    out = await ok(mcp, "list_users", {"limit": 2})
    one = await ok(mcp, "get_user", {"user": "W012A3CDE"})
    check(listed.calls[0].request)
    check(info.calls[0].request)
    assert [u["id"] for u in out["users"]] == ["W012A3CDE"] and out["next_cursor"] == "abc"
    assert one["display_name"] == "spengler" and one["email"] == "spengler@ghostbusters.example.com"
    assert "image_24" not in json.dumps(one)


async def test_429_retry_after_is_honoured(
    slack: respx.MockRouter, mcp: Client, caplog: pytest.LogCaptureFixture
) -> None:
    route = slack.post("/chat.postMessage").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}, json={"ok": False, "error": "ratelimited"}),
            httpx.Response(200, json={"ok": True, "channel": "C1", "ts": "1.2", "message": message("1.2")}),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="servers.common.http"):
        out = await ok(mcp, "post_message", {"channel": "C1", "text": "hi"})
    assert out["ts"] == "1.2" and route.call_count == 2
    assert "retry in 1.00s" in caplog.text


async def test_5xx_retried_for_read_not_for_write(slack: respx.MockRouter, mcp: Client) -> None:
    read = slack.get("/users.info").mock(
        side_effect=[httpx.Response(500), httpx.Response(200, json={"ok": True, "user": {"id": "U1"}})]
    )
    write = slack.post("/chat.postMessage").respond(502)
    assert (await ok(mcp, "get_user", {"user": "U1"}))["id"] == "U1"
    assert read.call_count == 2
    message_text = await err(mcp, "post_message", {"channel": "C1", "text": "hi"})
    assert write.call_count == 1 and "not retried" in message_text


async def test_missing_scope_names_the_needed_scope(slack: respx.MockRouter, mcp: Client) -> None:
    slack.get("/conversations.history").respond(
        200,
        json={
            "ok": False,
            "error": "missing_scope",
            "needed": "channels:history",
            "provided": "chat:write,channels:read",
        },
    )
    message_text = await err(mcp, "get_channel_history", {"channel": "C1"})
    assert "token rejected, scope channels:history needed" in message_text
    assert "SLACK_BOT_TOKEN" in message_text and BOT not in message_text


async def test_bad_token_and_vendor_errors(slack: respx.MockRouter, mcp: Client) -> None:
    slack.get("/users.list").respond(200, json={"ok": False, "error": "invalid_auth"})
    slack.get("/users.info").respond(200, json={"ok": False, "error": "user_not_found"})
    slack.post("/chat.postMessage").respond(
        200,
        json={
            "ok": False,
            "error": "is_archived",
            "response_metadata": {"messages": ["[ERROR] channel is archived"]},
        },
    )
    assert "token rejected (invalid_auth), check SLACK_BOT_TOKEN" in await err(mcp, "list_users")
    assert "not found: user U404" in await err(mcp, "get_user", {"user": "U404"})
    archived = await err(mcp, "post_message", {"channel": "C1", "text": "hi"})
    assert "is_archived" in archived and "channel is archived" in archived


async def test_missing_credentials(mcp: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT)
    monkeypatch.delenv("SLACK_USER_TOKEN", raising=False)
    with respx.mock() as router:
        message_text = await err(mcp, "search_messages", {"query": "x"})
        assert not router.calls
    assert "SLACK_USER_TOKEN" in message_text and "SLACK_BOT_TOKEN" not in message_text
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    assert "SLACK_BOT_TOKEN" in await err(mcp, "list_channels")


async def test_invalid_ts_rejected_before_any_request(slack: respx.MockRouter, mcp: Client) -> None:
    message_text = await err(mcp, "add_reaction", {"channel": "C1", "timestamp": "yesterday", "name": "eyes"})
    assert "timestamp" in message_text and not slack.calls


async def test_transport_error_on_write_is_not_retried(slack: respx.MockRouter, mcp: Client) -> None:
    route = slack.post("/reactions.add").mock(side_effect=httpx.ReadTimeout("slow"))
    text = await err(mcp, "add_reaction", {"channel": "C1", "timestamp": "1.2", "name": "eyes"})
    assert route.call_count == 1 and "ReadTimeout" in text and "not retried" in text
