"""Production traffic as data: read a served bundle's request log, monitor it, A/B-test it, and turn it into eval cases.

The log is what ``llmops serve`` writes (format in ``workbench.requestlog``, which also reads it: one
reader for the monitor, A/B, the feedback loop and the server's own tests). The monitor parses it once
with DuckDB into typed columns and answers every figure with SQL over them.

Drift is tested, not eyeballed: production questions and the eval dataset's questions are embedded
with the embedded wordllama model and compared with a kernel permutation test (``stats.mmd_test``),
so the alarm threshold is the ``1 - alpha`` quantile of what random relabelling produces. Retrieval
scores are compared with ``stats.two_sample_compare``. Safety flags reuse the safety metrics' own
detectors (PII and secrets in answers, prompt injection in questions).

The log is never opened through the workspace: reading it needs no workspace lock.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench import stats
from workbench.errors import NotFoundError, ValidationError
from workbench.requestlog import attach, connect, read_feedback, read_requests

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from workbench.store import Store

__all__ = [
    "SAFETY_FLAGS",
    "ABResult",
    "LogDatasetPreview",
    "MonitorReport",
    "ab",
    "dataset_from_log",
    "monitor",
    "read_feedback",
    "read_requests",
]

# Safety flags on traffic: name -> (field checked, detector from workbench.metrics.safety).
SAFETY_FLAGS = {"pii": "output", "secrets": "output", "prompt_injection": "question"}

# Default alert thresholds (upper bounds); each can be overridden, or disabled with None.
DEFAULT_THRESHOLDS: dict[str, float | None] = {
    "error_rate": 0.05,
    "latency_p95_ms": None,
    "cost_per_request": None,
    "pii_rate": 0.01,
    "secrets_rate": 0.0,
    "prompt_injection_rate": 0.01,
}

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AUTO_WINDOWS = ["1m", "5m", "15m", "1h", "6h", "1d", "7d"]


# --------------------------------------------------------------------------------------------------
# safety flags


def _detectors() -> dict[str, Callable[[str], list[Any]]]:
    from workbench.metrics.safety import find_injections, find_pii, find_secrets

    return {"pii": find_pii, "secrets": find_secrets, "prompt_injection": find_injections}


def flag_texts(flag: str, texts: Sequence[Any]) -> list[int]:
    """1 where the safety detector ``flag`` finds something in the text, 0 where not (distinct texts checked once)."""
    detectors = _detectors()
    if flag not in detectors:
        raise ValidationError(f"unknown safety flag {flag!r}; known: {sorted(detectors)}")
    find = detectors[flag]
    seen: dict[str, int] = {}
    out = []
    for t in texts:
        if t is None or (isinstance(t, float) and math.isnan(t)):
            out.append(0)
            continue
        key = str(t)
        if key not in seen:
            seen[key] = int(bool(find(key)))
        out.append(seen[key])
    return out


def _safety(con: duckdb.DuckDBPyConnection, n_total: int, sample: int, seed: int) -> dict[str, Any]:
    """Safety flag counts on all requests, or on a seeded uniform sample of ``sample`` when there are more."""
    sampled = n_total > sample
    query = "SELECT request_id, output, question FROM requests"
    if sampled:
        query += f" USING SAMPLE reservoir({int(sample)} ROWS) REPEATABLE ({int(seed)})"
    rows = con.execute(query).fetchall()  # plain lists: the text report needs no pandas
    columns = {"request_id": [r[0] for r in rows], "output": [r[1] for r in rows], "question": [r[2] for r in rows]}
    out: dict[str, Any] = {"checked": len(rows), "of": int(n_total), "sampled": sampled, "flags": {}}
    for flag, column in SAFETY_FLAGS.items():
        hits = flag_texts(flag, columns[column])
        count = int(sum(hits))
        ids = [rid for rid, h in zip(columns["request_id"], hits) if h][:5]
        out["flags"][flag] = {
            "field": column,
            "count": count,
            "rate": count / len(rows) if len(rows) else math.nan,
            "examples": ids,
        }
    return out


# --------------------------------------------------------------------------------------------------
# drift


def _eval_questions(reference: Any, store: Store | None, question: str) -> tuple[list[str], str]:
    """Questions of the eval set: a Dataset, a dataset name in the workspace, a DataFrame or a list of texts."""
    from workbench.datasets import Dataset

    if isinstance(reference, str) and store is not None:
        from workbench import datasets

        reference = datasets.get(store, reference)
    if isinstance(reference, Dataset):
        if question not in reference.columns:
            raise ValidationError(
                f"dataset {reference.ref} has no column {question!r} to compare production questions with; "
                f"its columns are {list(reference.columns)} (pass question=...)"
            )
        texts = [str(row[question]) for _, row in reference.cases() if row.get(question)]
        return texts, reference.ref
    if hasattr(reference, "columns") and hasattr(reference, "__getitem__"):
        return [str(x) for x in reference[question].dropna()], "DataFrame"
    if isinstance(reference, (list, tuple)):
        return [str(x) for x in reference if x], f"{len(reference)} texts"
    raise ValidationError(
        f"drift reference must be a dataset (or its name in the workspace), a DataFrame or a list of questions, "
        f"not {type(reference).__name__}"
    )


def _embed(texts: Sequence[str]) -> np.ndarray:
    from workbench.embeddings import get_embedder

    return get_embedder("local").embed(list(texts))


def question_drift(
    production: Sequence[str],
    reference: Sequence[str],
    *,
    alpha: float = 0.05,
    n_resamples: int = 500,
    max_n: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Have production questions moved away from the eval questions? Embedding permutation test plus outliers.

    The test is ``stats.mmd_test``: a kernel two-sample permutation test (Gaussian kernel), which reacts
    to the whole traffic moving and to part of it asking about things the eval set never covers. Also
    reported: the share of production questions farther from the eval set than 95% of eval questions
    are from each other (leave-one-out), and the farthest examples. Every threshold comes from the data
    (label shuffles, the eval set's own spread), not from a constant.
    The unit is a distinct question: repeats of a popular question are not independent evidence, and
    counting them would make the permutation null too narrow (false alarms on unchanged traffic).
    """

    prod = list(dict.fromkeys(str(q) for q in production if q))
    ref = list(dict.fromkeys(str(q) for q in reference if q))
    if len(prod) < 2 or len(ref) < 3:
        return {"status": "skipped", "reason": f"need >= 2 production and >= 3 eval questions, got {len(prod)}, "
                f"{len(ref)}"}  # fmt: skip
    xp, xr = _embed(prod), _embed(ref)
    # up to max_n questions a side (seeded subsample) and 500 shuffles keep the test well under a second
    test = stats.mmd_test(xp, xr, n_resamples=n_resamples, alpha=alpha, seed=seed, max_n=max_n)
    drifted = test.shifted
    sim_rr = xr @ xr.T
    np.fill_diagonal(sim_rr, -np.inf)
    ref_nn = 1.0 - sim_rr.max(axis=1)
    prod_nn = 1.0 - (xp @ xr.T).max(axis=1)
    cut = float(np.quantile(ref_nn, 0.95))
    far = prod_nn > cut
    order = np.argsort(-prod_nn)[:5]
    centroid_cos = float(xp.mean(0) @ xr.mean(0) / (np.linalg.norm(xp.mean(0)) * np.linalg.norm(xr.mean(0)) + 1e-12))
    return {
        "status": "drift" if drifted else "ok",
        "drifted": drifted,
        "p_value": test.p_value,
        "statistic": test.statistic,
        "threshold": test.threshold,
        "alpha": alpha,
        "n_production": test.n_a,
        "n_reference": test.n_b,
        "centroid_cosine_distance": 1.0 - centroid_cos,
        "outlier_distance": cut,
        "outlier_share": float(far.mean()),
        "outlier_share_expected": 0.05,
        "farthest": [{"question": prod[i], "distance": float(prod_nn[i])} for i in order],
        "method": "wordllama embeddings; kernel two-sample permutation test (MMD^2, Gaussian kernel)",
    }


