"""Cache hints for 2026-07-28 clients: the gateway's own `tools/list` is `public` with a positive `ttlMs` when
nothing in it depends on the caller, `private` when it does (per-client allow lists, a profile); a backend's
own hints on a tool result are passed on, narrowed the same way, and bound the gateway's cache (never longer
than the backend's `ttlMs`, a `private` answer never served to another client)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, BOB, ENVELOPE, MODERN
from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, stdio_echo_server, write_config


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
    response = local_http.post(gateway.base + path, content=json.dumps(body), headers=headers, timeout=30)
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


def hinted_server() -> dict[str, Any]:
    return {"command": "python", "args": ["-m", "tests.backends.hinted"], "env": {"PYTHONPATH": str(ROOT)}}


def called(gateway: GatewayProcess, arguments: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """One stateless 2026-07-28 `tools/call` of the hinted backend's `read` through the gateway."""
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "hinted_read",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    params = {"name": "hinted_read", "arguments": arguments, "_meta": ENVELOPE}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    response = local_http.post(gateway.base + "/mcp", content=json.dumps(body), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["result"]
    assert not result.get("isError"), result
    return result


def text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


def test_backend_hints_pass_through_and_bound_the_gateways_cache(tmp_path: Path) -> None:
    # the gateway's own ttl is a minute: only the backend's ttlMs can make an entry expire within the test
    config = write_config(tmp_path, {"hinted": hinted_server()}, {"cache": {"ttl": 60}})
    gateway = GatewayProcess(config)
    try:
        first = called(gateway, {"key": "p", "ttl_ms": 60_000, "scope": "public"})
        assert (text(first), first["ttlMs"], first["cacheScope"]) == ("p#1", 60_000, "public")
        hit = called(gateway, {"key": "p", "ttl_ms": 60_000, "scope": "public"})
        assert text(hit) == "p#1" and hit["cacheScope"] == "public"
        assert 0 < hit["ttlMs"] <= 60_000  # what is left of the backend's ttl, never more

        plain = called(gateway, {"key": "n"})  # no hints from the backend: none added
        assert "ttlMs" not in plain and "cacheScope" not in plain
        unscoped = called(gateway, {"key": "u", "ttl_ms": 1000})  # a ttl without a scope: private, to be safe
        assert unscoped["cacheScope"] == "private"

        never = [text(called(gateway, {"key": "z", "ttl_ms": 0, "scope": "public"})) for _ in range(2)]
        assert never[0] != never[1]  # ttlMs 0: not cached at all

        short = {"key": "t", "ttl_ms": 500, "scope": "public"}  # cached like `p`, but only for 500 ms
        stored = text(called(gateway, short))
        deadline = time.monotonic() + 20
        while text(called(gateway, short)) == stored:  # asked again once they are over, not after a minute
            assert time.monotonic() < deadline, "the entry outlived the backend's ttlMs"
            time.sleep(0.05)
    finally:
        gateway.stop()


def test_a_private_result_is_never_shared_across_clients(tmp_path: Path) -> None:
    clients = {
        "alice": {"token_sha256": hash_token(ALICE)},
        "bob": {"token_sha256": hash_token(BOB)},
    }
    # `shared`: the operator lets every caller share `read`'s entries; a private answer still is not shared
    gateway_settings = {"auth": {"clients": clients}, "servers": {"hinted": {"tools": {"read": {"shared": True}}}}}
    gateway = GatewayProcess(write_config(tmp_path, {"hinted": hinted_server()}, gateway_settings))
    try:
        public = {"key": "p", "ttl_ms": 60_000, "scope": "public"}
        alice = called(gateway, public, ALICE)
        assert text(alice) == "p#1" and text(called(gateway, public, BOB)) == "p#1"  # shared, as configured
        # but told as private downstream: an intermediary must not hand it to a caller the gateway would refuse
        assert alice["cacheScope"] == "private"

        mine = {"key": "m", "ttl_ms": 60_000, "scope": "private"}
        alice = called(gateway, mine, ALICE)
        assert text(alice) == "m#2" and alice["cacheScope"] == "private"
        assert text(called(gateway, mine, ALICE)) == "m#2"  # alice's own entry
        bob = called(gateway, mine, BOB)
        assert text(bob) == "m#3" and bob["cacheScope"] == "private"  # not alice's answer
        assert text(called(gateway, mine, BOB)) == "m#3"
    finally:
        gateway.stop()
