"""Release gates and promotion: dev -> qa -> prod, recorded in the workspace with the evidence behind each step.

Why re-check at promotion: a bundle's gates were measured on the dataset version it was exported
with. If the eval dataset has grown since (for example with cases from production traffic,
``ws.dataset_from_log``), the numbers that justified the bundle may no longer hold, so promoting to
prod re-runs the bundle's exact variant (the prompt, model and retriever its manifest names by
hash) on the current dataset version through the normal experiment API and judges the gates on
that run. Thresholds are judged by :func:`workbench.analysis.check_constraints`, the same code that
decides which variants qualify in ``run.winner``.

Every attempt is stored in the ``promotions`` table, refused ones too (with the reason), so the
history of a deployment can be audited.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from workbench.analysis import Check, check_constraints, parse_constraints
from workbench.errors import NotFoundError, PromotionError, ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from workbench.workspace import Workspace

__all__ = ["STAGES", "GateReport", "Promotion", "gate", "promote", "read_manifest"]

STAGES = ("dev", "qa", "prod")


# --------------------------------------------------------------------------------------------------
# reading a bundle's manifest (until workbench.bundles provides the loader)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safe_rel(rel: str, where: str) -> str:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValidationError(f"bundle {where}: manifest lists an unsafe path {rel!r}; refusing the bundle")
    return str(p)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A bundle's ``manifest.json`` after checking the sha256 of every file it lists (directory or .zip).

    A missing, changed or escaping file refuses the bundle with an error naming the file. Nothing is
    extracted: zip members are hashed in memory.
    """
    bundle = Path(path)
    if not bundle.exists():
        raise NotFoundError(f"bundle {bundle} does not exist; export one with run.export(...) or `llmops export`")
    if bundle.is_dir():
        root = bundle.resolve()
        mf = root / "manifest.json"
        if not mf.is_file():
            raise ValidationError(f"{bundle} is not a bundle: it has no manifest.json")
        manifest = _parse_manifest(mf.read_bytes(), str(mf))
        for rel, digest in (manifest.get("files") or {}).items():
            target = root / _safe_rel(rel, str(bundle))
            if target.is_symlink() or not target.resolve().is_relative_to(root):
                raise ValidationError(f"bundle {bundle}: {rel} is a link or leaves the bundle folder; refusing it")
            if not target.is_file():
                raise ValidationError(f"bundle {bundle} is incomplete: {rel} is missing")
            if _sha256(target.read_bytes()) != digest:
                raise ValidationError(f"bundle {bundle}: {rel} does not match its sha256 in the manifest (changed?)")
        return manifest
    if not zipfile.is_zipfile(bundle):
        raise ValidationError(f"{bundle} is neither a bundle folder nor a .zip bundle")
    with zipfile.ZipFile(bundle) as zf:
        names = {i.filename: i for i in zf.infolist() if not i.is_dir()}
        prefix = ""
        if "manifest.json" not in names:
            tops = [n for n in names if n.count("/") == 1 and n.endswith("/manifest.json")]
            if len(tops) != 1:
                raise ValidationError(f"{bundle} is not a bundle: no manifest.json at its top level")
            prefix = tops[0][: -len("manifest.json")]
        manifest = _parse_manifest(zf.read(prefix + "manifest.json"), f"{bundle}!manifest.json")
        for rel, digest in (manifest.get("files") or {}).items():
            member = prefix + _safe_rel(rel, str(bundle))
            info = names.get(member)
            if info is None:
                raise ValidationError(f"bundle {bundle} is incomplete: {rel} is missing from the archive")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise ValidationError(f"bundle {bundle}: {rel} is a symbolic link; refusing it")
            if _sha256(zf.read(info)) != digest:
                raise ValidationError(f"bundle {bundle}: {rel} does not match its sha256 in the manifest (changed?)")
    return manifest