def bundle_eval_reference(cases: pd.DataFrame, question: str = "question") -> tuple[list[str], list[float]]:
    """Eval questions and best retrieval scores from a bundle's ``eval/cases.parquet`` (JSON inputs, retrieved)."""
    import json

    questions: list[str] = []
    scores: list[float] = []
    for raw in cases.get("inputs", []):
        inputs = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(inputs, dict) and inputs.get(question):
            questions.append(str(inputs[question]))
    for raw in cases.get("retrieved", []):
        hits = json.loads(raw) if isinstance(raw, str) else raw
        values = [float(h["score"]) for h in hits or [] if isinstance(h, dict) and h.get("score") is not None]
        if values:
            scores.append(max(values))
    return questions, scores


def _reference_scores(store: Store | None, run_id: str | None, variant: str | None) -> list[float] | None:
    """Best retrieval score per eval cell of a run's variant (what the retriever saw on the eval set)."""
    import json

    if store is None or not run_id:
        return None
    with store.connect() as con:
        rows = con.execute(
            "SELECT retrieved FROM cells WHERE run_id = $1 AND ($2 IS NULL OR variant = $2) AND retrieved IS NOT NULL",
            [run_id, variant],
        ).fetchall()
    scores = []
    for (raw,) in rows:
        hits = json.loads(raw) if isinstance(raw, str) else raw
        values = [float(h["score"]) for h in hits or [] if isinstance(h, dict) and h.get("score") is not None]
        if values:
            scores.append(float(max(values)))
    return scores or None


