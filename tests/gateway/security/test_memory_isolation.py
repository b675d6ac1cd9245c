"""Two clients' memories do not mix: the real ai_memory server behind the gateway, its `namespace` argument
declared client-scoped in config. The server is registered as `notes`: the rule, not a backend name, is
what scopes it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, BOB, rpc
from tests.helpers.procs import ROOT, GatewayProcess, write_config

CAROL = "carol-0123456789abcdefghijklmnopqrstuvwxyz"
SCOPED_NAMESPACE = {"namespace": {"lookup": {"tool": "get_memory", "argument": "id", "record": "memory"}}}


@pytest.fixture(scope="module")
def memory_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    directory = tmp_path_factory.mktemp("memory")
    memory = {
        "command": "python",
        "args": ["-m", "servers.ai_memory"],
        "env": {"MCP_GATEWAY_DATA_DIR": str(directory / "data"), "PYTHONPATH": str(ROOT)},
        # the rule that keeps clients' memories apart: `namespace` is per client, ids are looked up first
        "clientScopedArguments": SCOPED_NAMESPACE,
    }
    auth = {
        "clients": {
            "alice": {"token_sha256": hash_token(ALICE)},
            "bob": {"token_sha256": hash_token(BOB)},
            "carol": {"token_sha256": hash_token(CAROL), "memory_owner": "alice"},  # shares alice's memories
        },
        "memory": {"shared_namespaces": ["team-*"]},
    }
    process = GatewayProcess(write_config(directory, {"notes": memory}, {"auth": auth}))
    try:
        yield process
    finally:
        process.stop()


def call(gateway: GatewayProcess, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
    response = rpc(gateway, "tools/call", {"name": f"notes_{tool}", "arguments": arguments}, token=token)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def contents(result: dict[str, Any]) -> list[str]:
    structured = result["structuredContent"]
    items = structured["result"] if "result" in structured else structured["memories"]
    return [item["content"] for item in items]


def test_two_clients_memories_do_not_mix(memory_gateway: GatewayProcess) -> None:
    stored = call(memory_gateway, ALICE, "store_memory", content="Acme prefers email, says alice")
    assert not stored.get("isError"), stored
    alice_id = stored["structuredContent"]["id"]
    assert stored["structuredContent"]["namespace"] == "alice/default"
    call(memory_gateway, BOB, "store_memory", content="Globex prefers phone, says bob")

    assert contents(call(memory_gateway, ALICE, "list_memories")) == ["Acme prefers email, says alice"]
    assert contents(call(memory_gateway, BOB, "list_memories")) == ["Globex prefers phone, says bob"]
    bob_recall = contents(call(memory_gateway, BOB, "recall_memory", query="Acme email preference"))
    assert "Acme prefers email, says alice" not in bob_recall
    # naming alice's namespace outright does not reach it either
    assert contents(call(memory_gateway, BOB, "list_memories", namespace="alice/default")) == []
    # by id: another client's memory is "not found", and stays where it is
    for tool in ("get_memory", "delete_memory", "update_memory"):
        refused = call(memory_gateway, BOB, tool, id=alice_id)
        assert refused["isError"] is True and "not found" in refused["content"][0]["text"], tool
    assert call(memory_gateway, ALICE, "get_memory", id=alice_id)["structuredContent"]["content"].startswith("Acme")
    deleted = call(memory_gateway, BOB, "delete_namespace", namespace="default")
    assert deleted["structuredContent"]["namespace"] == "bob/default"
    assert contents(call(memory_gateway, ALICE, "list_memories")) == ["Acme prefers email, says alice"]


def test_shared_namespaces_and_owners(memory_gateway: GatewayProcess) -> None:
    call(memory_gateway, ALICE, "store_memory", content="the team wiki lives at /wiki", namespace="team-kb")
    assert contents(call(memory_gateway, BOB, "list_memories", namespace="team-kb")) == ["the team wiki lives at /wiki"]
    call(memory_gateway, ALICE, "store_memory", content="alice and carol share this", namespace="pair")
    assert contents(call(memory_gateway, CAROL, "list_memories", namespace="pair")) == ["alice and carol share this"]
    assert contents(call(memory_gateway, BOB, "list_memories", namespace="pair")) == []


def test_a_tool_over_every_scope_needs_one_named(memory_gateway: GatewayProcess) -> None:
    """`memory_stats` without a namespace would report on every client's memories: refused; with one, the
    client's own."""
    for arguments in ({}, {"namespace": None}):
        refused = call(memory_gateway, BOB, "memory_stats", **arguments)
        assert refused["isError"] is True, refused
        assert refused["content"][0]["text"] == "memory_stats needs a namespace through the gateway"
    stats = call(memory_gateway, BOB, "memory_stats", namespace="default")
    assert not stats.get("isError"), stats
    assert stats["structuredContent"]["namespace"] == "bob/default"
