"""The IVF ANN index and the embedder's batching (no model needed except where noted)."""

from __future__ import annotations

import numpy as np

from embedding.embedder import HashEmbedder
from servers.ai_memory.index import IVFIndex, NamespaceIndex
from servers.ai_memory.records import MemoryRecord, content_hash

DIM = 64


def _records(n: int, prefix: str = "m") -> list[MemoryRecord]:
    out = []
    for i in range(n):
        text = f"{prefix} note {i} alpha{i % 17} beta{i % 29}"
        out.append(
            MemoryRecord(
                id=f"{prefix}{i}",
                namespace="ns",
                content=text,
                content_hash=content_hash(text),
                metadata={"i": i, "p": prefix},
                created_at=1.0,
                updated_at=1.0,
            )
        )
    return out


def _clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.standard_normal((40, DIM)).astype(np.float32)
    v = centers[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _index(vecs: np.ndarray, ann_min: int) -> NamespaceIndex:
    idx = NamespaceIndex("ns", DIM, ann_min_vectors=ann_min)
    idx.add(_records(len(vecs)), vecs)
    return idx


def test_ann_finds_planted_near_duplicates():
    rng = np.random.default_rng(7)
    vecs = _clustered(6_000, rng)
    planted = rng.choice(len(vecs), 50, replace=False)
    idx = _index(vecs, ann_min=1_000)
    for row in planted:
        q = vecs[row] + 0.02 * rng.standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        hits = idx.search(q, "", 5, now=2.0, mode="dense")
        assert idx._ivf is not None  # the ANN path ran
        assert hits[0][0].id == f"m{row}"


def test_ann_recall_at_10_against_exact():
    rng = np.random.default_rng(3)
    vecs = _clustered(8_000, rng)
    ann, exact = _index(vecs, ann_min=1_000), _index(vecs, ann_min=0)
    got = []
    for row in rng.choice(len(vecs), 40, replace=False):
        q = vecs[row] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        a = {r.id for r, _ in ann.search(q, "", 10, now=2.0, mode="dense")}
        e = {r.id for r, _ in exact.search(q, "", 10, now=2.0, mode="dense")}
        got.append(len(a & e) / 10)
    assert np.mean(got) >= 0.95


def test_below_threshold_results_identical_to_exact():
    rng = np.random.default_rng(1)
    vecs = _clustered(3_000, rng)
    low, off = _index(vecs, ann_min=20_000), _index(vecs, ann_min=0)
    for row in rng.choice(len(vecs), 20, replace=False):
        q = vecs[row]
        for mode in ("dense", "hybrid"):
            a = low.search(q, f"alpha{row % 17} note", 10, now=2.0, mode=mode)
            b = off.search(q, f"alpha{row % 17} note", 10, now=2.0, mode=mode)
            assert [(r.id, s) for r, s in a] == [(r.id, s) for r, s in b]
    assert low._ivf is None


def test_ann_sees_rows_added_after_build_and_respects_filters():
    rng = np.random.default_rng(2)
    vecs = _clustered(4_000, rng)
    idx = _index(vecs, ann_min=1_000)
    idx.search(vecs[0], "", 5, now=2.0, mode="dense")
    built = idx._ivf.built  # type: ignore[union-attr]
    extra = _clustered(10, rng)
    idx.add(_records(10, prefix="x"), extra)
    assert idx.search(extra[3], "", 1, now=2.0, mode="dense")[0][0].id == "x3"
    assert idx._ivf.built == built  # the tail is scanned exactly, no rebuild yet  # type: ignore[union-attr]
    # a selective filter leaves too few ANN candidates: exact scan over what the filter keeps
    hits = idx.search(vecs[5], "", 3, now=2.0, mode="dense", predicate=lambda m: m["p"] == "m" and m["i"] % 1000 == 7)
    assert hits[0][0].id in {"m7", "m1007", "m2007", "m3007"}
    exact = max((float(vecs[i] @ vecs[5]), f"m{i}") for i in (7, 1007, 2007, 3007))
    assert hits[0][0].id == exact[1]


def test_ivf_lists_partition_all_rows():
    vecs = _clustered(2_500, np.random.default_rng(4))
    ivf = IVFIndex(vecs)
    assert ivf.nlist == 50 and ivf.offsets[-1] == 2_500
    assert sorted(ivf.rows.tolist()) == list(range(2_500))
    rows, sims = ivf.candidates(vecs[10], nprobe=ivf.nlist)
    assert len(rows) == 2_500 and np.allclose(sims, vecs[rows] @ vecs[10], atol=1e-5)


def test_embedder_batches_are_length_sorted_and_within_budget():
    from embedding.embedder import MiniLMEmbedder

    e = MiniLMEmbedder(batch_size=4, batch_tokens=40)
    lengths = [5, 30, 2, 9, 9, 12, 3, 7, 1, 20]
    batches = e._batches(lengths)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    for b in batches:
        assert len(b) <= 4 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 40)


def test_minilm_batch_order_and_single_query_path(minilm):
    texts = [
        "a short one",
        "a considerably longer sentence about invoices, deadlines and the quarterly budget review",
        "x",
        "the cat sat on the mat",
        "meeting notes " * 12,
    ]
    minilm_bs = minilm.batch_size
    try:
        minilm.batch_size = 2
        batched = minilm.embed(texts)
    finally:
        minilm.batch_size = minilm_bs
    single = np.stack([minilm.embed([t])[0] for t in texts])  # unpadded, one at a time
    assert np.all(np.sum(batched * single, axis=1) > 0.9999)  # row i is text i, padding is inert


