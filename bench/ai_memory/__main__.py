"""`python -m bench.ai_memory [--quick] [--skip-eval] [--skip-bench] [--embedder NAME]`

Everything runs on the embedded defaults (sqlite L3, in-process LRU L1, the default local
embedder: int8 all-MiniLM-L6-v2 on onnxruntime) in a temporary data directory. Batch-store
throughput is also measured, interleaved in the same run, with the float32 numpy embedder as
the baseline, and printed as a ratio. Figures are printed as a small report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.ai_memory.eval_data import build
from embedding.embedder import Embedder, make_embedder
from servers.ai_memory.config import MemoryConfig
from servers.ai_memory.filters import parse_filter
from servers.ai_memory.records import MemoryRecord, content_hash, now
from servers.ai_memory.service import MemoryService


def gemm_gflops() -> float:
    """This machine's float32 matrix-product speed right now, on the shape of a MiniLM feed-forward
    layer over a batch of 100 texts: figures from different machines or days compare through it."""
    a = np.random.default_rng(0).random((2048, 384), dtype=np.float32)
    b = np.random.default_rng(1).random((384, 1536), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(5):
        s = time.perf_counter()
        for _ in range(10):
            a @ b
        best = min(best, time.perf_counter() - s)
    return 2 * 2048 * 384 * 1536 * 10 / best / 1e9


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def new_service(data_dir: Path, embedder: Embedder, *, background: bool = False, **kw) -> MemoryService:
    cfg = MemoryConfig(data_dir=data_dir, warm_embedder=False)
    for k, v in kw.items():
        setattr(cfg, k, v)
    svc = MemoryService(cfg, embedder=embedder)
    await svc.start(background=background)
    return svc


async def recall_eval(tmp: Path, embedder: Embedder) -> None:
    turns, questions = build()
    print(f"\n== recall evaluation: {len(turns)} turns, {len(questions)} questions ==")
    results = {}
    for fusion in ("blend", "rrf"):
        svc = await new_service(tmp / f"eval-{fusion}", embedder, background=True, fusion=fusion)
        ids = (await svc.store_memories([{"content": t} for t in turns], "eval"))["ids"]
        await svc.recall_memory("warm", "eval", consistency="indexed", use_cache=False)
        modes = [("dense", "dense"), ("keyword", "keyword"), (f"hybrid-{fusion}", "hybrid")]
        for label, mode in modes:
            if label in results:
                continue
            per_kind: dict[str, list[int]] = {}
            ranks = []
            for q, ans, kind in questions:
                hits = await svc.recall_memory(q, "eval", k=10, mode=mode, use_cache=False)
                got = [h["id"] for h in hits]
                rank = got.index(ids[ans]) + 1 if ids[ans] in got else 99
                ranks.append(rank)
                per_kind.setdefault(kind, []).append(rank)
            results[label] = (ranks, per_kind)
        await svc.close()
    print(f"{'retriever':<16}{'R@1':>7}{'R@5':>7}{'R@10':>7}   R@5 by kind")
    for label, (ranks, per_kind) in results.items():
        r = [sum(x <= k for x in ranks) / len(ranks) for k in (1, 5, 10)]
        kinds = "  ".join(f"{k}={sum(x <= 5 for x in v) / len(v):.2f}" for k, v in sorted(per_kind.items()))
        print(f"{label:<16}{r[0]:>7.3f}{r[1]:>7.3f}{r[2]:>7.3f}   {kinds}")


def synthetic(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    centers = rng.standard_normal((max(10, n // 100), dim)).astype(np.float32)
    vecs = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vocab = [f"w{i}" for i in range(20_000)]
    zipf = np.minimum(rng.zipf(1.3, size=(n, 12)), len(vocab)) - 1
    texts = [" ".join(vocab[j] for j in row) + f" item {i}" for i, row in enumerate(zipf)]
    return vecs, texts


def ann_recall(idx, vecs: np.ndarray, text_q: np.ndarray, rng: np.random.Generator) -> None:
    """recall@10 of the IVF candidates against the exact scan, for the bench's text queries
    (MiniLM vectors, unrelated to the synthetic data) and for queries near stored vectors
    (a stored vector plus noise, cosine ~0.8 to it: how real queries sit among real memories)."""
    ivf = idx.ivf()
    near = vecs[rng.integers(0, len(vecs), 100)]
    near = near + 0.75 * rng.standard_normal(near.shape).astype(np.float32) / np.sqrt(vecs.shape[1])
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    for label, qs in (("text queries", text_q), ("near-data queries", near.astype(np.float32))):
        got = []
        for q in qs:
            exact = set(np.argpartition(-(vecs @ q), 10)[:10].tolist())
            rows, sims = ivf.candidates(q)
            got.append(len(exact & set(rows[np.argsort(-sims)[:10]].tolist())) / 10)
        print(f"  IVF {ivf.nlist} lists, probe {ivf.nprobe()}: recall@10 vs exact, {label}: {np.mean(got):.3f}")


WORDS = [
    "project",
    "invoice",
    "customer",
    "meeting",
    "travel",
    "budget",
    "deadline",
    "family",
    "doctor",
    "recipe",
    "garden",
    "car",
]


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def store_throughput(tmp: Path, embedder: Embedder, n_batches: int, size: int = 500) -> None:
    """memories/s acknowledged through store_memories in batches of `size`, in one run against
    today's synchronous path (embed, then write, then acknowledge). The new path acknowledges once
    the batch is durable and embeds behind it; its embedding rate is reported on its own."""
    rng = random.Random(1)

    def batches(tag: str) -> list[list[dict]]:
        return [
            [
                {"content": f"{tag} {b}-{i}: " + " ".join(rng.choice(WORDS) for _ in range(14)), "metadata": {"b": b}}
                for i in range(size)
            ]
            for b in range(n_batches)
        ]

    n = n_batches * size
    # today's path: the batch is embedded before it is written and acknowledged
    sync = await new_service(tmp / "bench-store-sync", embedder)
    t0, c0 = time.perf_counter(), cpu()
    for batch in batches("sync"):
        embedder.embed([m["content"] for m in batch])
        await sync.store_memories(batch, "throughput")
    sync_dt, sync_cpu = time.perf_counter() - t0, cpu() - c0
    await sync.close()
    # acknowledged at storage speed; the indexer embeds in the background
    svc = await new_service(tmp / "bench-store-async", embedder, background=True)
    ack = 0.0
    t0, c0 = time.perf_counter(), cpu()
    for batch in batches("async"):
        s = time.perf_counter()
        await svc.store_memories(batch, "throughput")
        ack += time.perf_counter() - s
    ack_cpu = cpu() - c0
    await svc.recall_memory("note", "throughput", consistency="indexed", use_cache=False)
    total_dt, total_cpu = time.perf_counter() - t0, cpu() - c0
    lag = svc.indexer.lag()
    await svc.close()
    print(
        f"store_memories, {n:,} memories in batches of {size} [{embedder.name}]:\n"
        f"  synchronous (embed, then ack): {n / sync_dt:8,.0f} memories/s   "
        f"CPU {sync_cpu / n * 1000:.2f} ms/memory\n"
        f"  acknowledged at storage speed: {n / ack:8,.0f} memories/s   "
        f"({n / ack / (n / sync_dt):.1f}x; CPU while acknowledging {ack_cpu / n * 1000:.2f} ms/memory)\n"
        f"  background embedding: {lag['embedding_rate_per_s'] or 0:,.0f} memories/s while embedding; "
        f"all {n:,} searchable by meaning {total_dt:.1f} s after the first ack "
        f"(CPU {total_cpu / n * 1000:.2f} ms/memory in all)"
    )


async def filtered_recall(idx, svc: MemoryService, queries: list[str], n: int) -> None:  # type: ignore[no-untyped-def]
    """Filter evaluation over the namespace: factorised columns (first use of a field builds its
    column) against the per-memory predicate measured in the same run, then recall with it."""
    spec = {"$or": [{"customer": "c7"}, {"$and": [{"tags": "vip"}, {"i": {"$lt": 2_000}}]}]}
    compiled = parse_filter(spec)
    assert compiled is not None
    s = time.perf_counter()
    per_memory = [r is not None and compiled(r.metadata) for r in idx.records]
    per_memory_ms = (time.perf_counter() - s) * 1000
    s = time.perf_counter()
    first = compiled.mask(idx.columns)
    first_ms = (time.perf_counter() - s) * 1000
    again = []
    for _ in range(20):
        s = time.perf_counter()
        compiled.mask(idx.columns)
        again.append((time.perf_counter() - s) * 1000)
    assert first.tolist() == per_memory
    print(
        f"  filter over {n:,} memories: per-memory predicate {per_memory_ms:.1f} ms, columns {first_ms:.1f} ms"
        f" on first use, then {statistics.median(again):.2f} ms ({per_memory_ms / statistics.median(again):.0f}x)"
    )
    lat = []
    for q in queries[:50]:
        s = time.perf_counter()
        await svc.recall_memory(q, "big", k=5, filters=spec, use_cache=False)
        lat.append((time.perf_counter() - s) * 1000)
    print(f"  recall_memory with that filter: p50 {statistics.median(lat):.2f} ms  p95 {pct(lat, 95):.2f} ms")


async def bench(tmp: Path, embedder: Embedder, quick: bool) -> None:
    print("\n== benchmark (embedded defaults) ==")
    rng = random.Random(1)
    await store_throughput(tmp, embedder, 4 if quick else 10)
    words = WORDS
    queries = [f"{rng.choice(words)} {rng.choice(words)} plans for w{rng.randint(0, 300)}" for _ in range(200)]
    sizes = [10_000] if quick else [10_000, 100_000]
    for n in sizes:
        svc = await new_service(tmp / f"bench-{n}", embedder)
        idx = await svc.live.current("big")
        vecs, texts = synthetic(n, embedder.dim, np.random.default_rng(n))
        t = now()
        recs = [
            MemoryRecord(
                id=f"s{i}",
                namespace="big",
                content=s,
                content_hash=content_hash(s),
                metadata={"i": i, "customer": f"c{i % 200}", "tags": ["vip"] if i % 7 == 0 else []},
                created_at=t,
                updated_at=t,
            )
            for i, s in enumerate(texts)
        ]
        idx.add(recs, vecs)  # bulk-loaded straight into the L2 index (not through L3)
        for q in queries[:5]:
            await svc.recall_memory(q, "big", k=5, use_cache=False)
        svc.reads.qvec_cache.clear()  # every measured query is embedded (the bench's queries are distinct)
        lat = []
        c0 = cpu()
        for q in queries:
            s = time.perf_counter()
            await svc.recall_memory(q, "big", k=5, use_cache=False)
            lat.append((time.perf_counter() - s) * 1000)
        recall_cpu = (cpu() - c0) / len(queries) * 1000
        # the same queries again: their vectors are in the query LRU, so this is recall without the embedding
        again = []
        c0 = cpu()
        for q in queries:
            s = time.perf_counter()
            await svc.recall_memory(q, "big", k=5, use_cache=False)
            again.append((time.perf_counter() - s) * 1000)
        again_cpu = (cpu() - c0) / len(queries) * 1000
        emb = []
        c0 = cpu()
        for q in queries:
            s = time.perf_counter()
            embedder.embed([q])
            emb.append((time.perf_counter() - s) * 1000)
        emb_cpu = (cpu() - c0) / len(queries) * 1000
        print(
            f"recall_memory @ {n:>7,} memories: p50 {statistics.median(lat):6.2f} ms  p95 {pct(lat, 95):6.2f} ms"
            f"  CPU {recall_cpu:.2f} ms/call\n"
            f"  of which query embedding alone:     p50 {statistics.median(emb):6.2f} ms  p95 {pct(emb, 95):6.2f} ms"
            f"  CPU {emb_cpu:.2f} ms/call\n"
            f"  recall without it (vector cached):  p50 {statistics.median(again):6.2f}"
            f" ms  p95 {pct(again, 95):6.2f} ms"
            f"  CPU {again_cpu:.2f} ms/call (index search, coherence check, result)"
        )
        if idx.ann_active(len(idx)):
            ann_recall(idx, vecs, embedder.embed(queries[:100]), np.random.default_rng(7))
        await filtered_recall(idx, svc, queries, n)
        if n == sizes[0]:
            await svc.recall_memory(queries[0], "big", k=5)
            hit = []
            for _ in range(500):
                s = time.perf_counter()
                await svc.recall_memory(queries[0], "big", k=5)
                hit.append((time.perf_counter() - s) * 1000)
            print(
                f"recall_memory L1 hit (in-process LRU): p50 {statistics.median(hit):.3f} ms  p95 {pct(hit, 95):.3f} ms"
            )
        await svc.close()


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller runs (10k only)")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--embedder", default="auto", help="an AI_MEMORY_EMBEDDER choice (default: auto)")
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, numpy float32 GEMM {gemm_gflops():.0f} GFLOP/s (the embedders' work)")
    t = time.perf_counter()
    embedder = make_embedder(args.embedder)
    embedder.load()  # type: ignore[attr-defined]
    print(f"model load: {(time.perf_counter() - t) * 1000:.0f} ms ({embedder.name})")
    with tempfile.TemporaryDirectory(prefix="ai_memory_bench_") as d:
        if not args.skip_eval:
            await recall_eval(Path(d), embedder)
        if not args.skip_bench:
            await bench(Path(d), embedder, args.quick)


if __name__ == "__main__":
    asyncio.run(main())
