"""The offline demo: PubMedQA questions answered by the embedded baseline, no key and no network.

It exists so a fresh machine (or Binder) shows the whole loop in seconds, and so every real model
has a floor to beat. Data: 200 questions of PubMedQA's expert-labelled set (MIT licence, shipped
beside the data as ``PUBMEDQA_LICENSE``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from workbench.runner import Experiment
from workbench.workspace import Workspace

DATASET = "pubmedqa-demo"


def data_path() -> Path:
    """The shipped demo dataset (question, context, long_answer, final_decision, pmid)."""
    return Path(str(resources.files("workbench") / "data" / "pubmedqa_demo.jsonl"))


def demo_spec() -> dict[str, Any]:
    """The demo as a spec dict: the same shape users write in YAML.

    Three variants the extractive baseline can honestly tell apart: the gold abstract pasted in (an upper
    bound), and two retrievers over all 200 abstracts that differ in what they hand over: 128-token chunks,
    hybrid dense + BM25, top 3 (more context to pick an answer sentence from) against 32-token chunks, dense
    only, top 1. (A question-only prompt would be no comparison: with no context the baseline has nothing
    to extract and answers nothing.)
    """
    data = str(data_path())
    return {
        "name": "demo",
        "dataset": {"name": DATASET, "path": data, "id": "pmid"},
        "prompts": [
            {
                "name": "gold-context",
                "system": "Answer the biomedical question from the abstract.",
                "user": "Context: {{ context }}\nQuestion: {{ question }}",
            },
            {
                "name": "rag",
                "system": "Answer the biomedical question from the retrieved passages.",
                "user": "Context: {% for c in chunks %}{{ c.text }}\n{% endfor %}\nQuestion: {{ question }}",
            },
        ],
        "models": [{"name": "extractive", "model": "local/extractive"}],
        "retrievers": [
            {
                "name": "hybrid128",
                "corpus": {"path": data, "id": "pmid", "text": "context"},
                "chunker": {"size": 128, "overlap": 16},
                "embedder": "local",
                "index": {"type": "flat"},
                "hybrid": {"bm25_weight": 0.5},
                "top_k": 3,
            },
            {
                "name": "dense32",
                "corpus": {"path": data, "id": "pmid", "text": "context"},
                "chunker": {"size": 32, "overlap": 4},
                "embedder": "local",
                "index": {"type": "flat"},
                "top_k": 1,
            },
        ],
        "variants": [
            {"name": "gold-context", "prompt": "gold-context", "model": "extractive"},
            {"name": "rag-hybrid128", "prompt": "rag", "model": "extractive", "retriever": "hybrid128"},
            {"name": "rag-dense32", "prompt": "rag", "model": "extractive", "retriever": "dense32"},
        ],
        "metrics": [
            {"name": "token_f1", "expected": "long_answer"},
            {"name": "rouge_l", "expected": "long_answer"},
            {"name": "contains", "expected": "final_decision"},
            {"name": "recall_at_k", "gold": "pmid"},
        ],
        "concurrency": 8,
    }


def demo_experiment(ws: Workspace) -> Experiment:
    return ws.from_spec(demo_spec())
