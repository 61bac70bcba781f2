"""Retrieval metrics: rank metrics over retrieved ids (binary relevance) and passage overlap over texts.

Two layers:

- plain functions over ``(ranked ids, gold ids, k)``: :func:`hit_rate`, :func:`recall`, :func:`precision`,
  :func:`reciprocal_rank`, :func:`ndcg` (cross-checked against ranx in the tests);
- registered metrics ``hit_at_k``, ``recall_at_k``, ``precision_at_k``, ``mrr``, ``ndcg_at_k`` and
  ``passage_overlap`` taking ``retrieved`` (the cell's hit dicts) and ``gold`` (the dataset column named by
  the ``gold`` option).

Definitions (binary relevance, ``@k`` = the first ``k`` *distinct* ids; ``k`` defaults to all retrieved):

- ids: gold ids are matched against ``doc_id`` of each hit, or against ``chunk_id`` when every gold id
  contains ``#`` (chunk ids are ``<doc_id>#<i>``); override with ``match: doc|chunk``. Several chunks of one
  document count once, at the rank of the best one (duplicates are dropped before cutting at k);
- hit@k = 1 if any gold id is in the top k; recall@k = |gold in top k| / |gold|;
  precision@k = |gold in top k| / k (ranx's definition: missing slots count as misses);
  MRR = 1 / rank of the first gold id (0 if none, within k when k is given);
  nDCG@k = DCG / ideal DCG with gain 1 and discount 1/log2(rank+1).
- passage_overlap: for gold *text*, the share of the gold passage's word tokens (lower-cased ``\\w+``, counted
  with multiplicity) found in a retrieved chunk: max over the top-k chunks (``combine: max``) or over their
  concatenation (``combine: union``, for passages split across chunks); with several gold passages, the
  mean over passages. 1.0 = the passage was retrieved verbatim; it is a recall, so long chunks are not
  penalised (pair it with precision_at_k or chunk size when comparing configs).

``gold`` may be one id, a list/tuple/set/array of ids, an integer id, or a JSON list string (``'["a","b"]'``).
Missing gold (None, NaN, empty) -> None (not applicable). ``retrieved`` None (no retriever in the variant)
-> None.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from workbench.errors import MetricError
from workbench.metrics.registry import Score, register

__all__ = [
    "gold_ids",
    "hit_rate",
    "ndcg",
    "passage_overlap",
    "precision",
    "ranked_ids",
    "recall",
    "reciprocal_rank",
    "token_recall",
]

_WORD = re.compile(r"\w+", re.UNICODE)


# ---------------------------------------------------------------------------------------------
# plain functions over ids


def _top(ranked: Sequence[str], k: int | None) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for r in ranked:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out if k is None else out[:k]


def _check_k(k: int | None) -> None:
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise MetricError(f"k must be a positive integer, got {k!r}")


def hit_rate(ranked: Sequence[str], gold: Iterable[str], k: int | None = None) -> float:
    """1.0 if any gold id is among the first k distinct ranked ids, else 0.0."""
    _check_k(k)
    g = set(gold)
    return 1.0 if any(r in g for r in _top(ranked, k)) else 0.0


def recall(ranked: Sequence[str], gold: Iterable[str], k: int | None = None) -> float:
    """Share of the gold ids found among the first k distinct ranked ids."""
    _check_k(k)
    g = set(gold)
    if not g:
        return 0.0
    return sum(1 for r in _top(ranked, k) if r in g) / len(g)


def precision(ranked: Sequence[str], gold: Iterable[str], k: int | None = None) -> float:
    """Gold ids among the first k distinct ranked ids, divided by k (by the list length when k is None)."""
    _check_k(k)
    g = set(gold)
    top = _top(ranked, k)
    denom = k if k is not None else len(top)
    if denom == 0:
        return 0.0
    return sum(1 for r in top if r in g) / denom


def reciprocal_rank(ranked: Sequence[str], gold: Iterable[str], k: int | None = None) -> float:
    """1 / rank of the first gold id among the first k distinct ranked ids (0.0 if none)."""
    _check_k(k)
    g = set(gold)
    for i, r in enumerate(_top(ranked, k), start=1):
        if r in g:
            return 1.0 / i
    return 0.0


def ndcg(ranked: Sequence[str], gold: Iterable[str], k: int | None = None) -> float:
    """Binary-relevance nDCG over the first k distinct ranked ids (ideal: all gold ids first)."""
    _check_k(k)
    g = set(gold)
    if not g:
        return 0.0
    top = _top(ranked, k)
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(top, start=1) if r in g)
    n_ideal = len(g) if k is None else min(len(g), k)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, n_ideal + 1))
    return dcg / idcg if idcg > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# adapting cells to ids


def gold_ids(gold: Any) -> list[str] | None:
    """Normalise a gold column value to a list of string ids (None when missing)."""
    if gold is None:
        return None
    if isinstance(gold, float):
        if math.isnan(gold):
            return None
        gold = int(gold) if gold.is_integer() else gold
    if isinstance(gold, bool):
        raise MetricError(f"gold must be an id or a list of ids, got the boolean {gold!r}")
    if isinstance(gold, int):
        return [str(gold)]
    if isinstance(gold, str):
        text = gold.strip()
        if not text:
            return None
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return gold_ids(parsed)
        return [text]
    if hasattr(gold, "tolist") and not isinstance(gold, (str, bytes)):
        gold = gold.tolist()
    if isinstance(gold, (list, tuple, set, frozenset)):
        out: list[str] = []
        for g in gold:
            ids = gold_ids(g)
            if ids:
                out.extend(ids)
        return list(dict.fromkeys(out)) or None
    raise MetricError(f"gold must be an id or a list of ids, got {type(gold).__name__} {str(gold)[:60]!r}")


def ranked_ids(retrieved: Sequence[Mapping[str, Any]], gold: Sequence[str], match: str = "auto") -> list[str]:
    """The ids to compare with ``gold``: chunk ids when every gold id contains '#' (or match=chunk), else doc ids."""
    if match not in ("auto", "doc", "chunk"):
        raise MetricError(f"match must be 'auto', 'doc' or 'chunk', got {match!r}")
    use_chunk = match == "chunk" or (match == "auto" and bool(gold) and all("#" in g for g in gold))
    field = "chunk_id" if use_chunk else "doc_id"
    out = []
    for i, hit in enumerate(retrieved):
        if not isinstance(hit, Mapping) or field not in hit:
            raise MetricError(
                f"retrieved item {i} has no {field!r}: expected hit dicts (chunk_id, doc_id, text, score)"
            )
        out.append(str(hit[field]))
    return out


def _rank_metric(fn: Any, retrieved: Any, gold: Any, k: int | None, match: str) -> float | None:
    if retrieved is None:
        return None
    ids = gold_ids(gold)
    if not ids:
        return None
    return fn(ranked_ids(retrieved, ids, match), ids, k)


def hit_at_k(
    retrieved: list[dict[str, Any]] | None, gold: Any, k: int | None = None, match: str = "auto"
) -> float | None:
    """1 if a gold doc/chunk id is in the top-k retrieved (distinct ids), else 0."""
    return _rank_metric(hit_rate, retrieved, gold, k, match)


def recall_at_k(
    retrieved: list[dict[str, Any]] | None, gold: Any, k: int | None = None, match: str = "auto"
) -> float | None:
    """Share of gold doc/chunk ids found in the top-k retrieved."""
    return _rank_metric(recall, retrieved, gold, k, match)


def precision_at_k(
    retrieved: list[dict[str, Any]] | None, gold: Any, k: int | None = None, match: str = "auto"
) -> float | None:
    """Gold doc/chunk ids in the top-k retrieved, divided by k."""
    return _rank_metric(precision, retrieved, gold, k, match)


def mrr(retrieved: list[dict[str, Any]] | None, gold: Any, k: int | None = None, match: str = "auto") -> float | None:
    """Reciprocal rank of the first retrieved gold doc/chunk id."""
    return _rank_metric(reciprocal_rank, retrieved, gold, k, match)


def ndcg_at_k(
    retrieved: list[dict[str, Any]] | None, gold: Any, k: int | None = None, match: str = "auto"
) -> float | None:
    """Binary-relevance nDCG of the top-k retrieved against gold doc/chunk ids."""
    return _rank_metric(ndcg, retrieved, gold, k, match)


# ---------------------------------------------------------------------------------------------
# passage overlap


def token_recall(passage: str, text: str) -> float:
    """Share of ``passage``'s lower-cased word tokens (with multiplicity) that also occur in ``text``."""
    want = Counter(t.lower() for t in _WORD.findall(passage))
    total = sum(want.values())
    if total == 0:
        return 0.0
    have = Counter(t.lower() for t in _WORD.findall(text))
    return sum(min(c, have[t]) for t, c in want.items()) / total