def _parse_manifest(raw: bytes, where: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ValidationError(f"{where} must hold a JSON object")
    missing = [k for k in ("bundle_hash", "run_id", "variant", "dataset") if k not in manifest]
    if missing:
        raise ValidationError(f"{where} lacks {missing}; is it a workbench bundle manifest?")
    return manifest


def load_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified manifest: by ``workbench.bundles.verify`` when that module exists, else :func:`read_manifest`."""
    try:
        from workbench import bundles  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return read_manifest(path)
    verify = getattr(bundles, "verify", None)
    if verify is None:
        return read_manifest(path)
    _folder, manifest = verify(path)
    return dict(manifest)


def bundle_eval_cases(path: str | os.PathLike[str]) -> pd.DataFrame | None:
    """A verified bundle's ``eval/cases.parquet`` (None when it has none)."""
    import io

    import pandas as pd

    try:
        from workbench import bundles  # type: ignore[attr-defined,unused-ignore]

        folder, _manifest = bundles.verify(path)
        target = Path(folder) / "eval" / "cases.parquet"
        return pd.read_parquet(target) if target.is_file() else None
    except ImportError:
        pass
    manifest = read_manifest(path)
    if "eval/cases.parquet" not in (manifest.get("files") or {}):
        return None
    p = Path(path)
    if p.is_dir():
        return pd.read_parquet(p / "eval" / "cases.parquet")
    with zipfile.ZipFile(p) as zf:
        name = next(n for n in zf.namelist() if n.endswith("eval/cases.parquet"))
        return pd.read_parquet(io.BytesIO(zf.read(name)))


def is_bundle(target: str | os.PathLike[str]) -> bool:
    p = Path(target)
    return (p.is_dir() and (p / "manifest.json").is_file()) or (p.is_file() and zipfile.is_zipfile(p))


# --------------------------------------------------------------------------------------------------
# gates


@dataclass
class GateReport:
    """Thresholds checked against a run's variants or a bundle's recorded evaluation; ``passed`` is the verdict."""

    target: str
    checks: dict[str, list[Check]]
    source: str

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for cs in self.checks.values() for c in cs)

    @property
    def failures(self) -> list[str]:
        return [f"{v}: {c.describe()}" for v, cs in self.checks.items() for c in cs if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "source": self.source,
            "passed": self.passed,
            "variants": {v: [c.as_dict() for c in cs] for v, cs in self.checks.items()},
        }

    def __str__(self) -> str:
        lines = [f"gate {self.target} ({self.source})"]
        for v, cs in self.checks.items():
            lines.append(f"  variant {v}:")
            for c in cs:
                shown = "missing" if c.value is None else f"{c.value:.4g}"
                lines.append(
                    f"    {'PASS' if c.passed else 'FAIL'}  {c.metric} = {shown}  (needs {c.op} {c.threshold:g})"
                )
        total = sum(len(cs) for cs in self.checks.values())
        failed = len(self.failures)
        lines.append(f"result: {'PASSED' if self.passed else 'FAILED'} ({total - failed} of {total} checks pass)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(str(self))}</pre>"


def _rules(constraints: Sequence[str] | Mapping[str, Any] | None) -> list[tuple[str, str, float]]:
    rules = parse_constraints(constraints)
    bad = [f"{n}{op}{v:g}" for n, op, v in rules if op not in (">=", "<=")]
    if bad:
        raise ValidationError(f"gates use >= or <= (as --min/--max do), not {bad}")
    return rules


def manifest_rules(manifest: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """The gates recorded in a bundle manifest as (metric, op, threshold)."""
    out = []
    for i, g in enumerate(manifest.get("gates") or []):
        try:
            out.append((str(g["metric"]), str(g["op"]), float(g["threshold"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"manifest gates[{i}] must have metric, op and threshold: {g!r}") from exc
    return out


def _manifest_board(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    row = (manifest.get("eval") or {}).get("leaderboard") or {}
    flat = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {str(manifest["variant"]): flat}


def gate_run(
    ws: Workspace, run_id: str, rules: Sequence[tuple[str, str, float]], variant: str | None = None
) -> GateReport:
    """Check thresholds against a stored run's leaderboard (every variant, or one)."""
    from workbench.analysis import _board

    run = ws.get_run(run_id)
    board = _board(run)
    if variant is not None:
        if variant not in board.index:
            raise NotFoundError(f"run {run.run_id} has no variant {variant!r}; its variants are {list(board.index)}")
        board = board.loc[[variant]]
    info = run.info
    return GateReport(
        f"run {run.run_id}",
        check_constraints(board, rules),
        f"leaderboard of run {run.run_id} on dataset {info['dataset_name']} ({info['dataset_hash'][:12]})",
    )


def gate(
    ws: Workspace,
    target: str | os.PathLike[str],
    constraints: Sequence[str] | Mapping[str, Any] | None = None,
    variant: str | None = None,
) -> GateReport:
    """Check thresholds (``["token_f1>=0.4", "latency_p95_ms<=2000"]``) on a run id or a bundle.

    A run: its leaderboard (every variant unless ``variant``). A bundle: its recorded evaluation
    (the manifest's leaderboard row); without thresholds, the bundle's own gates are re-checked.
    """
    rules = _rules(constraints)
    if is_bundle(target):
        manifest = load_manifest(target)
        rules = rules or manifest_rules(manifest)
        if not rules:
            raise ValidationError(f"bundle {target} records no gates; give thresholds with --min/--max")
        return GateReport(
            f"bundle {target}",
            check_constraints(_manifest_board(manifest), rules),
            f"recorded evaluation of run {manifest['run_id']} on {_dataset_ref(manifest)}",
        )
    if not rules:
        raise ValidationError("give at least one threshold, e.g. --min token_f1=0.4 or --max latency_p95_ms=2000")
    return gate_run(ws, str(target), rules, variant)


def _dataset_ref(manifest: Mapping[str, Any]) -> str:
    d = manifest.get("dataset") or {}
    return f"{d.get('name')}@v{d.get('version')}"


# --------------------------------------------------------------------------------------------------
# promotion


@dataclass
class Promotion:
    """One stored promotion: the bundle, the stage it moved to, and the evidence and approval behind it."""

    promotion_id: int
    bundle_hash: str
    stage: str
    previous_stage: str
    gates: list[dict[str, Any]] = field(default_factory=list)
    checked_on: str | None = None
    gate_run_id: str | None = None
    approved_by: str | None = None
    approved_at: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def __str__(self) -> str:
        head = f"bundle {self.bundle_hash[:12]} promoted {self.previous_stage} -> {self.stage}"
        if self.approved_by:
            head += f", approved by {self.approved_by} at {self.approved_at}"
        if self.checked_on:
            head += f"; gates pass on {self.checked_on} (run {self.gate_run_id})"
        return head

    def _repr_html_(self) -> str:
        import html

        return f"<p>{html.escape(str(self))}</p>"


def promote(
    ws: Workspace,
    bundle: str | os.PathLike[str],
    to: str,
    *,
    approve: str | None = None,
    note: str | None = None,
    constraints: Sequence[str] | Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Promotion:
    """Move a bundle one stage up (dev -> qa -> prod) and record it; refuse, and record why, when it may not.

    qa needs the bundle's recorded gates (plus ``constraints``) to pass. prod also needs ``approve``
    (the approver's name; stored with the time and ``note``) and the gates to pass on the *current*
    version of the bundle's eval dataset: when the workspace holds a newer version than the one in
    the manifest, the bundle's variant is re-run on it first (a normal experiment run, kept in the
    workspace as evidence).
    """
    if to not in STAGES[1:]:
        raise ValidationError(f"--to must be one of {list(STAGES[1:])}, got {to!r}")
    manifest = load_manifest(bundle)
    bundle_hash = str(manifest["bundle_hash"])
    current = ws.store.bundle_stage(bundle_hash) or "dev"
    base: dict[str, Any] = {
        "bundle_hash": bundle_hash,
        "stage": to,
        "previous_stage": current,
        "bundle_path": str(Path(bundle).resolve()),
        "run_id": manifest.get("run_id"),
        "variant": manifest.get("variant"),
        "dataset_name": (manifest.get("dataset") or {}).get("name"),
        "dataset_hash": (manifest.get("dataset") or {}).get("hash"),
        "manifest": {k: v for k, v in manifest.items() if k != "files"},
        "note": note,
    }
    # Checks that cost nothing come first: no re-run is paid for a promotion that is refused anyway.
    if to == current:
        raise PromotionError(f"bundle {bundle_hash[:12]} is already in {to}")
    if STAGES.index(to) != STAGES.index(current) + 1:
        raise PromotionError(
            f"bundle {bundle_hash[:12]} is in {current}; stages go {' -> '.join(STAGES)}, so promote it to "
            f"{STAGES[STAGES.index(current) + 1]} first"
        )
    rules = manifest_rules(manifest) + _rules(constraints)
    if to == "prod":
        if not approve or not str(approve).strip():
            _refuse(ws, base, "promotion to prod needs an explicit approval: --approve NAME (and --note TEXT)")
        if not rules:
            _refuse(ws, base, "the bundle records no gates and none were given (--min/--max): nothing shows it is fit")
    if to == "qa":
        report = GateReport(
            f"bundle {bundle}", check_constraints(_manifest_board(manifest), rules), "recorded evaluation"
        ) if rules else None  # fmt: skip
        checked_on, gate_run_id = _dataset_ref(manifest), manifest.get("run_id")
    else:
        report, checked_on, gate_run_id = _recheck(ws, manifest, rules, progress)
        base.update(
            checked_dataset_version=int(checked_on.rsplit("@v", 1)[1]) if "@v" in checked_on else None,
            checked_dataset_hash=ws.dataset(base["dataset_name"]).hash,
        )
    base.update(
        gates=[c.as_dict() for cs in (report.checks.values() if report else []) for c in cs], gate_run_id=gate_run_id
    )
    if report is not None and not report.passed:
        _refuse(ws, base, f"gates fail on {checked_on}: " + "; ".join(report.failures) + f"\n{report}")
    approved_at = datetime.now(timezone.utc) if approve else None
    base.update(status="promoted", approved_by=approve, approved_at=approved_at, reason=None)
    pid = ws.store.insert_promotion(base)
    return Promotion(
        pid,
        bundle_hash,
        to,
        current,
        base["gates"],
        checked_on,
        gate_run_id,
        approve,
        approved_at.isoformat() if approved_at else None,
        note,
    )


def _refuse(ws: Workspace, rec: dict[str, Any], reason: str) -> None:
    ws.store.insert_promotion({**rec, "status": "refused", "reason": reason})
    raise PromotionError(f"bundle {rec['bundle_hash'][:12]} not promoted to {rec['stage']}: {reason}")


def _recheck(
    ws: Workspace, manifest: Mapping[str, Any], rules: Sequence[tuple[str, str, float]], progress: bool
) -> tuple[GateReport, str, str | None]:
    """Gates on the current dataset version: the original run when the version is unchanged, else a re-run."""
    d = manifest.get("dataset") or {}
    try:
        current = ws.dataset(str(d.get("name")))
    except NotFoundError as exc:
        raise PromotionError(
            f"the bundle's eval dataset {d.get('name')!r} is not in workspace {ws.path}, so its gates cannot be "
            "re-checked; promote from the workspace the bundle was exported from"
        ) from exc
    run_id = str(manifest["run_id"])
    variant = str(manifest["variant"])
    if current.hash == d.get("hash"):
        try:
            report = gate_run(ws, run_id, rules, variant)
        except NotFoundError:  # the run lives elsewhere: its recorded evaluation is the evidence
            report = GateReport(
                f"bundle {manifest['bundle_hash'][:12]}", check_constraints(_manifest_board(manifest), rules),
                "recorded evaluation",
            )  # fmt: skip
        return report, current.ref, run_id
    rerun = rerun_variant(ws, manifest, current, progress=progress)
    return gate_run(ws, rerun.run_id, rules, variant), current.ref, rerun.run_id


def rerun_variant(ws: Workspace, manifest: Mapping[str, Any], dataset: Any, progress: bool = False) -> Any:
    """Run the bundle's variant (same prompt, model, retriever and metrics, checked by hash) on ``dataset``."""
    try:
        original = ws.get_run(str(manifest["run_id"]))
    except NotFoundError as exc:
        raise PromotionError(
            f"the bundle was evaluated in run {manifest['run_id']}, which is not in workspace {ws.path}: its "
            "variant cannot be re-run on the newer dataset version"
        ) from exc
    exp = original.experiment
    by_name = {v.name: v for v in exp.variants}
    v = by_name.get(str(manifest["variant"]))
    if v is None:
        raise PromotionError(
            f"run {original.run_id} has no variant {manifest['variant']!r}; variants: {sorted(by_name)}"
        )
    expected = {
        "prompt": (manifest.get("prompt") or {}).get("hash"),
        "model": (manifest.get("model") or {}).get("hash"),
        "retriever": (manifest.get("retriever") or {}).get("hash") if manifest.get("retriever") else None,
    }
    got = {"prompt": v.prompt.hash, "model": v.model.hash, "retriever": getattr(v.retriever, "hash", None)}
    wrong = [k for k in expected if expected[k] is not None and expected[k] != got[k]]
    if wrong:
        raise PromotionError(
            f"run {original.run_id} variant {v.name!r} does not match the bundle manifest ({', '.join(wrong)} hash "
            "differs): the bundle was not exported from this run's variant"
        )
    spec: dict[str, Any] = {"name": v.name, "prompt": v.prompt.name, "model": v.model.name}
    if v.retriever is not None:
        spec["retriever"] = v.retriever.name
    new = ws.experiment(
        dataset,
        prompts=[v.prompt],
        models=[v.model],
        metrics=list(exp.metrics),
        retrievers=[v.retriever] if v.retriever is not None else [],
        variants=[spec],
        repeats=exp.repeats,
        concurrency=exp.concurrency,
        name=f"promotion check of bundle {str(manifest['bundle_hash'])[:12]} on {dataset.ref}",
    )
    return new.run(progress=progress)


def promotions(ws: Workspace, bundle: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every promotion attempt (promoted and refused), oldest first; ``bundle`` narrows to one bundle."""
    bundle_hash = None
    if bundle is not None:
        bundle_hash = str(load_manifest(bundle)["bundle_hash"]) if is_bundle(bundle) else str(bundle)
    return ws.store.promotions(bundle_hash)
