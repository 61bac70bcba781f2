"""``retrieval_eval``: a leaderboard of retrieval configs against gold ids, with no model calls.

Why a separate, model-free evaluation: tuning chunk size, index and hybrid weights against gold documents
costs seconds and no tokens; only the winners need to go into the (paid) end-to-end grid.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import RetrievalError
from workbench.retrieval.config import RetrievalConfig

if TYPE_CHECKING:
    import pandas as pd

    from workbench.embeddings import Embedder
    from workbench.retrieval.corpus import Corpus

__all__ = ["retrieval_eval"]

METRIC_COLUMNS = ("hit@k", "recall@k", "precision@k", "mrr", "ndcg@k")


def retrieval_eval(
    cases: Sequence[Mapping[str, Any]] | pd.DataFrame,
    configs: Sequence[RetrievalConfig | Mapping[str, Any]] | RetrievalConfig | Mapping[str, Any],
    corpus: Corpus | None = None,
    *,
    artifacts_dir: str | Path,
    question_col: str = "question",
    gold_col: str = "gold",
    k: int | None = None,
    base_dir: str | Path | None = None,
    embedder: Embedder | None = None,
    per_case: bool = False,
) -> pd.DataFrame:
    """Score each retrieval config on ``cases`` (question + gold doc/chunk ids) and return a leaderboard.

    One row per config, best nDCG first: ``config``, ``config_hash``, ``k``, ``n``, hit@k, recall@k,
    precision@k, mrr, ndcg@k (means over cases with gold), ``build_s`` (seconds to build or load the
    retriever), ``query_ms`` (batched search wall time per query), ``embedded_texts`` and ``index_builds``
    (0 when everything came from the cache). ``k`` defaults to each config's ``top_k``; pass ``k`` to
    compare all configs at the same depth. ``per_case=True`` returns one row per (config, case) instead.
    """
    import pandas as pd

    from workbench.metrics.retrieval import gold_ids, ndcg, precision, ranked_ids, recall, reciprocal_rank
    from workbench.metrics.retrieval import hit_rate as hit
    from workbench.retrieval.grid import query_text
    from workbench.retrieval.retriever import build_retriever

    rows = _rows(cases, gold_col)
    cfg_list = [configs] if isinstance(configs, (RetrievalConfig, Mapping)) else list(configs)
    if not cfg_list:
        raise RetrievalError("retrieval_eval needs at least one retrieval config")
    parsed = [RetrievalConfig.parse(c, base_dir=base_dir, where=f"configs[{i}]") for i, c in enumerate(cfg_list)]
    labels = [c.label for c in parsed]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise RetrievalError(f"retrieval_eval: config names must be unique, {dupes} repeat: rename them")

    golds = [gold_ids(r[1]) for r in rows]
    keep = [i for i, g in enumerate(golds) if g]
    if not keep:
        raise RetrievalError(
            f"retrieval_eval: no case has a gold value in column {gold_col!r}: fill it with doc ids "
            "(or chunk ids '<doc>#<i>')"
        )
    corpora: dict[str, Corpus] = {}
    leaderboard = []
    details = []
    for cfg in parsed:
        corp = corpus
        if corp is None:
            if cfg.corpus is None:
                raise RetrievalError(
                    f"retrieval_eval: config {cfg.label!r} has no corpus and none was passed: pass corpus= "
                    "or add corpus: {path: ...} to the config"
                )
            path_key = str(cfg.corpus.resolve(base_dir or cfg.base_dir)) + repr(cfg.corpus)
            if path_key not in corpora:
                corpora[path_key] = cfg.load_corpus(base_dir)
            corp = corpora[path_key]
        _check_gold(golds, keep, corp, gold_col)
        t0 = time.perf_counter()
        retriever = build_retriever(corp, cfg, artifacts_dir, embedder=embedder, base_dir=base_dir)
        build_s = time.perf_counter() - t0
        depth = k or cfg.top_k
        # one rule with `llmops run`: the retriever's `query:` (column or template), else ``question_col``
        questions = {i: query_text(cfg, rows[i][0], question_col) for i in keep}
        empty = [i for i in keep if not questions[i].strip()]
        if empty:
            raise RetrievalError(
                f"retrieval_eval: retriever {cfg.label!r} finds no question text in case(s) {empty[:5]} (column "
                f"{cfg.query or question_col!r}); fill it, or set the retriever's `query:` to another column"
            )
        qs = [questions[i] for i in keep]
        t1 = time.perf_counter()
        results = retriever.search(qs, top_k=depth)
        query_s = time.perf_counter() - t1
        sums = dict.fromkeys(METRIC_COLUMNS, 0.0)
        for i, hits in zip(keep, results, strict=True):
            g = golds[i]
            assert g is not None
            ranked = ranked_ids([h.to_dict() for h in hits], g)
            scores = {
                "hit@k": hit(ranked, g, depth),
                "recall@k": recall(ranked, g, depth),
                "precision@k": precision(ranked, g, depth),
                "mrr": reciprocal_rank(ranked, g, depth),
                "ndcg@k": ndcg(ranked, g, depth),
            }
            for name, value in scores.items():
                sums[name] += value
            if per_case:
                details.append(
                    {
                        "config": cfg.label,
                        "case": i,
                        "question": questions[i],
                        "gold": g,
                        "retrieved": [h.chunk_id for h in hits],
                        **scores,
                    }
                )
        n = len(keep)
        leaderboard.append(
            {
                "config": cfg.label,
                "config_hash": cfg.hash[:12],
                "k": depth,
                "n": n,
                **{name: total / n for name, total in sums.items()},
                "build_s": build_s,
                "query_ms": 1000.0 * query_s / n,
                "embedded_texts": retriever.build_stats.embedded_texts,
                "index_builds": retriever.build_stats.index_builds,
            }
        )
    if per_case:
        return pd.DataFrame(details)
    df = pd.DataFrame(leaderboard)
    return df.sort_values(["ndcg@k", "recall@k"], ascending=False, kind="stable").reset_index(drop=True)


def _rows(cases: Any, gold_col: str) -> list[tuple[Mapping[str, Any], Any]]:
    if hasattr(cases, "to_dict") and hasattr(cases, "columns"):
        if gold_col not in cases.columns:
            raise RetrievalError(
                f"retrieval_eval: cases have no gold column {gold_col!r}; columns are {list(cases.columns)[:20]}: "
                "set `gold:` in the spec (gold_col= in Python)"
            )
        records = cases.to_dict(orient="records")
    else:
        records = list(cases)
    if not records:
        raise RetrievalError("retrieval_eval: no cases given")
    out = []
    for n, rec in enumerate(records):
        if not isinstance(rec, Mapping) or gold_col not in rec:
            raise RetrievalError(
                f"retrieval_eval: case {n} lacks the gold column {gold_col!r}"
                + (f" (has {sorted(rec)[:10]})" if isinstance(rec, Mapping) else "")
                + ": set `gold:` in the spec (gold_col= in Python)"
            )
        out.append((rec, rec[gold_col]))
    return out


def _check_gold(golds: list[list[str] | None], keep: list[int], corpus: Corpus, gold_col: str) -> None:
    """Gold ids that name no document are usually a type or column mix-up: fail if none match, warn if some."""
    missing = []
    total = 0
    for i in keep:
        for g in golds[i] or []:
            total += 1
            doc = g.rsplit("#", 1)[0] if "#" in g and g not in corpus else g
            if doc not in corpus:
                missing.append(g)
    if missing and len(missing) == total:
        raise RetrievalError(
            f"retrieval_eval: none of the gold ids in {gold_col!r} (e.g. {missing[:3]}) is a document id of corpus "
            f"{corpus.source} (e.g. {corpus.ids[:3]}): check the gold column and the corpus id field"
        )
    if missing:
        warnings.warn(
            f"retrieval_eval: {len(missing)} of {total} gold ids are not in the corpus (e.g. {missing[:3]}); "
            "they count as misses",
            stacklevel=3,
        )
