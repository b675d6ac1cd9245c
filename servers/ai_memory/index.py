"""L2: the in-process semantic + keyword index of one namespace.

Dense: L2-normalised float32 vectors in one contiguous matrix; exact search is a single
matrix-vector product (cosine similarity) plus argpartition. From `ann_min_vectors` live
vectors on, an IVF index (`IVFIndex`: spherical k-means lists, probe the nearest lists,
exact re-rank) replaces the full scan. Keyword: an inverted index
scored with Okapi BM25. `search` fuses the two (see `fuse`). Deleted rows are tombstoned
and the arrays are compacted when a third of them is dead.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from servers.ai_memory.columns import MetadataColumns
from servers.ai_memory.filters import Filter
from servers.ai_memory.records import MemoryRecord

_TOKEN = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "i'm",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "yours",
        "it's",
        "can",
        "could",
        "would",
        "should",
        "about",
        "into",
        "than",
        "too",
        "very",
        "just",
        "also",
        "not",
        "no",
    ]
)


def _stem(tok: str) -> str:
    if len(tok) > 4 and tok.endswith("ies"):
        return tok[:-3] + "y"
    if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss") and not tok[-2].isdigit():
        return tok[:-1]
    return tok


def keyword_terms(text: str) -> list[str]:
    out: list[str] = []
    for tok in _TOKEN.findall(text.lower()):
        if tok in STOPWORDS:
            continue
        out.append(_stem(tok))
        if "-" in tok or "_" in tok:  # "ORD-4821" also matches "4821"
            out.extend(p for p in re.split(r"[-_]", tok) if p and p not in STOPWORDS)
    return out


class IVFIndex:
    """Inverted-file ANN index over rows [0, built) of a vector matrix (pure numpy).

    Spherical k-means on a sample gives ~sqrt(n) unit centroids; every row is assigned to
    its nearest centroid and the vectors are copied into one matrix grouped by list, so a
    probe is a contiguous slice @ query. Rows added after the build are not in any list:
    the caller scans them exactly (`built` marks where they start) and rebuilds once they
    are a quarter of the index."""

    def __init__(self, vecs: np.ndarray, *, seed: int = 0, iters: int = 10) -> None:
        n = vecs.shape[0]
        self.built = n
        nlist = max(1, int(math.sqrt(n)))
        rng = np.random.default_rng(seed)
        sample_n = min(n, 48 * nlist)
        sample = vecs[rng.choice(n, sample_n, replace=False)] if sample_n < n else vecs
        cents = sample[rng.choice(len(sample), nlist, replace=False)].copy()
        for _ in range(iters):
            assign = np.argmax(sample @ cents.T, axis=1)
            sums = np.zeros_like(cents)
            np.add.at(sums, assign, sample)
            counts = np.bincount(assign, minlength=nlist)
            empty = counts == 0
            if empty.any():  # re-seed empty lists with random sample points
                sums[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            cents = (sums / norms).astype(np.float32)
        assign = np.empty(n, dtype=np.int64)
        for s in range(0, n, 16_384):
            assign[s : s + 16_384] = np.argmax(vecs[s : s + 16_384] @ cents.T, axis=1)
        order = np.argsort(assign, kind="stable")
        self.centroids = np.ascontiguousarray(cents)
        self.rows = order
        self.vecs = np.ascontiguousarray(vecs[order])
        self.offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=nlist))])
        self.nlist = nlist

    def nprobe(self) -> int:
        return max(8, math.ceil(self.nlist * 0.12))

    def candidates(self, qvec: np.ndarray, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine) of every vector in the `nprobe` lists nearest to `qvec`."""
        p = min(self.nlist, nprobe or self.nprobe())
        cs = self.centroids @ qvec
        lists = np.argpartition(-cs, p - 1)[:p] if p < self.nlist else np.arange(self.nlist)
        rows, scores = [], []
        for li in lists:
            a, b = self.offsets[li], self.offsets[li + 1]
            if b > a:
                rows.append(self.rows[a:b])
                scores.append(self.vecs[a:b] @ qvec)
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return np.concatenate(rows), np.concatenate(scores)


