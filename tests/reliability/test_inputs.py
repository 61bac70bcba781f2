"""One rule for the question column (the retriever's ``query:``) in ``llmops run`` and ``llmops retrieval-eval``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "pubmedqa_corpus_small.jsonl"

SPEC = """
dataset: {{name: qa, path: qa.jsonl, id: qid}}
prompts: [{{name: p, user: "{{{{ context }}}} {{{{ ask }}}}"}}]
models: [{{name: base, model: local/extractive}}]
retrievers:
  - {{name: r, corpus: {{path: corpus.jsonl, id: doc_id, text: text}}, chunker: {{size: 64, overlap: 8}}, top_k: 3,
     query: {query}}}
metrics: [{{name: recall_at_k, gold: gold_doc}}]
"""


def _llmops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=300)


def test_run_and_retrieval_eval_read_the_question_from_the_retrievers_query(tmp_path):
    rows = [json.loads(line) for line in DATA.read_text().splitlines()][:12]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"doc_id": r["doc_id"], "text": r["text"]}) + "\n"
                                                   for r in rows))
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps({"qid": f"q{i}", "ask": r["question"],
                                                           "gold_doc": r["doc_id"]}) + "\n"
                                               for i, r in enumerate(rows)))
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(query="ask"))
    ws = str(tmp_path / "ws")
    board = _llmops("retrieval-eval", str(spec), "-w", ws, "--json")
    assert board.returncode == 0, board.stderr
    recall = json.loads(board.stdout)[0]["recall@k"]
    run = _llmops("run", str(spec), "-w", ws, "--json", "--no-progress")
    assert run.returncode == 0, run.stderr
    (row,) = json.loads(run.stdout)["leaderboard"]
    assert abs(row["recall_at_k"] - recall) < 1e-9  # the same questions were searched in both

    spec.write_text(SPEC.format(query="question"))  # a column the dataset does not have
    for args in (("retrieval-eval", str(spec)), ("run", str(spec))):
        out = _llmops(*args, "-w", ws)
        assert out.returncode == 2 and "query: <column>" in out.stderr and "Traceback" not in out.stderr
