"""Content-addressed artifacts (chunk tables, embeddings, FAISS indexes) under ``artifacts_dir``.

Why content-addressed: a grid of retrieval configs shares work. Chunks depend on (corpus texts, chunker),
embeddings on (chunks, embedder name), an index on (embeddings, index build params). Each artifact lives in
a folder named by the hash of exactly those inputs, so 3 chunk sizes x 2 index types embed each chunking
once, and a second run builds nothing::

    artifacts/chunks/<ck>/      chunks.parquet  manifest.json  checksums.sha256
    artifacts/embeddings/<ek>/  embeddings.npy  manifest.json  checksums.sha256
    artifacts/indexes/<ik>/     index.faiss     manifest.json  checksums.sha256

Trust: a folder is written in ``artifacts/tmp/`` and moved into place with one ``os.replace``, so an
interrupted build leaves nothing a later run could pick up. ``checksums.sha256`` (``sha256sum -c`` format)
is checked on every load; a mismatch means the folder is discarded and rebuilt, never trusted. Indexes are
written with ``faiss.write_index`` and arrays with ``np.save(allow_pickle=False)``: no pickle anywhere.
Search-time knobs (``ef_search``, ``nprobe``) are not part of an index's key: one index serves them all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import RetrievalError
from workbench.retrieval.config import canonical_hash

if TYPE_CHECKING:
    import numpy as np

    from workbench.embeddings import Embedder
    from workbench.retrieval.config import ChunkerConfig, FlatIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex
    from workbench.retrieval.corpus import Corpus

    AnyIndexConfig = FlatIndex | HNSWIndex | IVFFlatIndex | IVFPQIndex

__all__ = [
    "ARTIFACT_FORMAT",
    "BuildStats",
    "ChunkTable",
    "EmbeddingHandle",
    "clear_memory_cache",
    "get_chunks",
    "get_embeddings",
    "get_index",
]

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1  # bump when the on-disk layout changes
CHECKSUMS = "checksums.sha256"
MANIFEST = "manifest.json"
_STALE_TMP_SECONDS = 6 * 3600


@dataclass
class BuildStats:
    """What a build did: proves cache reuse (a warm build embeds 0 texts and builds 0 indexes)."""

    embedded_texts: int = 0
    embed_calls: int = 0
    chunkings: int = 0
    index_builds: int = 0
    cache_hits: int = 0
    memory_hits: int = 0
    integrity_failures: int = 0
    build_seconds: float = 0.0
    chunk_seconds: float = 0.0
    embed_seconds: float = 0.0
    index_seconds: float = 0.0

    def add(self, other: BuildStats) -> BuildStats:
        """Accumulate ``other`` into this one (returns self)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# small LRU of loaded artifacts (content-addressed, so never stale)

_MEMORY: OrderedDict[str, Any] = OrderedDict()
_MEMORY_LIMIT = 12
_MEMORY_LOCK = threading.Lock()
_BUILD_LOCKS: dict[str, threading.Lock] = {}


def _memory_get(key: str) -> Any:
    with _MEMORY_LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
    return None


def _memory_put(key: str, value: Any) -> None:
    with _MEMORY_LOCK:
        _MEMORY[key] = value
        _MEMORY.move_to_end(key)
        while len(_MEMORY) > _MEMORY_LIMIT:
            _MEMORY.popitem(last=False)


def _memoized(mem_key: str, stats: BuildStats, load_or_build: Callable[[], Any]) -> Any:
    """In-process cache with one builder per key: concurrent callers wait for the first and share its result."""
    if (cached := _memory_get(mem_key)) is not None:
        stats.memory_hits += 1
        return cached
    with _build_lock(mem_key):
        if (cached := _memory_get(mem_key)) is not None:
            stats.memory_hits += 1
            return cached
        value = load_or_build()
        _memory_put(mem_key, value)
        return value


def clear_memory_cache() -> None:
    """Forget artifacts loaded in this process (files on disk stay): the next build reads from disk."""
    with _MEMORY_LOCK:
        _MEMORY.clear()