async def test_store_memories_ids_in_input_order(tmp_path):
    from servers.ai_memory.config import MemoryConfig
    from servers.ai_memory.service import MemoryService

    svc = MemoryService(MemoryConfig(data_dir=tmp_path, warm_embedder=False), embedder=HashEmbedder())
    await svc.start(background=False)
    try:
        texts = ["z" * 300, "b short", "a much longer memory " * 10, "c", "short again"]
        res = await svc.store_memories([{"content": t} for t in texts], "order")
        for mid, t in zip(res["ids"], texts, strict=True):
            assert (await svc.get_memory(mid))["content"] == t
    finally:
        await svc.close()


def _reference(idx: NamespaceIndex, q: np.ndarray, query: str, k: int, mask: np.ndarray, mode: str, fusion: str):
    """The ranking `search` promises, computed over full arrays of every row: each side's best
    rows by score, equal scores in row order, fused as documented."""
    from servers.ai_memory.index import keyword_terms

    n = idx.n
    vm = mask & idx.embedded[:n]
    dense = np.where(vm, idx.vecs[:n] @ q, -np.inf)
    rows, raw, ceiling = idx.bm25(keyword_terms(query))
    kw = np.zeros(n, dtype=np.float32)
    kw[rows] = raw / ceiling if ceiling > 0 else raw
    kw = np.where(mask, kw, 0.0)

    def best(scores: np.ndarray, keep: np.ndarray, m: int) -> list[int]:
        cand = [r for r in range(n) if keep[r]]
        return sorted(cand, key=lambda r: (-scores[r], r))[:m]

    d_rows = best(dense, vm, max(50, 5 * k)) if vm.any() else []
    k_rows = best(kw, kw > 0, max(50, 5 * k))
    if mode == "dense":
        return [(r, float(dense[r])) for r in d_rows[:k]]
    if mode == "keyword":
        return [(r, float(kw[r])) for r in k_rows[:k]]
    if fusion == "rrf":
        fused: dict[int, float] = {}
        for ranked in (d_rows, k_rows):
            for rank, r in enumerate(ranked):
                fused[r] = fused.get(r, 0.0) + 1.0 / (61 + rank)
        return [(r, s * 61 / 2) for r, s in sorted(fused.items(), key=lambda x: -x[1])[:k]]
    union = sorted(set(d_rows) | set(k_rows))
    blend = {r: 0.6 * max(float(dense[r]) if vm[r] else 0.0, 0.0) + 0.4 * float(kw[r]) for r in union}
    return sorted(blend.items(), key=lambda x: (-x[1], x[0]))[:k]


def test_exact_search_matches_full_array_ranking_with_ties_in_row_order():
    """Few distinct words and short texts: many equal keyword scores, whose order must not
    depend on how candidates were gathered; deleted, expired and unembedded rows and a filter."""
    rng = np.random.default_rng(11)
    words = [f"w{i}" for i in range(12)]
    n = 1_500
    recs = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=int(rng.integers(1, 4))))
        recs.append(
            MemoryRecord(
                id=f"m{i}",
                namespace="ns",
                content=text,
                content_hash=content_hash(f"{i} {text}"),
                metadata={"i": i},
                created_at=1.0,
                updated_at=1.0,
                expires_at=1.5 if i % 13 == 0 else None,
            )
        )
    vecs = _clustered(n, rng)
    idx = NamespaceIndex("ns", DIM, ann_min_vectors=0)
    embedded = [i for i in range(n) if i % 5]
    idx.add([recs[i] for i in embedded], vecs[embedded])
    idx.add([recs[i] for i in range(n) if i % 5 == 0])
    for i in range(0, n, 11):
        idx.remove(f"m{i}")
    for trial in range(12):
        q = vecs[int(rng.integers(0, n))]
        query = " ".join(rng.choice(words, size=2))
        predicate = None if trial % 2 else (lambda md: md["i"] % 3 == 0)
        mask = idx.mask(2.0, predicate)
        for mode, fusion in (("dense", "blend"), ("keyword", "blend"), ("hybrid", "blend"), ("hybrid", "rrf")):
            for k in (1, 7, 20):
                got = idx.search(q, query, k, now=2.0, predicate=predicate, mode=mode, fusion=fusion)
                want = _reference(idx, q, query, k, mask, mode, fusion)
                assert [idx.row_of[r.id] for r, _ in got] == [r for r, _ in want], (mode, fusion, k)
                assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-6)


class _CountingEmbedder(HashEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return super().embed(texts)


async def test_a_repeated_query_is_embedded_once(tmp_path):
    """Recall keeps recent query vectors: asking the same thing again (the result cache off, or
    after a write made the cached answer stale) costs no second embedding, and the answer is
    the same as the first time."""
    from servers.ai_memory.config import MemoryConfig
    from servers.ai_memory.service import MemoryService

    embedder = _CountingEmbedder()
    svc = MemoryService(MemoryConfig(data_dir=tmp_path, warm_embedder=False), embedder=embedder)
    await svc.start(background=False)
    try:
        await svc.store_memories([{"content": f"invoice {i} for the garden project"} for i in range(20)], "q")
        embedder.texts.clear()
        first = await svc.recall_memory("garden invoice", "q", use_cache=False)
        again = await svc.recall_memory("garden invoice", "q", use_cache=False)
        assert embedder.texts == ["garden invoice"]
        later = (await svc.store_memory("a garden invoice that came later", "q"))["id"]
        embedder.texts.clear()
        after_write = await svc.recall_memory("garden invoice", "q", k=30)
        other = await svc.recall_memory("budget meeting", "q", use_cache=False)
        assert first == again and first and later in {h["id"] for h in after_write}
        assert embedder.texts == ["budget meeting"]
        assert other != first
    finally:
        await svc.close()
