"""Retrieval engine: corpus -> chunks -> embeddings -> FAISS (+ BM25, MMR, filter), cached under an artifacts dir.

Public API::

    from workbench.retrieval import Corpus, RetrievalConfig, build_retriever, retrieval_eval

    corpus = Corpus.from_path("docs.jsonl", id_field="doc_id")
    cfg = RetrievalConfig.parse({"name": "dense256", "chunker": {"size": 256, "overlap": 32}, "index": "hnsw"})
    retriever = build_retriever(corpus, cfg, artifacts_dir=".llmops/artifacts")
    hits = retriever.search(["what is X?"])          # list[list[Hit]]
    board = retrieval_eval(cases_df, [cfg, ...], corpus, artifacts_dir=...)

Modules: ``config`` (what users write), ``corpus``, ``chunking``, ``index`` (content-addressed artifacts
and FAISS), ``retriever`` (search), ``evaluate`` (model-free leaderboard). Names are imported lazily so
``import workbench.retrieval`` stays cheap; heavy libraries (numpy, faiss, bm25s, wordllama) load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.retrieval.chunking import Chunk, chunk_corpus, chunk_document
    from workbench.retrieval.config import (
        ChunkerConfig,
        CorpusSpec,
        EmbedderConfig,
        FlatIndex,
        HNSWIndex,
        HybridConfig,
        IVFFlatIndex,
        IVFPQIndex,
        MMRConfig,
        RetrievalConfig,
    )
    from workbench.retrieval.corpus import Corpus, Document
    from workbench.retrieval.evaluate import retrieval_eval
    from workbench.retrieval.index import BuildStats, clear_memory_cache
    from workbench.retrieval.retriever import Hit, Retriever, build_retriever

_EXPORTS = {
    "BuildStats": "index",
    "Chunk": "chunking",
    "ChunkerConfig": "config",
    "Corpus": "corpus",
    "CorpusSpec": "config",
    "Document": "corpus",
    "EmbedderConfig": "config",
    "FlatIndex": "config",
    "HNSWIndex": "config",
    "Hit": "retriever",
    "HybridConfig": "config",
    "IVFFlatIndex": "config",
    "IVFPQIndex": "config",
    "MMRConfig": "config",
    "RetrievalConfig": "config",
    "Retriever": "retriever",
    "build_retriever": "retriever",
    "chunk_corpus": "chunking",
    "chunk_document": "chunking",
    "clear_memory_cache": "index",
    "retrieval_eval": "evaluate",
}

__all__ = [
    "BuildStats",
    "Chunk",
    "ChunkerConfig",
    "Corpus",
    "CorpusSpec",
    "Document",
    "EmbedderConfig",
    "FlatIndex",
    "HNSWIndex",
    "Hit",
    "HybridConfig",
    "IVFFlatIndex",
    "IVFPQIndex",
    "MMRConfig",
    "RetrievalConfig",
    "Retriever",
    "build_retriever",
    "chunk_corpus",
    "chunk_document",
    "clear_memory_cache",
    "retrieval_eval",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"workbench.retrieval.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
