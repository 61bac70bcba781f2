"""Issue 13 item 2: a run archive exported in one workspace opens in another process with identical frames."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

import workbench as wb
from workbench.errors import ArchiveError

DATA = Path(__file__).resolve().parent / "data" / "pubmedqa_corpus_small.jsonl"
ROOT = Path(__file__).resolve().parent.parent

SPEC = """
dataset: {name: qa, path: qa.jsonl, id: qid}
prompts:
  - {name: rag, user: "Context: {{ context }}\\nQuestion: {{ question }}"}
  - {name: bare, user: "Context: {{ question }}\\nQuestion: {{ question }}"}
models:
  - {name: ex, model: local/extractive}
retrievers:
  - {name: small, corpus: {path: corpus.jsonl, id: doc_id, text: text}, chunker: {size: 64, overlap: 8}, top_k: 3}
variants:
  - {name: rag, prompt: rag, model: ex, retriever: small}
  - {name: bare, prompt: bare, model: ex}
metrics:
  - {name: recall_at_k, gold: gold_doc}
  - {name: rouge1, expected: answer}
"""

FRAMES = """
import pickle, sys
import workbench as wb
from workbench.cli import main
ws_path, archive, out = sys.argv[1:4]
assert main(["import-run", archive, "-w", ws_path]) == 0
assert main(["import-run", archive, "-w", ws_path]) == 0  # idempotent
ws = wb.open(ws_path)
run = ws.get_run(ws.runs()["run_id"][0])
frames = {"results": run.results(), "leaderboard": run.leaderboard(),
          "compare": run.compare("rag", "bare", "rouge1").as_dict(), "winner": run.winner("rouge1").as_dict(),
          "runs": len(ws.runs()), "feedback": len(run.feedback())}
from workbench.gridview import GridQuery  # the grid widget's pages, as the notebook would show them
q = GridQuery(ws.store, [run.run_id])
frames["grid"] = q.frame(q.default_state())
state = {**q.default_state().as_dict(), "sort_by": "metric", "sort_metric": "rouge1", "sort_desc": True}
frames["grid_sorted"] = q.page(state)["rows"]
pickle.dump(frames, open(out, "wb"))
"""


@pytest.fixture
def stored_run(tmp_path: Path) -> wb.Run:
    proj = tmp_path / "proj"
    proj.mkdir()
    rows = [json.loads(line) for line in DATA.read_text().splitlines()][:40]
    (proj / "corpus.jsonl").write_text(
        "".join(json.dumps({"doc_id": r["doc_id"], "text": r["text"]}) + "\n" for r in rows)
    )
    (proj / "qa.jsonl").write_text(
        "".join(
            json.dumps({"qid": f"q{i}", "question": r["question"], "gold_doc": r["doc_id"], "answer": r["text"][:80]})
            + "\n"
            for i, r in enumerate(rows[:12])
        )
    )
    (proj / "spec.yaml").write_text(SPEC)
    ws = wb.open(tmp_path / "wsA")
    run = ws.run(proj / "spec.yaml", progress=False)
    run.add_feedback("q0", "rag", rating=4, comment="good")
    run.add_feedback("q1", "bare", thumbs=False)
    return run


def _frames(run: wb.Run) -> dict:
    return {
        "results": run.results(),
        "leaderboard": run.leaderboard(),
        "compare": run.compare("rag", "bare", "rouge1").as_dict(),
        "winner": run.winner("rouge1").as_dict(),
    }


def test_export_import_in_another_process_gives_identical_frames(stored_run: wb.Run, tmp_path: Path) -> None:
    archive = stored_run.archive(tmp_path / "out" / "run.zip")
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        info = json.loads(zf.read("run.json"))
        models = pd.read_parquet(zf.open("models.parquet"))
    assert {
        "cells.parquet",
        "scores.parquet",
        "judgements.parquet",
        "feedback.parquet",
        "dataset_cases.parquet",
        "prompts.parquet",
        "models.parquet",
        "run_variants.parquet",
        "manifest.json",
        "run.json",
    } <= names
    assert info["environment"]["python"] == sys.version.split()[0] and info["rows"]["cells"] == 24
    assert info["environment"]["packages"]["duckdb"]
    assert '"api_key":' not in " ".join(models["config"]) and '"api_key_env"' in models["config"][0]
    out = tmp_path / "frames.pkl"
    subprocess.run(
        [sys.executable, "-c", FRAMES, str(tmp_path / "wsB"), str(archive), str(out)],
        check=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    got = pickle.loads(out.read_bytes())
    want = _frames(stored_run)
    pd.testing.assert_frame_equal(got["results"], want["results"])
    pd.testing.assert_frame_equal(got["leaderboard"], want["leaderboard"])
    assert got["compare"] == want["compare"] and got["winner"] == want["winner"]
    assert got["runs"] == 1 and got["feedback"] == 2
    from workbench.gridview import GridQuery

    q = GridQuery(stored_run.store, [stored_run.run_id])
    pd.testing.assert_frame_equal(got["grid"], q.frame(q.default_state()))
    sorted_state = {**q.default_state().as_dict(), "sort_by": "metric", "sort_metric": "rouge1", "sort_desc": True}
    assert got["grid_sorted"] == q.page(sorted_state)["rows"] and len(got["grid_sorted"]) > 0


def test_tampered_or_unsafe_archives_are_refused(stored_run: wb.Run, tmp_path: Path) -> None:
    archive = stored_run.archive(tmp_path / "run.zip")
    with zipfile.ZipFile(archive) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    # one score changed, manifest left as it was
    scores = pd.read_parquet(__import__("io").BytesIO(members["scores.parquet"]))
    scores.loc[0, "value"] = 1.0 - (scores.loc[0, "value"] or 0.0)
    buf = __import__("io").BytesIO()
    scores.to_parquet(buf)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, buf.getvalue() if name == "scores.parquet" else data)
    fresh = wb.open(tmp_path / "wsC")
    with pytest.raises(ArchiveError, match="'scores.parquet' would inflate to .* but the manifest records"):
        fresh.import_run(tampered)  # a changed size is refused before anything is inflated
    # a same-size change fails its checksum
    same_size = bytearray(members["scores.parquet"])
    same_size[len(same_size) // 2] ^= 0xFF
    with zipfile.ZipFile(tampered, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, bytes(same_size) if name == "scores.parquet" else data)
    with pytest.raises(ArchiveError, match="scores.parquet fails its sha256 checksum"):
        fresh.import_run(tampered)
    # a zip-slip member name
    slip = tmp_path / "slip.zip"
    with zipfile.ZipFile(slip, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("../../evil.parquet", b"x")
    with pytest.raises(ArchiveError, match="not plain file names"):
        fresh.import_run(slip)
    assert not (tmp_path / "evil.parquet").exists() and len(fresh.runs()) == 0
    # a different run with the same id is never overwritten
    run = fresh.import_run(archive)
    fresh.sql("SELECT 1")  # read-only check that the workspace is usable
    con = __import__("duckdb").connect(str(fresh.store.db_path))
    con.execute("UPDATE runs SET n_cells = n_cells + 1 WHERE run_id=$1", [run.run_id])
    con.close()
    before = fresh.get_run(run.run_id).results()
    with pytest.raises(ArchiveError, match="already has a different run"):
        fresh.import_run(archive)
    pd.testing.assert_frame_equal(fresh.get_run(run.run_id).results(), before)
