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
    """The demo as a spec dict: the same shape users write in YAML."""
    return {
        "name": "demo",
        "dataset": {"name": DATASET, "path": str(data_path()), "id": "pmid"},
        "prompts": [
            {
                "name": "with-context",
                "system": "Answer the biomedical question from the abstract.",
                "user": "Context: {{ context }}\nQuestion: {{ question }}",
            },
            {"name": "question-only", "user": "Question: {{ question }}"},
        ],
        "models": [{"name": "extractive", "model": "local/extractive"}],
        "metrics": [
            {"name": "token_f1", "expected": "long_answer"},
            {"name": "rouge_l", "expected": "long_answer"},
            {"name": "contains", "expected": "final_decision"},
        ],
        "concurrency": 8,
    }


def demo_experiment(ws: Workspace) -> Experiment:
    return ws.from_spec(demo_spec())
