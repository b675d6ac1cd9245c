"""One memory across Slack, Gong and HubSpot, end to end: a real gateway process runs the real ai_memory
backend (its own process), a real MCP client calls it over Streamable HTTP, the vendors are a local HTTP
server whose base URLs reach the backend by env, as config/mcp.json passes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.helpers.procs import ROOT, GatewayProcess, write_config
from tests.servers.vendors import ACME_ID, VendorServer, revenue_team, vendor_server

NS = "revenue"
SCOPES = [
    ("slack", {"channel": "C0ACME", "account": "Acme"}),
    ("gong", {"from": "2026-01-01", "to": "2026-02-01"}),
    ("hubspot", {"object_type": "company", "ids": [ACME_ID]}),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, VendorServer]]:
    directory = tmp_path_factory.mktemp("ingest")
    data = revenue_team()
    data.fail_once = {"slack-history-page-2": 1}  # a 429 in the middle of the Slack ingest, waited out
    with vendor_server(data) as vendors:
        memory = {
            "command": "python",
            "args": ["-m", "servers.ai_memory"],
            "env": {"MCP_GATEWAY_DATA_DIR": str(directory / "data"), "PYTHONPATH": str(ROOT), **vendors.env},
        }
        gateway = GatewayProcess(write_config(directory, {"ai_memory": memory}, {"call_timeout": 180}))
        try:
            yield gateway, vendors
        finally:
            gateway.stop()


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(f"ai_memory_{tool}", arguments, raise_on_error=False)
    assert not result.is_error, result.content
    content = result.structured_content
    return content["result"] if isinstance(content, dict) and set(content) == {"result"} else content


async def test_three_sources_into_one_namespace_then_recall_across_them(
    stack: tuple[GatewayProcess, VendorServer],
) -> None:
    gateway, vendors = stack
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with Client(StreamableHttpTransport(gateway.base + "/mcp"), progress_handler=on_progress) as client:
        first = {}
        for source, scope in SCOPES:
            progress.clear()
            first[source] = await call(client, "ingest_source", source=source, scope=scope, namespace=NS)
            assert first[source]["ingested"] > 0, (source, first[source])
            assert any(message and message.startswith(source) for _, message in progress), (source, progress)
            assert [v for v, _ in progress] == sorted(v for v, _ in progress)
        assert first["slack"]["ingested"] == 4 and first["gong"]["ingested"] == 5 and first["hubspot"]["ingested"] == 3

        # the 429 on Slack's second history page was waited out and the page read after it
        statuses = [r.status for r in vendors.seen("slack", "/api/conversations.history")]
        assert statuses == [200, 429, 200]

        # "indexed": what was ingested is embedded before the search (the default, "eventual", may not see the
        # last writes yet: under load the gong calls were still queued for the index)
        hits = await call(
            client,
            "recall_memory",
            query="What did Acme push back on about the price?",
            namespace=NS,
            k=6,
            consistency="indexed",
        )
        sources = {h["metadata"]["source"] for h in hits[:5]}
        assert len(sources) >= 2, hits
        for hit in hits:
            assert hit["metadata"]["url"].startswith("https://"), hit
        top = " ".join(h["content"] for h in hits[:5]).lower()
        assert "price" in top or "pricing" in top

        only_gong = await call(
            client, "recall_memory", query="pricing concerns", namespace=NS, k=10, filters={"source": "gong"}
        )
        assert only_gong and {h["metadata"]["source"] for h in only_gong} == {"gong"}
        acme = await call(client, "recall_memory", query="pricing", namespace=NS, k=20, filters={"account": "Acme"})
        assert {h["metadata"]["source"] for h in acme} == {"slack", "gong", "hubspot"}
        assert all(h["metadata"]["account"] == "Acme" for h in acme)
        assert not any("Globex" in h["content"] for h in acme)

        for source, scope in SCOPES:
            again = await call(client, "ingest_source", source=source, scope=scope, namespace=NS)
            assert again["ingested"] == 0 and again["updated"] == 0, (source, again)
        listed = await call(client, "list_memories", namespace=NS, limit=100)
        assert len(listed["memories"]) == 12

        rows = await call(client, "list_sources", namespace=NS)
        assert {(r["source"], r["items"]) for r in rows} == {("slack", 4), ("gong", 5), ("hubspot", 3)}
        assert all(r["cursor"] and r["last_run"] for r in rows)


def test_shipped_config_passes_vendor_env_to_ai_memory() -> None:
    import json

    config = json.loads((Path(ROOT) / "config" / "mcp.json").read_text())
    memory_env = config["mcpServers"]["ai_memory"]["env"]
    for vendor in ("hubspot", "gong", "slack"):
        for name in config["mcpServers"][vendor]["env"]:
            assert name in memory_env, name
    assert "SLACK_APP_DISTRIBUTION" in memory_env and "HUBSPOT_PORTAL_ID" in memory_env
