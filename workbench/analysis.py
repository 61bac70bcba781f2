"""Analysis of a stored run: confidence intervals, paired comparisons, winner selection, judge-human agreement.

Why paired statistics: variants are scored on the same cases, so comparing per-case differences
removes case difficulty from the noise and finds real differences with far fewer cases. Repeats
of a case are averaged first, so the unit of resampling is the case.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from workbench import stats
from workbench.errors import MetricError, NotFoundError, ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from workbench.runner import Run

# Leaderboard columns a constraint may name besides metrics.
_BOARD_COLUMNS = ("latency_p50_ms", "latency_p95_ms", "cost_per_1k", "errors", "error_rate", "cost")
_LOWER_IS_BETTER_COLUMNS = ("latency_ms", "cost", "prompt_tokens", "completion_tokens", "cost_per_1k")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def per_case(run: Run, metric: str) -> pd.DataFrame:
    """Scores of one metric as a (case x variant) table, repeats averaged."""
    res = run.results()
    if metric not in res.columns:
        labels = [m["label"] for m in run.info["spec"]["metrics"]]
        extra = [c for c in ("human_thumbs", "human_rating") if c in res.columns]
        raise MetricError(f"run {run.run_id} has no metric {metric!r}; its metrics are {labels + extra}")
    return res.pivot_table(index="case_id", columns="variant", values=metric, aggfunc="mean", dropna=False)


def _variants(run: Run) -> list[str]:
    return [v["variant"] for v in run.store.run_variants(run.run_id)]


def _check_variant(run: Run, name: str) -> None:
    known = _variants(run)
    if name not in known:
        raise NotFoundError(f"run {run.run_id} has no variant {name!r}; its variants are {known}")


def variant_cis(run: Run, metric: str, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per variant: mean of the metric with a bootstrap confidence interval (case is the unit)."""
    import pandas as pd

    table = per_case(run, metric)
    rows = []
    for v in _variants(run):
        ci = stats.mean_ci(table[v].to_numpy() if v in table else [], confidence=confidence, seed=seed)
        rows.append(
            {"variant": v, "mean": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, "n": ci.n, "note": ci.reason}
        )
    return pd.DataFrame(rows)


@dataclass
class Comparison:
    """Paired comparison of variant ``a`` against ``b`` on one metric."""

    metric: str
    a: str
    b: str
    result: stats.PairedResult

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "a": self.a, "b": self.b, **self.result.to_dict()}

    def __str__(self) -> str:
        r = self.result
        if math.isnan(r.p_value):
            return f"{self.a} vs {self.b} on {self.metric}: not comparable ({r.reason})"
        verdict = "a real difference" if r.significant() else "not distinguishable from no difference"
        return (
            f"{self.a} vs {self.b} on {self.metric}: mean {r.mean_a:.4f} vs {r.mean_b:.4f}, difference "
            f"{r.diff:+.4f} (95% CI {r.ci_low:+.4f} to {r.ci_high:+.4f}), p = {r.p_value:.4g}, n = {r.n} cases: "
            f"{verdict} at alpha 0.05"
        )

    def _repr_html_(self) -> str:
        return f"<p>{self}</p>"


def compare(
    run: Run,
    a: str,
    b: str,
    metric: str,
    confidence: float = 0.95,
    method: Literal["permutation", "bootstrap"] = "permutation",
    seed: int = 0,
) -> Comparison:
    """Paired test of ``a`` against ``b`` on the cases both scored: difference, CI, p-value."""
    _check_variant(run, a)
    _check_variant(run, b)
    if a == b:
        raise ValidationError(f"compare needs two different variants, got {a!r} twice")
    table = per_case(run, metric)
    result = stats.paired_compare(
        table[a].to_numpy(), table[b].to_numpy(), confidence=confidence, method=method, seed=seed
    )
    return Comparison(metric, a, b, result)