def retrieval_drift(
    current: Sequence[float], reference: Sequence[float], reference_name: str, alpha: float = 0.05
) -> dict[str, Any]:
    """Are the best retrieval scores of current traffic lower (or higher) than the reference's? Two-sample test."""
    cur = [float(x) for x in current if x is not None and not (isinstance(x, float) and math.isnan(x))]
    ref = [float(x) for x in reference if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if len(cur) < 2 or len(ref) < 2:
        return {"status": "skipped", "reason": f"need >= 2 scores on each side, got {len(cur)} and {len(ref)}"}
    r = stats.two_sample_compare(cur, ref, n_resamples=1999)
    return {
        "status": "drift" if r.significant(alpha) else "ok",
        "drifted": r.significant(alpha),
        "reference": reference_name,
        "mean_current": r.mean_a,
        "mean_reference": r.mean_b,
        "diff": r.diff,
        "ci_low": r.ci_low,
        "ci_high": r.ci_high,
        "p_value": r.p_value,
        "n_current": r.n_a,
        "n_reference": r.n_b,
        "alpha": alpha,
        "method": r.method,
    }


# --------------------------------------------------------------------------------------------------
# monitor


@dataclass
class Alert:
    """A threshold crossed: which figure, its value, the limit and where (overall or the latest window)."""

    name: str
    value: float
    limit: float
    scope: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit, "scope": self.scope,
                "message": self.message}  # fmt: skip


