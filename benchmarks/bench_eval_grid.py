"""EvalGrid benchmark: a 10,000-case x 6-variant run in the grid, kernel side and in a real browser.

Run from the repository root (a few minutes on 2 cores)::

    python benchmarks/bench_eval_grid.py [--cases 10000] [--trials 5] [--skip-browser]

It prints figures, never asserts. Targets from issue 7: first rendered page < 1 s after ``run.grid()``,
a filter or sort shows its new page < 300 ms, <= 1 MB per page, no full-result DataFrame held.

1. Builds the run: a real experiment record (6 variants = 3 prompts x 2 models, 3 metrics), its cells
   and scores written through ``Store.write_batch`` (the runner's own write path) with PubMedQA
   sentences as outputs, 3 retrieved chunks on 2 variants, ~2% failed cells. No model is called: this
   measures the grid, not the runner (``bench_grid.py`` measures the runner).
2. Kernel side, interleaved, medians: one page per view (first page, filters, sorts, a deep page)
   against two baselines measured in the same run: the connection floor (open + ``SELECT 1`` + close)
   and the naive way (``run.results()``: every cell as a DataFrame, then pandas).
3. Bytes per page (JSON as sent) for 20/50/100 rows.
4. Kernel memory: RSS of a child process while a grid serves pages, against the same process after
   ``run.results()``.
5. Browser: JupyterLab + Chromium (tests/browser/harness.py): time from executing ``run.grid()`` to the
   first rendered row, and from a filter/sort change to its rendered page (measured in the page).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

VIEWS: dict[str, dict[str, Any]] = {
    "first page": {},
    "filter: errors": {"show": "errors"},
    "filter: failures token_f1<0.2": {"show": "failures", "failure_metric": "token_f1", "failure_threshold": 0.2},
    "filter: disagree (outputs)": {"show": "disagree"},
    "filter: disagree token_f1 spread>0.3": {"show": "disagree", "disagree_metric": "token_f1", "disagree_spread": 0.3},
    "filter: text search": {"search": "mortality"},
    "filter: regex search": {"search": r"\bp\s*<\s*0\.0\d", "search_regex": True},
    "sort: metric mean desc": {"sort_by": "metric", "sort_metric": "rouge_l", "sort_desc": True},
    "sort: delta to baseline": {"sort_by": "delta", "sort_metric": "token_f1", "sort_desc": True},
    "sort: disagreement": {"sort_by": "disagreement", "sort_metric": "token_f1", "sort_desc": True},
    "page 400 of 500": {"page": 399},
    "diff vs baseline": {"diff": "baseline"},
}


def out(line: str = "") -> None:
    print(line, flush=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------------
# 1. the run


def build_run(ws_dir: Path, n_cases: int, seed: int = 0) -> str:
    import workbench as wb
    from workbench.demo import data_path
    from workbench.store import dumps

    rng = random.Random(seed)
    base = [json.loads(line) for line in data_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for i in range(n_cases):
        b = base[i % len(base)]
        rows.append({**b, "pmid": f"{b['pmid']}-{i}", "question": f"{b['question']} (cohort {i // len(base)})"})
    ws = wb.open(ws_dir)
    ds = ws.add_dataset("bench-grid", rows, id="pmid")
    prompts = [
        wb.Prompt(f"p{k}", f"Variant {k}. Context: {{{{ context }}}}\nQuestion: {{{{ question }}}}") for k in range(3)
    ]
    models = [{"name": f"m{k}", "model": f"openai/model-{k}", "api_base": "http://127.0.0.1:9/v1"} for k in range(2)]
    metrics = [
        {"name": "token_f1", "expected": "long_answer"},
        {"name": "rouge_l", "expected": "long_answer"},
        {"name": "contains", "expected": "final_decision"},
    ]
    exp = ws.experiment(ds, prompts, models, metrics, name="bench-grid")
    run, plan = exp._create_run()  # the run record as exp.run() writes it; cells written below
    variants = [v.name for v in exp.variants]
    cells, scores = [], []
    t0 = time.perf_counter()
    for i, (case_id, case) in enumerate(ds.cases()):
        sentences = [s for s in case["context"].split(". ") if s] or [case["context"]]
        for vi, v in enumerate(variants):
            failed = rng.random() < 0.02
            output = None if failed else ". ".join(rng.sample(sentences, k=min(len(sentences), 1 + vi % 3))) + "."
            retrieved = None
            if vi >= 4:
                retrieved = dumps(
                    [
                        {"chunk_id": f"{case_id}#{k}", "doc_id": case_id, "score": rng.random(), "text": s[:600]}
                        for k, s in enumerate(rng.sample(sentences, k=min(3, len(sentences))))
                    ]
                )
            cells.append(
                {
                    "case_id": case_id,
                    "variant": v,
                    "repeat": 0,
                    "request_key": f"k{i}-{vi}",
                    "messages": dumps([{"role": "user", "content": case["question"]}]),
                    "output": output,
                    "error": "model 'm1': APIConnectionError: Connection refused" if failed else None,
                    "error_kind": "model" if failed else None,
                    "latency_ms": rng.uniform(200, 3000),
                    "prompt_tokens": 300 + vi,
                    "completion_tokens": 40,
                    "cost": rng.uniform(0.0001, 0.002),
                    "cached": False,
                    "retrieved": retrieved,
                }
            )
            if not failed:
                for m in ("token_f1", "rouge_l", "contains"):
                    value = float(rng.random() < 0.5) if m == "contains" else rng.random() * 0.8
                    scores.append(
                        {
                            "case_id": case_id,
                            "variant": v,
                            "repeat": 0,
                            "metric": m,
                            "value": value,
                            "detail": None,
                            "error": None,
                        }
                    )
        if len(cells) >= 12000:
            ws.store.write_batch(run.run_id, cells, scores, [])
            cells, scores = [], []
    ws.store.finish_run(run.run_id, "completed",
                        [{"cells": cells, "scores": scores, "responses": [], "replace": False}])
    out(
        f"built run {run.run_id}: {n_cases} cases x {len(variants)} variants = {len(plan)} cells "
        f"in {time.perf_counter() - t0:.1f} s (store.write_batch)"
    )
    return run.run_id


# ---------------------------------------------------------------------------------------------
# 2-3. kernel side


def kernel_side(ws_dir: Path, run_id: str, trials: int) -> dict[str, Any]:
    import workbench as wb
    from workbench.gridview import GridQuery, ViewState

    ws = wb.open(ws_dir)
    query = GridQuery(ws.store, [run_id])
    base = query.default_state().as_dict()

    def floor() -> None:
        with ws.store.connect() as con:
            con.execute("SELECT 1").fetchall()

    def naive() -> None:
        frame = ws.get_run(run_id).results()
        frame[frame["error"].notna()].head(20)

    fl_name, naive_name = "connection floor (open, SELECT 1, close)", "naive: run.results() + pandas filter"
    sides: list[tuple[str, Any]] = [(fl_name, floor)]
    sides += [(k, lambda v=v: query.page(ViewState.from_dict({**base, **v}))) for k, v in VIEWS.items()]
    sides.append((naive_name, naive))
    wall: dict[str, list[float]] = {k: [] for k, _ in sides}
    cpu: dict[str, list[float]] = {k: [] for k, _ in sides}
    for trial in range(trials):  # interleaved; the order rotates each trial
        shift = trial % len(sides)
        for name, fn in sides[shift:] + sides[:shift]:
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    out(f"\n== Kernel side: one page (20 rows), median of {trials} interleaved trials (order rotated)")
    out(f"{'view':42s} {'wall ms':>8s} {'CPU ms':>8s} {'x floor':>8s} {'x naive':>8s}   all trials (wall ms)")
    fl, nv = med[fl_name], med[naive_name]
    for k, v in med.items():
        trials_ms = " ".join(f"{x * 1000:.0f}" for x in wall[k])
        out(f"{k:42s} {v * 1000:8.1f} {med_cpu[k] * 1000:8.1f} {v / fl:8.1f} {v / nv:8.3f}   {trials_ms}")
    naive_med = nv

    out("\n== Bytes per page (JSON as sent to the browser)")
    sizes = {}
    for n in (20, 50, 100):
        for label, view in (("all", {}), ("diff vs baseline", {"diff": "baseline"})):
            page = query.page(ViewState.from_dict({**base, "page_size": n, **view}))
            size = len(json.dumps({"type": "page", "seq": 1, **page}, separators=(",", ":")).encode())
            sizes[(n, label)] = size
            out(f"{n:4d} rows, {label:18s}: {size / 1024:8.1f} KiB ({size / n / 1024:.1f} KiB/row)")
    return {"median_s": med, "naive_s": naive_med, "bytes": sizes}


_MEM_CHILD = r"""
import os, sys, time, json
sys.path.insert(0, sys.argv[3])
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import workbench as wb, pandas, pyarrow, duckdb, anywidget
from workbench.widgets.grid import EvalGrid
ws = wb.open(sys.argv[1]); run = ws.get_run(sys.argv[2])
before = rss()
grid = run.grid()
views = ({}, {"show": "errors"}, {"sort_by": "delta", "sort_metric": "token_f1"}, {"page": 300}, {"search": "x"})
for view in views:
    for k, v in view.items():
        setattr(grid, k, v)
    grid.handle_message({"type": "page", "seq": 1})
