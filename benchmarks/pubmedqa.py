"""PubMedQA for the benchmarks: the full labelled set when it is around, else the 200 questions the repo ships.

Which file: ``--data PATH`` if given, else ``$PUBMEDQA_PATH``, else ``../shared/data/pubmedqa/ori_pqal.json``
beside the repository (where the project's machines keep it), else the shipped
``workbench/data/pubmedqa_demo.jsonl``, so anyone can run every benchmark from a clean clone.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT.parent / "shared" / "data" / "pubmedqa" / "ori_pqal.json"
SHIPPED = ROOT / "workbench" / "data" / "pubmedqa_demo.jsonl"


def resolve(path: str | Path | None) -> Path:
    """The data file to use (see the module docstring); a path that was asked for must exist."""
    asked = path or os.environ.get("PUBMEDQA_PATH")
    if asked:
        chosen = Path(asked)
        if not chosen.exists():
            sys.exit(
                f"PubMedQA file not found at {chosen}: pass --data PATH (ori_pqal.json or a .jsonl like {SHIPPED.name})"
            )
        return chosen
    return FULL if FULL.exists() else SHIPPED


def shown(path: Path) -> str:
    """The path as printed: relative to the repository (or its parent folder) when it is inside it."""
    for base, prefix in ((ROOT, ""), (ROOT.parent, "../")):
        try:
            return prefix + str(path.resolve().relative_to(base))
        except ValueError:
            pass
    return str(path)


def load(path: Path) -> list[dict[str, Any]]:
    """Records with ``pmid``, ``question``, ``contexts`` (paragraphs), ``long_answer``, ``decision``."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [
            {
                "pmid": str(r["pmid"]),
                "question": r["question"],
                "contexts": [r["context"]],
                "long_answer": r["long_answer"],
                "decision": r["final_decision"],
            }
            for r in rows
        ]
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        {
            "pmid": pmid,
            "question": v["QUESTION"],
            "contexts": list(v["CONTEXTS"]),
            "long_answer": v["LONG_ANSWER"],
            "decision": v["final_decision"],
        }
        for pmid, v in data.items()
    ]