@dataclass
class MonitorReport:
    """What production looks like: per-window volume/errors/latency/tokens/cost, drift, safety flags and alerts."""

    log: str
    window: str
    summary: dict[str, Any]
    window_columns: dict[str, Any] = field(repr=False)  # per-window figures as numpy columns (see ``windows``)
    drift: dict[str, Any] = field(default_factory=dict)
    retrieval: dict[str, Any] = field(default_factory=dict)
    safety: dict[str, Any] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    seconds: float = 0.0

    @functools.cached_property
    def windows(self) -> pd.DataFrame:
        """One row per time window: requests, errors, error rate, latency p50/p95, tokens, cost, mean top score.

        Built on first use, so the CLI's text report never imports pandas (half a second of a cold run).
        """
        import pandas as pd

        return pd.DataFrame(
            {
                k: v.filled(np.nan) if isinstance(v, np.ma.MaskedArray) and v.dtype.kind == "f" else v
                for k, v in self.window_columns.items()
            }
        )

    @property
    def ok(self) -> bool:
        return not self.alerts

    def as_dict(self) -> dict[str, Any]:
        import json

        return {
            "log": self.log,
            "window": self.window,
            "ok": self.ok,
            "alerts": [a.as_dict() for a in self.alerts],
            "summary": self.summary,
            "windows": json.loads(self.windows.to_json(orient="records", date_format="iso")),
            "drift": self.drift,
            "retrieval": self.retrieval,
            "safety": self.safety,
            "seconds": self.seconds,
        }

    def __str__(self) -> str:
        s = self.summary
        lines = [
            f"log {self.log}: {s['requests']} requests from {s['first']} to {s['last']} "
            f"({s['windows']} window(s) of {self.window})",
            f"  errors {s['errors']} ({_pct(s['error_rate'])}), latency p50 {_num(s['latency_p50_ms'])} ms, "
            f"p95 {_num(s['latency_p95_ms'])} ms, tokens {s['prompt_tokens'] + s['completion_tokens']}, "
            f"cost ${s['cost']:.4f}",
        ]
        d = self.drift
        if d.get("status") in ("ok", "drift"):
            lines.append(
                f"  question drift vs {d['reference']}: {d['status'].upper()} (p = {d['p_value']:.3g}, MMD^2 "
                f"{d['statistic']:.4g} vs permutation threshold {d['threshold']:.4g}); "
                f"{_pct(d['outlier_share'])} of questions far from every eval question (5% expected)"
            )
        else:
            lines.append(f"  question drift: {d.get('reason', 'skipped')}")
        r = self.retrieval
        if r.get("status") in ("ok", "drift"):
            lines.append(
                f"  retrieval score drift vs {r['reference']}: {r['status'].upper()} (mean top score "
                f"{r['mean_current']:.4f} vs {r['mean_reference']:.4f}, p = {r['p_value']:.3g})"
            )
        else:
            lines.append(f"  retrieval score drift: {r.get('reason', 'skipped')}")
        sf = self.safety
        flags = ", ".join(f"{k} {v['count']} ({_pct(v['rate'])})" for k, v in sf["flags"].items())
        sampled = f" (sample of {sf['checked']} of {sf['of']})" if sf["sampled"] else ""
        lines.append(f"  safety flags{sampled}: {flags}")
        if self.alerts:
            lines.append(f"ALERTS ({len(self.alerts)}):")
            lines.extend(f"  - {a.message}" for a in self.alerts)
        else:
            lines.append("no alerts")
        return "\n".join(lines)

    def chart(self) -> Any:
        """Altair charts per window: requests, error rate, latency p50/p95, cost."""
        import altair as alt

        frame = self.windows.copy()
        base = alt.Chart(frame).encode(x=alt.X("window:T", title=None)).properties(width=260, height=140)
        volume = base.mark_bar().encode(y=alt.Y("requests:Q")).properties(title="requests")
        errors = (
            base.mark_line(point=True, color="firebrick")
            .encode(y=alt.Y("error_rate:Q", axis=alt.Axis(format="%")))
            .properties(title="error rate")
        )
        lat = (
            alt.Chart(frame)
            .transform_fold(["latency_p50_ms", "latency_p95_ms"], as_=["quantile", "ms"])
            .mark_line(point=True)
            .encode(x=alt.X("window:T", title=None), y="ms:Q", color="quantile:N")
            .properties(width=260, height=140, title="latency")
        )
        cost = base.mark_area(opacity=0.6).encode(y=alt.Y("cost:Q")).properties(title="cost ($)")
        return alt.vconcat(alt.hconcat(volume, errors), alt.hconcat(lat, cost))

    def _repr_html_(self) -> str:
        import html

        status = (
            "<b style='color:#2e7d32'>no alerts</b>"
            if self.ok
            else "<b style='color:#c62828'>" + "<br>".join(html.escape(a.message) for a in self.alerts) + "</b>"
        )
        text = html.escape(str(self)).replace("\n", "<br>")
        return (
            f"<div><p>{status}</p><p style='font-family:monospace'>{text}</p>"
            + self.windows.to_html(index=False, float_format=lambda x: f"{x:.4g}")
            + "</div>"
        )


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _num(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def _window_us(window: str) -> int:
    """'30s' / '5m' / '1h' / '1d' -> microseconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", window or "")
    if not m or int(m.group(1)) < 1:
        raise ValidationError(f"window {window!r} must look like '30s', '5m', '1h' or '1d'")
    return int(m.group(1)) * _SECONDS[m.group(2)] * 1_000_000


def _auto_window(span_seconds: float) -> str:
    for w in _AUTO_WINDOWS:
        if span_seconds / (int(w[:-1]) * _SECONDS[w[-1]]) <= 48:
            return w
    return _AUTO_WINDOWS[-1]


def _import_quietly(names: Sequence[str]) -> None:
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:  # the caller's own import raises it where it is needed
            return


def _warm_imports() -> None:
    """Import what the analysis after the scan needs while DuckDB parses the log (it releases the GIL).

    On a cold ``llmops monitor`` this hides scipy.special and the safety detectors' regexes (about half a
    second) behind the parse; nothing else depends on it.
    """
    import sys
    import threading

    names = [n for n in ("scipy.special", "workbench.metrics.safety") if n not in sys.modules]
    if names:
        threading.Thread(target=_import_quietly, args=(names,), name="llmops-monitor-imports", daemon=True).start()


def _thresholds(given: Mapping[str, float | None] | Sequence[str] | None) -> dict[str, float | None]:
    """Defaults overridden by ``{"error_rate": 0.02}`` or ``["error_rate<=0.02", ...]`` (upper bounds)."""
    out = dict(DEFAULT_THRESHOLDS)
    if not given:
        return out
    items: list[tuple[str, float | None]] = []
    if isinstance(given, Mapping):
        items = [(str(k), v) for k, v in given.items()]
    else:
        from workbench.analysis import parse_constraints

        for name, op, number in parse_constraints(list(given)):
            if op not in ("<=", "<"):
                raise ValidationError(f"monitor thresholds are upper bounds (NAME<=VALUE), got {name}{op}{number:g}")
            items.append((name, number))
    for name, limit in items:
        if name not in out:
            raise ValidationError(f"unknown monitor threshold {name!r}; known: {sorted(out)}")
        out[name] = None if limit is None else float(limit)
    return out


def monitor(
    log: str | os.PathLike[str],
    *,
    store: Store | None = None,
    reference: Any = None,
    run_id: str | None = None,
    variant: str | None = None,
    question: str = "question",
    window: str | None = None,
    where: str | None = None,
    thresholds: Mapping[str, float | None] | Sequence[str] | None = None,
    alpha: float = 0.05,
    drift_sample: int = 2000,
    safety_sample: int = 20000,
    seed: int = 0,
    cache: bool = True,
    retrieval_reference: tuple[str, Sequence[float]] | None = None,
    reference_name: str | None = None,
) -> MonitorReport:
    """Monitor a request log: per-window figures, drift against the eval set, safety flags, alerts.

    ``reference`` is the eval dataset (a Dataset, its name in ``store``, a DataFrame or a list of
    questions) the production questions are compared with; ``run_id``/``variant`` name the eval run
    whose retrieval scores are the reference for retrieval drift (else the first half of the log's
    traffic is compared with the second half; ``retrieval_reference`` = (name, scores) gives them
    directly, e.g. from a bundle's eval cases). Drift uses a seeded sample of ``drift_sample``
    requests; safety flags are counted on every request up to ``safety_sample`` (a seeded uniform
    sample above, said so in the report). ``cache`` keeps a Parquet copy of finished log segments in
    ``<log>/.monitor-cache/`` so the next call parses only new or grown segments.
    """
    import time

    start = time.perf_counter()
    limits = _thresholds(thresholds)
    _warm_imports()
    con = connect()
    try:
        attach(con, log, where, materialize=True, cache=cache)
        row = con.execute(
            """
            SELECT count(*), count_if(failed), quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.95),
                   coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0), coalesce(sum(cost), 0),
                   min(ts), max(ts), epoch(max(ts)) - epoch(min(ts)),
                   list(DISTINCT bundle_hash) FILTER (bundle_hash IS NOT NULL),
                   list(DISTINCT arm) FILTER (arm IS NOT NULL), count(rating)
            FROM requests
            """
        ).fetchone()
        assert row is not None
        n, errors, p50, p95, ptok, ctok, cost, first, last, span, *extra = row
        if not n:
            raise ValidationError(f"request log {log} has no requests" + (f" where {where}" if where else ""))
        window = window or _auto_window(float(span or 0))
        step = _window_us(window)
        # integer bucketing on epoch microseconds: several times faster than time_bucket on TIMESTAMPTZ
        columns = con.execute(
            f"""
            SELECT make_timestamp((epoch_us(ts) // {step}) * {step}) AS window, count(*) AS requests,
                   count_if(failed) AS errors, count_if(failed) / count(*) AS error_rate,
                   quantile_cont(latency_ms, [0.5, 0.95]) AS latency_q,
                   coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
                   coalesce(sum(completion_tokens), 0) AS completion_tokens,
                   coalesce(sum(cost), 0) AS cost, avg(top_score) AS mean_top_score
            FROM requests GROUP BY 1 ORDER BY 1
            """
        ).fetchnumpy()  # numpy columns, no pandas: MonitorReport.windows makes the DataFrame when asked
        quantiles = [_quantiles(q) for q in columns.pop("latency_q")]
        names = list(columns)
        windows = {name: columns[name] for name in names[:4]}
        windows["latency_p50_ms"] = [q[0] for q in quantiles]
        windows["latency_p95_ms"] = [q[1] for q in quantiles]
        windows.update({name: columns[name] for name in names[4:]})
        summary = {
            "requests": int(n),
            "errors": int(errors),
            "error_rate": errors / n,
            "latency_p50_ms": _float(p50),
            "latency_p95_ms": _float(p95),
            "prompt_tokens": int(ptok),
            "completion_tokens": int(ctok),
            "cost": float(cost),
            "cost_per_request": float(cost) / n,
            "first": str(first),
            "last": str(last),
            "windows": len(windows["window"]),
            "bundles": sorted(extra[0] or []),
            "arms": sorted(extra[1] or []),
            "feedback": int(extra[2]),
        }
        # Samples below: DuckDB's seeded reservoir sample (and DISTINCT's order) is reproducible only on one
        # thread; on several, a log of more than one row group (122,880 requests) gave a different sample,
        # hence different drift figures, on every run.
        con.execute("SET threads = 1")
        # drift: a seeded sample of traffic questions against the eval questions
        if reference is not None:
            ref_questions, ref_name = _eval_questions(reference, store, question)
            prod = [
                r[0]
                for r in con.execute(
                    f"SELECT question FROM (SELECT DISTINCT question FROM requests WHERE question IS NOT NULL) "
                    f"USING SAMPLE reservoir({int(drift_sample)} ROWS) REPEATABLE ({int(seed)})"
                ).fetchall()
            ]
            drift = question_drift(prod, ref_questions, alpha=alpha, seed=seed)
            drift["reference"] = reference_name or ref_name
        else:
            drift = {"status": "skipped", "reason": "no eval dataset given (reference=... / --dataset / --bundle)"}
        # retrieval scores: the eval run's, else the first half of traffic
        ref_name = f"eval run {run_id}"
        ref_scores = _reference_scores(store, run_id, variant)
        if ref_scores is None and retrieval_reference is not None:
            ref_name, ref_scores = retrieval_reference[0], list(retrieval_reference[1]) or None
        if ref_scores is not None:
            cur = [r[0] for r in con.execute(
                f"SELECT top_score FROM (SELECT top_score FROM requests WHERE top_score IS NOT NULL) "
                f"USING SAMPLE reservoir({int(max(drift_sample, 5000))} ROWS) REPEATABLE ({int(seed)})"
            ).fetchall()]  # fmt: skip
            retrieval = retrieval_drift(cur, ref_scores, ref_name, alpha)
        else:
            halves = con.execute(
                f"""
                WITH s AS (SELECT ts, top_score FROM requests WHERE top_score IS NOT NULL),
                     m AS (SELECT quantile_disc(ts, 0.5) AS mid FROM s)
                SELECT ts > mid AS late, top_score FROM s, m
                USING SAMPLE reservoir({int(max(drift_sample, 5000)) * 2} ROWS) REPEATABLE ({int(seed)})
                """
            ).fetchall()
            early = [s for late, s in halves if not late]
            late_scores = [s for late, s in halves if late]
            retrieval = retrieval_drift(late_scores, early, "first half of the log", alpha)
        safety = _safety(con, int(n), safety_sample, seed)
    finally:
        con.close()
    alerts = _alerts(summary, windows, drift, retrieval, safety, limits)
    return MonitorReport(
        str(log), window, summary, windows, drift, retrieval, safety, alerts, round(time.perf_counter() - start, 3)
    )


def _quantiles(q: Any) -> tuple[float, float]:
    """(p50, p95) of a window; NaN when no request of the window has a latency."""
    if q is None or q is np.ma.masked or isinstance(q, np.ma.MaskedArray) and q.mask.all():
        return math.nan, math.nan
    return q[0], q[1]


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _alerts(
    summary: dict[str, Any],
    windows: Mapping[str, Any],
    drift: dict[str, Any],
    retrieval: dict[str, Any],
    safety: dict[str, Any],
    limits: Mapping[str, float | None],
) -> list[Alert]:
    out: list[Alert] = []
    count = len(windows["window"])
    latest = {k: v[-1] for k, v in windows.items()} if count else None
    for name in ("error_rate", "latency_p95_ms", "cost_per_request"):
        limit = limits.get(name)
        if limit is None:
            continue
        scopes = [("overall", summary[name])]
        if latest is not None and count > 1:
            value = latest["cost"] / latest["requests"] if name == "cost_per_request" else latest[name]
            scopes.append((f"latest window {latest['window'].item()}", value))
        for scope, value in scopes:
            if value is not None and not (isinstance(value, float) and math.isnan(value)) and value > limit:
                out.append(Alert(name, float(value), limit, scope, f"{name} {value:.4g} > {limit:g} ({scope})"))
    if drift.get("drifted"):
        out.append(
            Alert(
                "question_drift",
                drift["p_value"],
                drift["alpha"],
                "sample",
                f"questions drifted from {drift['reference']} (permutation p = {drift['p_value']:.3g} < "
                f"{drift['alpha']}); {_pct(drift['outlier_share'])} are far from every eval question",
            )
        )
    if retrieval.get("drifted"):
        out.append(
            Alert(
                "retrieval_drift",
                retrieval["p_value"],
                retrieval["alpha"],
                "sample",
                f"retrieval top scores moved from {retrieval['mean_reference']:.4f} ({retrieval['reference']}) to "
                f"{retrieval['mean_current']:.4f} (p = {retrieval['p_value']:.3g})",
            )
        )
    for flag, info in safety["flags"].items():
        limit = limits.get(f"{flag}_rate")
        if limit is not None and info["rate"] > limit:
            out.append(
                Alert(
                    f"{flag}_rate",
                    info["rate"],
                    limit,
                    "sample" if safety["sampled"] else "overall",
                    f"{flag} flagged on {info['count']} request(s) ({_pct(info['rate'])} > {_pct(limit)}), "
                    f"e.g. {', '.join(info['examples'][:3])}",
                )
            )
    return out


# --------------------------------------------------------------------------------------------------
# A/B analysis

_LOWER_IS_BETTER = ("latency_ms", "cost", "prompt_tokens", "completion_tokens", "tokens", "error", "failed")


@dataclass
class ABResult:
    """Per arm n and mean with CI, the difference B - A with its CI and p-value, and a plain verdict."""

    metric: str
    higher_is_better: bool
    arms: Any  # DataFrame: arm, n, mean, ci_low, ci_high
    result: stats.TwoSampleResult
    verdict: str | None  # "A", "B" or None (not yet significant)
    alpha: float
    needed_per_arm: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        import json

        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "arms": json.loads(self.arms.to_json(orient="records")),
            "diff_b_minus_a": self.result.diff,
            "ci_low": self.result.ci_low,
            "ci_high": self.result.ci_high,
            "p_value": self.result.p_value,
            "method": self.result.method,
            "alpha": self.alpha,
            "verdict": self.verdict,
            "needed_per_arm": None if math.isinf(self.needed_per_arm) else self.needed_per_arm,
            "message": self.message,
        }

    def __str__(self) -> str:
        rows = [
            f"  arm {r.arm}: n = {r.n}, mean {r.mean:.4g} (95% CI {r.ci_low:.4g} to {r.ci_high:.4g})"
            for r in self.arms.itertuples()
        ]
        return f"A/B on {self.metric}:\n" + "\n".join(rows) + f"\n{self.message}"

    def _repr_html_(self) -> str:
        import html

        return f"<p><b>{html.escape(self.message)}</b></p>" + self.arms.to_html(
            index=False, float_format=lambda x: f"{x:.4g}"
        )


def _ab_values(frame: pd.DataFrame, metric: str) -> tuple[Any, bool]:
    """Per-request values of ``metric`` and whether higher is better."""
    if metric in ("feedback", "rating"):
        return frame["rating"].astype(float), True
    if metric in SAFETY_FLAGS:
        column = SAFETY_FLAGS[metric]
        return frame.assign(_v=flag_texts(metric, frame[column].tolist()))["_v"].astype(float), False
    if metric in ("error", "failed"):
        return frame["failed"].astype(float), False
    if metric == "tokens":
        return (frame["prompt_tokens"].fillna(0) + frame["completion_tokens"].fillna(0)).astype(float), False
    numeric = [c for c in frame.columns if frame[c].dtype.kind in "biuf" and c not in ("status",)]
    if metric not in numeric:
        raise ValidationError(
            f"unknown A/B metric {metric!r}; use feedback, a safety flag ({', '.join(SAFETY_FLAGS)}), error, tokens "
            f"or a numeric log column ({', '.join(sorted(numeric))})"
        )
    return frame[metric].astype(float), metric not in _LOWER_IS_BETTER


def ab(
    log: str | os.PathLike[str],
    metric: str = "feedback",
    *,
    arms: tuple[str, str] = ("A", "B"),
    where: str | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    higher_is_better: bool | None = None,
    seed: int = 0,
) -> ABResult:
    """Which arm of an A/B split is better on ``metric``, and is the difference real yet?

    ``metric``: ``feedback`` (the request's rating; thumbs labels count 1/0), ``latency_ms``, ``cost``,
    ``tokens``, ``error``, a safety flag (``pii``, ``secrets``, ``prompt_injection``: the flagged
    share) or any numeric log column. The arms are independent samples, so the test is
    ``stats.two_sample_compare`` (permutation test up to 5000 values, Welch's t-test above). The
    verdict is the better arm when ``p < alpha``; otherwise "not yet significant" with the requests
    per arm a test of power ``power`` would need if the observed difference is the true one.
    """
    import pandas as pd

    frame = read_requests(log, where=where)
    a_name, b_name = arms
    values, hib = _ab_values(frame, metric)
    if higher_is_better is not None:
        hib = higher_is_better
    frame = frame.assign(_value=values)
    seen = sorted({str(x) for x in frame["arm"].dropna()})
    if a_name not in seen or b_name not in seen:
        raise ValidationError(
            f"log {log} has arms {seen or 'none'}; an A/B analysis needs requests of arm {a_name!r} and {b_name!r} "
            "(serve two bundles with `llmops serve A B --split 50`)"
        )
    per_arm = {name: frame.loc[frame["arm"] == name, "_value"].dropna().to_numpy() for name in arms}
    rows = []
    for name in arms:
        ci = stats.mean_ci(per_arm[name], seed=seed)
        rows.append({"arm": name, "n": ci.n, "mean": ci.estimate, "ci_low": ci.low, "ci_high": ci.high})
    table = pd.DataFrame(rows)
    result = stats.two_sample_compare(per_arm[b_name], per_arm[a_name], seed=seed)
    better = (result.diff > 0) == hib
    verdict: str | None = None
    needed = stats.sample_size_two_means(result.sd_a, result.sd_b, result.diff, alpha, power)
    direction = "higher" if hib else "lower"
    head = (
        f"difference {b_name} - {a_name} = {result.diff:+.4g} (95% CI {result.ci_low:+.4g} to {result.ci_high:+.4g}), "
        f"p = {result.p_value:.3g} ({result.method}); {direction} is better"
    )
    if math.isnan(result.p_value):
        message = f"not comparable yet: {result.reason}"
    elif result.significant(alpha):
        verdict = b_name if better else a_name
        message = f"{verdict} is better on {metric}: {head}."
    else:
        have = min(result.n_a, result.n_b)
        if math.isinf(needed):
            more = "the arms are identical so far; no sample size would separate them at the observed difference"
        else:
            more = (
                f"at the observed difference about {int(needed):,} requests per arm are needed for {int(power * 100)}% "
                f"power (have {have:,}" + (f"; about {int(needed) - have:,} more per arm)" if needed > have else ")")
            )
        message = f"not yet significant on {metric} (alpha {alpha}): {head}; {more}."
    return ABResult(metric, hib, table, result, verdict, alpha, needed, message)


# --------------------------------------------------------------------------------------------------
# feedback loop: served requests -> a new dataset version


@dataclass
class LogDatasetPreview:
    """Served requests about to become a dataset version: review them (``_repr_html_``), then ``save()``."""

    name: str
    rows: list[dict[str, Any]]
    id_column: str
    new_rows: list[dict[str, Any]]
    report: dict[str, Any]
    store: Store = field(repr=False)
    saved: Any = None

    def to_pandas(self) -> pd.DataFrame:
        """The new cases (the existing ones are kept as they are)."""
        import pandas as pd

        return pd.DataFrame(self.new_rows)

    def save(self) -> Any:
        """Store the dataset version (existing cases + the new ones) and return it."""
        from workbench import datasets

        if not self.new_rows:
            raise ValidationError(f"nothing to save: {self.summary()}")
        if self.saved is None:
            self.saved = datasets.add(self.store, self.name, self.rows, id=self.id_column)
        return self.saved

    def summary(self) -> str:
        r = self.report
        base = f" added to {r['base']} ({r['base_cases']} cases)" if r.get("base") else ""
        return (
            f"{r['new_cases']} new case(s) for dataset {self.name!r}{base}: {r['requests']} request(s) in the log, "
            f"{r['selected']} selected, {r['duplicates_of_existing']} already in the dataset, "
            f"{r['duplicates_in_log']} repeated in the log"
        )

    def __repr__(self) -> str:
        state = f"saved as {self.saved.ref}" if self.saved is not None else "not saved yet: call .save()"
        return f"<LogDatasetPreview {self.summary()}; {state}>"

    def _repr_html_(self) -> str:
        import html

        state = (
            f"saved as <b>{html.escape(self.saved.ref)}</b>"
            if self.saved is not None
            else "review below, then call <code>.save()</code>"
        )
        import pandas as pd

        with pd.option_context("display.max_colwidth", 80):
            table = self.to_pandas().head(50).to_html(index=False)
        return f"<p>{html.escape(self.summary())}; {state}</p>" + table


def dataset_from_log(
    store: Store,
    log: str | os.PathLike[str],
    name: str,
    *,
    where: str | None = None,
    with_feedback: bool = True,
    include_errors: bool = False,
    base: Any = None,
) -> LogDatasetPreview:
    """Turn served requests into new cases of dataset ``name`` (a preview: nothing is stored until ``save()``).

    Each request becomes a case with its input fields (``question`` ...), the served answer as
    ``served_output``, its ``request_id``, ``bundle_hash``, ``arm``, ``served_at`` and feedback as
    ``feedback_rating`` / ``feedback_label`` / ``feedback_comment``. ``with_feedback`` keeps only
    requests somebody rated; ``where`` is a SQL condition over the log (``"rating <= 2"``). Requests
    whose inputs (compared without case and extra whitespace) are already cases of the dataset, or
    that repeat an earlier selected request, are dropped. The new version holds the existing cases
    unchanged (same case ids) plus the new ones, so the next experiment runs on both.
    """
    from workbench import datasets as _ds
    from workbench.datasets import _normalize_text
    from workbench.store import dumps

    frame = read_requests(log, where=where)
    total = len(frame)
    if not include_errors:
        frame = frame[~frame["failed"].astype(bool)]
    if with_feedback:
        frame = frame[frame["rating"].notna() | frame["label"].notna() | frame["comment"].notna()]
    existing = None
    if base is not None:
        existing = base if isinstance(base, _ds.Dataset) else _ds.get(store, str(base))
    else:
        try:
            existing = _ds.get(store, name)
        except NotFoundError:
            existing = None
    id_column = (existing.id_column if existing is not None else None) or "case_id"
    old_rows: list[dict[str, Any]] = []
    if existing is not None:
        for case_id, row in existing.cases():
            old_rows.append(row if existing.id_column else {"case_id": case_id, **row})

    def key(inputs: Mapping[str, Any]) -> str:
        return dumps({k: _normalize_text(v) for k, v in inputs.items() if v is not None})

    new_rows: list[dict[str, Any]] = []
    seen_new: set[str] = set()
    known_by_fields: dict[tuple[str, ...], set[str]] = {}
    dup_existing = dup_log = 0
    import json as _json

    # latest request first, so the freshest served answer and feedback of a repeated question are kept
    for rec in frame.sort_values("ts", ascending=False).to_dict("records"):
        raw = rec.get("input")
        inputs = _json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        if not isinstance(inputs, dict) or not inputs:
            continue
        k = key(inputs)
        fields = tuple(sorted(inputs))
        if fields not in known_by_fields:  # existing cases keyed on the same input fields
            known_by_fields[fields] = {key({f: r.get(f) for f in fields}) for r in old_rows}
        if k in known_by_fields[fields]:
            dup_existing += 1
            continue
        if k in seen_new:
            dup_log += 1
            continue
        seen_new.add(k)
        new_rows.append(
            {
                **inputs,
                id_column: str(rec["request_id"]),
                "request_id": str(rec["request_id"]),
                "served_output": rec.get("output"),
                "served_at": str(rec.get("ts")),
                "bundle_hash": rec.get("bundle_hash"),
                "arm": rec.get("arm"),
                "feedback_rating": _clean_number(rec.get("rating")),
                "feedback_label": rec.get("label"),
                "feedback_comment": rec.get("comment"),
            }
        )
    new_rows.reverse()  # back to time order
    report = {
        "requests": int(total),
        "selected": int(len(frame)),
        "duplicates_of_existing": dup_existing,
        "duplicates_in_log": dup_log,
        "new_cases": len(new_rows),
        "base": existing.ref if existing is not None else None,
        "base_cases": existing.n_cases if existing is not None else 0,
    }
    columns: dict[str, None] = {}
    for r in old_rows + new_rows:
        columns.update(dict.fromkeys(r))
    rows = [{c: r.get(c) for c in columns} for r in old_rows + new_rows]
    return LogDatasetPreview(name, rows, id_column, new_rows, report, store)


def _clean_number(x: Any) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(x)
