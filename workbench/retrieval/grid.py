"""Retrieval inside the workspace: corpus versions in DuckDB, artifacts under ``artifacts/``, one batch per run.

The runner calls :func:`retrieve_for_cases` at plan time, so retrieval problems (missing query
column, empty corpus, bad index settings) surface before any model call, and every case's chunks
are fetched in one batched search per retriever.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import RetrievalError
from workbench.retrieval.config import RetrievalConfig
from workbench.store import Store, dumps

if TYPE_CHECKING:
    import pandas as pd

    from workbench.retrieval.corpus import Corpus


def parse_retrievers(items: Sequence[Mapping[str, Any] | RetrievalConfig], base: Path | None) -> list[RetrievalConfig]:
    """Validate the spec's ``retrievers:`` list; corpus paths become absolute so a resumed run finds them."""
    out = []
    for i, item in enumerate(items):
        cfg = RetrievalConfig.parse(item, base_dir=base, where=f"retrievers[{i}]")
        if not cfg.name:
            raise RetrievalError(f"retrievers[{i}]: needs a `name` (variants are named after it)")
        if cfg.corpus is not None:
            absolute = cfg.corpus.resolve(base)
            cfg = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(update={"path": str(absolute)})})
        out.append(cfg)
    names = [str(c.name) for c in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RetrievalError(f"retriever names must be unique; repeated: {dup}")
    return out


def register_corpus(store: Store, corpus: Corpus, name: str) -> int:
    """Store this corpus version (same content -> same version) so runs can say what they searched."""
    docs = [(d.id, d.text, dumps(dict(d.metadata))) for d in corpus]
    return store.insert_corpus(name, corpus.hash, corpus.source, docs)


def load_corpus(store: Store, name: str, version: int | None = None) -> Corpus:
    """A corpus stored in the workspace, by name (latest version by default)."""
    import json

    from workbench.errors import NotFoundError
    from workbench.retrieval.corpus import Corpus, Document

    rec = store.find_corpus(name, version)
    if rec is None:
        raise NotFoundError(f"no corpus {name!r} in workspace {store.path}; add one with ws.add_corpus(...)")
    docs = [
        Document(doc_id, text, json.loads(meta or "{}")) for doc_id, text, meta in store.corpus_documents(rec["hash"])
    ]
    return Corpus(docs, source=f"workspace:{name}@v{rec['version']}")


def _corpus_for(store: Store, config: RetrievalConfig, corpus: Corpus | None) -> Corpus:
    if corpus is not None:
        return corpus
    if config.corpus is None:
        raise RetrievalError(f"retriever {config.label!r} has no corpus: add corpus: {{path: docs.jsonl}}")
    loaded = config.load_corpus()
    register_corpus(store, loaded, Path(config.corpus.path).stem)
    return loaded


def query_text(config: RetrievalConfig, case: Mapping[str, Any], default: str = "question") -> str:
    """The text a retriever searches with: its ``query:`` (a column or a template), else ``default``.

    The one rule for ``llmops run`` and ``llmops retrieval-eval``; a missing column names the key to set.
    """
    column = config.query or default
    if "{{" in column:
        from jinja2 import TemplateError as JinjaError

        from workbench.prompts import _env, render_bounded, template_vars

        try:
            return render_bounded(_env().from_string(column), template_vars(case))
        except JinjaError as exc:
            raise RetrievalError(
                f"retriever {config.label!r}: query template {column!r} does not render: {exc}; it sees the dataset "
                f"columns {sorted(case)}"
            ) from None
    if column not in case:
        raise RetrievalError(
            f"retriever {config.label!r} searches with column {column!r}, which the dataset lacks; its columns are "
            f"{sorted(case)}. Set `query: <column>` (or a template like '{{{{ title }}}}: {{{{ question }}}}')"
        )
    return str(case[column] or "")


def retrieve_for_cases(
    store: Store,
    config: RetrievalConfig,
    cases: Sequence[tuple[str, Mapping[str, Any]]],
    corpus: Corpus | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Top-k chunks for every case, in one batched search; built indexes come from ``artifacts/``."""
    from workbench.retrieval.retriever import build_retriever

    if not cases:
        return {}
    queries = [query_text(config, case) for _, case in cases]
    retriever = build_retriever(_corpus_for(store, config, corpus), config, store.artifacts)
    hits = retriever.search(queries)
    return {case_id: [h.to_dict() for h in found] for (case_id, _), found in zip(cases, hits)}


def evaluate(
    store: Store,
    cases: Sequence[Mapping[str, Any]] | pd.DataFrame,
    configs: Sequence[RetrievalConfig],
    *,
    question: str = "question",
    gold: str = "gold",
    k: int | None = None,
    corpus: Corpus | None = None,
) -> pd.DataFrame:
    """Retrieval-only leaderboard over the workspace's artifacts: no model call."""
    from workbench.retrieval.evaluate import retrieval_eval

    if corpus is None:
        for cfg in configs:
            if cfg.corpus is not None:
                register_corpus(store, cfg.load_corpus(), Path(cfg.corpus.path).stem)
    return retrieval_eval(
        cases, list(configs), corpus, artifacts_dir=store.artifacts, question_col=question, gold_col=gold, k=k
    )