class NamespaceIndex:
    K1 = 1.2
    B = 0.75

    def __init__(self, namespace: str, dim: int, ann_min_vectors: int = 20_000) -> None:
        self.namespace = namespace
        self.dim = dim
        self.ann_min_vectors = ann_min_vectors  # <= 0 disables the ANN index
        self._ivf: IVFIndex | None = None
        self.vecs = np.zeros((64, dim), dtype=np.float32)
        self.expires = np.full(64, np.inf)
        self.alive = np.zeros(64, dtype=bool)
        self.embedded = np.zeros(64, dtype=bool)  # has a vector (embedding runs behind the write)
        self.version = 0  # the L3 namespace version this index reflects (see coherence.py)
        self.doc_len = np.zeros(64, dtype=np.float32)
        self.n = 0
        self.dead = 0
        self.records: list[MemoryRecord | None] = []
        self.row_of: dict[str, int] = {}
        self.hash_to_id: dict[str, str] = {}
        self._post_rows: dict[str, list[int]] = {}
        self._post_tfs: dict[str, list[int]] = {}
        self._post_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._len_sum = 0.0
        self.columns = MetadataColumns(self.records)

    # -- maintenance ----------------------------------------------------------------

    def __len__(self) -> int:
        return self.n - self.dead

    def _grow(self, need: int) -> None:
        cap = self.vecs.shape[0]
        if need <= cap:
            return
        new = max(need, cap * 2)
        for name in ("vecs", "expires", "alive", "embedded", "doc_len"):
            old = getattr(self, name)
            shape = (new, *old.shape[1:])
            fill = np.inf if name == "expires" else 0
            arr = np.full(shape, fill, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)

    def add(self, records: list[MemoryRecord], vectors: np.ndarray | None = None) -> None:
        """Insert or replace records. Vectors come from `vectors` (row-aligned) or each
        record's `embedding`; a record with neither is found by keyword only until a later
        `add` gives it one. The stored record keeps no embedding of its own."""
        if not records:
            return
        for r in records:
            if r.id in self.row_of:
                self.remove(r.id)
        start = self.n
        self._grow(start + len(records))
        for i, r in enumerate(records):
            row = start + i
            vec = vectors[i] if vectors is not None else r.embedding
            if vec is not None:
                self.vecs[row] = vec
            self.embedded[row] = vec is not None
            self.expires[row] = np.inf if r.expires_at is None else r.expires_at
            self.alive[row] = True
            terms = Counter(keyword_terms(r.content))
            length = sum(terms.values())
            self.doc_len[row] = length
            self._len_sum += length
            for t, tf in terms.items():
                self._post_rows.setdefault(t, []).append(row)
                self._post_tfs.setdefault(t, []).append(tf)
                self._post_cache.pop(t, None)
            stored = r.without_embedding()
            self.records.append(stored)
            self.row_of[r.id] = row
            self.hash_to_id[r.content_hash] = r.id
        self.n = start + len(records)

    def remove(self, memory_id: str) -> MemoryRecord | None:
        row = self.row_of.pop(memory_id, None)
        if row is None:
            return None
        rec = self.records[row]
        self.records[row] = None
        self.alive[row] = False
        self._len_sum -= float(self.doc_len[row])
        self.dead += 1
        if rec is not None and self.hash_to_id.get(rec.content_hash) == memory_id:
            del self.hash_to_id[rec.content_hash]
        if self.dead > 64 and self.dead * 3 > self.n:
            self._compact()
        return rec

    def _compact(self) -> None:
        keep = [
            replace(r, embedding=self.vecs[i].copy() if self.embedded[i] else None)
            for i, r in enumerate(self.records)
            if r is not None
        ]
        fresh = NamespaceIndex(self.namespace, self.dim, self.ann_min_vectors)
        fresh.version = self.version
        fresh.add(keep)
        self.__dict__.update(fresh.__dict__)

    def get(self, memory_id: str) -> MemoryRecord | None:
        row = self.row_of.get(memory_id)
        return None if row is None else self.records[row]

    def vector(self, memory_id: str) -> np.ndarray | None:
        row = self.row_of.get(memory_id)
        return None if row is None or not self.embedded[row] else self.vecs[row].copy()

    def unembedded(self) -> list[MemoryRecord]:
        """Live records still waiting for their vector."""
        rows = np.nonzero(self.alive[: self.n] & ~self.embedded[: self.n])[0]
        return [self.records[r] for r in rows if self.records[r] is not None]  # type: ignore[misc]

    def expired_ids(self, now: float) -> list[str]:
        rows = np.nonzero(self.alive[: self.n] & (self.expires[: self.n] <= now))[0]
        return [self.records[r].id for r in rows if self.records[r] is not None]  # type: ignore[union-attr]

    def nbytes(self) -> int:
        return int(self.vecs[: self.n].nbytes)

    # -- search ---------------------------------------------------------------------

    def mask(self, now: float, predicate: Callable[[dict[str, Any]], bool] | None) -> np.ndarray:
        m = self.alive[: self.n] & (self.expires[: self.n] > now)
        if isinstance(predicate, Filter):
            m &= predicate.mask(self.columns)
        elif predicate is not None:
            for row in np.nonzero(m)[0]:
                rec = self.records[row]
                if rec is None or not predicate(rec.metadata):
                    m[row] = False
        return m

    def dense_scores(self, qvec: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Cosine of every row with `qvec`; with a selective `mask` (a filter keeping under a
        quarter of the rows), only the kept rows are computed and the others are -inf."""
        if mask is not None:
            rows = np.flatnonzero(mask)
            if len(rows) * 4 < self.n:
                out = np.full(self.n, -np.inf, dtype=np.float32)
                out[rows] = self.vecs[rows] @ qvec
                return out
        return self.vecs[: self.n] @ qvec

    def ann_active(self, live: int) -> bool:
        return self.ann_min_vectors > 0 and live >= self.ann_min_vectors

    def ivf(self) -> IVFIndex:
        """The IVF index, (re)built when missing or when rows added since the build are
        more than a quarter of it (those rows are scanned exactly until then)."""
        ivf = self._ivf
        if ivf is None or ivf.built > self.n or (self.n - ivf.built) * 4 > ivf.built:
            ivf = self._ivf = IVFIndex(self.vecs[: self.n])
        return ivf

    def ann_scores(self, qvec: np.ndarray, m: np.ndarray, need: int) -> np.ndarray | None:
        """Cosine for the IVF candidates (probed lists + unindexed tail), -inf elsewhere;
        None when fewer than `need` candidates pass the mask (the caller scans exactly)."""
        ivf = self.ivf()
        rows, sims = ivf.candidates(qvec)
        out = np.full(self.n, -np.inf, dtype=np.float32)
        out[rows] = sims
        if ivf.built < self.n:
            out[ivf.built : self.n] = self.vecs[ivf.built : self.n] @ qvec
        if int(np.count_nonzero(m[rows])) + (self.n - ivf.built) < need:
            return None
        return out

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        cached = self._post_cache.get(term)
        if cached is None:
            rows = self._post_rows.get(term)
            if not rows:
                return None
            cached = (np.asarray(rows, dtype=np.int64), np.asarray(self._post_tfs[term], dtype=np.float32))
            self._post_cache[term] = cached
        return cached

    def bm25_scores(self, terms: list[str]) -> tuple[np.ndarray, float]:
        """BM25 per row, and the maximum score any document could reach for these terms
        (used to put keyword scores on a 0..1 scale)."""
        scores = np.zeros(self.n, dtype=np.float32)
        live = max(len(self), 1)
        avgdl = self._len_sum / live if self._len_sum > 0 else 1.0
        ceiling = 0.0
        for term in set(terms):
            post = self._postings(term)
            if post is None:
                continue
            rows, tfs = post
            df = int(self.alive[rows].sum())
            if df == 0:
                continue
            idf = math.log(1.0 + (live - df + 0.5) / (df + 0.5))
            dl = self.doc_len[rows]
            part = idf * tfs * (self.K1 + 1) / (tfs + self.K1 * (1 - self.B + self.B * dl / avgdl))
            np.add.at(scores, rows, part.astype(np.float32))
            ceiling += idf * (self.K1 + 1)
        return scores, ceiling

    def search(
        self,
        qvec: np.ndarray | None,
        query: str,
        k: int,
        *,
        now: float,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        mode: str = "hybrid",
        fusion: str = "blend",
        alpha: float = 0.6,
        dense_override: dict[str, float] | None = None,
    ) -> list[tuple[MemoryRecord, float]]:
        """Top-k (record, score). mode: hybrid | dense | keyword.

        fusion "blend": score = alpha * cosine + (1 - alpha) * bm25 / bm25_ceiling, over the
        union of both candidate lists; "rrf": reciprocal rank fusion (k=60), normalised so
        that rank 1 in both lists scores 1.0.
        `dense_override` supplies cosine similarities computed elsewhere (Cortex)."""
        if self.n == 0 or k <= 0:
            return []
        m = self.mask(now, predicate)
        if not m.any():
            return []
        cand_n = max(50, 5 * k)

        def topn(scores: np.ndarray, n: int) -> np.ndarray:
            s = np.where(m, scores, -np.inf)
            n = min(n, int(m.sum()))
            idx = np.argpartition(-s, n - 1)[:n] if n < len(s) else np.arange(len(s))
            idx = idx[np.isfinite(s[idx])]
            return idx[np.argsort(-s[idx], kind="stable")]

        dense = kw = None
        ann = False
        vm = m & self.embedded[: self.n]  # rows a dense score can be computed for
        if mode in ("hybrid", "dense") and (dense_override is not None or vm.any()):
            if dense_override is not None:
                dense = np.full(self.n, -np.inf, dtype=np.float32)
                for mid, sim in dense_override.items():
                    row = self.row_of.get(mid)
                    if row is not None:
                        dense[row] = sim
            elif qvec is not None:
                live = int(vm.sum())
                if self.ann_active(live):
                    dense = self.ann_scores(qvec, vm, cand_n if mode == "hybrid" else k)
                    ann = dense is not None
                if dense is None:
                    dense = self.dense_scores(qvec, vm)
                if not vm.all():
                    dense = np.where(vm, dense, -np.inf).astype(np.float32)
        if mode in ("hybrid", "keyword"):
            kw_raw, ceiling = self.bm25_scores(keyword_terms(query))
            kw = kw_raw / ceiling if ceiling > 0 else kw_raw

        if dense is None and kw is None:
            return []
        if dense is None or kw is None:
            only = dense if dense is not None else kw
            rows = topn(only, k)  # type: ignore[arg-type]
            if kw is not None:
                rows = rows[kw[rows] > 0]
            return [(self.records[r], float(only[r])) for r in rows]  # type: ignore[misc, index]

        d_rows = topn(dense, cand_n)
        k_rows = topn(kw, cand_n)
        k_rows = k_rows[kw[k_rows] > 0]
        if fusion == "rrf":
            fused: dict[int, float] = {}
            for ranked in (d_rows, k_rows):
                for rank, row in enumerate(ranked):
                    fused[int(row)] = fused.get(int(row), 0.0) + 1.0 / (61 + rank)
            best = sorted(fused.items(), key=lambda x: -x[1])[:k]
            return [(self.records[r], s * 61 / 2) for r, s in best]  # type: ignore[misc]
        union = np.union1d(d_rows, k_rows)
        # with ANN, keyword hits outside the probed lists still get their true cosine
        dense_u = self.vecs[union] @ qvec if ann else np.nan_to_num(dense[union], neginf=0.0)
        blend = alpha * np.clip(dense_u, 0.0, None) + (1 - alpha) * kw[union]
        order = np.argsort(-blend, kind="stable")[:k]
        return [(self.records[union[i]], float(blend[i])) for i in order]  # type: ignore[misc]

    def listing(self, now: float, predicate: Callable[[dict[str, Any]], bool] | None) -> list[MemoryRecord]:
        m = self.mask(now, predicate)
        recs = [self.records[r] for r in np.nonzero(m)[0]]
        return sorted(recs, key=lambda r: (r.created_at, r.id))  # type: ignore[union-attr]
