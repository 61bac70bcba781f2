"""Issue 13 item 3: ``llmops diff`` names exactly what changed between two runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import workbench as wb

DATA = Path(__file__).resolve().parent / "data" / "pubmedqa_corpus_small.jsonl"
ROOT = Path(__file__).resolve().parent.parent

SPEC = """
dataset: {{name: qa, path: {qa}, id: qid}}
prompts:
  - name: rag
    user: |-
      Context: {{{{ context }}}}
      {line}
      Question: {{{{ question }}}}
models:
  - {{name: ex, model: local/extractive, params: {{temperature: {temp}}}}}
retrievers:
  - {{name: r, corpus: {{path: corpus.jsonl, id: doc_id, text: text}}, chunker: {{size: {size}, overlap: 8}}, top_k: 3}}
variants:
  - {{name: rag, prompt: rag, model: ex, retriever: r}}
metrics:
  - {{name: recall_at_k, gold: gold_doc}}
  - {{name: rouge1, expected: answer}}
"""


def _write(proj: Path, name: str, **kw: object) -> Path:
    path = proj / name
    path.write_text(SPEC.format(**{"qa": "qa.jsonl", "line": "Answer briefly.", "temp": 0, "size": 64, **kw}))
    return path


def test_diff_names_exactly_the_prompt_line_param_and_chunk_size(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()][:40]
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"doc_id": r["doc_id"], "text": r["text"]}) + "\n" for r in rows)
    )
    cases = [
        {"qid": f"q{i}", "question": r["question"], "gold_doc": r["doc_id"], "answer": r["text"][:80]}
        for i, r in enumerate(rows[:10])
    ]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    ws = wb.open(tmp_path / "ws")
    a = ws.run(_write(tmp_path, "a.yaml"), progress=False)
    b = ws.run(_write(tmp_path, "b.yaml", line="Answer in one sentence.", temp=0.5, size=96), progress=False)
    d = ws.diff(a.run_id, b.run_id)
    assert d.changes == ["rag: prompt", "rag: model.params.temperature", "rag: retriever.chunker.size"]
    prompt = d.variants["changed"]["rag"]["prompt"]
    assert "-Answer briefly." in prompt and "+Answer in one sentence." in prompt
    assert len([x for x in prompt if x[:1] in "+-" and not x.startswith(("+++", "---"))]) == 2
    assert d.variants["changed"]["rag"]["retriever"] == {"chunker.size": [64, 96]}
    assert d.dataset["same"] and {s["metric"] for s in d.scores} == {"recall_at_k", "rouge1"}
    rec = next(s for s in d.scores if s["metric"] == "recall_at_k")
    board_a, board_b = a.leaderboard().iloc[0], b.leaderboard().iloc[0]
    assert abs(rec["mean_a"] - board_a["recall_at_k"]) < 1e-12 and abs(rec["mean_b"] - board_b["recall_at_k"]) < 1e-12
    assert rec["ci_low"] <= rec["diff"] <= rec["ci_high"] and rec["n"] == 10
    # the same spec in another folder is no change at all; a dataset edit is reported row by row
    other = tmp_path / "copy"
    other.mkdir()
    (other / "corpus.jsonl").write_text((tmp_path / "corpus.jsonl").read_text())
    cases[3]["question"] += " (edited)"
    cases.append({**cases[0], "qid": "new"})
    (other / "qa.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases[1:]))
    c = ws.run(_write(other, "a.yaml"), progress=False)
    d2 = ws.diff(a, c)
    assert d2.changes == ["dataset"]
    assert (d2.dataset["added"], d2.dataset["removed"], d2.dataset["changed"]) == (["new"], ["q0"], ["q3"])
    # the CLI face
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "diff", a.run_id, b.run_id, "--json", "-w", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert json.loads(out.stdout)["changes"] == d.changes
    text = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "diff", a.run_id, b.run_id, "-w", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    assert "model.params.temperature: 0 -> 0.5" in text and "retriever.chunker.size: 64 -> 96" in text
