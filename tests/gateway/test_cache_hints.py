"""Cache hints of the gateway's own `tools/list` for 2026-07-28 clients: `public` with a positive `ttlMs`
when nothing in it depends on the caller, `private` when it does (per-client allow lists, a profile)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, ENVELOPE, MODERN
from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config


def listed(gateway: GatewayProcess, path: str = "/mcp", token: str | None = None) -> dict[str, Any]:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/list",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ENVELOPE}}
    response = httpx.post(gateway.base + path, content=json.dumps(body), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    return result


def test_a_list_nobody_filters_is_public_and_a_filtered_one_private(tmp_path: Path) -> None:
    profiles = {"echoes": {"tools": ["local_echo"]}}
    open_config = write_config(tmp_path, {"local": stdio_echo_server()}, {"profiles": profiles})
    gateway = GatewayProcess(open_config, MCP_GATEWAY_CACHE_HINTS__LIST_TTL_MS="5000")
    try:
        everyone = listed(gateway)
        assert (everyone["ttlMs"], everyone["cacheScope"]) == (5000, "public")
        narrowed = listed(gateway, "/mcp/echoes")
        assert [tool["name"] for tool in narrowed["tools"]] == ["local_echo"]
        assert narrowed["cacheScope"] == "private"
    finally:
        gateway.stop()
    (tmp_path / "secured").mkdir()
    auth = {"clients": {"alice": {"token_sha256": hash_token(ALICE), "deny": ["local_add"]}}}
    gateway = GatewayProcess(write_config(tmp_path / "secured", {"local": stdio_echo_server()}, {"auth": auth}))
    try:
        mine = listed(gateway, token=ALICE)
        assert mine["cacheScope"] == "private" and mine["ttlMs"] == 60_000
        assert "local_add" not in {tool["name"] for tool in mine["tools"]}
    finally:
        gateway.stop()