def passage_overlap(
    retrieved: list[dict[str, Any]] | None, gold: Any, k: int | None = None, combine: str = "max"
) -> Score | None:
    """How much of the gold passage's text the top-k retrieved chunks contain (token recall, 0..1)."""
    if retrieved is None or gold is None or (isinstance(gold, float) and math.isnan(gold)):
        return None
    if combine not in ("max", "union"):
        raise MetricError(f"passage_overlap: combine must be 'max' or 'union', got {combine!r}")
    _check_k(k)
    passages = [gold] if isinstance(gold, str) else list(gold) if isinstance(gold, (list, tuple)) else None
    if passages is None or not all(isinstance(p, str) for p in passages):
        raise MetricError(f"passage_overlap needs gold passage text (or a list of texts), got {type(gold).__name__}")
    passages = [p for p in passages if p.strip()]
    if not passages:
        return None
    hits = list(retrieved)[:k] if k is not None else list(retrieved)
    texts = [str(h.get("text", "")) if isinstance(h, Mapping) else "" for h in hits]
    per_passage = []
    best_rank = None
    for passage in passages:
        if combine == "union":
            per_passage.append(token_recall(passage, "\n".join(texts)))
            continue
        scores = [token_recall(passage, t) for t in texts]
        best = max(scores, default=0.0)
        if scores and best_rank is None:
            best_rank = scores.index(best) + 1
        per_passage.append(best)
    value = sum(per_passage) / len(per_passage)
    detail: dict[str, Any] = {"combine": combine, "k": len(hits)}
    if best_rank is not None:
        detail["best_rank"] = best_rank
    return Score(value, detail)


register(hit_at_k, "hit_at_k")
register(recall_at_k, "recall_at_k")
register(precision_at_k, "precision_at_k")
register(mrr, "mrr")
register(ndcg_at_k, "ndcg_at_k")
register(passage_overlap, "passage_overlap")
