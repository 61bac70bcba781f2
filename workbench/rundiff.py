"""``ws.diff(a, b)`` / ``llmops diff``: what changed between two runs, variant by variant, and what it did to scores.

Why by variant name: a grid's variants are its columns, and users rename prompts or models far less than they
edit them; variants present in one run only are listed as such. Corpus *paths* are not a change (the same
documents in another folder are the same corpus, see issue 13); a corpus whose content differs is.
What the provider says served each variant (reply ``model`` ids, ``system_fingerprint``) is compared too, under
``served``: same config but another backend is the first suspect when scores move. It is reported only when
both runs recorded ids (older runs have none) and the requested model is unchanged (else ``model.model`` says it).
Score deltas are paired by case (``stats.paired_compare``, B minus A) where both runs scored the same cases.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.runner import Run

__all__ = ["RunDiff", "diff_runs"]

_MODEL_IGNORED = {"name", "route"}  # display name; the route is how it was served, not what was asked


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def _changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    fa, fb = _flat(a), _flat(b)
    return {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def _prompt_text(p: dict[str, Any]) -> list[str]:
    lines = []
    if p.get("system"):
        lines += ["[system]", *str(p["system"]).splitlines()]
    lines += ["[user]", *str(p.get("user") or "").splitlines()]
    for i, shot in enumerate(p.get("few_shot") or []):
        lines += [f"[few_shot {i}]", *json.dumps(shot, sort_keys=True, ensure_ascii=False).splitlines()]
    return lines


def _retriever(v: dict[str, Any], corpus_hash: str | None) -> dict[str, Any] | None:
    r = v.get("retriever")
    if not r:
        return None
    out = {k: val for k, val in r.items() if k != "name"}
    if out.get("corpus") is not None:
        out["corpus"] = {"content": corpus_hash or v.get("retriever_corpus_hash")}
    return out


def _served_changed(a: dict[str, list[str]], b: dict[str, list[str]]) -> dict[str, list[Any]]:
    """Provider-reported ids that differ, where both runs recorded some (an old run's empty list is unknown)."""
    out: dict[str, list[Any]] = {}
    for key in ("served_models", "system_fingerprints"):
        xa, xb = a.get(key) or [], b.get(key) or []
        if xa and xb and xa != xb:
            out[key] = [xa, xb]
    return out


@dataclass
class RunDiff:
    """The differences between run ``a`` and run ``b``; ``changes`` names each one in a line."""

    a: str
    b: str
    dataset: dict[str, Any]
    metrics: dict[str, Any]
    variants: dict[str, Any]
    scores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def changes(self) -> list[str]:
        """One entry per change: ``dataset``, ``metric <label>``, ``<variant>: prompt``, ``<variant>: model.<key>``."""
        out = []
        if not self.dataset["same"]:
            out.append("dataset")
        out += [f"metric {m}" for key in ("added", "removed", "changed") for m in self.metrics[key]]
        out += [f"variant only in {self.a}: {v}" for v in self.variants["only_a"]]
        out += [f"variant only in {self.b}: {v}" for v in self.variants["only_b"]]
        for name, what in self.variants["changed"].items():
            if what.get("prompt"):
                out.append(f"{name}: prompt")
            out += [f"{name}: model.{k}" for k in what.get("model", {})]
            out += [f"{name}: retriever.{k}" for k in what.get("retriever", {})]
            out += [f"{name}: served.{k}" for k in what.get("served", {})]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "changes": self.changes,
            "dataset": self.dataset,
            "metrics": self.metrics,
            "variants": self.variants,
            "scores": self.scores,
        }

    def scores_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.scores)

    def __str__(self) -> str:
        lines = [f"diff {self.a} -> {self.b}"]
        ds = self.dataset
        if ds["same"]:
            lines.append(f"dataset: same ({ds['a']['name']} {ds['a']['hash'][:12]})")
        else:
            lines.append(
                f"dataset: {ds['a']['name']} {ds['a']['hash'][:12]} -> {ds['b']['name']} {ds['b']['hash'][:12]}: "
                f"{len(ds['added'])} added, {len(ds['removed'])} removed, {len(ds['changed'])} changed rows"
            )
        for key in ("added", "removed", "changed"):
            if self.metrics[key]:
                lines.append(f"metrics {key}: {', '.join(self.metrics[key])}")
        for key, run in (("only_a", self.a), ("only_b", self.b)):
            if self.variants[key]:
                lines.append(f"variants only in {run}: {', '.join(self.variants[key])}")
        for name, what in self.variants["changed"].items():
            lines.append(f"variant {name}:")
            lines += ["  " + line for line in what.get("prompt", [])]
            for part in ("model", "retriever", "served"):
                for k, (va, vb) in what.get(part, {}).items():
                    lines.append(f"  {part}.{k}: {va!r} -> {vb!r}")
        if self.scores:
            lines.append("scores (B - A, paired by case):")
            for s in self.scores:
                lines.append(
                    f"  {s['variant']} {s['metric']}: {s['mean_a']:.4f} -> {s['mean_b']:.4f} "
                    f"({s['diff']:+.4f}, {int(s['confidence'] * 100)}% CI {s['ci_low']:+.4f}..{s['ci_high']:+.4f}, "
                    f"p={s['p_value']:.3g}, n={s['n']})"
                )
        if len(lines) == 1 + (1 if ds["same"] else 0) and not self.scores:
            lines.append("no differences")
        return "\n".join(lines)


