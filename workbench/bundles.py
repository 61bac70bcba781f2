"""Bundles: a winning variant exported with everything it needs to answer, and the evidence that it won.

Layout of a bundle directory (or a .zip of one)::

    manifest.json           format version, hashes of every file, versions of what produced it, eval summary
    prompt.json             the chat template (system, user, few-shot)
    model.json              the litellm model config; keys only as environment-variable *names*
    retriever/config.json   the retrieval config (absent without a retriever)
    retriever/chunks.parquet, retriever/docs.parquet (document metadata), retriever/index.faiss (FAISS's own
                            format), retriever/embedder.json; retriever/embeddings.npy only for MMR / filters
    eval/cases.parquet      the eval cases with the outputs and scores the variant got
    eval/leaderboard.json   the run's whole leaderboard
    report.html             standalone evidence report
    requirements.txt        pinned from the exporting environment

Why these choices: every file is hashed in the manifest and verified on load, so a bundle that was edited,
truncated or half-copied is refused with the name of the file, never served; formats are the libraries'
own (Parquet, FAISS, ``np.save(allow_pickle=False)``, JSON): no pickle, nothing executes on load. An
archive is unpacked member by member with every path checked (no absolute paths, no ``..``, no links).
The manifest carries ``manifest_digest`` (sha256 of itself without that key) so its own fields cannot be
edited silently either; ``bundle_hash`` (sha256 of the canonical ``files`` map) is the bundle's identity.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as _dt
import functools
import hashlib
import html
import json
import math
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from workbench import safezip
from workbench.errors import BundleError, NotFoundError, RetrievalError, TemplateError, WorkbenchError
from workbench.llm import Gateway, ModelConfig
from workbench.prompts import Prompt, render_error_text, template_vars

if TYPE_CHECKING:
    import pandas as pd

    from workbench.runner import Run

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus-client")  # what `llmops serve` needs, pinned even if
# the installed workbench metadata predates them
_STORED_SUFFIXES = (".faiss", ".npy", ".parquet")  # already dense: deflating them costs seconds, saves little


def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): the text every hash in a bundle is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def bundle_hash(files: Mapping[str, str]) -> str:
    """A bundle's identity: sha256 of the canonical JSON of its ``{relpath: sha256}`` map."""
    return sha256_text(canonical(dict(files)))


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    return sha256_text(canonical({k: v for k, v in manifest.items() if k != "manifest_digest"}))


# ---------------------------------------------------------------------------------------------
# export