def parse_constraints(items: Sequence[str] | Mapping[str, Any] | None) -> list[tuple[str, str, float]]:
    """``["faithfulness>=0.8", "latency_p95_ms<=2000"]`` or ``{"faithfulness": ">=0.8"}`` -> (name, op, value)."""
    out: list[tuple[str, str, float]] = []
    if not items:
        return out
    pairs = items.items() if isinstance(items, Mapping) else [(None, s) for s in items]
    for key, raw in pairs:
        text = str(raw).replace(" ", "") if key is None else f"{key}{raw if isinstance(raw, str) else '>=' + str(raw)}"
        text = text.replace(" ", "")
        for op in (">=", "<=", ">", "<"):
            if op in text:
                name, _, value = text.partition(op)
                try:
                    out.append((name, op, float(value)))
                except ValueError:
                    raise ValidationError(f"constraint {raw!r}: {value!r} is not a number") from None
                break
        else:
            raise ValidationError(f"constraint {raw!r} must look like 'metric>=0.8' or 'latency_p95_ms<=2000'")
    return out


def bounds(minimums: Sequence[str] | None, maximums: Sequence[str] | None) -> list[str]:
    """``--min faithfulness=0.8 --max latency_p95_ms=2000`` -> constraint strings for :func:`winner`."""
    out = []
    for op, items in ((">=", minimums or []), ("<=", maximums or [])):
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or not name or not value:
                raise ValidationError(f"--min/--max take NAME=VALUE, got {item!r}")
            out.append(f"{name}{op}{value}")
    return out


@dataclass(frozen=True)
class Check:
    """One threshold checked against one variant's value (``value`` is None when the figure is missing)."""

    metric: str
    op: str
    threshold: float
    value: float | None
    passed: bool

    def describe(self) -> str:
        if self.value is None:
            return f"{self.metric} missing (needs {self.op} {self.threshold:g})"
        return f"{self.metric} = {self.value:.4g} (needs {self.op} {self.threshold:g})"

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "op": self.op, "threshold": self.threshold, "value": self.value,
                "passed": self.passed}  # fmt: skip


def _board(run: Run) -> pd.DataFrame:
    """The leaderboard indexed by variant, with the derived columns constraints may name."""
    board = run.leaderboard().set_index("variant")
    board["error_rate"] = board["errors"] / board["n"].where(board["n"] > 0)
    board["cost_per_1k"] = board["cost"] / board["n"].where(board["n"] > 0) * 1000
    return board


def check_constraints(
    board: pd.DataFrame | Mapping[str, Mapping[str, Any]], rules: Sequence[tuple[str, str, float]]
) -> dict[str, list[Check]]:
    """Every rule against every row of a leaderboard (variant -> figures): the one place thresholds are judged.

    Used by :func:`winner` (which variants qualify), by release gates (``llmops gate``) and by
    promotion. A missing or NaN figure fails its rule; an unknown name is an error listing the known ones.
    """
    import pandas as pd

    frame = board if isinstance(board, pd.DataFrame) else pd.DataFrame.from_dict(dict(board), orient="index")
    out: dict[str, list[Check]] = {str(v): [] for v in frame.index}
    for name, op, value in rules:
        if name not in frame.columns:
            known = [c for c in frame.columns if c not in ("position",)]
            raise ValidationError(
                f"constraint on {name!r}: not a metric of this run nor one of {list(_BOARD_COLUMNS)}; "
                f"known figures: {known}"
            )
        for v in frame.index:
            got = frame[name].get(v)
            number = None
            if isinstance(got, numbers.Real) and not isinstance(got, bool) and not math.isnan(float(got)):
                number = float(got)
            passed = number is not None and bool(_OPS[op](number, value))
            out[str(v)].append(Check(name, op, value, number, passed))
    return out


