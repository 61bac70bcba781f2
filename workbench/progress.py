"""Progress of a running grid: counts, tokens, cost, ETA and the leaderboard so far.

The runner keeps a :class:`Tally` (a few additions per finished cell, in memory) and hands a
:class:`Snapshot` to a reporter about once a second from its flush loop, so showing progress never
touches the database and never waits on the model calls. Two reporters: a tqdm bar (terminals) and
:class:`LivePanel` (a notebook: one HTML output updated in place; the last state stays in the saved
notebook as plain HTML, so it also reads in nbconvert and on GitHub).
"""

from __future__ import annotations

import contextvars
import html
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

# How a notebook user resumes a run; the magics set "%llmops resume {run_id}" (they have no `run` variable).
RESUME_HINT: contextvars.ContextVar[str] = contextvars.ContextVar(
    "workbench_resume_hint", default="run.resume() or `llmops resume {run_id}`"
)


@dataclass
class _VariantTally:
    n: int = 0
    failed: int = 0
    cached: int = 0
    cost: float = 0.0
    tokens: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class Tally:
    """Per-variant running sums of what has finished (cells and their metric values)."""

    def __init__(self, variants: list[str], metrics: list[str]) -> None:
        self.metrics = metrics
        self.variants: dict[str, _VariantTally] = {v: _VariantTally() for v in variants}

    def add(self, cell: dict[str, Any], scores: list[dict[str, Any]]) -> None:
        t = self.variants.get(cell["variant"])
        if t is None:
            t = self.variants[cell["variant"]] = _VariantTally()
        t.n += 1
        t.failed += cell["error"] is not None
        t.cached += bool(cell["cached"])
        t.cost += cell["cost"] or 0.0
        t.tokens += (cell["prompt_tokens"] or 0) + (cell["completion_tokens"] or 0)
        if cell["latency_ms"] is not None and not cell["cached"]:
            t.latency_sum += cell["latency_ms"]
            t.latency_n += 1
        for s in scores:
            if s["value"] is not None:
                t.sums[s["metric"]] = t.sums.get(s["metric"], 0.0) + s["value"]
                t.counts[s["metric"]] = t.counts.get(s["metric"], 0) + 1

    def board(self) -> list[dict[str, Any]]:
        rows = []
        for name, t in self.variants.items():
            row: dict[str, Any] = {"variant": name, "n": t.n, "failed": t.failed}
            for m in self.metrics:
                row[m] = t.sums[m] / t.counts[m] if t.counts.get(m) else None
            row["cost"] = t.cost
            row["latency_ms"] = t.latency_sum / t.latency_n if t.latency_n else None
            rows.append(row)
        return rows


@dataclass
class Snapshot:
    """What a reporter shows; ``eta`` is None until the rate is known."""

    run_id: str
    total: int
    done: int
    cached: int
    failed: int
    tokens: int
    cost: float
    elapsed: float
    eta: float | None
    board: list[dict[str, Any]]
    status: str = "running"


class Reporter(Protocol):
    def update(self, snap: Snapshot) -> None: ...

    def close(self, snap: Snapshot) -> None: ...


