"""A bundle folder in the agreed format (manifest.json with sha256 of every file), built from a stored run.

The promotion tests need bundles before ``run.export`` exists on this branch; this writes exactly the
fields the bundle contract names (format_version, bundle_hash, files, run_id, variant, dataset, prompt,
model, retriever, metrics, gates, eval, and manifest_digest) from the run's own records, with the hashes
computed as ``workbench.bundles`` computes them, so promotion reads what export writes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _hits(retrieved: Any) -> str | None:
    if not isinstance(retrieved, list):
        return None
    return _canonical([{k: h[k] for k in ("chunk_id", "doc_id", "score")} for h in retrieved])


def _digest(value: Any) -> str:
    """sha256 of canonical JSON, as workbench.bundles computes bundle_hash and manifest_digest."""
    return hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()


def write_bundle(run: Any, variant: str, gates: list[tuple[str, str, float]], path: Path, salt: str = "") -> Path:
    """Write a bundle of ``variant`` of ``run`` with ``gates`` [(metric, op, threshold)] to ``path``."""
    info = run.info
    rv = {v["variant"]: v for v in run.store.run_variants(run.run_id)}[variant]
    board = run.leaderboard().set_index("variant")
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in board.loc[variant].to_dict().items()}
    row = {k: (None if v != v else v) for k, v in row.items()}  # NaN -> None
    exp = run.experiment
    v = {x.name: x for x in exp.variants}[variant]
    path.mkdir(parents=True, exist_ok=True)
    (path / "prompt.json").write_text(json.dumps(v.prompt.record()), encoding="utf-8")
    (path / "model.json").write_text(json.dumps(v.model.record()["config"]), encoding="utf-8")
    (path / "note.txt").write_text(f"test bundle {salt}\n", encoding="utf-8")  # distinct bundles, distinct hashes
    (path / "eval").mkdir(exist_ok=True)
    results = run.results()
    keep = results[results["variant"] == variant]
    inputs = dict(exp.dataset.cases())
    labels = [m["label"] for m in info["spec"]["metrics"]]
    cases = pd.DataFrame(
        {
            "case_id": keep["case_id"],
            "repeat": keep["repeat"],
            "inputs": [_canonical(inputs[c]) for c in keep["case_id"]],
            "output": keep["output"],
            **{label: keep[label].astype("float64") for label in labels},
            "error": keep["error"],
            "latency_ms": keep["latency_ms"],
            "retrieved": [
                _canonical([{k: h[k] for k in ("chunk_id", "doc_id", "score")} for h in r])
                if isinstance(r, list)
                else None
                for r in keep["retrieved"]
            ],
        }
    )
    cases.to_parquet(path / "eval" / "cases.parquet", index=False)
    files = {p.relative_to(path).as_posix(): _sha(p) for p in sorted(path.rglob("*")) if p.is_file()}
    files.pop("manifest.json", None)
    checks = []
    for metric, op, threshold in gates:
        value = row.get(metric)
        passed = value is not None and (value >= threshold if op == ">=" else value <= threshold)
        checks.append({"metric": metric, "op": op, "threshold": threshold, "value": value, "passed": passed})
    ds = run.store.find_dataset(info["dataset_name"], info["dataset_hash"])
    manifest: dict[str, Any] = {
        "format_version": 1,
        "workbench_version": "test",
        "created_at": datetime.now(timezone.utc).isoformat(),
        "files": files,
        "run_id": run.run_id,
        "variant": variant,
        "dataset": {"name": info["dataset_name"], "hash": info["dataset_hash"], "version": ds["version"]},
        "prompt": {"name": rv["prompt_name"], "hash": rv["prompt_hash"], "version": None},
        "model": {"name": rv["model_name"], "hash": rv["model_hash"], "model": rv["model"]},
        "retriever": {"name": rv["retriever_name"], "hash": rv["retriever_hash"]} if rv["retriever_hash"] else None,
        "metrics": info["spec"]["metrics"],
        "gates": checks,
        "eval": {"leaderboard": row, "n_cases": int(row.get("n") or 0)},
    }
    manifest["bundle_hash"] = _digest(files)
    manifest["manifest_digest"] = _digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return path
