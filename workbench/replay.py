"""Replay: re-execute a stored (or imported) run's cells from its record, as a new run, and compare the scores.

Why from the stored cells and not by re-planning: the stored messages are exactly what was sent, so a replay
needs neither the corpus files nor the dataset's folder, and an imported run replays on another machine.
With the cache, every cell is answered by the response it had, so the scores must equal the original's; without
it, every model and judge call is sent again, and the per-metric paired test shows nondeterminism or drift.
``retry_failed_judgements`` drops the cached judge replies behind scores that failed (e.g. a reply that did not
parse), so those prompts are asked again and their new replies cached.
The report also names each variant whose provider-reported model id or ``system_fingerprint`` differs between
the original and the replay: the provider changed what serves the model, a likely cause of drift.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from workbench.runner import Run

__all__ = ["ReplayReport", "replay"]


@dataclass
class ReplayReport:
    """Original vs replayed, per metric: means, difference (replayed - original), paired test, cells changed."""

    original: str
    replay: str
    use_cache: bool
    metrics: list[dict[str, Any]] = field(default_factory=list)
    changed_outputs: int = 0
    cells: int = 0
    retried_judgements: int = 0
    # per variant whose provider-reported ids changed: {"variant", "field", "original", "replayed"}
    served_changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when every score of every cell equals the original's (NaN equal to NaN)."""
        return all(m["changed_cells"] == 0 for m in self.metrics)

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.metrics)

    def as_dict(self) -> dict[str, Any]:
        return {
            "original": self.original,
            "replay": self.replay,
            "use_cache": self.use_cache,
            "identical": self.identical,
            "cells": self.cells,
            "changed_outputs": self.changed_outputs,
            "retried_judgements": self.retried_judgements,
            "served_changes": self.served_changes,
            "metrics": self.metrics,
        }

    def __str__(self) -> str:
        head = (
            f"replay {self.replay} of {self.original} ({'cache' if self.use_cache else 'no cache'}): "
            f"{self.changed_outputs}/{self.cells} outputs changed; "
            + ("scores identical" if self.identical else "scores differ")
        )
        lines = [head]
        for m in self.metrics:
            lines.append(
                f"  {m['metric']}: {m['original']:.4f} -> {m['replayed']:.4f} ({m['diff']:+.4f}, "
                f"CI {m['ci_low']:+.4f}..{m['ci_high']:+.4f}, p={m['p_value']:.3g}, {m['changed_cells']} cells changed)"
            )
        for c in self.served_changes:
            what = "system fingerprint" if c["field"] == "system_fingerprints" else "served model"
            lines.append(
                f"  {c['variant']}: {what} changed {', '.join(c['original'])} -> {', '.join(c['replayed'])}: the "
                "provider changed what serves this model, a likely cause of drift"
            )
        return "\n".join(lines)


def _same(a: Any, b: Any) -> bool:
    fa = a is None or (isinstance(a, float) and math.isnan(a))
    fb = b is None or (isinstance(b, float) and math.isnan(b))
    return (fa and fb) or (not fa and not fb and a == b)


def replay(
    run: Run, use_cache: bool = True, retry_failed_judgements: bool = False, progress: bool = False
) -> tuple[Run, ReplayReport]:
    """Replay ``run`` as a new run in the same workspace; returns (the new run, the comparison report)."""
    from workbench import stats
    from workbench.runner import PlannedCell, Run, _Executor, _run_coroutine

    store = run.store
    info = run.info
    experiment = run.experiment
    by_name = {v.name: v for v in experiment.variants}
    cases = dict(experiment.dataset.cases())
    stored = store.sql(
        "SELECT case_id, variant, repeat, request_key, messages, retrieved, output FROM cells WHERE run_id=$1 "
        "AND messages IS NOT NULL ORDER BY case_id, variant, repeat",
        [run.run_id],
    )
    cells = [
        PlannedCell(
            r.case_id,
            cases[r.case_id],
            by_name[r.variant],
            int(r.repeat),
            json.loads(r.messages),
            r.request_key,
            json.loads(r.retrieved) if isinstance(r.retrieved, str) else None,
        )
        for r in stored.itertuples()
    ]
    retried = 0
    if retry_failed_judgements:
        with store.transaction() as con:
            keys = con.execute(
                "SELECT DISTINCT j.request_key FROM judgements j JOIN scores s "
                "USING (run_id, case_id, variant, repeat, metric) WHERE j.run_id=$1 AND s.error IS NOT NULL",
                [run.run_id],
            ).fetchall()
            retried = len(keys)
            for (key,) in keys:
                con.execute("DELETE FROM responses WHERE request_key=$1", [key])
    new_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(3)
    spec = dict(info["spec"]) | {"replay_of": run.run_id}
    variants = store.run_variants(run.run_id)
    store.create_run(
        new_id,
        f"replay of {run.run_id}" + ("" if use_cache else " (no cache)"),
        info["dataset_name"],
        info["dataset_hash"],
        spec,
        int(info["repeats"]),
        len(cells),
        [
            {
                "name": v["variant"],
                "hash": v["variant_hash"],
                **{k: v.get(k) for k in ("prompt_name", "prompt_hash", "model_name", "model", "model_hash")},
                **{k: v.get(k) for k in ("retriever_name", "retriever_hash", "corpus_hash")},
            }
            for v in variants
        ],
        [],
        [],
    )
    new = Run(store, new_id, experiment)
    executor = _Executor(new, cells, progress=progress, replace=False, use_cache=use_cache)
    _run_coroutine(executor.execute, executor.cancel)
    new.last = executor.summary
    return new, compare_runs(run, new, use_cache, retried, stats)


def compare_runs(original: Run, replayed: Run, use_cache: bool, retried: int, stats: Any) -> ReplayReport:
    keys = ["case_id", "variant", "repeat"]
    a = original.results().set_index(keys).sort_index()
    b = replayed.results().set_index(keys).sort_index()
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    report = ReplayReport(original.run_id, replayed.run_id, use_cache, cells=len(common))
    report.changed_outputs = int(sum(not _same(x, y) for x, y in zip(a["output"], b["output"])))
    report.retried_judgements = retried
    served_a = original.store.served_by(original.run_id)
    served_b = replayed.store.served_by(replayed.run_id)
    for variant in served_a:
        for key in ("served_models", "system_fingerprints"):
            xa, xb = served_a[variant][key], (served_b.get(variant) or {}).get(key) or []
            if xa and xb and xa != xb:
                report.served_changes.append({"variant": variant, "field": key, "original": xa, "replayed": xb})
    for m in original.info["spec"]["metrics"]:
        label = m["label"]
        if label not in a.columns or label not in b.columns:
            continue
        xa, xb = a[label].astype(float).to_numpy(), b[label].astype(float).to_numpy()
        r = stats.paired_compare(xb, xa)
        report.metrics.append(
            {
                "metric": label,
                "original": r.mean_b,
                "replayed": r.mean_a,
                "diff": r.diff,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "p_value": r.p_value,
                "n": r.n,
                "changed_cells": int(sum(not _same(float(x), float(y)) for x, y in zip(xa, xb))),
            }
        )
    return report