def _build_lock(key: str) -> threading.Lock:
    with _MEMORY_LOCK:
        return _BUILD_LOCKS.setdefault(key, threading.Lock())


# ---------------------------------------------------------------------------------------------
# atomic, checksummed folders


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _write_artifact(root: Path, kind: str, key: str, manifest: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """Write files with ``write(tmpdir)``, add manifest + checksums, then move the folder into place atomically."""
    final = root / kind / key
    tmp_root = root / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(tmp_root)
    tmp = tmp_root / f"{kind}-{key[:16]}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        (tmp / MANIFEST).write_text(
            json.dumps({"format": ARTIFACT_FORMAT, "kind": kind, "key": key, **manifest}, indent=2, sort_keys=True)
        )
        lines = [f"{_sha256_file(p)}  {p.name}\n" for p in sorted(tmp.iterdir()) if p.is_file()]
        (tmp / CHECKSUMS).write_text("".join(lines))
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():
                raise
            # Another process finished the same artifact first; theirs is as good as ours.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _clean_stale_tmp(tmp_root: Path) -> None:
    now = time.time()
    for p in tmp_root.iterdir():
        try:
            if now - p.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


def _verified(folder: Path, stats: BuildStats) -> dict[str, Any] | None:
    """The manifest if ``folder`` exists and every checksum matches; otherwise discard the folder, None."""
    if not folder.is_dir():
        return None
    problem = None
    try:
        listed: dict[str, str] = {}
        for line in (folder / CHECKSUMS).read_text().splitlines():
            digest, _, name = line.partition("  ")
            listed[name] = digest
        if MANIFEST not in listed:
            problem = "manifest not checksummed"
        for name, digest in listed.items():
            if problem:
                break
            if _sha256_file(folder / name) != digest:
                problem = f"{name} does not match its checksum"
        manifest = json.loads((folder / MANIFEST).read_text()) if not problem else None
        if manifest is not None and manifest.get("format") != ARTIFACT_FORMAT:
            problem = f"format {manifest.get('format')} != {ARTIFACT_FORMAT}"
    except (OSError, ValueError) as exc:
        problem = f"unreadable ({exc})"
        manifest = None
    if problem:
        log.warning("artifact %s failed its integrity check (%s): rebuilding it", folder, problem)
        stats.integrity_failures += 1
        _discard(folder)
        return None
    return manifest


def _discard(folder: Path) -> None:
    trash = folder.parent.parent / "tmp" / f"discarded-{folder.name[:16]}-{uuid.uuid4().hex[:8]}"
    try:
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# chunks


@dataclass
class ChunkTable:
    """Columns of a chunking (no document metadata: that is joined from the live corpus)."""

    key: str
    chunk_ids: list[str]
    doc_ids: list[str]
    texts: list[str]
    starts: list[int]
    ends: list[int]
    sections: list[str | None]

    def __len__(self) -> int:
        return len(self.chunk_ids)


def chunk_key(corpus: Corpus, chunker: ChunkerConfig) -> str:
    return canonical_hash({"corpus": corpus.text_hash, "chunker": chunker.hash})[:32]


def get_chunks(corpus: Corpus, chunker: ChunkerConfig, artifacts_dir: Path, stats: BuildStats) -> ChunkTable:
    """Chunk ``corpus`` or load the stored chunking for (corpus texts, chunker)."""
    key = chunk_key(corpus, chunker)
    mem_key = f"chunks/{artifacts_dir}/{key}"

    def load_or_build() -> Any:
        folder = artifacts_dir / "chunks" / key
        table = None
        if _verified(folder, stats) is not None:
            table = _read_chunks(folder, key)
            stats.cache_hits += 1
        if table is None:
            from workbench.retrieval.chunking import chunk_corpus

            t0 = time.perf_counter()
            chunks = chunk_corpus(corpus, chunker)
            if not chunks:
                raise RetrievalError(f"chunking corpus {corpus.source} with {chunker!r} produced no chunks")
            table = ChunkTable(
                key,
                [c.chunk_id for c in chunks],
                [c.doc_id for c in chunks],
                [c.text for c in chunks],
                [c.start for c in chunks],
                [c.end for c in chunks],
                [c.section for c in chunks],
            )
            _write_artifact(
                artifacts_dir,
                "chunks",
                key,
                {
                    "corpus_text_hash": corpus.text_hash,
                    "chunker": chunker.model_dump(mode="json"),
                    "n_chunks": len(table),
                },
                lambda d: _write_chunks(d, table),
            )
            stats.chunkings += 1
            stats.chunk_seconds += time.perf_counter() - t0
        return table

    return _memoized(mem_key, stats, load_or_build)


