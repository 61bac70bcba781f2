"""Retrieval metrics: hand-checked cases, then cross-checked against ranx on random and real rankings."""

from __future__ import annotations

import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import MetricError
from workbench.metrics import registry
from workbench.metrics.registry import BoundMetric, CellView, Score
from workbench.metrics.retrieval import (
    gold_ids,
    hit_at_k,
    hit_rate,
    mrr,
    ndcg,
    ndcg_at_k,
    passage_overlap,
    precision,
    precision_at_k,
    recall,
    recall_at_k,
    reciprocal_rank,
    token_recall,
)

DATA = Path(__file__).resolve().parent / "data" / "pubmedqa_corpus_small.jsonl"
KS = (1, 2, 3, 5, 10, 20)
OURS = {"hit_rate": hit_rate, "recall": recall, "precision": precision, "mrr": reciprocal_rank, "ndcg": ndcg}


def _ranx_scores(
    gold: dict[str, list[str]], runs: dict[str, list[str]], ks: tuple[int, ...]
) -> dict[tuple[str, int], dict[str, float]]:
    """Per-query ranx scores {(metric, k): {query: value}} (scores strictly decreasing with rank: no ties)."""
    from ranx import Qrels, Run, evaluate

    qrels = Qrels({q: {d: 1 for d in g} for q, g in gold.items()})
    run = Run({q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in runs.items()})
    names = [f"{m}@{k}" for m in OURS for k in ks]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter
        evaluate(qrels, run, names, return_mean=False, save_results_in_run=True)
    return {(m, k): {q: float(v) for q, v in run.scores[f"{m}@{k}"].items()} for m in OURS for k in ks}


def test_hand_checked_values() -> None:
    ranked = ["x", "a", "y", "b", "z"]
    gold = ["a", "b", "c"]
    assert hit_rate(ranked, gold, 1) == 0.0 and hit_rate(ranked, gold, 2) == 1.0
    assert recall(ranked, gold, 4) == pytest.approx(2 / 3)
    assert precision(ranked, gold, 4) == 0.5
    assert precision(ranked, gold, 10) == 0.2, "missing slots count as misses (ranx)"
    assert precision(ranked, gold) == 0.4
    assert reciprocal_rank(ranked, gold) == 0.5 and reciprocal_rank(ranked, gold, 1) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg(ranked, gold, 5) == pytest.approx(dcg / idcg)
    assert ndcg(["a"], ["a"], 5) == 1.0
    # duplicates (several chunks of one document) count once, at their best rank
    assert recall(["a", "a", "b"], ["a", "b"], 2) == 1.0
    assert precision(["a", "a", "x"], ["a"], 2) == 0.5
    with pytest.raises(MetricError, match="positive integer"):
        recall(ranked, gold, 0)


def test_gold_parsing() -> None:
    assert gold_ids("21645374") == ["21645374"]
    assert gold_ids(21645374) == ["21645374"]
    assert gold_ids(21645374.0) == ["21645374"]
    assert gold_ids(["a", "b", "a"]) == ["a", "b"]
    assert gold_ids(np.array([1, 2])) == ["1", "2"]
    assert gold_ids('["a", "b#2"]') == ["a", "b#2"]
    assert gold_ids(None) is None and gold_ids(float("nan")) is None and gold_ids("  ") is None and gold_ids([]) is None
    with pytest.raises(MetricError):
        gold_ids({"a": 1})


def test_registered_metrics_match_doc_or_chunk_ids() -> None:
    hits = [
        {"chunk_id": "d1#0", "doc_id": "d1", "text": "t", "score": 0.9},
        {"chunk_id": "d1#1", "doc_id": "d1", "text": "t", "score": 0.8},
        {"chunk_id": "d2#3", "doc_id": "d2", "text": "t", "score": 0.7},
    ]
    assert recall_at_k(hits, ["d2", "d9"], k=2) == 0.5  # doc ids, duplicates of d1 collapsed
    assert recall_at_k(hits, ["d2#3"], k=2) == 0.0  # chunk ids: d2#3 is third
    assert recall_at_k(hits, ["d2#3"], k=3) == 1.0
    assert recall_at_k(hits, ["d2#3"], match="doc") == 0.0
    assert mrr(hits, "d2") == 0.5 and mrr(hits, "d1#1") == 0.5
    assert hit_at_k(hits, 7) == 0.0
    assert precision_at_k(hits, "d1", k=2) == 0.5
    assert ndcg_at_k(hits, "d1") == 1.0
    assert hit_at_k(None, "d1") is None and hit_at_k(hits, None) is None
    with pytest.raises(MetricError, match="match must be"):
        hit_at_k(hits, "d1", match="fuzzy")
    with pytest.raises(MetricError, match="has no 'doc_id'"):
        hit_at_k([{"text": "x"}], "d1")


def test_metrics_are_in_the_registry_and_bind_like_any_metric() -> None:
    for name in ("hit_at_k", "recall_at_k", "precision_at_k", "mrr", "ndcg_at_k", "passage_overlap"):
        d = registry._REGISTRY[name]
        assert d.injected == ("retrieved",) and d.columns == ("gold",)
        assert "k" in d.optional_options and d.description
    d = registry._REGISTRY["recall_at_k"]
    bound = BoundMetric(d, {"gold": "pmid", "k": 1}, "recall@1")
    cell = CellView(
        case={"pmid": 42, "question": "q"},
        output="answer",
        retrieved=[{"chunk_id": "42#0", "doc_id": "42", "text": "x", "score": 1.0}],
    )
    assert d.fn(**bound.call_kwargs(cell)) == 1.0


