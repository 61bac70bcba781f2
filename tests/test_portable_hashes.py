"""Issue 13 item 1: hashes mean content, not location; old workspaces are re-hashed by a migration."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

import workbench as wb
from workbench import store as store_mod

DATA = Path(__file__).resolve().parent / "data" / "pubmedqa_corpus_small.jsonl"

SPEC = """
dataset: {name: qa, path: qa.jsonl, id: qid}
prompts:
  - {name: rag, user: "Context: {{ context }}\\nQuestion: {{ question }}"}
models:
  - {name: ex, model: local/extractive}
retrievers:
  - {name: small, corpus: {path: corpus.jsonl, id: doc_id, text: text}, chunker: {size: 64, overlap: 8}, top_k: 3}
variants:
  - {prompt: rag, model: ex, retriever: small}
metrics:
  - {name: recall_at_k, gold: gold_doc}
"""


def _project(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = [json.loads(line) for line in DATA.read_text().splitlines()][:40]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"doc_id": r["doc_id"], "text": r["text"]}) + "\n" for r in rows)
    )
    (folder / "qa.jsonl").write_text(
        "".join(
            json.dumps({"qid": f"q{i}", "question": r["question"], "gold_doc": r["doc_id"]}) + "\n"
            for i, r in enumerate(rows[:6])
        )
    )
    (folder / "spec.yaml").write_text(SPEC)
    return folder


def _identity(ws: wb.Workspace, run_id: str) -> tuple[list[tuple], list[str], list[str]]:
    variants = ws.sql(
        "SELECT variant, variant_hash, prompt_hash, model_hash, retriever_hash, corpus_hash FROM run_variants "
        "WHERE run_id=$1 ORDER BY variant",
        [run_id],
    )
    keys = ws.sql("SELECT request_key FROM cells WHERE run_id=$1 ORDER BY case_id, variant, repeat", [run_id])
    ds = ws.sql("SELECT hash FROM datasets ORDER BY version")
    return [tuple(r) for r in variants.itertuples(index=False)], list(keys["request_key"]), list(ds["hash"])


def test_two_folders_two_workspaces_same_hashes_and_keys(tmp_path: Path) -> None:
    a = _project(tmp_path / "one" / "copy")
    b = _project(tmp_path / "elsewhere" / "deeper" / "copy2")
    ws_a, ws_b = wb.open(tmp_path / "wsA"), wb.open(tmp_path / "wsB")
    run_a = ws_a.run(a / "spec.yaml", progress=False)
    run_b = ws_b.run(b / "spec.yaml", progress=False)
    ident_a, ident_b = _identity(ws_a, run_a.run_id), _identity(ws_b, run_b.run_id)
    assert ident_a == ident_b
    assert ident_a[0][0][5] is not None and len(ident_a[1]) == 6
    # the paths differ and stay as provenance (the run record), outside the hashes
    spec_a, spec_b = run_a.info["spec"], run_b.info["spec"]
    assert spec_a["variants"][0]["retriever"]["corpus"]["path"] != spec_b["variants"][0]["retriever"]["corpus"]["path"]
    # changing one document changes the corpus and so the retriever hash
    text = (b / "corpus.jsonl").read_text().replace("the", "THE", 1)
    (b / "corpus.jsonl").write_text(text)
    run_c = ws_b.run(b / "spec.yaml", progress=False)
    assert _identity(ws_b, run_c.run_id)[0][0][4] != ident_b[0][0][4]


def test_migration_rehashes_a_workspace_written_with_path_hashes(tmp_path: Path) -> None:
    """Build a workspace as the previous version wrote it (path in the retriever hash), then open it."""
    proj = _project(tmp_path / "proj")
    ws = wb.open(tmp_path / "ws")
    run = ws.run(proj / "spec.yaml", progress=False)
    new_ident = _identity(ws, run.run_id)
    # rewrite to the old state: previous schema (no corpus_hash column, migration not applied) and path hashes
    import hashlib

    rec = run.info["spec"]["variants"][0]
    old_r = dict(rec["retriever"])
    old_r.pop("name")
    old_retriever_hash = hashlib.sha256(store_mod.dumps(old_r).encode()).hexdigest()
    v = new_ident[0][0]
    old_variant_hash = hashlib.sha256(
        store_mod.dumps({"p": v[2], "m": v[3], "r": old_retriever_hash}).encode()
    ).hexdigest()
    number = [n for n, _ in store_mod.MIGRATIONS].index("m130_i13_content_hashes") + 1
    con = duckdb.connect(str(ws.store.db_path))
    con.execute("ALTER TABLE run_variants DROP COLUMN corpus_hash")
    con.execute("UPDATE run_variants SET retriever_hash=$1, variant_hash=$2", [old_retriever_hash, old_variant_hash])
    con.execute("DELETE FROM _migrations WHERE id = $1", [number])
    con.close()
    assert old_retriever_hash != v[4]
    # re-open: only this migration runs; hashes become the content hashes the new code computes
    ws2 = wb.open(tmp_path / "ws")
    assert _identity(ws2, run.run_id) == new_ident
    assert ws2.get_run(run.run_id).results()["recall_at_k"].notna().all()
