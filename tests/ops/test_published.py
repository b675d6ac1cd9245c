"""A backend's own figures through a real gateway (`"statusTool"`, issue 15 point 4 and issue 12 point 3): the
real ai_memory server publishes `memory_stats`; a write its L3 refuses for good shows on `/health` as a dead
letter with the reason (redacted), on `/status`, and in `/metrics`, each only to a client that may see it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, BOB, rpc
from tests.helpers import local_http
from tests.helpers.procs import ROOT, GatewayProcess, stdio_echo_server, write_config

PLANTED = "planted-secret-5e8b1d0c9a7f4362"  # a secret the gateway knows (env *TOKEN*): never shown


def memory_server(data: Path) -> dict[str, Any]:
    env = {
        "MCP_GATEWAY_DATA_DIR": str(data),
        "PYTHONPATH": str(ROOT),
        "AI_MEMORY_EMBEDDER": "hash",
        "AI_MEMORY_SQLITE_BUSY_TIMEOUT": "0.05",
        "AI_MEMORY_OUTBOX_DRAIN_INTERVAL": "0.2",
        "AI_MEMORY_OUTBOX_MAX_BACKOFF": "0.5",
    }
    return {"command": "python", "args": ["-m", "servers.ai_memory"], "statusTool": "memory_stats", "env": env}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    tmp = tmp_path_factory.mktemp("published")
    auth = {
        "clients": {
            "alice": {"token_sha256": hash_token(ALICE)},
            "bob": {"token_sha256": hash_token(BOB), "allow": ["local_echo"]},
        }
    }
    servers = {"local": stdio_echo_server(), "memory": memory_server(tmp / "data")}
    config = write_config(tmp, servers, {"auth": auth, "status_interval": 0.2})
    process = GatewayProcess(config, PLANTED_API_TOKEN=PLANTED)
    try:
        yield process, tmp / "data" / "ai_memory.sqlite3"
    finally:
        process.stop()


def health(gateway: GatewayProcess, token: str) -> dict[str, Any]:
    answer = local_http.get(gateway.base + "/health", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return answer.json()


def figures_until(gateway: GatewayProcess, predicate: Any, timeout: float = 60) -> dict[str, Any]:
    """alice's /health, polled until the memory backend's published figures satisfy `predicate`."""
    deadline = time.monotonic() + timeout
    while True:
        doc = health(gateway, ALICE)
        published = doc["backends"].get("memory", {}).get("published") or {}
        if published.get("figures") and predicate(published["figures"]):
            return doc
        assert time.monotonic() < deadline, f"not reached; last /health: {doc}"
        time.sleep(0.1)


def store(gateway: GatewayProcess, content: str) -> None:
    answer = rpc(gateway, "tools/call", {"name": "memory_store_memory", "arguments": {"content": content}}, token=ALICE)
    assert answer.status_code == 200 and not answer.json()["result"].get("isError"), answer.text


def test_a_dead_letter_shows_on_health_status_and_metrics_with_its_reason(gateway: tuple[GatewayProcess, Path]) -> None:
    process, db = gateway
    doc = figures_until(process, lambda f: f.get("l3.backend") == "sqlite")
    memory = doc["backends"]["memory"]
    assert memory["reasons"] == [] and doc["status"] == "ok"
    assert {"l1.backend", "l2.embedder", "l2.index_lag.pending", "l3.outbox_pending", "l3.dead_letters"} <= set(
        memory["published"]["figures"]
    )
    store(process, "a first memory, straight to L3")

    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # L3 cannot take writes: the next one is acknowledged into the outbox
        store(process, "poison pill the store will refuse")
        figures_until(process, lambda f: f["l3.outbox_pending"] >= 1)  # the write (and its vector, maybe)
        blocker.execute(  # L3 comes back, refusing that write for good
            "CREATE TRIGGER refuse BEFORE INSERT ON MEMORIES WHEN NEW.CONTENT LIKE 'poison%'"
            f" BEGIN SELECT RAISE(ABORT, 'content refused by policy {PLANTED}'); END"
        )
        blocker.execute("COMMIT")
        doc = figures_until(process, lambda f: f["l3.dead_letters"] >= 1 and f["l3.outbox_pending"] == 0)
    finally:
        blocker.close()

    memory = doc["backends"]["memory"]
    assert doc["status"] == "degraded" and memory["state"] == "up"
    [reason] = memory["reasons"]
    assert "1 dead letter" in reason and "content refused by policy [REDACTED]" in reason
    assert "refused by policy [REDACTED]" in memory["published"]["figures"]["l3.dead_letter_last_reason"]
    assert PLANTED not in str(doc)

    alice = {"Authorization": f"Bearer {ALICE}"}
    exported = local_http.get(process.base + "/metrics", headers=alice, timeout=10).text
    assert 'mcp_gateway_backend_status{backend="memory",figure="l3.dead_letters"} 1.0' in exported
    assert 'mcp_gateway_backend_problems{backend="memory"} 1.0' in exported
    page = local_http.get(process.base + "/status", headers=alice, timeout=10).text
    assert 'data-backend="memory"' in page and "l3.dead_letters" in page and "refused by policy [REDACTED]" in page
    assert PLANTED not in exported + page


def test_a_client_sees_no_figures_of_a_backend_it_may_not_see(gateway: tuple[GatewayProcess, Path]) -> None:
    process, _db = gateway
    figures_until(process, lambda f: "l3.outbox_pending" in f)
    bob = {"Authorization": f"Bearer {BOB}"}
    assert set(health(process, BOB)["backends"]) == {"local"}
    exported = local_http.get(process.base + "/metrics", headers=bob, timeout=10).text
    assert "mcp_gateway_backend_status{" not in exported and 'backend="memory"' not in exported
    page = local_http.get(process.base + "/status", headers=bob, timeout=10).text
    assert "l3." not in page and 'data-backend="memory"' not in page
