"""ingest_source / list_sources in process: the real ai_memory server and MCP client, vendors on a local server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from hypothesis import given
from hypothesis import strategies as st

from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.server import create_server
from servers.ai_memory.service import MemoryService
from servers.ai_memory.sources.ingest import Ingestor
from servers.ai_memory.sources.state import SourceState
from tests.servers.mcp_helpers import err, ok
from tests.servers.spec_check import check_request
from tests.servers.vendors import ACME_ID, VendorServer, revenue_team, slack_message, vendor_server

ACME = {"object_type": "company", "ids": [ACME_ID]}


@pytest.fixture
def vendors(monkeypatch: pytest.MonkeyPatch) -> Iterator[VendorServer]:
    with vendor_server(revenue_team()) as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[Client]:
    config = MemoryConfig(data_dir=tmp_path / "data", warm_embedder=False)
    async with Client(create_server(config)) as client:
        yield client


async def memories(client: Client, **filters: Any) -> list[dict[str, Any]]:
    out = await ok(client, "list_memories", {"limit": 1000, "filters": filters or None})
    return out["memories"]


async def test_hubspot_reingest_updates_a_changed_note_and_never_duplicates(
    vendors: VendorServer, memory: Client
) -> None:
    first = await ok(memory, "ingest_source", {"source": "hubspot", "scope": ACME})
    assert (first["ingested"], first["updated"], first["skipped"]) == (3, 0, 0)  # the record and its 2 notes
    stored = await memories(memory, source="hubspot")
    by_id = {m["metadata"]["source_id"]: m for m in stored}
    assert set(by_id) == {f"company:{ACME_ID}", "note:501", "note:502"}
    note = by_id["note:501"]["metadata"]
    assert note["url"] == f"https://app.hubspot.com/contacts/4455/record/0-2/{ACME_ID}"
    assert note["author"] == "Rita Rep" and note["account"] == "Acme" and note["ts"] == "2026-01-08T14:00:00Z"
    assert "15% discount" in by_id["note:501"]["content"] and "<p>" not in by_id["note:501"]["content"]
    assert "Acme's security team" in by_id["note:502"]["content"]

    vendors.data.notes[ACME_ID][0]["properties"]["hs_note_body"] = "QBR: Acme pushed back on pricing, wants 20% off."
    again = await ok(memory, "ingest_source", {"source": "hubspot", "scope": ACME})
    assert (again["ingested"], again["updated"], again["skipped"]) == (0, 1, 2)
    after = await memories(memory, source="hubspot")
    assert len(after) == 3 and {m["id"] for m in after} == {m["id"] for m in stored}
    assert "20% off" in next(m["content"] for m in after if m["metadata"]["source_id"] == "note:501")
    for seen in vendors.seen("hubspot", "/crm/v4/objects/"):
        check_request("hubspot/associations.json", seen.as_httpx(vendors.base), strip_prefix="/hubspot")


async def test_slack_second_run_reads_only_what_is_newer(vendors: VendorServer, memory: Client) -> None:
    scope = {"channel": "C0ACME", "account": "Acme"}
    first = await ok(memory, "ingest_source", {"source": "slack", "scope": scope})
    assert first["ingested"] == 4 and first["cursor"] == {"latest_ts": "1767398400.000400"}  # 3 messages + 1 reply
    reply = next(m for m in await memories(memory, source="slack") if m["metadata"]["source_id"].endswith("000200"))
    assert reply["metadata"]["author"] == "Sam Ortiz" and reply["metadata"]["account"] == "Acme"
    assert reply["metadata"]["url"] == "https://acme-team.slack.com/archives/C0ACME/p1767225700000200"
    assert "acme-pricing.pdf" in reply["content"] and reply["content"].startswith("Sam Ortiz: ")
    thread = reply["metadata"]["thread_ts"]  # a thread reply: its thread is another message's
    assert thread and not reply["metadata"]["source_id"].endswith(thread)

    vendors.data.messages.append(slack_message("1767484800.000500", "U02SAM", "Acme legal approved the DPA."))
    before = len(vendors.seen("slack", "/api/conversations.history"))
    second = await ok(memory, "ingest_source", {"source": "slack", "scope": scope})
    assert (second["ingested"], second["updated"], second["skipped"]) == (1, 0, 0)
    assert vendors.seen("slack", "/api/conversations.history")[before].query["oldest"] == "1767398400.000400"
    for seen in vendors.seen("slack", "/api/"):
        check_request("slack/slack_web_openapi_v2.json", seen.as_httpx(vendors.base), strip_prefix="/slack/api")


async def test_two_items_with_the_same_text_stay_two_memories_with_the_clean_text(
    vendors: VendorServer, memory: Client
) -> None:
    """Keyed by source_id, not by text: the same words said twice are two memories, each holding just
    what was said (and by whom), with where and when in metadata only."""
    vendors.data.messages += [
        slack_message("1767484800.000500", "U02SAM", "Sounds good, ship it."),
        slack_message("1767571200.000600", "U02SAM", "Sounds good, ship it."),
    ]
    first = await ok(memory, "ingest_source", {"source": "slack", "scope": {"channel": "C0ACME"}})
    assert (first["ingested"], first["updated"], first["skipped"]) == (6, 0, 0)
    same = [m for m in await memories(memory, source="slack") if "ship it" in m["content"]]
    assert len({m["id"] for m in same}) == 2
    assert [m["content"] for m in same] == ["Sam Ortiz: Sounds good, ship it."] * 2
    assert {m["metadata"]["source_id"] for m in same} == {"C0ACME:1767484800.000500", "C0ACME:1767571200.000600"}
    assert {m["metadata"]["ts"] for m in same} == {"2026-01-04T00:00:00Z", "2026-01-05T00:00:00Z"}

    vendors.data.messages[-1]["text"] = "Sounds good, ship it on Monday."  # an edit to the older one's twin
    again = await ok(
        memory, "ingest_source", {"source": "slack", "scope": {"channel": "C0ACME", "oldest": "1767398400.000400"}}
    )
    assert (again["ingested"], again["updated"], again["skipped"]) == (0, 1, 1)
    after = {m["metadata"]["source_id"]: m for m in await memories(memory, source="slack")}
    assert len(after) == 6 and after["C0ACME:1767571200.000600"]["id"] in {m["id"] for m in same}
    assert after["C0ACME:1767571200.000600"]["content"] == "Sam Ortiz: Sounds good, ship it on Monday."


async def test_a_rate_limit_too_long_to_wait_stops_the_run_and_the_next_run_resumes(
    vendors: VendorServer, memory: Client
) -> None:
    vendors.data.fail_once = {"slack-history-page-2": 3600}  # past what ingestion waits (600 s)
    scope = {"channel": "C0ACME"}
    text = await err(memory, "ingest_source", {"source": "slack", "scope": scope})
    assert "rate limited (429)" in text and "3600" in text
    assert len(await memories(memory, source="slack")) == 2  # the first page (a message and its thread reply)
    (row,) = (await memory.call_tool("list_sources", {})).structured_content["result"]
    assert row["cursor"]["resume"]["page"] == "2" and row["items"] == 2  # checkpointed after page 1
    resumed = await ok(memory, "ingest_source", {"source": "slack", "scope": scope})
    assert (resumed["ingested"], resumed["skipped"]) == (2, 0)  # page 2 only: the run resumed where it stopped
    assert resumed["cursor"] == {"latest_ts": "1767398400.000400"}
    assert len(await memories(memory, source="slack")) == 4


async def test_gong_scope_to_bounds_the_range(vendors: VendorServer, memory: Client) -> None:
    out = await ok(
        memory, "ingest_source", {"source": "gong", "scope": {"from": "2026-01-01", "to": "2026-01-06T00:00:00Z"}}
    )
    sent = vendors.seen("gong", "/v2/calls/extensive")[0].body["filter"]
    assert sent == {"fromDateTime": "2026-01-01T00:00:00+00:00", "toDateTime": "2026-01-06T00:00:00+00:00"}
    assert out["ingested"] == 3  # the Acme call's turns; the Globex call is after `to`


async def test_gong_turns_carry_speaker_affiliation_account_and_call_url(vendors: VendorServer, memory: Client) -> None:
    out = await ok(memory, "ingest_source", {"source": "gong", "scope": {"from": "2026-01-01"}})
    assert out["ingested"] == 5 and out["cursor"] == {"latest_started": "2026-01-07T16:00:00+00:00"}
    turns = await memories(memory, source="gong", account="Acme")
    assert len(turns) == 3
    ann = next(m for m in turns if m["metadata"]["author"] == "Ann Buyer")
    assert ann["metadata"]["affiliation"] == "External" and ann["metadata"]["ts"] == "2026-01-05T15:01:11Z"
    assert ann["metadata"]["url"] == "https://app.gong.io/call?id=7782342274025937895"
    assert ann["content"].startswith("Ann Buyer (Acme, External): Honestly")
    assert ann["metadata"]["title"] == "Acme renewal pricing review"
    rita = [m for m in turns if m["metadata"]["author"] == "Rita Rep"]
    assert {m["metadata"]["source_id"] for m in rita} == {"7782342274025937895:1", "7782342274025937895:4"}
    assert rita[0]["content"].startswith("Rita Rep (Internal): ")  # the short "Okay." (turn 3) is not remembered
    again = await ok(memory, "ingest_source", {"source": "gong", "scope": {"from": "2026-01-01"}})
    assert again["ingested"] == 0 and again["updated"] == 0  # the last call is re-read from its start, and skipped
    extensive = vendors.seen("gong", "/v2/calls/extensive")
    assert extensive[-1].body["filter"]["fromDateTime"] == "2026-01-07T16:00:00+00:00"
    for seen in vendors.seen("gong", "/v2/"):
        check_request("gong/gong-openapi.json", seen.as_httpx(vendors.base), strip_prefix="/gong")


async def test_list_sources_shows_cursor_count_and_last_run(vendors: VendorServer, memory: Client) -> None:
    await ok(memory, "ingest_source", {"source": "hubspot", "scope": ACME, "namespace": "acme"})
    await ok(memory, "ingest_source", {"source": "hubspot", "scope": ACME, "namespace": "acme"})
    result = await memory.call_tool("list_sources", {"namespace": "acme"})
    (row,) = result.structured_content["result"]
    assert row["source"] == "hubspot" and row["scope"] == ACME and row["items"] == 3
    assert row["cursor"]["modified_since"] and row["last_run"].endswith("Z")
    assert row["last_result"]["skipped"] == 3
    assert (await memory.call_tool("list_sources", {"namespace": "other"})).structured_content["result"] == []


@pytest.mark.parametrize(
    ("source", "scope", "message"),
    [
        ("slack", {}, "channel"),
        ("slack", {"channel": "C1", "since": "1"}, "since"),
        ("gong", {"from": "last tuesday"}, "from"),
        ("hubspot", {"object_type": "ticket"}, "object_type"),
    ],
)
async def test_bad_scope_is_a_clear_error_before_any_request(
    vendors: VendorServer, memory: Client, source: str, scope: dict, message: str
) -> None:
    text = await err(memory, "ingest_source", {"source": source, "scope": scope})
    assert f"invalid {source} scope" in text and message in text and not vendors.requests


@given(
    scope=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=8,
    ),
    source=st.sampled_from(["slack", "gong", "hubspot", "jira"]),
)
def test_any_json_scope_parses_or_is_refused_clearly(
    scope: Any, source: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from fastmcp.exceptions import ToolError

    ingestor = Ingestor(MemoryService(MemoryConfig(data_dir=Path("/nonexistent"))), SourceState(Path("/nonexistent/x")))
    try:
        _, canonical = ingestor.parse_scope(source, scope)
    except ToolError as exc:
        assert "scope" in str(exc) or "source must be one of" in str(exc)
    else:
        assert isinstance(canonical, dict)


async def test_a_run_ending_does_not_cut_off_another_run_of_the_source(vendors: VendorServer, memory: Client) -> None:
    import anyio

    vendors.data.slow = {"C0SLOW": 1.0}  # its history answers while the other run has already finished
    results: dict[str, dict[str, Any]] = {}

    async def run(channel: str) -> None:
        results[channel] = await ok(memory, "ingest_source", {"source": "slack", "scope": {"channel": channel}})

    async with anyio.create_task_group() as group:
        group.start_soon(run, "C0SLOW")
        group.start_soon(run, "C0ACME")
    assert results["C0ACME"]["ingested"] == 4 and results["C0SLOW"]["ingested"] == 4
    slow = [r for r in vendors.seen("slack", "/api/conversations.history") if r.query["channel"] == "C0SLOW"]
    assert len(slow) == 2  # two pages, each asked for once: no request was cut off and retried


@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=300), limit=st.integers(10, 80))
def test_parts_keep_every_word_within_the_limit(text: str, limit: int) -> None:
    from servers.ai_memory.sources.items import parts

    pieces = parts(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())


@given(markup=st.text(max_size=200))
def test_plain_text_of_any_markup_has_no_tags_left_from_it(markup: str) -> None:
    from servers.ai_memory.sources.items import plain_text

    out = plain_text(f"<p>{markup}</p><br/>")
    assert isinstance(out, str) and not out.startswith("<p>") and out == out.strip()
