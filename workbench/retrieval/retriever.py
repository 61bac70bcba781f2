"""``Retriever``: batched search over a built configuration (dense FAISS, optional BM25 fusion, MMR, filter).

Why batched: an eval grid asks hundreds of questions per config; one embedding call and one FAISS batch
search for all of them is what makes a retrieval grid cost seconds instead of minutes.

Search pipeline per batch of queries:

1. embed all queries in one call; one FAISS ``search`` for the batch (depth = top_k, or the MMR / hybrid
   candidate depth);
2. hybrid: BM25 (bm25s, built in memory once per process; numba backend from 50k chunks) over chunk texts
   for the same batch, fused with the dense list by weighted reciprocal rank fusion or a min-max normalised
   weighted sum (see ``HybridConfig``);
3. MMR: re-rank the first ``fetch_k`` candidates; relevance is the first-stage score (cosine for dense,
   min-max normalised fused score for hybrid), redundancy the cosine between chunks;
4. metadata filter: a pre-filter *inside* FAISS (``IDSelectorBatch``) and a BM25 weight mask, so no
   over-fetch is needed; exact for flat indexes. Approximate indexes (HNSW/IVF) may find fewer than k
   allowed chunks when the filter is very selective: those queries are re-run exactly over the allowed
   chunks' stored vectors, so a filtered search never returns fewer hits than exist.

A hit's ``score`` is its first-stage score (cosine, or fused score for hybrid); ``rank`` is its final
1-based position (after MMR when enabled).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import RetrievalError
from workbench.retrieval.config import RetrievalConfig
from workbench.retrieval.index import (
    BuildStats,
    ChunkTable,
    EmbeddingHandle,
    embedding_key,
    get_chunks,
    get_embeddings,
    get_index,
    index_key,
    known_dim,
)

if TYPE_CHECKING:
    import numpy as np

    from workbench.embeddings import Embedder
    from workbench.retrieval.corpus import Corpus

__all__ = ["Hit", "Retriever", "build_retriever"]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk."""

    chunk_id: str
    doc_id: str
    text: str
    score: float
    rank: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    start: int | None = None
    end: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able) as stored with a cell and passed to metrics as ``retrieved``."""
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "text": self.text,
            "score": self.score,
            "rank": self.rank,
            "metadata": dict(self.metadata),
            "start": self.start,
            "end": self.end,
        }


# ---------------------------------------------------------------------------------------------
# BM25 (in memory; cheap to rebuild, cached per process by chunk table)

_BM25_CACHE: dict[tuple[Any, ...], Any] = {}
_BM25_LOCK = threading.Lock()


# bm25s' numba backend is ~15x faster per query but JIT-compiles for ~6 s in every process (no disk cache):
# worth it only for large corpora. WORKBENCH_BM25_BACKEND=numpy|numba overrides the choice.
BM25_NUMBA_MIN_CHUNKS = 50_000


def _bm25_backend(n: int) -> str:
    import importlib.util
    import os

    forced = os.environ.get("WORKBENCH_BM25_BACKEND", "").strip().lower()
    if forced in ("numpy", "numba"):
        return forced
    return "numba" if n >= BM25_NUMBA_MIN_CHUNKS and importlib.util.find_spec("numba") is not None else "numpy"


class _BM25:
    def __init__(self, texts: list[str], k1: float, b: float, stopwords: str | None) -> None:
        import bm25s

        self.stopwords = stopwords
        tokens = bm25s.tokenize(texts, stopwords=stopwords, show_progress=False)
        self.model = bm25s.BM25(k1=k1, b=b, backend=_bm25_backend(len(texts)))
        self.model.index(tokens, show_progress=False)
        self.n = len(texts)

    def search(self, queries: list[str], k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores) of shape (n_queries, k); positions are -1 where the score is 0 (no match)."""
        import bm25s
        import numpy as np

        q = bm25s.tokenize(queries, stopwords=self.stopwords, show_progress=False, return_ids=False)
        vocab = self.model.vocab_dict
        q = [[t for t in toks if t in vocab] for toks in q]
        k = min(k, self.n)
        docs, scores = self.model.retrieve(q, k=k, show_progress=False, weight_mask=mask)
        docs = np.asarray(docs, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        docs[scores <= 0] = -1
        return docs, scores


def _get_bm25(table: ChunkTable, cfg: Any) -> _BM25:
    key = (table.key, cfg.k1, cfg.b, cfg.stopwords)
    with _BM25_LOCK:
        if key in _BM25_CACHE:
            return _BM25_CACHE[key]
    bm = _BM25(table.texts, cfg.k1, cfg.b, cfg.stopwords)
    with _BM25_LOCK:
        if len(_BM25_CACHE) >= 8:
            _BM25_CACHE.pop(next(iter(_BM25_CACHE)))
        return _BM25_CACHE.setdefault(key, bm)


# ---------------------------------------------------------------------------------------------


class Retriever:
    """A built retrieval configuration. Create with :func:`build_retriever`; call :meth:`search`."""

    def __init__(
        self,
        config: RetrievalConfig,
        corpus: Corpus,
        table: ChunkTable,
        index: Any,
        embedder: Embedder,
        embeddings: Callable[[], EmbeddingHandle],
        keys: dict[str, str],
        build_stats: BuildStats,
    ) -> None:
        self.config = config
        self.corpus = corpus
        self.table = table
        self.index = index
        self.embedder = embedder
        self._embeddings = embeddings
        self.keys = keys
        self.build_stats = build_stats
        self._lock = threading.Lock()
        self._bm25 = _get_bm25(table, config.hybrid) if config.hybrid is not None else None
        self._allowed = self._allowed_positions() if config.filter else None
        self._selector: Any = None
        self.last_search_seconds = 0.0

    # ---- info -----------------------------------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        return len(self.table)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def vectors(self) -> np.ndarray:
        """The chunks' unit vectors, row i = ``table.chunk_ids[i]`` (read-only, memory-mapped from the cache)."""
        return self._embeddings().matrix()

    def info(self) -> dict[str, Any]:
        """Everything that identifies what this retriever searches (for traceability in results)."""
        return {
            "name": self.config.label,
            "config_hash": self.config.hash,
            "corpus_hash": self.corpus.hash,
            "embedder": self.embedder.name,
            "n_chunks": self.n_chunks,
            "dim": self.dim,
            **self.keys,
            "build": self.build_stats.to_dict(),
        }

    def __repr__(self) -> str:
        return f"Retriever({self.config.label!r}, {self.n_chunks} chunks, {type(self.index).__name__}, dim={self.dim})"

    # ---- search ---------------------------------------------------------------------------------
    def search(self, queries: list[str], top_k: int | None = None) -> list[list[Hit]]:
        """Top hits for each query, batched: one embedding call and one FAISS search for all queries."""
        if isinstance(queries, str):
            raise RetrievalError("search() takes a list of queries: wrap one query as [query]")
        queries = list(queries)
        bad = [i for i, q in enumerate(queries) if not isinstance(q, str)]
        if bad:
            raise RetrievalError(f"queries must be strings; positions {bad[:5]} are not: convert them with str()")
        if not queries:
            return []
        k = self.config.top_k if top_k is None else int(top_k)
        if k < 1:
            raise RetrievalError(f"top_k must be >= 1, got {k}")
        with self._lock:
            t0 = time.perf_counter()
            result = self._search(queries, k)
            self.last_search_seconds = time.perf_counter() - t0
        return result

    def search_one(self, query: str, top_k: int | None = None) -> list[Hit]:
        """Convenience: :meth:`search` for a single query."""
        return self.search([query], top_k)[0]

    def _search(self, queries: list[str], k: int) -> list[list[Hit]]:
        import numpy as np

        cfg = self.config
        n = self.n_chunks
        limit = n if self._allowed is None else len(self._allowed)
        k = min(k, limit)
        if k == 0:
            return [[] for _ in queries]
        depth = k
        if cfg.mmr is not None:
            depth = max(depth, cfg.mmr.fetch_k)
        if cfg.hybrid is not None:
            depth = max(depth, cfg.hybrid.fetch_k or max(5 * k, 50))
        depth = min(depth, limit)

        qv = self.embedder.embed(queries)
        qv = np.ascontiguousarray(qv, dtype=np.float32)
        if qv.ndim != 2 or qv.shape[1] != self.dim:
            raise RetrievalError(
                f"embedder {self.embedder.name!r} made {qv.shape[-1]}-dim query vectors but the index "
                f"({self.keys['index_key']}) holds {self.dim}-dim vectors: the embedder changed under the same name; "
                "delete the stored artifacts or give the embedder a distinct name"
            )
        dense_scores, dense_ids = self._dense(qv, depth)

        if cfg.hybrid is not None:
            assert self._bm25 is not None
            mask = None
            if self._allowed is not None:
                mask = np.zeros(n, dtype=np.float32)
                mask[self._allowed] = 1.0
            bm_ids, bm_scores = self._bm25.search(queries, depth, mask)
            ranked = [
                _fuse(dense_ids[i], dense_scores[i], bm_ids[i], bm_scores[i], cfg.hybrid) for i in range(len(queries))
            ]
        else:
            ranked = [
                [(int(p), float(s)) for p, s in zip(dense_ids[i], dense_scores[i], strict=True) if p >= 0]
                for i in range(len(queries))
            ]

        if cfg.mmr is not None:
            matrix = self._embeddings().matrix()
            ranked = [
                _mmr(qv[i], ranked[i][: cfg.mmr.fetch_k], matrix, k, cfg.mmr.lambda_, hybrid=cfg.hybrid is not None)
                for i in range(len(queries))
            ]
        return [self._hits(r[:k]) for r in ranked]

    def _dense(self, qv: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss as faiss_module
        import numpy as np

        faiss: Any = faiss_module  # its stubs lack the SearchParameters* classes
        idx_cfg = self.config.index
        sel = self._get_selector()
        if idx_cfg.type == "hnsw":
            params: Any = faiss.SearchParametersHNSW(efSearch=max(idx_cfg.ef_search, depth))
        elif idx_cfg.type in ("ivf_flat", "ivf_pq"):
            params = faiss.SearchParametersIVF(nprobe=min(idx_cfg.nprobe, self.index.nlist))
        else:
            params = faiss.SearchParameters()
        if sel is not None:
            params.sel = sel
        scores, ids = self.index.search(qv, depth, params=params)
        if self._allowed is not None and idx_cfg.type != "flat":
            short = np.flatnonzero((ids >= 0).sum(axis=1) < depth)
            if short.size:  # the approximate search ran out of allowed candidates: answer those exactly
                s2, i2 = self._exact_allowed(qv[short], depth)
                scores[short], ids[short] = s2, i2
        return scores, ids

    def _get_selector(self) -> Any:
        if self._allowed is None:
            return None
        if self._selector is None:
            import faiss
            import numpy as np

            self._selector_ids = np.ascontiguousarray(self._allowed, dtype=np.int64)
            self._selector = faiss.IDSelectorBatch(self._selector_ids)
        return self._selector

    def _exact_allowed(self, qv: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        assert self._allowed is not None
        sub = np.asarray(self._embeddings().matrix()[self._allowed], dtype=np.float32)
        sims = qv @ sub.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :depth]
        return np.take_along_axis(sims, top, axis=1), self._allowed[top]

    def _allowed_positions(self) -> np.ndarray:
        import numpy as np

        assert self.config.filter is not None
        wanted = {k: (set(v) if isinstance(v, list) else {v}) for k, v in self.config.filter.items()}
        keep = []
        for pos, (doc_id, section) in enumerate(zip(self.table.doc_ids, self.table.sections, strict=True)):
            meta = self.corpus[doc_id].metadata
            ok = True
            for key, values in wanted.items():
                value = section if key == "section" and "section" not in meta else meta.get(key, _MISSING)
                if isinstance(value, list):
                    ok = any(_hashable(v) in values for v in value)
                else:
                    ok = value is not _MISSING and _hashable(value) in values
                if not ok:
                    break
            if ok:
                keep.append(pos)
        return np.asarray(keep, dtype=np.int64)

    def _hits(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        t = self.table
        hits = []
        for rank, (pos, score) in enumerate(ranked, start=1):
            doc_id = t.doc_ids[pos]
            meta = dict(self.corpus[doc_id].metadata)
            if t.sections[pos] is not None:
                meta["section"] = t.sections[pos]
            hits.append(
                Hit(t.chunk_ids[pos], doc_id, t.texts[pos], float(score), rank, meta, t.starts[pos], t.ends[pos])
            )
        return hits


_MISSING = object()


def _hashable(v: Any) -> Any:
    return v if not isinstance(v, (list, dict)) else repr(v)


def _fuse(
    d_ids: np.ndarray, d_scores: np.ndarray, b_ids: np.ndarray, b_scores: np.ndarray, cfg: Any
) -> list[tuple[int, float]]:
    """Fuse one query's dense and BM25 lists (see ``HybridConfig``); returns [(position, fused score)] best first."""
    w = cfg.bm25_weight
    fused: dict[int, float] = {}
    dense = [(int(p), float(s)) for p, s in zip(d_ids, d_scores, strict=True) if p >= 0]
    lexical = [(int(p), float(s)) for p, s in zip(b_ids, b_scores, strict=True) if p >= 0]
    if cfg.fusion == "rrf":
        for rank, (p, _) in enumerate(dense, start=1):
            fused[p] = fused.get(p, 0.0) + (1 - w) / (cfg.rrf_k + rank)
        for rank, (p, _) in enumerate(lexical, start=1):
            fused[p] = fused.get(p, 0.0) + w / (cfg.rrf_k + rank)
    else:
        for weight, items in ((1 - w, dense), (w, lexical)):
            if not items:
                continue
            vals = [s for _, s in items]
            lo, hi = min(vals), max(vals)
            span = hi - lo
            for p, s in items:
                norm = (s - lo) / span if span > 0 else 1.0
                fused[p] = fused.get(p, 0.0) + weight * norm
    # ties broken by position for determinism
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _mmr(
    q: np.ndarray, candidates: list[tuple[int, float]], matrix: np.ndarray, k: int, lam: float, hybrid: bool
) -> list[tuple[int, float]]:
    """Maximal marginal relevance: pick ``k`` of ``candidates`` balancing relevance and novelty."""
    import numpy as np

    if len(candidates) <= 1:
        return candidates
    pos = np.asarray([p for p, _ in candidates], dtype=np.int64)
    first = np.asarray([s for _, s in candidates], dtype=np.float64)
    vecs = np.asarray(matrix[np.sort(pos)], dtype=np.float32)[np.argsort(np.argsort(pos))]
    if hybrid:
        lo, hi = first.min(), first.max()
        rel = (first - lo) / (hi - lo) if hi > lo else np.ones_like(first)
    else:
        rel = vecs @ np.asarray(q, dtype=np.float32)
    sim = vecs @ vecs.T
    chosen: list[int] = []
    max_sim = np.full(len(pos), -np.inf)
    available = np.ones(len(pos), dtype=bool)
    for _ in range(min(k, len(pos))):
        score = rel if not chosen else lam * rel - (1 - lam) * max_sim
        score = np.where(available, score, -np.inf)
        j = int(np.argmax(score))
        chosen.append(j)
        available[j] = False
        max_sim = np.maximum(max_sim, sim[:, j])
    return [candidates[j] for j in chosen]


def build_retriever(
    corpus: Corpus | None,
    config: RetrievalConfig | Mapping[str, Any],
    artifacts_dir: str | Path,
    *,
    embedder: Embedder | None = None,
    base_dir: str | Path | None = None,
) -> Retriever:
    """Build (or load from ``artifacts_dir``) everything ``config`` needs and return a ready ``Retriever``.

    ``corpus`` may be None when the config names one (``corpus: {path: ...}``, relative to ``base_dir``).
    ``embedder`` overrides the config's embedder (its ``name`` still keys the cache). The returned
    retriever's ``build_stats`` says what was built, loaded from disk, or reused from memory.
    """
    from workbench.embeddings import get_embedder

    t0 = time.perf_counter()
    cfg = RetrievalConfig.parse(config, base_dir=base_dir)
    if corpus is None:
        corpus = cfg.load_corpus(base_dir)
    artifacts = Path(artifacts_dir).expanduser().resolve()
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RetrievalError(
            f"cannot create artifacts folder {artifacts}: {exc}; pass a writable artifacts_dir"
        ) from exc
    emb = embedder if embedder is not None else get_embedder(cfg.embedder)
    stats = BuildStats()
    table = get_chunks(corpus, cfg.chunker, artifacts, stats)
    ek = embedding_key(table.key, emb.name)
    handles: dict[str, EmbeddingHandle] = {}

    def embeddings(need_matrix: bool = True) -> EmbeddingHandle:
        if "h" not in handles:
            handles["h"] = get_embeddings(table, emb, artifacts, stats, need_matrix=need_matrix)
        return handles["h"]

    index = get_index(table, embeddings, ek, cfg.index, artifacts, stats, expected_dim=known_dim(emb))
    keys = {"chunks_key": table.key, "embeddings_key": ek, "index_key": index_key(ek, cfg.index)}
    retriever = Retriever(cfg, corpus, table, index, emb, lambda: embeddings(False), keys, stats)
    stats.build_seconds = time.perf_counter() - t0
    return retriever