def _write_chunks(folder: Path, t: ChunkTable) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "chunk_id": pa.array(t.chunk_ids, pa.string()),
            "doc_id": pa.array(t.doc_ids, pa.string()),
            "text": pa.array(t.texts, pa.string()),
            "start": pa.array(t.starts, pa.int64()),
            "end": pa.array(t.ends, pa.int64()),
            "section": pa.array(t.sections, pa.string()),
        }
    )
    pq.write_table(table, folder / "chunks.parquet")


def _read_chunks(folder: Path, key: str) -> ChunkTable:
    import pyarrow.parquet as pq

    cols = pq.read_table(folder / "chunks.parquet").to_pydict()
    return ChunkTable(key, cols["chunk_id"], cols["doc_id"], cols["text"], cols["start"], cols["end"], cols["section"])


# ---------------------------------------------------------------------------------------------
# embeddings


class EmbeddingHandle:
    """Stored embeddings of a chunk table; the matrix is read (and checksum-verified) only when needed.

    If the stored file turns out corrupt when it is finally read, ``rebuild`` (set by :func:`get_embeddings`)
    embeds the chunks again instead of trusting it.
    """

    def __init__(
        self,
        key: str,
        folder: Path,
        dim: int,
        count: int,
        matrix: np.ndarray | None = None,
        rebuild: Callable[[], np.ndarray] | None = None,
        stats: BuildStats | None = None,
    ) -> None:
        self.key = key
        self.folder = folder
        self.dim = dim
        self.count = count
        self._matrix = matrix
        self._rebuild = rebuild
        self.stats = stats if stats is not None else BuildStats()  # counts integrity failures found lazily
        self._lock = threading.Lock()

    def matrix(self, verified: bool = False) -> np.ndarray:
        """The (n_chunks, dim) float32 unit vectors (memory-mapped read-only)."""
        if self._matrix is None:
            with self._lock:
                if self._matrix is None:
                    self._matrix = self._load(verified)
        return self._matrix

    def _load(self, verified: bool) -> np.ndarray:
        import numpy as np

        if not verified and _verified(self.folder, self.stats) is None:
            if self._rebuild is None:
                raise RetrievalError(
                    f"stored embeddings in {self.folder} are missing or corrupt: build the retriever again"
                )
            return self._rebuild()
        m = np.load(self.folder / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        if m.shape != (self.count, self.dim):
            raise RetrievalError(
                f"embeddings in {self.folder} have shape {m.shape}, expected {(self.count, self.dim)}: "
                "delete the folder and rebuild"
            )
        return m


def embedding_key(ck: str, embedder_name: str) -> str:
    return canonical_hash({"chunks": ck, "embedder": embedder_name})[:32]


def get_embeddings(
    table: ChunkTable,
    embedder: Embedder,
    artifacts_dir: Path,
    stats: BuildStats,
    need_matrix: bool = True,
) -> EmbeddingHandle:
    """Embed a chunk table (each distinct text once) or find its stored embeddings.

    With ``need_matrix=False`` a stored result is only checked for existence and integrity of its manifest
    (the matrix is verified and read lazily), which keeps warm builds fast.
    """
    key = embedding_key(table.key, embedder.name)
    mem_key = f"emb/{artifacts_dir}/{key}"

    def load_or_build() -> Any:
        folder = artifacts_dir / "embeddings" / key
        handle: EmbeddingHandle | None = None
        manifest = _verified(folder, stats) if need_matrix else _manifest_only(folder)
        if manifest is not None:
            handle = EmbeddingHandle(
                key,
                folder,
                int(manifest["dim"]),
                int(manifest["n"]),
                rebuild=lambda: _embed_table(table, embedder, artifacts_dir, key, stats).matrix(),
                stats=stats,
            )
            _check_dim(embedder, handle.dim, folder)
            stats.cache_hits += 1
            if need_matrix:
                handle.matrix(verified=True)
        if handle is None:
            handle = _embed_table(table, embedder, artifacts_dir, key, stats)
        return handle

    return _memoized(mem_key, stats, load_or_build)


def _manifest_only(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text()) if (folder / CHECKSUMS).exists() else None
    except (OSError, ValueError):
        return None


def known_dim(embedder: Embedder) -> int | None:
    """The embedder's width if knowing it costs nothing (a litellm embedder learns it from its first call)."""
    if getattr(embedder, "_dim", 0) is None:
        return None
    try:
        return int(embedder.dim)
    except RetrievalError:
        return None


def _check_dim(embedder: Embedder, stored: int, folder: Path) -> None:
    dim = known_dim(embedder)
    if dim is not None and dim != stored:
        raise RetrievalError(
            f"stored artifact {folder} holds {stored}-dim vectors but embedder {embedder.name!r} makes {dim}-dim "
            "vectors: the same embedder name must always give the same width. Delete that folder or give the "
            "embedder a distinct name (e.g. set dimensions:)"
        )


def _embed_table(
    table: ChunkTable, embedder: Embedder, artifacts_dir: Path, key: str, stats: BuildStats
) -> EmbeddingHandle:
    import numpy as np

    from workbench.embeddings import EmbeddingInputError

    t0 = time.perf_counter()
    unique = list(dict.fromkeys(table.texts))
    try:
        vectors = embedder.embed(unique)
    except EmbeddingInputError as exc:
        pos = {unique[i]: msg for i, msg in exc.failures.items()}
        bad = [cid for cid, text in zip(table.chunk_ids, table.texts, strict=True) if text in pos]
        raise RetrievalError(
            f"embedder {embedder.name!r} rejected {len(bad)} chunk(s) as too long, e.g. {bad[:5]}: use a smaller "
            f"chunker size (or unit: tokens) or an embedding model with a longer input limit. ({exc})"
        ) from exc
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(unique):
        raise RetrievalError(
            f"embedder {embedder.name!r} returned shape {vectors.shape} for {len(unique)} texts; expected (n, dim)"
        )
    if len(unique) != len(table.texts):
        where = {t: i for i, t in enumerate(unique)}
        vectors = vectors[[where[t] for t in table.texts]]
    stats.embedded_texts += len(unique)
    stats.embed_calls += 1
    stats.embed_seconds += time.perf_counter() - t0
    dim = int(vectors.shape[1])
    folder = _write_artifact(
        artifacts_dir,
        "embeddings",
        key,
        {"chunks_key": table.key, "embedder": embedder.name, "dim": dim, "n": len(table), "dtype": "float32"},
        lambda d: np.save(d / "embeddings.npy", vectors, allow_pickle=False),
    )
    return EmbeddingHandle(key, folder, dim, len(table), vectors)


# ---------------------------------------------------------------------------------------------
# FAISS indexes


def index_key(ek: str, cfg: AnyIndexConfig) -> str:
    return canonical_hash({"embeddings": ek, "index": cfg.build_params()})[:32]


def get_index(
    table: ChunkTable,
    embeddings: Callable[[], EmbeddingHandle],
    ek: str,
    cfg: AnyIndexConfig,
    artifacts_dir: Path,
    stats: BuildStats,
    expected_dim: int | None = None,
) -> Any:
    """Load the stored FAISS index for (embeddings, build params) or build and store it."""
    key = index_key(ek, cfg)
    mem_key = f"index/{artifacts_dir}/{key}"

    def load_or_build() -> Any:
        import faiss

        folder = artifacts_dir / "indexes" / key
        index = None
        manifest = _verified(folder, stats)
        if manifest is not None:
            try:
                index = faiss.read_index(str(folder / "index.faiss"))
            except RuntimeError as exc:
                log.warning("FAISS could not read %s (%s): rebuilding", folder, exc)
                stats.integrity_failures += 1
                _discard(folder)
            if index is not None and index.ntotal != len(table):
                log.warning("index %s has %d vectors for %d chunks: rebuilding", folder, index.ntotal, len(table))
                stats.integrity_failures += 1
                _discard(folder)
                index = None
            if index is not None:
                if expected_dim is not None and index.d != expected_dim:
                    raise RetrievalError(
                        f"stored index {folder} has {index.d}-dim vectors but the embedder makes {expected_dim}-dim "
                        "vectors: delete that folder or give the embedder a distinct name"
                    )
                stats.cache_hits += 1
        if index is None:
            handle = embeddings()
            t0 = time.perf_counter()
            index, effective = build_faiss_index(handle.matrix(), cfg)
            stats.index_builds += 1
            stats.index_seconds += time.perf_counter() - t0
            _write_artifact(
                artifacts_dir,
                "indexes",
                key,
                {
                    "embeddings_key": ek,
                    "index": cfg.build_params(),
                    "effective": effective,
                    "dim": int(index.d),
                    "n": int(index.ntotal),
                    "faiss": faiss.__version__,
                },
                lambda d: faiss.write_index(index, str(d / "index.faiss")),
            )
        return index

    return _memoized(mem_key, stats, load_or_build)


def build_faiss_index(x: np.ndarray, cfg: AnyIndexConfig) -> tuple[Any, dict[str, Any]]:
    """Build the FAISS index ``cfg`` describes over unit vectors ``x`` (inner product = cosine)."""
    import faiss
    import numpy as np

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    effective: dict[str, Any] = {}
    index: Any
    if cfg.type == "flat":
        index = faiss.IndexFlatIP(d)
    elif cfg.type == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.ef_construction
    elif cfg.type in ("ivf_flat", "ivf_pq"):
        nlist = cfg.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))
        if nlist > n:
            raise RetrievalError(
                f"index.nlist ({nlist}) exceeds the number of chunks ({n}): lower it or omit it for ~4*sqrt(n)"
            )
        effective["nlist"] = nlist
        quantizer = faiss.IndexFlatIP(d)
        if cfg.type == "ivf_flat":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            if d % cfg.m:
                raise RetrievalError(
                    f"index.m ({cfg.m}) must divide the embedding width ({d}): try m: {_divisor_hint(d, cfg.m)}"
                )
            if n < 2**cfg.nbits:
                raise RetrievalError(
                    f"ivf_pq with index.nbits={cfg.nbits} needs at least {2**cfg.nbits} chunks to train, the corpus "
                    f"has {n}: lower nbits or use flat/hnsw"
                )
            index = faiss.IndexIVFPQ(quantizer, d, nlist, cfg.m, cfg.nbits, faiss.METRIC_INNER_PRODUCT)
        # faiss prints a warning per sub-quantizer when training data is thin; say it once, through logging
        index.cp.min_points_per_centroid = 1
        if cfg.type == "ivf_pq":
            index.pq.cp.min_points_per_centroid = 1
        needed = 39 * max(nlist, 2**cfg.nbits if cfg.type == "ivf_pq" else 0)
        if n < needed:
            log.warning(
                "%s: training on %d vectors, fewer than the ~%d FAISS recommends for nlist=%d%s; recall may suffer",
                cfg.type,
                n,
                needed,
                nlist,
                f", nbits={cfg.nbits}" if cfg.type == "ivf_pq" else "",
            )
        index.train(x)  # faiss' Python wrapper keeps ``quantizer`` alive as long as ``index``
    else:  # pragma: no cover - the config model only allows these types
        raise RetrievalError(f"unknown index type {cfg.type!r}")
    index.add(x)
    return index, effective


def _divisor_hint(d: int, m: int) -> int:
    divisors = [k for k in range(1, d + 1) if d % k == 0]
    return min(divisors, key=lambda k: abs(k - m))
