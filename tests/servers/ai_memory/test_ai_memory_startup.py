"""ai_memory's start-up carries only what it uses: the embedding model loads on first use (then stays), and the
vendors' ingestion code loads with the first `ingest_source`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from embedding.embedder import OnnxMiniLMEmbedder
from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.service import MemoryService


def test_the_model_is_warmed_at_start_only_when_asked() -> None:
    assert MemoryConfig.from_env({}).warm_embedder is False
    assert MemoryConfig.from_env({"AI_MEMORY_WARM_EMBEDDER": "1"}).warm_embedder is True
    assert MemoryConfig.from_env({"AI_MEMORY_WARM_EMBEDDER": "0"}).warm_embedder is False


async def test_the_model_loads_on_the_first_recall_and_stays(tmp_path: Path) -> None:
    embedder = OnnxMiniLMEmbedder()
    config = MemoryConfig.from_env({"MCP_GATEWAY_DATA_DIR": str(tmp_path)})
    svc = MemoryService(config, embedder=embedder)
    await svc.start()
    try:
        await svc.memory_stats()
        assert "ai_memory-warm" not in {task.get_name() for task in asyncio.all_tasks()}
        assert not embedder.loaded  # listed, asked for stats: no model
        stored = await svc.store_memory("The launch moved to Tuesday after the review", "ns")
        hits = await svc.recall_memory("when is the launch", "ns", consistency="indexed")
        assert [h["id"] for h in hits] == [stored["id"]]
        assert embedder.loaded
        assert (await svc.memory_stats("ns"))["l2"]["embedder"] == embedder.name
    finally:
        await svc.close()


def test_starting_the_server_imports_no_vendor_client_and_no_model_runtime() -> None:
    probe = (
        "import sys; import servers.ai_memory.server as s; s.create_server(); "
        "print(sorted(m for m in ('servers.slack.client', 'servers.gong.client', 'servers.hubspot.client', "
        "'onnxruntime', 'onnx', 'tokenizers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