@dataclass
class Decision:
    """The chosen variant (or None) and the evidence: every variant's numbers and why it was or was not chosen."""

    metric: str
    winner: str | None
    reason: str
    table: Any  # DataFrame: variant, mean, ci, constraint results
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    distinguishable: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        import json

        d = asdict(self)
        d["table"] = json.loads(self.table.to_json(orient="records"))
        return d

    def __str__(self) -> str:
        return self.reason

    def _repr_html_(self) -> str:
        return f"<p><b>Winner: {self.winner}</b> — {self.reason}</p>" + self.table.to_html(index=False)


def winner(
    run: Run,
    metric: str,
    constraints: Sequence[str] | Mapping[str, Any] | None = None,
    higher_is_better: bool | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> Decision:
    """Best variant on ``metric`` among those meeting every constraint, tested against the rest.

    Variants whose paired difference from the best is not significant (Holm-adjusted p >= alpha) are
    statistically tied with it; among tied variants the cheapest (then fastest) is chosen, and the
    reason says so. With no qualifying variant the winner is None and the reason lists what failed.
    """
    from workbench.metrics.registry import all_metrics

    if higher_is_better is None:
        spec_metrics = {m["label"]: m["name"] for m in run.info["spec"]["metrics"]}
        definition = all_metrics().get(spec_metrics.get(metric, metric))
        if definition is not None:
            higher_is_better = definition.higher_is_better
        else:  # a raw results column: latency, cost and tokens are better low
            higher_is_better = metric not in _LOWER_IS_BETTER_COLUMNS
    rules = parse_constraints(constraints)
    board = _board(run)
    cis = variant_cis(run, metric, seed=seed).set_index("variant")
    table = cis.join(board[[c for c in _BOARD_COLUMNS if c in board.columns]])
    checks = check_constraints(board, rules)
    failures: dict[str, list[str]] = {v: [c.describe() for c in checks.get(v, []) if not c.passed] for v in table.index}
    table["qualifies"] = [not failures[v] for v in table.index]
    table["failed"] = ["; ".join(failures[v]) for v in table.index]
    table = table.reset_index()
    qualified = table[table["qualifies"] & table["mean"].notna()]
    if qualified.empty:
        why = "; ".join(f"{v}: {', '.join(f) if f else 'no scores'}" for v, f in failures.items())
        return Decision(metric, None, f"No variant qualifies. {why}", table)
    ranked = qualified.sort_values("mean", ascending=not higher_is_better)
    best = str(ranked.iloc[0]["variant"])
    comparisons = []
    tied = [best]
    others = [str(v) for v in ranked["variant"].iloc[1:]]
    if others:
        results = [compare(run, best, o, metric, seed=seed).result for o in others]
        adjusted = stats.holm([r.p_value for r in results])
        for o, r, p_adj in zip(others, results, adjusted):
            comparisons.append(
                {
                    "a": best,
                    "b": o,
                    "diff": r.diff,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "p_value": r.p_value,
                    "p_holm": float(p_adj),
                    "n": r.n,
                }
            )
            if math.isnan(p_adj) or p_adj >= alpha:
                tied.append(o)
    direction = "highest" if higher_is_better else "lowest"
    best_row = ranked.iloc[0]
    head = (
        f"{best} has the {direction} {metric} ({best_row['mean']:.4f}, 95% CI {best_row['ci_low']:.4f} to "
        f"{best_row['ci_high']:.4f}) among {len(qualified)} qualifying variant(s)"
    )
    if len(qualified) < len(table):
        excluded = [f"{r.variant} ({r.failed or 'no scores'})" for r in table.itertuples() if not r.qualifies]
        head += f"; excluded by constraints: {', '.join(excluded)}"
    if not others:
        return Decision(metric, best, head + ". It is the only qualifying variant.", table, comparisons, None)
    if len(tied) == 1:
        second = comparisons[0]
        return Decision(
            metric,
            best,
            head
            + (
                f". It beats every other qualifying variant significantly (runner-up {second['b']}: difference "
                f"{second['diff']:+.4f}, Holm-adjusted p = {second['p_holm']:.3g})."
            ),
            table,
            comparisons,
            True,
        )
    tied_rows = table.set_index("variant").loc[tied]
    order = tied_rows.sort_values(["cost_per_1k", "latency_p95_ms"], na_position="last")
    chosen = str(order.index[0])
    reason = (
        head + f". It is not distinguishable from {', '.join(t for t in tied if t != best)} "
        f"(Holm-adjusted p >= {alpha}), so the difference may be noise."
    )
    why = _tie_break(order)
    if chosen != best:
        reason += f" Among these statistically tied variants {chosen} is chosen: {why}."
    else:
        reason += f" {best} is kept: {why}."
    return Decision(metric, chosen, reason, table, comparisons, False)


def _tie_break(order: pd.DataFrame) -> str:
    """What decided between statistically tied variants (``order``: by cost per 1k cases, then p95 latency).

    Says what actually decided: a $0 or unknown price never reads as "cheapest" when latency chose.
    """

    import pandas as pd

    def num(row: Any, column: str) -> float:
        value = row.get(column)
        return math.nan if value is None or pd.isna(value) else float(value)

    first, second, runner_up = order.iloc[0], order.iloc[1], str(order.index[1])
    c1, c2 = num(first, "cost_per_1k"), num(second, "cost_per_1k")
    if not math.isnan(c1) and (math.isnan(c2) or c1 < c2):
        other = f"no price is known for {runner_up}" if math.isnan(c2) else f"${c2:.4f} for {runner_up}"
        return f"cheapest (${c1:.4f} per 1k cases vs {other})"
    cost = "tied on score, no price is known" if math.isnan(c1) else f"tied on score and cost (${c1:.4f} per 1k cases)"
    l1, l2 = num(first, "latency_p95_ms"), num(second, "latency_p95_ms")
    if not math.isnan(l1) and (math.isnan(l2) or l1 < l2):
        other = f"unknown for {runner_up}" if math.isnan(l2) else f"{l2:.0f} ms for {runner_up}"
        return f"{cost}; fastest (p95 latency {l1:.0f} ms vs {other})"
    return f"{cost} and latency too; first in the ranking"


def agreement(run: Run, metric: str, human: str = "rating", threshold: float = 0.5) -> dict[str, Any]:
    """Judge-human agreement on the cells both rated: Spearman, and Cohen's kappa on categories.

    Ratings (1-5) are compared with the metric mapped to 1-5 (quadratic-weighted kappa); thumbs with
    the metric thresholded at ``threshold``; labels with the metric's detail-free value as a label.
    """
    res = run.results()
    column = f"human_{human}"
    if column not in res.columns or res[column].notna().sum() == 0:
        raise ValidationError(f"run {run.run_id} has no {human!r} feedback yet; add some with run.add_feedback(...)")
    if metric not in res.columns:
        raise MetricError(f"run {run.run_id} has no metric {metric!r}")
    both = res[res[column].notna() & res[metric].notna()]
    judge = both[metric].astype(float).to_numpy()
    people = both[column]
    out: dict[str, Any] = {"metric": metric, "human": human, "n": int(len(both))}
    if human == "rating":
        judge_scale = [min(5, max(1, round(1 + 4 * x))) if 0 <= x <= 1 else round(x) for x in judge]
        out["kappa"] = stats.cohen_kappa(
            judge_scale, [round(x) for x in people.astype(float)], weights="quadratic", labels=[1, 2, 3, 4, 5]
        )
        corr = stats.spearman(judge, people.astype(float).to_numpy())
    elif human == "thumbs":
        out["kappa"] = stats.cohen_kappa([x >= threshold for x in judge], [x >= 0.5 for x in people.astype(float)])
        corr = stats.spearman(judge, people.astype(float).to_numpy())
    else:
        out["kappa"] = stats.cohen_kappa([str(x) for x in judge], [str(x) for x in people])
        corr = None
    if corr is not None:
        out.update({"spearman": corr.rho, "spearman_p": corr.p_value, "note": corr.reason})
    return out
