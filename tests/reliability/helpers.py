"""Shared pieces of the reliability suite: a >= 2,000-cell RAG grid spec, child processes, workspace checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "pubmedqa_corpus_small.jsonl"


def grid_files(folder: Path, base_url: str, n_cases: int = 200, model: str = "grid") -> Path:
    """Dataset + corpus + spec of a 10-variant grid (n_cases * 10 cells; 2,000 by default).

    Variants come in groups that send identical requests (same prompt, model and retrieval result), which
    a run pays for once: 2,000 cells cost 600 calls, so the suite stays fast while every cell is stored.
    """
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"doc_id": r["doc_id"], "text": r["text"]}) + "\n" for r in rows)
    )
    (folder / "qa.jsonl").write_text(
        "".join(
            json.dumps({"qid": f"q{i}", "question": f"{rows[i % len(rows)]['question']} (#{i})",
                        "gold": rows[i % len(rows)]["doc_id"]}) + "\n"
            for i in range(n_cases)
        )
    )
    variants = []
    for i in range(3):
        variants += [
            f"  - {{prompt: terse, model: m, name: terse-{i}}}",
            f"  - {{prompt: rag, model: m, name: rag-{i}}}",
            f"  - {{prompt: rag, model: m, retriever: flat, name: rag-flat-{i}}}",
        ]
    variants.append("  - {prompt: terse, model: m, retriever: flat, name: terse-flat}")
    spec = folder / "grid.yaml"
    spec.write_text(
        f"""
dataset: {{name: qa, path: qa.jsonl, id: qid}}
prompts:
  - {{name: terse, user: "Q: {{{{ question }}}}"}}
  - {{name: rag, system: "Answer from the context.",
     user: "C: {{{{ (context | default('none'))[:60] }}}} Q: {{{{ question }}}}"}}
models:
  - {{name: m, model: openai/{model}, api_base: "{base_url}", max_retries: 6, timeout: 5}}
retrievers:
  - {{name: flat, corpus: {{path: corpus.jsonl, id: doc_id, text: text}}, chunker: {{size: 96, overlap: 8}}, top_k: 2}}
variants:
""" + "\n".join(variants) + """
metrics:
  - {name: contains, expected: question}
concurrency: 16
"""
    )
    return spec


def echo_of(messages: list[dict[str, str]]) -> str:
    """What the test server answers to a chat request (tests/openai_server.py): an independent oracle."""
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return ("echo: " + user)[:200]


def child(point: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``llmops argv...`` in a child process that kills itself with SIGKILL at ``point`` (see killpoint.py)."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "killpoint.py"), point, "--", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def db_rows(ws_dir: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of a query on a read-only connection: the file must open after any kill."""
    import duckdb

    con = duckdb.connect(str(ws_dir / "workspace.duckdb"), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def secrets_in(folder: Path, secrets: list[str]) -> list[str]:
    """Files under ``folder`` (workspace, artifacts, journal, exports) whose bytes contain any of ``secrets``."""
    found = []
    needles = [s.encode() for s in secrets]
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path))
    return found
