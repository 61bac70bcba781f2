"""Leaderboard charts of a run, drawn with Altair (Vega-Lite, which JupyterLab and Notebook 7 render natively).

Four panels: per variant the metric means with the bootstrap confidence intervals the library computes
(bars + error bars), the score distributions (box plots computed here, so a 10,000-case run sends a few
numbers per variant, not every score), cost (or latency) against quality with the Pareto front marked,
and the winner decision with its reasons as the title. Outside a live front-end the same object carries a
PNG (vl-convert, bundled with the package's notebook extra) so nbconvert HTML and GitHub show the picture.
"""

from __future__ import annotations

import base64
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import stats
from workbench.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from workbench.runner import Run

# JupyterLab 4's built-in renderer draws Vega-Lite 5; the marks used here mean the same in 5 and 6.
VEGALITE_MIME = "application/vnd.vegalite.v5+json"
VEGALITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.20.1.json"
VL_VERSION = "5.20"
_LOWER_IS_BETTER = ("latency_p50_ms", "latency_p95_ms", "cost_per_1k")


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the points no other point beats on both axes: lower x (cost) and higher y (quality)."""
    front = []
    for name, x, y in points:
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for n2, x2, y2 in points if n2 != name)
        if not dominated:
            front.append(name)
    return front


class Charts:
    """The charts of one run. Display it in a notebook, or ``.save("board.png"|".svg"|".html"|".json")``."""

    def __init__(self, run: Run, metric: str | None = None, constraints: Any = None, confidence: float = 0.95) -> None:
        labels = [m["label"] for m in run.info["spec"]["metrics"]]
        if not labels:
            raise ValidationError(f"run {run.run_id} has no metrics to chart; add metrics to the experiment")
        if metric is not None and metric not in labels:
            raise ValidationError(f"run {run.run_id} has no metric {metric!r}; its metrics are {labels}")
        self.run = run
        self.metric = metric or labels[0]
        self.labels = labels
        self.confidence = confidence
        self.board = run.leaderboard()
        results = run.results()
        self.means = self._means(results)
        self.boxes = self._boxes(results)
        self.decision = run.winner(self.metric, constraints)
        self.chart = self._build()
        self._cache: dict[str, Any] = {}

    # -- data ----------------------------------------------------------------------------------

    def _per_case(self, results: pd.DataFrame, metric: str) -> pd.DataFrame:
        return results.pivot_table(index="case_id", columns="variant", values=metric, aggfunc="mean", dropna=False)

    def _means(self, results: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        rows = []
        variants = list(self.board["variant"])
        for metric in self.labels:
            table = self._per_case(results, metric) if metric in results else None
            for v in variants:
                values = table[v].to_numpy() if table is not None and v in table else []
                ci = stats.mean_ci(values, confidence=self.confidence)
                rows.append(
                    {
                        "metric": metric,
                        "variant": v,
                        "mean": None if math.isnan(ci.estimate) else ci.estimate,
                        "ci_low": None if math.isnan(ci.low) else ci.low,
                        "ci_high": None if math.isnan(ci.high) else ci.high,
                        "n": ci.n,
                    }
                )
        return pd.DataFrame(rows)

    def _boxes(self, results: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        rows = []
        for metric in self.labels:
            if metric not in results:
                continue
            table = self._per_case(results, metric)
            for v in table.columns:
                s = table[v].dropna()
                if s.empty:
                    continue
                q = s.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).tolist()
                rows.append(
                    {"metric": metric, "variant": v, "min": q[0], "q1": q[1], "median": q[2], "q3": q[3], "max": q[4]}
                )
        return pd.DataFrame(rows, columns=["metric", "variant", "min", "q1", "median", "q3", "max"])

    def tradeoff(self) -> tuple[pd.DataFrame, str]:
        """Per variant: cost per 1k cells (or p50 latency when nothing cost money) and the metric mean."""
        board = self.board
        axis = "cost_per_1k" if float(board["cost"].fillna(0).sum()) > 0 else "latency_p50_ms"
        frame = board[["variant", axis, self.metric]].rename(columns={axis: "x", self.metric: "quality"})
        frame = frame.dropna()
        front = set(pareto_front([(r.variant, float(r.x), float(r.quality)) for r in frame.itertuples()]))
        frame = frame.assign(pareto=[v in front for v in frame["variant"]])
        return frame, axis

    # -- drawing -------------------------------------------------------------------------------

    def _title(self) -> dict[str, Any]:
        d = self.decision
        head = f"Winner on {self.metric}: {d.winner}" if d.winner else f"No winner on {self.metric}"
        lines = textwrap.wrap(d.reason, 110)
        return {"text": head, "subtitle": lines, "anchor": "start", "fontSize": 15, "subtitleFontSize": 11}

    def _build(self) -> Any:
        import altair as alt

        variants = list(self.board["variant"])
        colour = alt.Color("variant:N", scale=alt.Scale(domain=variants), legend=alt.Legend(orient="bottom"))
        y = alt.Y("variant:N", sort=variants, title=None)
        means = self.means.dropna(subset=["mean"])
        base = alt.Chart(means)
        bars = base.mark_bar(opacity=0.8).encode(
            x=alt.X("mean:Q", title="mean (95% CI)"),
            y=y,
            color=colour,
            tooltip=[
                "variant",
                "metric",
                alt.Tooltip("mean:Q", format=".4f"),
                alt.Tooltip("ci_low:Q", format=".4f"),
                alt.Tooltip("ci_high:Q", format=".4f"),
                "n",
            ],
        )
        errs = base.mark_errorbar(ticks=True, color="black").encode(
            x=alt.X("ci_low:Q", title="mean (95% CI)"), x2="ci_high:Q", y=y
        )
        panel_means = (
            alt.layer(bars, errs, data=means)
            .properties(width=220, height=alt.Step(18))
            .facet(column=alt.Column("metric:N", title=None, sort=self.labels))
            .resolve_scale(x="independent")
            .properties(title="Metric means with confidence intervals")
        )
        boxes = alt.Chart(self.boxes)
        whisker = boxes.mark_rule().encode(x=alt.X("min:Q", title="score per case"), x2="max:Q", y=y)
        box = boxes.mark_bar(size=12, opacity=0.8).encode(x="q1:Q", x2="q3:Q", y=y, color=colour)
        median = boxes.mark_tick(color="white", thickness=2, size=12).encode(x="median:Q", y=y)
        panel_dist = (
            alt.layer(whisker, box, median, data=self.boxes)
            .properties(width=220, height=alt.Step(18))
            .facet(column=alt.Column("metric:N", title=None, sort=self.labels))
            .resolve_scale(x="independent")
            .properties(title="Score distributions (per case; box = quartiles, line = range)")
        )
        frame, axis = self.tradeoff()
        xtitle = "cost per 1,000 cells ($)" if axis == "cost_per_1k" else "latency p50 (ms)"
        points = (
            alt.Chart(frame)
            .mark_point(size=120, filled=True)
            .encode(
                x=alt.X("x:Q", title=xtitle, scale=alt.Scale(zero=False)),
                y=alt.Y("quality:Q", title=self.metric, scale=alt.Scale(zero=False)),
                color=colour,
                shape=alt.Shape(
                    "pareto:N", title="Pareto front", scale=alt.Scale(domain=[True, False], range=["diamond", "circle"])
                ),
                tooltip=[
                    "variant",
                    alt.Tooltip("x:Q", title=axis, format=".4g"),
                    alt.Tooltip("quality:Q", format=".4f"),
                    "pareto",
                ],
            )
        )
        front = (
            alt.Chart(frame[frame["pareto"]].sort_values("x"))
            .mark_line(strokeDash=[4, 3], color="gray")
            .encode(x="x:Q", y="quality:Q")
        )
        labels = (
            alt.Chart(frame).mark_text(align="left", dx=8, fontSize=11).encode(x="x:Q", y="quality:Q", text="variant:N")
        )
        panel_trade = alt.layer(front, points, labels).properties(
            width=420, height=220, title=f"{self.metric} against {xtitle} (dashed: Pareto front)"
        )
        return alt.vconcat(panel_means, panel_dist, panel_trade, title=self._title()).configure_view(stroke=None)

    # -- output --------------------------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        """The Vega-Lite spec (data inlined), declared as v5 so JupyterLab's built-in renderer draws it."""
        if "spec" not in self._cache:
            spec = self.chart.to_dict()
            spec["$schema"] = VEGALITE_SCHEMA
            self._cache["spec"] = spec
        return dict(self._cache["spec"])

    def png(self, scale: float = 1.0) -> bytes | None:
        """A static picture for nbconvert / GitHub; None when vl-convert-python is not installed."""
        try:
            import vl_convert as vlc
        except ImportError:
            return None
        key = f"png{scale}"
        if key not in self._cache:
            self._cache[key] = bytes(vlc.vegalite_to_png(self.spec(), vl_version=VL_VERSION, scale=scale))
        return bytes(self._cache[key])

    def svg(self) -> str:
        import vl_convert as vlc

        return str(vlc.vegalite_to_svg(self.spec(), vl_version=VL_VERSION))

    def save(self, path: str | Path) -> Path:
        """Write the charts as .png, .svg, .json (the Vega-Lite spec) or .html (self-contained, works offline)."""
        import json

        p = Path(path)
        suffix = p.suffix.lower()
        if suffix == ".json":
            p.write_text(json.dumps(self.spec(), indent=2), encoding="utf-8")
        elif suffix == ".png":
            data = self.png(scale=2.0)
            if data is None:
                raise ValidationError("saving PNG needs vl-convert-python: pip install vl-convert-python")
            p.write_bytes(data)
        elif suffix == ".svg":
            p.write_text(self.svg(), encoding="utf-8")
        elif suffix == ".html":
            import vl_convert as vlc

            # third argument: inline the Vega JavaScript, so the page works offline
            p.write_text(vlc.vegalite_to_html(self.spec(), VL_VERSION, True), encoding="utf-8")
        else:
            raise ValidationError(
                f"cannot save charts as {suffix or 'a file without suffix'}: use .png, .svg, .json or .html"
            )
        return p

    def __repr__(self) -> str:
        d = self.decision
        lines = [f"Charts of run {self.run.run_id} on {self.metric}: winner {d.winner}", d.reason]
        for r in self.means[self.means["metric"] == self.metric].itertuples():
            lines.append(
                f"  {r.variant}: {r.mean if r.mean is not None else float('nan'):.4f} "
                f"[{r.ci_low if r.ci_low is not None else float('nan'):.4f}, "
                f"{r.ci_high if r.ci_high is not None else float('nan'):.4f}] n={r.n}"
            )
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        mimes: dict[str, Any] = {VEGALITE_MIME: self.spec(), "text/plain": repr(self)}
        png = self.png()
        if png is not None:
            mimes["image/png"] = base64.b64encode(png).decode("ascii")
        return mimes