def export(
    run: Run,
    path: str | os.PathLike[str],
    variant: str | None = None,
    *,
    metric: str | None = None,
    constraints: Sequence[str] | Mapping[str, Any] | None = None,
    zip: bool = False,
    overwrite: bool = False,
    allow_failing_gates: bool = False,
    sample: int = 20,
) -> Path:
    """Write ``variant`` of ``run`` (default: the winner on ``metric``, or the run's only variant) as a bundle.

    ``constraints`` (``["token_f1>=0.4", "latency_p95_ms<=2000"]``) become the bundle's gates; a failing gate
    refuses the export unless ``allow_failing_gates``. Returns the bundle path (a directory, or the .zip).
    """
    from workbench import analysis

    target = Path(path)
    if zip and target.suffix.lower() != ".zip":
        target = target.with_name(target.name + ".zip")
    if target.exists() and not overwrite:
        raise BundleError(f"{target} already exists: choose another path or pass overwrite=True (--force)")
    info = run.info
    spec = info["spec"]
    names = [v["name"] for v in spec["variants"]]
    labels = [m["label"] for m in spec["metrics"]]
    if variant is None:
        variant = _pick_variant(run, names, labels, metric, constraints)
    if variant not in names:
        raise NotFoundError(f"run {run.run_id} has no variant {variant!r}; its variants are {names}")
    v = next(x for x in run.experiment.variants if x.name == variant)
    primary = metric or (labels[0] if labels else None)

    board = run.leaderboard()
    board["error_rate"] = board["errors"] / board["n"].where(board["n"] > 0)
    row = _plain_row(board[board["variant"] == variant].iloc[0].to_dict())
    if not row.get("n"):
        raise BundleError(f"variant {variant!r} of run {run.run_id} has no stored cells to export: run it first")
    cis: dict[str, Any] = {}
    for label in labels:
        try:
            t = analysis.variant_cis(run, label)
        except WorkbenchError:
            continue
        r = t[t["variant"] == variant].iloc[0].to_dict()
        cis[label] = _plain_row({"mean": r["mean"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": r["n"]})
    row["ci"] = cis
    gates = _gates(constraints, row, cis)
    failed = [g for g in gates if not g["passed"]]
    if failed and not allow_failing_gates:
        text = "; ".join(f"{g['metric']} = {g['value']} (needs {g['op']} {g['threshold']:g})" for g in failed)
        raise BundleError(
            f"variant {variant!r} fails its gate(s): {text}. Fix the variant, or export anyway with "
            "allow_failing_gates=True (--allow-failing-gates); the manifest then records the failure"
        )
    comparisons = _runner_up(run, variant, names, labels, board, primary)

    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    stage.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        files: dict[str, Any] = {}
        _write_json(stage / "prompt.json", v.prompt.record() | {"version": _prompt_version(run, v.prompt)})
        _write_json(stage / "model.json", v.model.options() | {"hash": v.model.hash})
        retriever_info = _export_retriever(run, v, stage) if v.retriever is not None else None
        cases = _eval_cases(run, variant, labels)
        (stage / "eval").mkdir()
        cases.to_parquet(stage / "eval" / "cases.parquet", index=False)
        _write_json(stage / "eval" / "leaderboard.json", json.loads(board.to_json(orient="records")))
        (stage / "requirements.txt").write_text(requirements_txt(), encoding="utf-8")
        ds = run.experiment.dataset
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "workbench_version": _workbench_version(),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "run_id": run.run_id,
            "variant": variant,
            "variant_hash": v.hash,
            "dataset": {"name": ds.name, "hash": ds.hash, "version": ds.version},
            "prompt": {"name": v.prompt.name, "hash": v.prompt.hash, "version": _prompt_version(run, v.prompt)},
            "model": {"name": v.model.name, "hash": v.model.hash, "model": v.model.model},
            "retriever": retriever_info,
            "metrics": spec["metrics"],
            "primary_metric": primary,
            "gates": gates,
            "eval": {
                "leaderboard": row,
                "n_cases": int(cases["case_id"].nunique()) if len(cases) else 0,
                "runner_up": comparisons,
            },
            "secrets": {"env": sorted({e for e in (v.model.api_key_env, _embedder_key_env(v.retriever)) if e})},
        }
        (stage / "report.html").write_text(
            render_report(manifest, board, cases, labels, comparisons, sample), encoding="utf-8"
        )
        for p in sorted(stage.rglob("*")):
            if p.is_file():
                files[p.relative_to(stage).as_posix()] = _sha256_file(p)
        manifest["files"] = files
        manifest["bundle_hash"] = bundle_hash(files)
        manifest["manifest_digest"] = manifest_digest(manifest)
        _write_json(stage / MANIFEST, manifest)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        if zip:
            _zip_dir(stage, target)
            shutil.rmtree(stage, ignore_errors=True)
        else:
            os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return target


def _pick_variant(
    run: Run,
    names: list[str],
    labels: list[str],
    metric: str | None,
    constraints: Sequence[str] | Mapping[str, Any] | None,
) -> str:
    if metric is not None:
        decision = run.winner(metric, constraints)
        if decision.winner is None:
            raise BundleError(f"run {run.run_id} has no winner on {metric!r}: {decision.reason}")
        return str(decision.winner)
    if len(names) == 1:
        return names[0]
    raise BundleError(
        f"run {run.run_id} has {len(names)} variants {names}: name the one to export, or give metric= "
        f"(--metric, e.g. {labels[0] if labels else 'token_f1'}) to export the winner"
    )


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _plain_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _plain(v) for k, v in row.items()}


def _gates(
    constraints: Sequence[str] | Mapping[str, Any] | None, row: Mapping[str, Any], cis: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The variant's leaderboard row judged by ``analysis.check_constraints`` (the one place thresholds are judged)."""
    from workbench.analysis import check_constraints, parse_constraints

    figures = {k: v for k, v in row.items() if k != "ci"}
    for name, ci in cis.items():
        figures.setdefault(name, ci["mean"])
    (checks,) = check_constraints({"variant": figures}, parse_constraints(constraints)).values()
    return [c.as_dict() for c in checks]


def _runner_up(
    run: Run, variant: str, names: list[str], labels: list[str], board: Any, primary: str | None
) -> dict[str, Any] | None:
    """The best other variant on the primary metric, and the paired comparison on every metric."""
    from workbench.metrics.registry import all_metrics

    others = [n for n in names if n != variant]
    if not others or primary is None or primary not in board.columns:
        return None
    spec_names = {m["label"]: m["name"] for m in run.info["spec"]["metrics"]}
    d = all_metrics().get(spec_names.get(primary, primary))
    higher = d.higher_is_better if d is not None else True
    ranked = board[board["variant"].isin(others)].sort_values(primary, ascending=not higher, na_position="last")
    second = str(ranked.iloc[0]["variant"])
    per_metric = {}
    for label in labels:
        try:
            per_metric[label] = _plain_row(run.compare(variant, second, label).result.to_dict())
        except WorkbenchError as exc:
            per_metric[label] = {"note": str(exc)}
    return {"variant": second, "primary_metric": primary, "comparisons": per_metric}


def _prompt_version(run: Run, prompt: Prompt) -> int | None:
    rec = run.store.find_prompt(prompt.name)
    if rec is None:
        return None
    if rec["hash"] == prompt.hash:
        return int(rec["version"])
    frame = run.store.sql("SELECT version FROM prompts WHERE name = $1 AND hash = $2", [prompt.name, prompt.hash])
    return int(frame.iloc[0, 0]) if len(frame) else None


def _embedder_key_env(cfg: Any) -> str | None:
    emb = getattr(cfg, "embedder", None)
    return getattr(emb, "api_key_env", None)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n", "utf-8")


def _eval_cases(run: Run, variant: str, labels: list[str]) -> pd.DataFrame:
    import pandas as pd

    res = run.results()
    res = res[res["variant"] == variant]
    inputs = dict(run.experiment.dataset.cases())
    fixed = ["error", "latency_ms", "prompt_tokens", "completion_tokens", "cost", "retrieved"]
    fixed = [c for c in fixed if c not in labels]  # a metric labelled like a raw column keeps its score
    rows = []
    for rec in res.to_dict("records"):
        retrieved = rec.get("retrieved")
        raw = {
            "error": rec["error"],
            "latency_ms": _plain(rec["latency_ms"]),
            "prompt_tokens": _plain(rec["prompt_tokens"]),
            "completion_tokens": _plain(rec["completion_tokens"]),
            "cost": _plain(rec["cost"]),
            "retrieved": canonical([{k: h[k] for k in ("chunk_id", "doc_id", "score")} for h in retrieved])
            if isinstance(retrieved, list)
            else None,
        }
        rows.append(
            {
                "case_id": rec["case_id"],
                "repeat": int(rec["repeat"]),
                "inputs": canonical(inputs.get(rec["case_id"], {})),
                "output": rec["output"],
                **{label: _plain(rec.get(label)) for label in labels},
                **{k: raw[k] for k in fixed},
            }
        )
    frame = pd.DataFrame(rows, columns=["case_id", "repeat", "inputs", "output", *labels, *fixed])
    for label in labels:
        frame[label] = frame[label].astype("float64")
    return frame


def _export_retriever(run: Run, v: Any, stage: Path) -> dict[str, Any]:
    """Chunks (Parquet), document metadata (Parquet), the FAISS index (its own format), the embedder spec."""
    import faiss
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workbench.retrieval.grid import load_corpus
    from workbench.retrieval.index import _write_chunks
    from workbench.retrieval.retriever import build_retriever

    cfg = v.retriever
    corpus = None
    try:
        corpus = cfg.load_corpus()
    except (RetrievalError, OSError) as exc:
        if cfg.corpus is None:
            raise BundleError(f"retriever {cfg.label!r} has no corpus to export") from exc
        try:
            corpus = load_corpus(run.store, Path(cfg.corpus.path).stem)
        except WorkbenchError:
            raise BundleError(
                f"retriever {cfg.label!r}: its corpus {cfg.corpus.path} is gone and the workspace has no copy: "
                f"restore the file to export this variant ({exc})"
            ) from exc
    retriever = build_retriever(corpus, cfg, run.store.artifacts)
    folder = stage / "retriever"
    folder.mkdir()
    _write_json(folder / "config.json", cfg.model_dump(mode="json", by_alias=True))
    _write_chunks(folder, retriever.table)
    faiss.write_index(retriever.index, str(folder / "index.faiss"))
    docs = pa.table(
        {
            "doc_id": pa.array([d.id for d in corpus], pa.string()),
            "metadata": pa.array([canonical(dict(d.metadata)) for d in corpus], pa.string()),
        }
    )
    pq.write_table(docs, folder / "docs.parquet")
    needs_vectors = cfg.mmr is not None or (cfg.filter is not None and cfg.index.type != "flat")
    if needs_vectors:
        np.save(folder / "embeddings.npy", np.asarray(retriever.vectors(), dtype=np.float32), allow_pickle=False)
    embedder = cfg.embedder if isinstance(cfg.embedder, str) else cfg.embedder.model_dump(mode="json")
    _write_json(
        folder / "embedder.json",
        {"spec": embedder, "name": retriever.embedder.name, "dim": retriever.dim, "n_chunks": retriever.n_chunks},
    )
    return {
        "name": cfg.name,
        "hash": cfg.hash,
        "corpus_hash": corpus.hash,
        "n_chunks": retriever.n_chunks,
        "index": cfg.index.type,
        "embedder": retriever.embedder.name,
        **retriever.keys,
    }


def _zip_dir(stage: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for p in sorted(stage.rglob("*")):
                if p.is_file():
                    kind = zipfile.ZIP_STORED if p.suffix in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                    zf.write(p, p.relative_to(stage).as_posix(), compress_type=kind)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _workbench_version() -> str:
    from workbench import __version__

    return __version__


@functools.lru_cache(maxsize=1)
def requirements_txt() -> str:
    """Pinned ``name==version`` of the workbench's runtime dependencies as installed here (importlib.metadata).

    Cached per process: the installed set does not change under a running interpreter, and reading every
    distribution's metadata costs seconds.
    """
    import importlib.metadata as md

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging ships with pip's environments
        Requirement = None  # type: ignore[assignment,misc]
    pins: dict[str, str] = {}
    todo = ["llmops-workbench", *_SERVE_PACKAGES]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            meta = md.metadata(name)  # parsed once: name, version and requirements all come from it
        except md.PackageNotFoundError:
            continue
        if key != "llmops-workbench":
            pins[meta["Name"]] = meta["Version"]
        for req in meta.get_all("Requires-Dist") or []:
            if Requirement is None:
                todo.append(req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip())
                continue
            r = Requirement(req)
            if r.marker is not None and not r.marker.evaluate({"extra": ""}):
                continue
            todo.append(r.name)
    head = (
        f"# Pinned from the exporting environment by llmops-workbench {_workbench_version()}.\n"
        "# Install the workbench itself (pip install llmops-workbench, or its wheel/source), then: "
        "pip install -r requirements.txt\n"
    )
    return head + "".join(f"{n}=={pins[n]}\n" for n in sorted(pins, key=str.lower))


# ---------------------------------------------------------------------------------------------
# evidence report


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], highlight: str | None = None) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in columns)
    body = []
    for r in rows:
        cls = ' class="win"' if highlight is not None and r.get("variant") == highlight else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{e(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_report(
    manifest: Mapping[str, Any],
    board: Any,
    cases: Any,
    labels: Sequence[str],
    runner_up: Mapping[str, Any] | None,
    sample: int = 20,
) -> str:
    """A standalone HTML page (inline CSS, no script, every text escaped): why this variant was shipped."""
    e = html.escape
    variant = str(manifest["variant"])
    board_rows = json.loads(board.to_json(orient="records"))
    cols = [c for c in ["variant", *labels, "n", "errors", "cost_per_1k", "latency_p50_ms", "latency_p95_ms"]]
    ci = manifest["eval"]["leaderboard"].get("ci", {})
    ci_rows = [{"metric": k, **v} for k, v in ci.items()]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Evidence: {e(variant)}</title><style>"
        "body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:left;vertical-align:top}tr.win{background:#e8f5e9}.pass{color:#1b5e20}.fail{color:#b71c1c}"
        "td{max-width:40em;overflow-wrap:anywhere}</style></head><body>",
        f"<h1>Bundle {e(variant)}</h1>",
        "<p>"
        + "<br>".join(
            e(f"{k}: {v}")
            for k, v in (
                ("run", manifest["run_id"]),
                ("dataset", f"{manifest['dataset']['name']} v{manifest['dataset']['version']}"),
                ("prompt", f"{manifest['prompt']['name']} ({manifest['prompt']['hash'][:12]})"),
                ("model", f"{manifest['model']['model']} ({manifest['model']['hash'][:12]})"),
                ("retriever", (manifest.get("retriever") or {}).get("name") or "none"),
                ("created", manifest["created_at"]),
                ("workbench", manifest["workbench_version"]),
            )
        )
        + "</p>",
        "<h2>Leaderboard</h2>",
        _table(board_rows, cols, highlight=variant),
        f"<h2>Scores of {e(variant)} with 95% confidence intervals</h2>",
        _table(ci_rows, ["metric", "mean", "ci_low", "ci_high", "n"]),
    ]
    gates = manifest.get("gates") or []
    if gates:
        parts.append("<h2>Gates</h2><ul>")
        for g in gates:
            cls, word = ("pass", "passed") if g["passed"] else ("fail", "FAILED")
            parts.append(
                f"<li class='{cls}'>{e(str(g['metric']))} = {e(_fmt(g['value']))} "
                f"(needs {e(g['op'])} {e(_fmt(g['threshold']))}): {word}</li>"
            )
        parts.append("</ul>")
    if runner_up:
        parts.append(f"<h2>Against the runner-up, {e(str(runner_up['variant']))}</h2>")
        rows = [
            {"metric": k, **{c: v.get(c) for c in ("mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "n")}}
            for k, v in runner_up["comparisons"].items()
        ]
        parts.append("<p>Paired per case: difference = this bundle minus the runner-up.</p>")
        parts.append(_table(rows, ["metric", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "n"]))
    else:
        parts.append("<p>No runner-up: the run had one variant.</p>")
    shown = cases.head(sample)
    rows = []
    for r in shown.to_dict("records"):
        inputs = json.loads(r["inputs"]) if r.get("inputs") else {}
        question = inputs.get("question", r["inputs"])
        rows.append({"case_id": r["case_id"], "question": str(question)[:500], "output": str(r["output"])[:500]} | r)
    parts.append(f"<h2>Sample of cases ({len(shown)} of {len(cases)})</h2>")
    parts.append(_table(rows, ["case_id", "question", "output", *labels, "error"]))
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# load and verify


_TEMP_DIRS: list[Path] = []


def _cleanup_temp_dirs() -> None:
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_temp_dirs)


def _safe_member(name: str, where: Path) -> PurePosixPath:
    p = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or p.is_absolute() or ":" in p.parts[0] or "\\" in name:
        raise BundleError(f"{where}: archive member {name!r} has an absolute path: refusing to unpack it")
    if any(part == ".." for part in p.parts):
        raise BundleError(f"{where}: archive member {name!r} points outside the bundle (..): refusing to unpack it")
    return p


def _unzip(archive: Path) -> Path:
    """Unpack a bundle archive into a private temp dir, member by member, refusing anything unsafe."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise BundleError(
            f"{archive}: not a readable zip archive ({exc}); it may be truncated: copy it again"
        ) from None
    with zf:
        # every name and size is judged before anything is written (zip-slip, links, zip bombs: workbench.safezip)
        for info in zf.infolist():
            _safe_member(info.filename, archive)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BundleError(f"{archive}: archive member {info.filename!r} is a symbolic link: refusing it")
        members = safezip.check(zf, archive, BundleError)
        dest = Path(tempfile.mkdtemp(prefix="llmops-bundle-"))
        _TEMP_DIRS.append(dest)
        try:
            for info in members:
                out = dest.joinpath(*_safe_member(info.filename, archive).parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with out.open("wb") as dst:
                    safezip.copy_member(zf, info, dst, archive, BundleError)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    return dest


def verify(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """Check a bundle (directory or .zip) completely; returns (its directory, its manifest) or raises BundleError.

    Refused: a missing or edited manifest, a file whose sha256 differs, a listed file that is missing, a file
    that is not listed, a symbolic link, an archive member with an absolute path or ``..``.
    """
    src = Path(path)
    if not src.exists():
        raise BundleError(f"bundle {src} does not exist")
    if src.is_file():
        folder = _unzip(src)
    elif src.is_dir():
        folder = src
    else:
        raise BundleError(f"bundle {src} is neither a directory nor a zip file")
    where = src
    present: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            p = Path(root) / name
            if p.is_symlink():
                raise BundleError(
                    f"{where}: {p.relative_to(folder).as_posix()} is a symbolic link: refusing the bundle"
                )
        for name in names:
            present.add((Path(root) / name).relative_to(folder).as_posix())
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{where}: {MANIFEST} is missing: this is not a bundle (or an incomplete copy of one)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where}: {MANIFEST} is not valid JSON ({exc}); it is damaged or truncated") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{where}: {MANIFEST} has no `files` map: not a workbench bundle")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{where}: bundle format {manifest.get('format_version')!r} is not supported by this workbench "
            f"(format {FORMAT_VERSION}); upgrade llmops-workbench"
        )
    if manifest.get("manifest_digest") != manifest_digest(manifest):
        raise BundleError(f"{where}: {MANIFEST} was edited after export (its digest does not match)")
    files: dict[str, str] = manifest["files"]
    if manifest.get("bundle_hash") != bundle_hash(files):
        raise BundleError(f"{where}: {MANIFEST}: bundle_hash does not match the files map")
    for rel, digest in sorted(files.items()):
        _safe_member(rel, where)
        p = folder / rel
        if not p.is_file():
            raise BundleError(f"{where}: {rel} is missing: the bundle is incomplete; copy it again")
        if _sha256_file(p) != digest:
            raise BundleError(f"{where}: {rel} does not match its sha256 in the manifest: tampered or truncated")
    extra = sorted(present - set(files) - {MANIFEST})
    if extra:
        raise BundleError(f"{where}: {extra[0]} is not listed in the manifest (extra files: {extra[:5]})")
    return folder, manifest


# ---------------------------------------------------------------------------------------------
# the loaded bundle


@dataclass
class Answer:
    """One answer of a bundle: the output, the chunks it was given, latency, tokens and cost."""

    answer: str | None
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    error: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list, repr=False)
    error_kind: str | None = field(default=None, repr=False)  # the error's class: ModelError, TemplateError, ...

    def to_dict(self, with_text: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d.pop("messages")
        d.pop("error_kind")
        if not with_text:
            d["retrieved"] = [
                {k: h[k] for k in ("chunk_id", "doc_id", "score", "rank") if k in h} for h in self.retrieved
            ]
        return d


class _DocMetadata:
    """What a Retriever needs of a corpus inside a bundle: metadata by doc id, and the corpus hash."""

    def __init__(self, ids: list[str], metadata: list[str], corpus_hash: str) -> None:
        self._meta = dict(zip(ids, metadata))
        self._cache: dict[str, Any] = {}
        self.hash = corpus_hash
        self.source = "bundle"

    def __getitem__(self, doc_id: str) -> Any:
        doc = self._cache.get(doc_id)
        if doc is None:
            from workbench.retrieval.corpus import Document

            doc = self._cache[doc_id] = Document(doc_id, "", json.loads(self._meta.get(doc_id) or "{}"))
        return doc


def _load_retriever(folder: Path, manifest: Mapping[str, Any]) -> Any:
    import faiss
    import numpy as np
    import pyarrow.parquet as pq

    from workbench.embeddings import get_embedder
    from workbench.retrieval.config import RetrievalConfig
    from workbench.retrieval.index import BuildStats, ChunkTable, EmbeddingHandle
    from workbench.retrieval.retriever import Retriever

    r = folder / "retriever"
    data = json.loads((r / "config.json").read_text(encoding="utf-8"))
    data["corpus"] = None  # the bundle carries the chunks; the exporting machine's corpus path means nothing here
    cfg = RetrievalConfig.parse(data, where="bundle retriever/config.json")
    info = manifest["retriever"]
    cols = pq.read_table(r / "chunks.parquet").to_pydict()
    table = ChunkTable(
        info.get("chunks_key", "bundle"),
        cols["chunk_id"],
        cols["doc_id"],
        cols["text"],
        cols["start"],
        cols["end"],
        cols["section"],
    )
    docs = pq.read_table(r / "docs.parquet").to_pydict()
    corpus = _DocMetadata(docs["doc_id"], docs["metadata"], info.get("corpus_hash", ""))
    index = faiss.read_index(str(r / "index.faiss"))
    if index.ntotal != len(table):
        raise BundleError(f"bundle index holds {index.ntotal} vectors for {len(table)} chunks: the bundle is damaged")
    emb_info = json.loads((r / "embedder.json").read_text(encoding="utf-8"))
    embedder = get_embedder(cfg.embedder)
    if embedder.name != emb_info["name"]:
        raise BundleError(
            f"bundle was indexed with embedder {emb_info['name']!r} but this environment resolves it to "
            f"{embedder.name!r}: install the bundle's pinned requirements"
        )
    vectors = r / "embeddings.npy"

    def matrix_handle() -> EmbeddingHandle:
        if not vectors.exists():
            raise BundleError("this bundle's retriever has no stored vectors (only needed for MMR or filters)")
        m = np.load(vectors, mmap_mode="r", allow_pickle=False)
        return EmbeddingHandle("bundle", r, int(m.shape[1]), int(m.shape[0]), m)

    handles: dict[str, EmbeddingHandle] = {}

    def embeddings() -> EmbeddingHandle:
        if "h" not in handles:
            handles["h"] = matrix_handle()
        return handles["h"]

    keys = {k: info[k] for k in ("chunks_key", "embeddings_key", "index_key") if k in info}
    return Retriever(cfg, corpus, table, index, embedder, embeddings, keys, BuildStats())  # type: ignore[arg-type]


class Bundle:
    """A verified bundle, ready to answer. ``answer(question=...)`` and ``batch(items)`` (sync) or ``a``-forms."""

    def __init__(self, path: Path, folder: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.folder = folder
        self.manifest = manifest
        self.hash: str = manifest["bundle_hash"]
        self.variant: str = manifest["variant"]
        p = json.loads((folder / "prompt.json").read_text(encoding="utf-8"))
        self.prompt = Prompt(p["name"], p["user"], p.get("system"), tuple(p.get("few_shot") or ()))
        m = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        m.pop("hash", None)
        self.model = ModelConfig(**{k: v for k, v in m.items() if k in ModelConfig.__dataclass_fields__})
        self.retriever = _load_retriever(folder, manifest) if manifest.get("retriever") else None
        self._gateway: Gateway | None = None
        self._gateway_loop: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Bundle({self.variant!r}, hash={self.hash[:12]}, model={self.model.model!r})"

    def summary(self) -> dict[str, Any]:
        """What ``/version`` shows: identity, versions and the eval summary (no file list)."""
        keys = (
            "bundle_hash",
            "variant",
            "run_id",
            "created_at",
            "workbench_version",
            "dataset",
            "prompt",
            "model",
            "retriever",
            "gates",
            "primary_metric",
        )
        out = {k: self.manifest.get(k) for k in keys}
        out["eval"] = {"leaderboard": self.manifest["eval"]["leaderboard"], "n_cases": self.manifest["eval"]["n_cases"]}
        return out

    def cases(self) -> pd.DataFrame:
        """The recorded eval cases with the outputs and scores the variant got."""
        import pandas as pd

        return pd.read_parquet(self.folder / "eval" / "cases.parquet")

    # -- answering -------------------------------------------------------------------------------

    def _gateway_for_loop(self) -> Gateway:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._gateway is None or self._gateway_loop is not loop:  # semaphores belong to one loop
                self._gateway, self._gateway_loop = Gateway(), loop
            return self._gateway

    async def aanswer(self, question: str | None = None, **variables: Any) -> Answer:
        """Retrieve (if the bundle has a retriever), render the prompt, call the model. Raises on failure."""
        inputs = dict(variables)
        if question is not None:
            inputs["question"] = question
        return (await self._run([inputs], raise_errors=True))[0]

    async def abatch(self, items: Sequence[Mapping[str, Any]]) -> list[Answer]:
        """Many inputs (dicts of template variables): one batched retrieval, model calls concurrently.

        A failing item gets ``error`` set; the others are answered.
        """
        return await self._run([dict(i) for i in items], raise_errors=False)

    def answer(self, question: str | None = None, **variables: Any) -> Answer:
        """Sync form of :meth:`aanswer` (also inside a notebook's running loop)."""
        return _run_sync(lambda: self.aanswer(question, **variables))

    def batch(self, items: Sequence[Mapping[str, Any]]) -> list[Answer]:
        """Sync form of :meth:`abatch`."""
        return _run_sync(lambda: self.abatch(items))

    def _render(self, inputs: Mapping[str, Any], hits: list[dict[str, Any]] | None) -> list[dict[str, str]]:
        extra = None
        if self.retriever is not None:
            extra = {"context": "\n\n".join(h["text"] for h in hits or []), "chunks": hits or []}
        try:
            return self.prompt.render(template_vars(inputs, extra))
        except Exception as exc:  # noqa: BLE001 - any template failure is the caller's input problem
            raise TemplateError(
                f"bundle {self.variant!r}: the prompt does not render with these inputs: {render_error_text(exc)}; "
                f"it was given {sorted(inputs)}"
            ) from None

    def _search(self, inputs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        from workbench.retrieval.grid import query_text

        assert self.retriever is not None
        queries = [query_text(self.retriever.config, i) for i in inputs]
        return [[h.to_dict() for h in found] for found in self.retriever.search(queries)]

    async def _run(self, items: list[dict[str, Any]], raise_errors: bool) -> list[Answer]:
        started = time.perf_counter()
        hits: list[list[dict[str, Any]] | None] = [None] * len(items)
        if self.retriever is not None and items:
            if raise_errors:
                hits = list(await asyncio.to_thread(self._search, items))
            else:
                try:
                    hits = list(await asyncio.to_thread(self._search, items))
                except WorkbenchError as exc:
                    return [Answer(None, error=str(exc), error_kind=type(exc).__name__) for _ in items]
        retrieval_ms = (time.perf_counter() - started) * 1000
        gateway = self._gateway_for_loop()

        async def one(inputs: dict[str, Any], found: list[dict[str, Any]] | None) -> Answer:
            t0 = time.perf_counter()
            try:
                messages = self._render(inputs, found)
                res = await gateway.complete(self.model, messages)
            except WorkbenchError as exc:
                if raise_errors:
                    raise
                return Answer(None, found or [], error=str(exc), error_kind=type(exc).__name__)
            return Answer(
                res.output,
                found or [],
                retrieval_ms + (time.perf_counter() - t0) * 1000,
                res.prompt_tokens,
                res.completion_tokens,
                res.cost,
                None,
                messages,
            )

        return list(await asyncio.gather(*(one(i, h) for i, h in zip(items, hits))))

    # -- replay ----------------------------------------------------------------------------------

    def replay(self, limit: int | None = None, concurrency: int = 8) -> ReplayReport:
        """Run the recorded eval cases through this bundle; per metric, the recorded and the replayed score."""
        return _run_sync(lambda: self.areplay(limit, concurrency))

    async def areplay(self, limit: int | None = None, concurrency: int = 8) -> ReplayReport:
        from workbench.metrics.registry import CellView, Score, bind

        cases = self.cases()
        cases = cases[cases["repeat"] == 0]
        if limit is not None:
            cases = cases.head(limit)
        metrics = [bind(m["name"], m["options"], m["label"]) for m in self.manifest["metrics"]]
        inputs = [json.loads(s) for s in cases["inputs"]]
        answers: list[Answer] = []
        for start in range(0, len(inputs), max(concurrency, 1) * 4):
            answers.extend(await self.abatch(inputs[start : start + max(concurrency, 1) * 4]))
        per_metric: dict[str, dict[str, Any]] = {}
        same_output = sum(a.answer == o for a, o in zip(answers, cases["output"]))
        for m in metrics:
            if m.definition.is_async or m.definition.needs_judge:
                per_metric[m.label] = {"note": "judge metric: not replayed (it needs a judge model call)"}
                continue
            recorded, replayed = [], []
            for inp, a, rec in zip(inputs, answers, cases[m.label]):
                if a.error is not None:
                    value = None
                else:
                    view = CellView(
                        case=inp,
                        output=a.answer or "",
                        messages=a.messages,
                        retrieved=a.retrieved if self.retriever is not None else None,
                        latency_ms=a.latency_ms,
                        cost=a.cost,
                        tokens=(a.prompt_tokens or 0) + (a.completion_tokens or 0),
                    )
                    try:
                        raw = m.definition.fn(**m.call_kwargs(view))
                        value = raw.value if isinstance(raw, Score) else raw
                        value = None if value is None else float(value)
                    except Exception:  # noqa: BLE001 - an unscorable case is reported as missing, like the runner
                        value = None
                recorded.append(_plain(rec))
                replayed.append(value)
            per_metric[m.label] = _replay_stats(recorded, replayed)
            if m.definition.name in _TIMING_METRICS:
                per_metric[m.label]["note"] = "timing metric: measured again, not expected to match"
        return ReplayReport(
            self.hash,
            len(inputs),
            int(same_output),
            sum(a.error is not None for a in answers),
            per_metric,
        )


_TIMING_METRICS = ("latency",)


def _replay_stats(recorded: list[Any], replayed: list[Any]) -> dict[str, Any]:
    """``identical`` counts cases whose scores agree (both missing agrees too); ``missing`` when only one is."""
    pairs = [(a, b) for a, b in zip(recorded, replayed) if a is not None and b is not None]
    diffs = [abs(a - b) for a, b in pairs]
    rec = [a for a in recorded if a is not None]
    rep = [b for b in replayed if b is not None]
    both_none = sum(a is None and b is None for a, b in zip(recorded, replayed))
    return {
        "recorded": sum(rec) / len(rec) if rec else None,
        "replayed": sum(rep) / len(rep) if rep else None,
        "n": len(recorded),
        "identical": sum(d <= 1e-9 for d in diffs) + both_none,
        "max_abs_diff": max(diffs) if diffs else None,
        "missing": len(recorded) - len(pairs) - both_none,
    }


@dataclass
class ReplayReport:
    """Recorded vs replayed scores per metric (identical when the model answers the same)."""

    bundle_hash: str
    cases: int
    same_output: int
    errors: int
    metrics: dict[str, dict[str, Any]]

    @property
    def identical(self) -> bool:
        return self.errors == 0 and all(
            m.get("identical") == m.get("n") and not m.get("missing")
            for m in self.metrics.values()
            if "n" in m and "note" not in m
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"identical": self.identical}

    def __str__(self) -> str:
        lines = [
            f"replayed {self.cases} case(s): {self.same_output} identical output(s), {self.errors} error(s)",
        ]
        for name, m in self.metrics.items():
            if "note" in m:
                shown = f"recorded {_fmt(m['recorded'])}, replayed {_fmt(m['replayed'])}: " if "n" in m else ""
                lines.append(f"  {name}: {shown}{m['note']}")
                continue
            verdict = (
                "identical"
                if m["identical"] == m["n"] and not m["missing"]
                else f"differs on {m['n'] - m['identical']} case(s), max |diff| {_fmt(m['max_abs_diff'])}"
                + (f", {m['missing']} missing" if m["missing"] else "")
            )
            lines.append(f"  {name}: recorded {_fmt(m['recorded'])}, replayed {_fmt(m['replayed'])} ({verdict})")
        lines.append("verdict: " + ("scores reproduced" if self.identical else "scores differ (see above)"))
        return "\n".join(lines)


def _run_sync(factory: Any) -> Any:
    """Run a coroutine from sync code, also inside Jupyter's running event loop (then in a worker thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name="workbench-bundle", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Verify every hash of a bundle (directory or .zip) and load it; refuses anything incomplete or altered."""
    folder, manifest = verify(path)
    try:
        return Bundle(Path(path), folder, manifest)
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: the bundle's files do not describe a usable variant ({exc})") from exc


__all__ = [
    "Answer",
    "Bundle",
    "ReplayReport",
    "export",
    "load_bundle",
    "requirements_txt",
    "verify",
]
