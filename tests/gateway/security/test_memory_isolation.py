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


@pytest.mark.parametrize("tool", ["memory_stats", "memory_dead_letters"])
def test_a_tool_over_every_scope_needs_one_named(memory_gateway: GatewayProcess, tool: str) -> None:
    """`memory_stats` or `memory_dead_letters` without a namespace would report on (or replay, discard)
    every client's memories: refused; with one, the client's own."""
    for arguments in ({}, {"namespace": None}):
        refused = call(memory_gateway, BOB, tool, **arguments)
        assert refused["isError"] is True, refused
        assert refused["content"][0]["text"] == f"{tool} needs a namespace through the gateway"
    stats = call(memory_gateway, BOB, tool, namespace="default")
    assert not stats.get("isError"), stats
    assert stats["structuredContent"]["namespace"] == "bob/default"


def test_memory_stats_shows_a_client_only_its_own_namespace(memory_gateway: GatewayProcess) -> None:
    """What alice does (memories in several namespaces, cached reads) leaves no trace in what bob's
    `memory_stats` reports: every count in it is of bob's namespace alone."""
    for namespace in ("stats-a", "stats-b", "stats-c"):
        call(memory_gateway, ALICE, "store_memory", content=f"alice keeps a note in {namespace}", namespace=namespace)
    for _ in range(3):  # reads through the L1 cache: hits or misses, each counted
        call(memory_gateway, ALICE, "recall_memory", query="a note", namespace="stats-a")
    stats = call(memory_gateway, BOB, "memory_stats", namespace="stats-empty")["structuredContent"]
    assert stats["namespace"] == "bob/stats-empty"
    assert stats["l1"]["hits"] == stats["l1"]["misses"] == 0, stats["l1"]
    assert stats["l2"]["indexed"] == 0 and stats["l3"]["count"] == 0
    assert stats["l2"].get("namespaces_loaded", 0) <= 1, stats["l2"]  # alice's namespaces are not counted
    assert "catch_ups" not in stats["l2"]
    lag = stats["l2"]["index_lag"]
    assert lag["pending"] == 0 and "embedded" not in lag, lag
    assert stats["l3"]["outbox_pending"] == 0 and stats["l3"]["dead_letters"] == 0
    # alice's own view counts her reads of that namespace
    mine = call(memory_gateway, ALICE, "memory_stats", namespace="stats-a")["structuredContent"]
    assert mine["namespace"] == "alice/stats-a"
    assert mine["l1"]["hits"] + mine["l1"]["misses"] >= 1 and mine["l2"]["indexed"] == 1 and mine["l3"]["count"] == 1