with_grid = rss()
frame = run.results()
with_frame = rss()
print(json.dumps({"before": before, "grid": with_grid, "results": with_frame, "rows": len(frame)}))
"""


def memory(ws_dir: Path, run_id: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", _MEM_CHILD, str(ws_dir), run_id, str(ROOT)], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        out(f"memory child failed: {proc.stderr[-800:]}")
        return {}
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    out("\n== Kernel memory (RSS of a child process)")
    out(f"after imports and opening the run: {m['before']:.0f} MB")
    out(f"grid open, 5 views served:        {m['grid']:.0f} MB (+{m['grid'] - m['before']:.0f} MB)")
    out(f"then run.results() ({m['rows']} rows):  {m['results']:.0f} MB (+{m['results'] - m['grid']:.0f} MB more)")
    return m


# ---------------------------------------------------------------------------------------------
# 5. browser


_MEASURE_CHANGE = """
async ([label, value]) => {
  const g = document.querySelectorAll('.lw-grid'); const grid = g[g.length - 1];
  const seq = Number(grid.dataset.renderedSeq || 0);
  const field = Array.from(grid.querySelectorAll('label.lw-field'))
      .find(l => l.querySelector('.lw-field-label').textContent === label);
  const select = field.querySelector('select');
  const t0 = performance.now();
  select.value = value; select.dispatchEvent(new Event('change'));
  await new Promise(resolve => { const check = () => (Number(grid.dataset.renderedSeq || 0) > seq
      && !grid.classList.contains('lw-loading')) ? resolve() : requestAnimationFrame(check); check(); });
  await new Promise(r => requestAnimationFrame(() => r()));
  const total = performance.now() - t0;
  return [total, Number(grid.dataset.replyMs), Number(grid.dataset.kernelMs), Number(grid.dataset.renderMs)];
}
"""


def browser(ws_dir: Path, run_id: str, trials: int) -> dict[str, Any]:
    from harness import JupyterServer, NotebookPage, artifacts_dir, chromium_available, launch_chromium, write_notebook
    from playwright.sync_api import sync_playwright

    if not chromium_available():
        out("\n== Browser: skipped (no /usr/bin/chromium)")
        return {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-grid-"))
    cells = ["%load_ext workbench", f"import workbench as wb\nrun = wb.open().get_run({run_id!r})\nrun.status"]
    results: dict[str, list[float]] = {"run.grid() -> first rendered page": []}
    changes = [
        ("filter: errors", "Show", "errors"),
        ("filter: disagree", "Show", "disagree"),
        ("filter: all", "Show", "all"),
        ("sort: delta to baseline", "Sort", "delta"),
        ("sort: disagreement", "Sort", "disagreement"),
        ("sort: dataset order", "Sort", "case"),
    ]
    parts: dict[str, list[tuple[float, float, float]]] = {}
    for name, _l, _v in changes:
        results[name] = []
        parts[name] = []
    with JupyterServer(tmp / "root", ws_dir, app="lab") as server, sync_playwright() as pw:
        write_notebook(server.root_dir / "bench.ipynb", cells)
        chromium = launch_chromium(pw)
        page = chromium.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        page.set_default_timeout(120_000)
        nb = NotebookPage(page, server, artifacts_dir(), prefix="bench-eval-grid-")
        nb.open("bench.ipynb")
        nb.run_all(timeout=300)
        for trial in range(trials):
            # a new cell each trial: the kernel builds a new widget, the browser renders it
            page.evaluate(
                """() => { const p = window.jupyterapp.shell.currentWidget; const nb = p.content;
                nb.activeCellIndex = nb.widgets.length - 1;
                window.jupyterapp.commands.execute('notebook:insert-cell-below');
                nb.activeCell.model.sharedModel.setSource('grid = run.grid()\\ngrid'); }"""
            )
            n_before = page.locator(".lw-grid").count()
            ms = page.evaluate(
                """async (n) => { const t0 = performance.now();
                window.jupyterapp.commands.execute('notebook:run-cell');
                await new Promise(resolve => { const check = () => {
                    const g = document.querySelectorAll('.lw-grid');
                    (g.length > n && g[g.length - 1].querySelector('tbody tr[data-case]')) ? resolve()
                        : requestAnimationFrame(check); }; check(); });
                await new Promise(r => requestAnimationFrame(() => r()));
                return performance.now() - t0; }""",
                n_before,
            )
            results["run.grid() -> first rendered page"].append(ms / 1000)
            nb.wait_idle()
            for name, label, value in changes:
                total, reply, kernel, render = page.evaluate(_MEASURE_CHANGE, [label, value])
                results[name].append(total / 1000)
                parts[name].append((reply, kernel, render))
            if trial == 0:
                nb.screenshot("grid", page.locator(".lw-grid").last)
        sent = page.evaluate("() => document.querySelectorAll('.lw-grid').length")
        chromium.close()
    out(f"\n== Browser (JupyterLab + Chromium), median of {trials} trials ({sent} grids rendered)")
    for k, v in results.items():
        line = f"{k:42s} {statistics.median(v) * 1000:8.0f} ms   (all: {' '.join(f'{x * 1000:.0f}' for x in v)})"
        if parts.get(k):
            reply, kernel, render = (statistics.median(p[i] for p in parts[k]) for i in range(3))
            line += f"; request->reply {reply:.0f} (kernel {kernel:.0f}), reply->rendered {render:.0f}"
        out(line)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--only-browser", action="store_true")
    parser.add_argument("--workspace", help="reuse a workspace built by an earlier run of this benchmark")
    args = parser.parse_args()
    ws_dir = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="bench-eval-grid-")) / "ws"
    out(f"workspace {ws_dir}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    import workbench as wb

    runs = wb.open(ws_dir).runs() if ws_dir.exists() else None
    if runs is not None and len(runs):
        run_id = str(runs["run_id"][0])
        out(f"reusing run {run_id}")
    else:
        run_id = build_run(ws_dir, args.cases)
    if not args.only_browser:
        kernel_side(ws_dir, run_id, args.trials)
        memory(ws_dir, run_id)
    if not args.skip_browser:
        browser(ws_dir, run_id, max(3, args.trials // 2))


if __name__ == "__main__":
    main()
