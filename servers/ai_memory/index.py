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


_MATVEC_ROWS = 1024


def matvec(mat: np.ndarray, q: np.ndarray) -> np.ndarray:
    """mat @ q in blocks of 1,024 rows. OpenBLAS hands a bigger product to its worker threads,
    which busy-wait: on this 2-core machine an exact scan of 10k vectors cost 5-7 ms of CPU that
    way against 1.0-1.3 ms in blocks (the product is memory-bound; threads do not speed it up)."""
    if len(mat) <= _MATVEC_ROWS:
        return mat @ q
    out = np.empty(len(mat), dtype=np.result_type(mat, q))
    for a in range(0, len(mat), _MATVEC_ROWS):
        np.matmul(mat[a : a + _MATVEC_ROWS], q, out=out[a : a + _MATVEC_ROWS])
    return out


def _top(rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n` best (rows, scores), best first; equal scores in row order (older memories
    first), so the answer never depends on how the candidates were gathered."""
    ok = np.isfinite(scores)
    if not ok.all():
        rows, scores = rows[ok], scores[ok]
    if len(rows) > n:
        kth = np.partition(scores, len(rows) - n)[len(rows) - n]  # the n-th best score
        better = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)
        tied = tied[np.argsort(rows[tied], kind="stable")][: n - len(better)]
        pick = np.concatenate([better, tied])
        rows, scores = rows[pick], scores[pick]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def _lookup(rows: np.ndarray, scores: np.ndarray, want: np.ndarray, missing: float) -> np.ndarray:
    """scores[r] for each r of `want` (sorted), `missing` where `rows` lacks r."""
    out = np.full(len(want), missing, dtype=np.float32)
    if len(rows):
        order = np.argsort(rows, kind="stable")
        srows = rows[order]
        pos = np.minimum(np.searchsorted(srows, want), len(srows) - 1)
        found = srows[pos] == want
        out[found] = scores[order][pos[found]]
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
        self._offsets: list[int] = self.offsets.tolist()  # read per probed list: plain ints
        self.nlist = nlist

    def nprobe(self) -> int:
        return max(8, math.ceil(self.nlist * 0.12))

    def candidates(self, qvec: np.ndarray, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine) of every vector in the `nprobe` lists nearest to `qvec`."""
        p = min(self.nlist, nprobe or self.nprobe())
        qvec = np.asarray(qvec, dtype=np.float32)
        cs = self.centroids @ qvec
        lists = np.sort(np.argpartition(-cs, p - 1)[:p]).tolist() if p < self.nlist else range(self.nlist)
        # in memory order (the lists lie one after the other), each product written in place
        spans = [(self._offsets[li], self._offsets[li + 1]) for li in lists]
        rows = np.empty(sum(b - a for a, b in spans), dtype=np.int64)
        scores = np.empty(len(rows), dtype=np.float32)
        at = 0
        for a, b in spans:
            if b > a:
                rows[at : at + b - a] = self.rows[a:b]
                np.dot(self.vecs[a:b], qvec, out=scores[at : at + b - a])
                at += b - a
        return rows, scores


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

    def ann_active(self, live: int) -> bool:
        return self.ann_min_vectors > 0 and live >= self.ann_min_vectors

    def ivf(self) -> IVFIndex:
        """The IVF index, (re)built when missing or when rows added since the build are
        more than a quarter of it (those rows are scanned exactly until then)."""
        ivf = self._ivf
        if ivf is None or ivf.built > self.n or (self.n - ivf.built) * 4 > ivf.built:
            ivf = self._ivf = IVFIndex(self.vecs[: self.n])
        return ivf

    def dense_candidates(self, qvec: np.ndarray, vm: np.ndarray, need: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(rows, cosine, ann) for the rows of `vm` a dense score is computed for: with at least
        `ann_min_vectors` of them, the IVF candidates (probed lists + unindexed tail) that pass
        `vm`, unless fewer than `need` do; otherwise every row of `vm`, exactly (a selective mask,
        under a quarter of the rows, computes only the kept ones)."""
        if self.ann_active(int(np.count_nonzero(vm))):
            ivf = self.ivf()
            cand, sims = ivf.candidates(qvec)
            if ivf.built < self.n:
                cand = np.concatenate([cand, np.arange(ivf.built, self.n)])
                sims = np.concatenate([sims, matvec(self.vecs[ivf.built : self.n], qvec)])
            keep = vm[cand]
            if int(np.count_nonzero(keep)) >= need:
                return cand[keep], sims[keep], True
        rows = np.flatnonzero(vm)
        if len(rows) * 4 < self.n:
            return rows, matvec(self.vecs[rows], qvec), False
        return rows, matvec(self.vecs[: self.n], qvec)[rows], False

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        cached = self._post_cache.get(term)
        if cached is None:
            rows = self._post_rows.get(term)
            if not rows:
                return None
            cached = (np.asarray(rows, dtype=np.int64), np.asarray(self._post_tfs[term], dtype=np.float32))
            self._post_cache[term] = cached
        return cached

    def bm25(self, terms: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
        """(rows, BM25) for the rows that contain any of these terms (live or not: the caller
        masks), and the maximum score any document could reach for them (used to put keyword
        scores on a 0..1 scale)."""
        scores = np.zeros(self.n, dtype=np.float32)
        live = max(len(self), 1)
        avgdl = self._len_sum / live if self._len_sum > 0 else 1.0
        ceiling = 0.0
        hit: list[np.ndarray] = []
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
            hit.append(rows)
        if not hit:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), ceiling
        rows = hit[0] if len(hit) == 1 else np.unique(np.concatenate(hit))
        return rows, scores[rows], ceiling

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
        `dense_override` supplies cosine similarities computed elsewhere (Cortex).

        Each side is ranked over its own candidates only (the probed IVF lists or the rows of
        the mask; the rows holding a query term), never over an array of every row."""
        if self.n == 0 or k <= 0:
            return []
        m = self.mask(now, predicate)
        if not m.any():
            return []
        cand_n = max(50, 5 * k)
        dense: tuple[np.ndarray, np.ndarray] | None = None
        kw: tuple[np.ndarray, np.ndarray] | None = None
        ann = False
        if mode in ("hybrid", "dense"):
            if dense_override is not None:
                pairs = [(self.row_of.get(mid), sim) for mid, sim in dense_override.items()]
                got = [(r, s) for r, s in pairs if r is not None and m[r]]
                dense = (
                    np.fromiter((r for r, _ in got), dtype=np.int64, count=len(got)),
                    np.fromiter((s for _, s in got), dtype=np.float32, count=len(got)),
                )
            elif qvec is not None:
                vm = m & self.embedded[: self.n]  # rows a dense score can be computed for
                if vm.any():
                    rows, sims, ann = self.dense_candidates(qvec, vm, cand_n if mode == "hybrid" else k)
                    dense = (rows, sims)
        if mode in ("hybrid", "keyword"):
            rows, raw, ceiling = self.bm25(keyword_terms(query))
            keep = m[rows] & (raw > 0)
            rows, raw = rows[keep], raw[keep]
            kw = (rows, raw / ceiling if ceiling > 0 else raw)

        if dense is None and kw is None:
            return []
        if dense is None or kw is None:
            rows, scores = _top(*(dense if dense is not None else kw), k)  # type: ignore[misc]
            return [(self.records[r], float(s)) for r, s in zip(rows, scores, strict=True)]  # type: ignore[misc]

        d_rows, _ = _top(*dense, cand_n)
        k_rows, _ = _top(*kw, cand_n)
        if fusion == "rrf":
            fused: dict[int, float] = {}
            for ranked in (d_rows, k_rows):
                for rank, row in enumerate(ranked.tolist()):
                    fused[row] = fused.get(row, 0.0) + 1.0 / (61 + rank)
            best = sorted(fused.items(), key=lambda x: -x[1])[:k]
            return [(self.records[r], s * 61 / 2) for r, s in best]  # type: ignore[misc]
        union = np.union1d(d_rows, k_rows)
        # with ANN, keyword hits outside the probed lists still get their true cosine
        dense_u = self.vecs[union] @ qvec if ann else _lookup(*dense, union, 0.0)  # type: ignore[operator]
        kw_u = _lookup(*kw, union, 0.0)
        blend = alpha * np.clip(dense_u, 0.0, None) + (1 - alpha) * kw_u
        order = np.argsort(-blend, kind="stable")[:k]
        return [(self.records[union[i]], float(blend[i])) for i in order]  # type: ignore[misc]

    def listing(self, now: float, predicate: Callable[[dict[str, Any]], bool] | None) -> list[MemoryRecord]:
        m = self.mask(now, predicate)
        recs = [self.records[r] for r in np.nonzero(m)[0]]
        return sorted(recs, key=lambda r: (r.created_at, r.id))  # type: ignore[union-attr]
