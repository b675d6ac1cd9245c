"""The Kubernetes outbox survives its pod: the StatefulSet mounts a PersistentVolumeClaim at the
data dir, and a pod deleted (SIGKILL) while Snowflake is down comes back on the same claim and
replays the writes it had acknowledged. The pod is a real `python -m servers.ai_memory` process
whose data dir is the claim's directory, with the manifest's own MCP_GATEWAY_DATA_DIR."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path, PurePosixPath

import snowflake.connector
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.deploy.test_manifests import BY_KIND
from tests.helpers.procs import ROOT
from tests.servers.ai_memory.conftest import free_port, start_fakesnow


def _pod_data_dir(volume: Path) -> Path:
    """Where the manifest's MCP_GATEWAY_DATA_DIR lands inside the `data` claim's volume."""
    sts = BY_KIND[("StatefulSet", "mcp-gateway")]["spec"]
    assert [c["metadata"]["name"] for c in sts["volumeClaimTemplates"]] == ["data"]
    container = sts["template"]["spec"]["containers"][0]
    mount = PurePosixPath(next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data"))
    env = {e["name"]: e.get("value") for e in container["env"]}
    data_dir = PurePosixPath(env["MCP_GATEWAY_DATA_DIR"])
    assert data_dir == mount or mount in data_dir.parents, "the data dir must be on the claim"
    return volume / data_dir.relative_to(mount)


def _pod(data_dir: Path, port: int) -> StdioTransport:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "SNOWFLAKE_", "AI_MEMORY_"))}
    env.update(
        MCP_GATEWAY_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), AI_MEMORY_EMBEDDER="hash",
        AI_MEMORY_OUTBOX_DRAIN_INTERVAL="0.2", SNOWFLAKE_ACCOUNT="fakesnow", SNOWFLAKE_USER="fake",
        SNOWFLAKE_PASSWORD="snow", SNOWFLAKE_HOST="127.0.0.1", SNOWFLAKE_PORT=str(port),
        SNOWFLAKE_PROTOCOL="http", SNOWFLAKE_DATABASE="PODDB", SNOWFLAKE_SCHEMA="OUTBOX",
        SNOWFLAKE_LOGIN_TIMEOUT="1", SNOWFLAKE_NETWORK_TIMEOUT="1",
    )  # fmt: skip
    return StdioTransport(command=sys.executable, args=["-m", "servers.ai_memory"], env=env, cwd=str(ROOT))


def _pids(data_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and f"MCP_GATEWAY_DATA_DIR={data_dir}\0".encode() in (entry / "environ").read_bytes()
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def test_a_deleted_pods_outbox_is_replayed_on_its_claim(tmp_path: Path) -> None:
    data_dir = _pod_data_dir(tmp_path / "pvc-data-mcp-gateway-0")
    port = free_port()
    ids = []
    client = Client(_pod(data_dir, port))
    async with client:  # Snowflake is down: writes are acknowledged into the outbox on the claim
        for text in ("renewal call moved to Tuesday", "Dana owns the Acme account", "budget freeze until May"):
            ids.append((await client.call_tool("store_memory", {"content": text})).structured_content["id"])
        stats = (await client.call_tool("memory_stats", {})).structured_content["l3"]
        assert stats["reachable"] is False and stats["outbox_pending"] >= 3  # 3 puts (+ their vectors)
        for pid in _pids(data_dir):
            os.kill(pid, signal.SIGKILL)  # the pod is deleted, no goodbye
        await asyncio.sleep(0.2)
    with start_fakesnow(port=port) as kwargs:  # Snowflake is back; the pod is rescheduled on its claim
        async with Client(_pod(data_dir, port)) as again:
            for _ in range(200):
                stats = (await again.call_tool("memory_stats", {})).structured_content["l3"]
                if stats["outbox_pending"] == 0 and stats["count"] == 3:
                    break
                await asyncio.sleep(0.1)
            assert stats["outbox_pending"] == 0 and stats["count"] == 3
        with snowflake.connector.connect(**kwargs, database="PODDB", schema="OUTBOX") as conn:
            cur = conn.cursor()
            cur.execute("SELECT ID FROM MEMORIES ORDER BY ID")
            assert sorted(r[0] for r in cur.fetchall()) == sorted(ids)
