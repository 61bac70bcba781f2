"""RAG settings as grid dimensions: retrievers inside experiments, the spec and the CLI, on real PubMedQA text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import workbench as wb
from workbench.errors import RetrievalError, SpecError

DATA = Path(__file__).resolve().parent / "data" / "pubmedqa_corpus_small.jsonl"


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    (tmp_path / "corpus.jsonl").write_text("".join(
        json.dumps({"doc_id": r["doc_id"], "text": r["text"], "year": r["year"]}) + "\n" for r in rows))
    (tmp_path / "qa.jsonl").write_text("".join(
        json.dumps({"qid": f"q{i}", "question": r["question"], "gold_doc": r["doc_id"]}) + "\n"
        for i, r in enumerate(rows[:24])))
    return tmp_path


SPEC = """
dataset: {{name: qa, path: qa.jsonl, id: qid}}
prompts:
  - {{name: rag, user: "Context: {{{{ context }}}}\\nChunks: {{{{ chunks | length }}}}\\nQuestion: {{{{ question }}}}"}}
  - {{name: bare, user: "Question: {{{{ question }}}}"}}
models:
  - {{name: m, model: openai/test-model, api_base: "{base}"}}
retrievers:
  - {{name: small, corpus: {{path: corpus.jsonl, id: doc_id, text: text}}, chunker: {{size: 64, overlap: 8}}, top_k: 3}}
  - {{name: big, corpus: {{path: corpus.jsonl, id: doc_id, text: text}}, chunker: {{size: 256, overlap: 32}},
     index: {{type: hnsw}}, top_k: 3}}
variants:
  - {{prompt: rag, model: m, retriever: small}}
  - {{prompt: rag, model: m, retriever: big}}
  - {{prompt: bare, model: m}}
metrics:
  - {{name: recall_at_k, gold: gold_doc}}
  - {{name: mrr, gold: gold_doc}}
"""


def test_retrievers_are_grid_dimensions(corpus_dir, fake_llm):
    (corpus_dir / "spec.yaml").write_text(SPEC.format(base=fake_llm.base_url))
    ws = wb.open(corpus_dir / "ws")
    run = ws.run(corpus_dir / "spec.yaml", progress=False)
    res = run.results()
    assert set(res["variant"]) == {"rag/m/small", "rag/m/big", "bare/m"}
    rag = res[res.variant == "rag/m/small"].iloc[0]
    # the template saw the joined chunk texts and the chunk list, and the model received that prompt
    chunks = rag["retrieved"]
    assert len(chunks) == 3 and all({"chunk_id", "doc_id", "text", "score"} <= set(c) for c in chunks)
    assert rag["prompt"].startswith("Context: " + "\n\n".join(c["text"] for c in chunks) + "\nChunks: 3\n")
    assert rag["output"].startswith("echo: Context: " + chunks[0]["text"][:50])
    assert chunks[0]["score"] >= chunks[1]["score"] >= chunks[2]["score"]
    # small chunks: a 64-token chunk of an abstract is not the whole abstract
    assert all(len(c["text"].split()) <= 64 for c in chunks)
    bare = res[res.variant == "bare/m"]
    assert bare["retrieved"].isna().all() and bare["recall_at_k"].isna().all()
    # recall computed from the stored chunks equals the metric column
    gold = {r["qid"]: r["gold_doc"] for r in map(json.loads, (corpus_dir / "qa.jsonl").read_text().splitlines())}
    for row in res[res.variant != "bare/m"].itertuples():
        assert row.recall_at_k == float(gold[row.case_id] in {c["doc_id"] for c in row.retrieved})
    board = run.leaderboard().set_index("variant")
    assert board.loc["rag/m/small", "recall_at_k"] > 0.5  # the questions were written from these abstracts
    # corpus version recorded in the workspace
    corpora = ws.corpora()
    assert corpora["n_docs"].tolist() == [150]


def test_second_run_builds_nothing(corpus_dir, fake_llm):
    from workbench.retrieval import clear_memory_cache

    (corpus_dir / "spec.yaml").write_text(SPEC.format(base=fake_llm.base_url))
    ws = wb.open(corpus_dir / "ws")
    ws.run(corpus_dir / "spec.yaml", progress=False)
    before = fake_llm.stats()["requests"]
    artifacts = sorted(p.relative_to(ws.path) for p in (ws.path / "artifacts").rglob("*") if p.is_file())
    clear_memory_cache()  # a new process: only the files under artifacts/ remain
    again = ws.run(corpus_dir / "spec.yaml", progress=False)
    assert fake_llm.stats()["requests"] == before and again.last.model_calls == 0
    assert sorted(p.relative_to(ws.path) for p in (ws.path / "artifacts").rglob("*") if p.is_file()) == artifacts
    board = ws.retrieval_eval("qa", [{"name": "small", "corpus": {"path": str(corpus_dir / "corpus.jsonl"),
                                                                  "id": "doc_id", "text": "text"},
                                      "chunker": {"size": 64, "overlap": 8}, "top_k": 3}], gold="gold_doc")
    assert int(board["embedded_texts"].iloc[0]) == 0 and int(board["index_builds"].iloc[0]) == 0


def test_retrieval_errors_come_before_any_model_call(corpus_dir, fake_llm):
    bad_query = SPEC.format(base=fake_llm.base_url).replace("top_k: 3}", "top_k: 3, query: title}", 1)
    (corpus_dir / "spec.yaml").write_text(bad_query)
    ws = wb.open(corpus_dir / "ws")
    with pytest.raises(RetrievalError, match="column 'title'"):
        ws.run(corpus_dir / "spec.yaml", progress=False)
    overlap = SPEC.format(base=fake_llm.base_url).replace("size: 64, overlap: 8", "size: 64, overlap: 64")
    (corpus_dir / "spec.yaml").write_text(overlap)
    with pytest.raises(RetrievalError, match="overlap"):
        ws.run(corpus_dir / "spec.yaml", progress=False)
    unknown = SPEC.format(base=fake_llm.base_url).replace("variants:", "variants:\n  - {prompt: rag, model: m, "
                                                          "retriever: nope}")
    (corpus_dir / "spec.yaml").write_text(unknown)
    with pytest.raises(SpecError, match="'nope' is not defined"):
        ws.run(corpus_dir / "spec.yaml", progress=False)
    assert fake_llm.stats()["requests"] == 0
    assert len(ws.runs()) == 0


def test_cli_retrieval_eval(corpus_dir):
    spec = corpus_dir / "reval.yaml"
    spec.write_text("""
dataset: {name: qa, path: qa.jsonl, id: qid}
retrievers:
  - {name: dense, corpus: {path: corpus.jsonl, id: doc_id, text: text}, chunker: {size: 128, overlap: 16}, top_k: 5}
  - {name: hybrid, corpus: {path: corpus.jsonl, id: doc_id, text: text}, chunker: {size: 128, overlap: 16}, top_k: 5,
     hybrid: {bm25_weight: 0.5}}
metrics:
  - {name: recall_at_k, gold: gold_doc}
""")
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "retrieval-eval", str(spec), "-w",
                          str(corpus_dir / "ws"), "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {r["config"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"dense", "hybrid"}
    for r in rows.values():
        assert r["n"] == 24 and 0 <= r["recall@k"] <= 1 and r["mrr"] <= r["hit@k"]
    spec.write_text(spec.read_text().replace("metrics:\n  - {name: recall_at_k, gold: gold_doc}\n", ""))
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "retrieval-eval", str(spec), "-w",
                          str(corpus_dir / "ws")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "gold" in out.stderr