def _dataset_diff(run_a: Run, run_b: Run) -> dict[str, Any]:
    ia, ib = run_a.info, run_b.info
    out: dict[str, Any] = {
        "a": {"name": ia["dataset_name"], "hash": ia["dataset_hash"]},
        "b": {"name": ib["dataset_name"], "hash": ib["dataset_hash"]},
        "same": ia["dataset_hash"] == ib["dataset_hash"],
        "added": [],
        "removed": [],
        "changed": [],
    }
    if not out["same"]:
        ca = dict(run_a.store.dataset_cases(ia["dataset_hash"]))
        cb = dict(run_b.store.dataset_cases(ib["dataset_hash"]))
        out["added"] = sorted(set(cb) - set(ca))
        out["removed"] = sorted(set(ca) - set(cb))
        out["changed"] = sorted(k for k in set(ca) & set(cb) if json.loads(ca[k]) != json.loads(cb[k]))
    return out


def diff_runs(run_a: Run, run_b: Run, confidence: float = 0.95) -> RunDiff:
    """Compare two stored runs (they may live in different workspaces)."""
    from workbench import analysis, stats

    sa, sb = run_a.info["spec"], run_b.info["spec"]
    ma = {m["label"]: m for m in sa["metrics"]}
    mb = {m["label"]: m for m in sb["metrics"]}
    metrics = {
        "added": sorted(set(mb) - set(ma)),
        "removed": sorted(set(ma) - set(mb)),
        "changed": sorted(k for k in set(ma) & set(mb) if ma[k] != mb[k]),
    }
    va = {v["name"]: v for v in sa["variants"]}
    vb = {v["name"]: v for v in sb["variants"]}
    corpus_a = {v["variant"]: v.get("corpus_hash") for v in run_a.store.run_variants(run_a.run_id)}
    corpus_b = {v["variant"]: v.get("corpus_hash") for v in run_b.store.run_variants(run_b.run_id)}
    served_a, served_b = run_a.store.served_by(run_a.run_id), run_b.store.served_by(run_b.run_id)
    changed: dict[str, Any] = {}
    for name in [n for n in va if n in vb]:
        x, y = va[name], vb[name]
        what: dict[str, Any] = {}
        prompt = list(
            difflib.unified_diff(
                _prompt_text(x["prompt"]), _prompt_text(y["prompt"]), run_a.run_id, run_b.run_id, lineterm=""
            )
        )
        if prompt:
            what["prompt"] = prompt
        model = _changed(
            {k: v for k, v in x["model"].items() if k not in _MODEL_IGNORED},
            {k: v for k, v in y["model"].items() if k not in _MODEL_IGNORED},
        )
        if model:
            what["model"] = model
        retriever = _changed(_retriever(x, corpus_a.get(name)) or {}, _retriever(y, corpus_b.get(name)) or {})
        if retriever:
            what["retriever"] = retriever
        if "model" not in model:
            served = _served_changed(served_a.get(name) or {}, served_b.get(name) or {})
            if served:
                what["served"] = served
        if what:
            changed[name] = what
    variants = {
        "only_a": [n for n in va if n not in vb],
        "only_b": [n for n in vb if n not in va],
        "changed": changed,
    }
    scores = []
    common_metrics = [m for m in ma if m in mb]
    common_variants = [n for n in va if n in vb]
    for metric in common_metrics:
        try:
            ta, tb = analysis.per_case(run_a, metric), analysis.per_case(run_b, metric)
        except Exception:  # noqa: BLE001 - a metric one run could not tabulate has no delta to show
            continue
        cases = ta.index.intersection(tb.index)
        for name in common_variants:
            if name not in ta.columns or name not in tb.columns:
                continue
            xa, xb = ta.loc[cases, name].to_numpy(), tb.loc[cases, name].to_numpy()
            if all(math.isnan(float(v)) for v in [*xa, *xb]):
                continue
            r = stats.paired_compare(xb, xa, confidence=confidence)
            scores.append(
                {
                    "variant": name,
                    "metric": metric,
                    "mean_a": r.mean_b,
                    "mean_b": r.mean_a,
                    "diff": r.diff,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "p_value": r.p_value,
                    "n": r.n,
                    "confidence": confidence,
                }
            )
    return RunDiff(run_a.run_id, run_b.run_id, _dataset_diff(run_a, run_b), metrics, variants, scores)
