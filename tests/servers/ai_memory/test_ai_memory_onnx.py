"""The onnxruntime embedder (graph built from the safetensors weights) against the numpy one."""

from __future__ import annotations

import numpy as np
import pytest

from embedding.embedder import MiniLMEmbedder, OnnxMiniLMEmbedder, make_embedder
from embedding.onnx_graph import quantize_columns

TEXTS = [
    "x",
    "Alice prefers email over phone calls",
    "The Q3 budget review moved to Friday 2024-05-17; Bob owns the slides.",
    "é ü ß 東京 — unicode and punctuation!",
    "meeting notes " * 20,
    "word " * 400,  # truncated at 256 tokens
]


@pytest.fixture(scope="module")
def onnx_fp32() -> OnnxMiniLMEmbedder:
    return OnnxMiniLMEmbedder(quantize=False).load()  # type: ignore[return-value]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_float_graph_matches_numpy_forward(onnx_fp32, minilm: MiniLMEmbedder):
    """Same weights, same arithmetic up to kernel rounding: the padded batch and the
    single-text path both agree with numpy (which matches sentence-transformers)."""
    assert np.all(_cos(onnx_fp32.embed(TEXTS), minilm.embed(TEXTS)) > 0.9999)
    assert np.all(_cos(onnx_fp32.embed(TEXTS[2:3]), minilm.embed(TEXTS[2:3])) > 0.9999)


def test_int8_graph_stays_close_to_float(default_embedder, minilm: MiniLMEmbedder):
    assert isinstance(default_embedder, OnnxMiniLMEmbedder) and default_embedder.quantize
    v = default_embedder.embed(TEXTS)
    assert v.shape == (len(TEXTS), 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.all(_cos(v, minilm.embed(TEXTS)) > 0.99)


def test_int8_padding_is_inert_and_rows_keep_their_order(default_embedder):
    batch_size = default_embedder.batch_size
    try:
        default_embedder.batch_size = 2  # several padded batches, reordered by length
        batched = default_embedder.embed(TEXTS)
    finally:
        default_embedder.batch_size = batch_size
    single = np.stack([default_embedder.embed([t])[0] for t in TEXTS])
    # activations are quantised per token, so a text's vector does not depend on its batch
    assert np.all(_cos(batched, single) > 0.9999)


def test_int8_semantics(default_embedder):
    v = default_embedder.embed(["a puppy playing", "a young dog at play", "quarterly tax filing"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_quantize_columns_bounds_the_error_per_column():
    w = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    w[:, 3] *= 100  # columns keep their own scale
    w[:, 5] = 0
    q, scale = quantize_columns(w)
    assert q.dtype == np.int8 and scale.shape == (8,) and np.abs(q).max() <= 127
    assert np.all(np.abs(q * scale - w) <= scale / 2 + 1e-6)
    assert np.all(q[:, 5] == 0)


def test_make_embedder_choices():
    assert make_embedder("auto").name == "all-MiniLM-L6-v2-int8"
    assert make_embedder("onnx-fp32").name == "all-MiniLM-L6-v2-onnx"
    assert type(make_embedder("numpy")) is MiniLMEmbedder
    assert make_embedder("hash").name.startswith("hash-")
    with pytest.raises(ValueError, match="AI_MEMORY_EMBEDDER='bert'"):
        make_embedder("bert")


async def test_switching_embedder_reembeds_stored_memories(make_service, tmp_path, minilm, default_embedder):
    data = tmp_path / "switch"
    old = await make_service(data, embedder=minilm)
    ids = (await old.store_memories([{"content": t} for t in TEXTS[1:4]], "sw"))["ids"]
    assert (await old.memory_stats("sw"))["l2"]["embedder"] == "all-MiniLM-L6-v2"
    await old.close()

    new = await make_service(data, embedder=default_embedder)
    stats = await new.memory_stats("sw")
    assert stats["l2"]["embedder"] == "all-MiniLM-L6-v2-int8"
    hits = await new.recall_memory(
        "when is the budget review?", "sw", k=1, mode="dense", use_cache=False, consistency="indexed"
    )
    assert hits[0]["id"] == ids[1]
    idx = await new.live.current("sw")
    want = default_embedder.embed([TEXTS[2]])[0]
    assert float(idx.vector(ids[1]) @ want) > 0.999  # the stored vector is the new embedder's