class Clock:
    """ETA from the rate measured between progress ticks, starting at the first tick that saw cells finish.

    Neither the cache hits recorded at start nor the first calls' warm-up (the model library's import, its
    first-request setup: seconds) enter the rate, so the first ETA shown is not off by minutes.
    """

    def __init__(self, total: int, done: int) -> None:
        self.total = total
        self.start_done = done
        self.base: tuple[float, int] | None = None

    def eta(self, done: int) -> float | None:
        now = time.perf_counter()
        if self.base is None:
            if done > self.start_done:
                self.base = (now, done)
            return None
        t0, d0 = self.base
        if done <= d0 or now <= t0:
            return None
        return (self.total - done) * (now - t0) / (done - d0)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook 7, VS Code), where HTML output can be updated."""
    ipython = sys.modules.get("IPython")  # a kernel has imported it already; a CLI must not pay ~0.7 s to ask
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "…"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def render_html(snap: Snapshot) -> str:
    """The live panel: a progress bar, the counters and the leaderboard so far."""
    from workbench.display import fmt_number

    pct = 100.0 * snap.done / snap.total if snap.total else 100.0
    colour = {"running": "#4c78a8", "completed": "#54a24b", "interrupted": "#e45756", "failed": "#e45756"}.get(
        snap.status, "#f58518"
    )
    eta = f"ETA {_fmt_seconds(snap.eta)}" if snap.status == "running" else f"took {_fmt_seconds(snap.elapsed)}"
    counters = (
        f"<b>run {html.escape(snap.run_id)}</b> — {html.escape(snap.status)}: {snap.done}/{snap.total} cells "
        f"({snap.cached} cached, {snap.failed} failed) · {snap.tokens:,} tokens · ${snap.cost:.4f} · {eta}"
    )
    bar = (
        f"<div style='background:#eee;height:6px;width:100%;max-width:640px;margin:4px 0'>"
        f"<div style='background:{colour};height:6px;width:{pct:.1f}%'></div></div>"
    )
    rows = ""
    if snap.board:
        cols = list(snap.board[0])
        head = "".join(f"<th style='text-align:left;padding:0 8px'>{html.escape(c)}</th>" for c in cols)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td style='padding:0 8px'>{html.escape(fmt_number(r[c]) if c != 'variant' else str(r[c]))}</td>"
                for c in cols
            )
            + "</tr>"
            for r in snap.board
        )
        rows = f"<table class='llmops-live-board' style='font-size:12px'><tr>{head}</tr>{body}</table>"
    return f"<div class='llmops-live' style='font-size:13px'>{counters}{bar}{rows}</div>"


def render_text(snap: Snapshot) -> str:
    return (
        f"run {snap.run_id} {snap.status}: {snap.done}/{snap.total} cells ({snap.cached} cached, {snap.failed} "
        f"failed), {snap.tokens} tokens, ${snap.cost:.4f}, "
        + (f"ETA {_fmt_seconds(snap.eta)}" if snap.status == "running" else f"took {_fmt_seconds(snap.elapsed)}")
    )


class _Bundle:
    """A display object carrying both forms: HTML for notebooks, text for consoles and logs."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": render_html(self.snap), "text/plain": render_text(self.snap)}


class LivePanel:
    """A notebook output updated in place (``display_id``); costs one small message a second."""

    def __init__(self, snap: Snapshot) -> None:
        from IPython.display import display

        self.handle = display(_Bundle(snap), display_id=True)

    def update(self, snap: Snapshot) -> None:
        if self.handle is not None:
            self.handle.update(_Bundle(snap))

    def close(self, snap: Snapshot) -> None:
        self.update(snap)


class TqdmReporter:
    """The console form: tqdm's bar with the counters as postfix."""

    def __init__(self, snap: Snapshot) -> None:
        from tqdm.std import tqdm  # the console bar (tqdm.auto would import IPython to choose)

        self.bar = tqdm(
            total=snap.total,
            initial=snap.done,
            desc=f"run {snap.run_id}",
            unit="cell",
            leave=True,
            mininterval=0.5,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",  # our ETA, not tqdm's
        )

    def update(self, snap: Snapshot) -> None:
        self.bar.n = snap.done
        eta = {"eta": _fmt_seconds(snap.eta)} if snap.status == "running" else {}
        self.bar.set_postfix(
            cached=snap.cached, failed=snap.failed, tokens=snap.tokens, cost=f"${snap.cost:.4f}", **eta, refresh=True
        )

    def close(self, snap: Snapshot) -> None:
        self.update(snap)
        self.bar.close()


def make_reporter(progress: Any, snap: Snapshot) -> Reporter | None:
    """``progress``: False (nothing), True (live panel in a notebook, else a tqdm bar), or a reporter class."""
    if not progress:
        return None
    if progress is True:
        return LivePanel(snap) if in_notebook() else TqdmReporter(snap)
    if callable(progress):
        return progress(snap)  # type: ignore[no-any-return]
    raise TypeError(f"progress must be True, False or a reporter class, got {progress!r}")