def test_passage_overlap() -> None:
    gold = "Statins lower LDL cholesterol in adults"
    hits = [
        {"chunk_id": "a#0", "doc_id": "a", "text": "Unrelated text about plants.", "score": 0.9},
        {"chunk_id": "b#0", "doc_id": "b", "text": "In adults, statins lower LDL cholesterol levels.", "score": 0.8},
    ]
    s = passage_overlap(hits, gold)
    assert isinstance(s, Score) and s.value == 1.0 and s.detail and s.detail["best_rank"] == 2
    assert passage_overlap(hits, gold, k=1).value == 0.0  # type: ignore[union-attr]
    split = [
        {"chunk_id": "c#0", "doc_id": "c", "text": "Statins lower LDL", "score": 0.9},
        {"chunk_id": "c#1", "doc_id": "c", "text": "cholesterol in adults", "score": 0.8},
    ]
    assert passage_overlap(split, gold).value == pytest.approx(0.5)  # type: ignore[union-attr]
    assert passage_overlap(split, gold, combine="union").value == 1.0  # type: ignore[union-attr]
    assert token_recall("the the cat", "the cat") == pytest.approx(2 / 3), "counted with multiplicity"
    assert passage_overlap(None, gold) is None and passage_overlap(hits, None) is None
    with pytest.raises(MetricError, match="gold passage text"):
        passage_overlap(hits, 42)


def test_matches_ranx_on_many_random_rankings() -> None:
    rng = random.Random(7)
    universe = [f"d{i}" for i in range(60)]
    gold: dict[str, list[str]] = {}
    runs: dict[str, list[str]] = {}
    for q in range(400):
        gold[f"q{q}"] = rng.sample(universe, rng.randint(1, 6))
        runs[f"q{q}"] = rng.sample(universe, rng.randint(1, 30))
    checked = 0
    ref = _ranx_scores(gold, runs, KS)
    for k in KS:
        for name, fn in OURS.items():
            for q in gold:
                assert fn(runs[q], gold[q], k) == pytest.approx(ref[name, k][q], abs=1e-9), (name, k, q)
                checked += 1
    assert checked == len(KS) * len(OURS) * 400
    # the registered metrics on hit dicts with repeated doc ids equal ranx on the de-duplicated doc ranking
    hits_q = {
        q: [{"chunk_id": f"{d}#{j}", "doc_id": d} for d in r for j in range(rng.randint(1, 3))] for q, r in runs.items()
    }
    for q in gold:
        assert recall_at_k(hits_q[q], gold[q], k=5) == pytest.approx(ref["recall", 5][q], abs=1e-9)
        assert ndcg_at_k(hits_q[q], gold[q], k=5) == pytest.approx(ref["ndcg", 5][q], abs=1e-9)


def test_matches_ranx_on_real_retrieval_output(tmp_path: Path) -> None:
    from workbench.retrieval import Corpus, build_retriever

    corpus = Corpus.from_path(DATA, id_field="doc_id")
    r = build_retriever(corpus, {"chunker": {"size": 48, "overlap": 8}, "top_k": 15}, tmp_path)
    qs = [(d.id, d.metadata["question"]) for d in corpus]
    results = r.search([q for _, q in qs])
    # doc-level: gold = the abstract; several chunks of one abstract appear in the hits
    gold = {f"q{i}": [doc_id] for i, (doc_id, _) in enumerate(qs)}
    runs: dict[str, list[str]] = {}
    dicts = {}
    for i, hits in enumerate(results):
        dicts[f"q{i}"] = [h.to_dict() for h in hits]
        runs[f"q{i}"] = list(dict.fromkeys(h.doc_id for h in hits))
    assert any(len(runs[q]) < len(dicts[q]) for q in runs), "real output has repeated documents"
    registered = {
        "hit_rate": hit_at_k,
        "recall": recall_at_k,
        "precision": precision_at_k,
        "mrr": mrr,
        "ndcg": ndcg_at_k,
    }
    ref = _ranx_scores(gold, runs, (1, 3, 5, 10))
    for k in (1, 3, 5, 10):
        for name, fn in registered.items():
            ours = [fn(dicts[q], gold[q], k=k) for q in gold]
            assert ours == pytest.approx([ref[name, k][q] for q in gold], abs=1e-9), (name, k)
    # chunk-level: gold = every chunk of the abstract (ids contain '#')
    by_doc: dict[str, list[str]] = {}
    for cid, did in zip(r.table.chunk_ids, r.table.doc_ids, strict=True):
        by_doc.setdefault(did, []).append(cid)
    cgold = {q: by_doc[g[0]] for q, g in gold.items()}
    cruns = {q: [h["chunk_id"] for h in dicts[q]] for q in gold}
    ref = _ranx_scores(cgold, cruns, (10,))
    for name, fn in registered.items():
        ours = [fn(dicts[q], cgold[q], k=10) for q in gold]
        assert ours == pytest.approx([ref[name, 10][q] for q in gold], abs=1e-9), name
