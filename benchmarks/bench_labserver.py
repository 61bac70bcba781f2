"""Server-extension benchmark: the LLMOps sidebar's load, a grid panel's first page, and what the sidebar's
refresh costs a kernel that is running a grid.

Run from the repository root (about 3-4 minutes with the defaults on 2 cores)::

    python benchmarks/bench_labserver.py [--runs 1000] [--cases 10000] [--variants 6] [--trials 5]
        [--grid-cases 150] [--latency 0.02] [--grid-trials 3]

It starts a real JupyterLab (tests/browser/harness.py) on 127.0.0.1 and calls the extension's API over HTTP
with the server's token, as the sidebar does. It prints figures, never asserts:

1. sidebar load with ``--runs`` runs in the workspace: the two requests the sidebar sends on load (workspaces,
   and overview = datasets, prompts, retrievers and 200 runs), sent together as the browser does; also
   ``runs`` with limit=1000.
   Target < 1 s. Baseline in the same run: ``ws.runs()`` in-process (the floor: no HTTP, no JSON).
2. grid panel first page for a ``--cases`` x ``--variants`` run (25 rows): default order, sorted by a
   metric against a baseline variant, and a text search. Target < 1 s. Baseline: ``run.results()`` (the
   whole run as a DataFrame: what a panel without paging would have to load).
3. a kernel-like subprocess runs a real grid (litellm over HTTP to tests/openai_server.py) alone, and
   while a sidebar-like poller refreshes every second (change stamp; on a change, the sidebar's reload and
   an open grid page). Interleaved trials, medians. Target: the run slows < 5 %.

The workspaces of parts 1-2 are built fast: one real run through the Python API, then its rows copied in
SQL (parts 1) or cells/scores generated in SQL for a dataset stored through the API (part 2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "browser"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
WRITER = ROOT / "tests" / "labserver_writer.py"


def out(line: str = "") -> None:
    print(line, flush=True)


class Api:
    def __init__(self, server: Any) -> None:
        self.server = server
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str) -> Any:
        req = urllib.request.Request(
            self.server.url("/llmops/api/" + path, token=False),
            headers={"Authorization": f"token {self.server.token}"},
        )
        with self.opener.open(req, timeout=60) as resp:
            return json.loads(resp.read())


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_of(fn: Any, trials: int) -> tuple[float, list[float]]:
    times = [timed(fn) for _ in range(trials)]
    return statistics.median(times), times


# ---------------------------------------------------------------------------------------------
# workspaces


def many_runs(path: Path, runs: int) -> None:
    """A seeded workspace (one real run of 80 cells) whose run is copied ``runs - 1`` times in SQL."""
    subprocess.run([sys.executable, str(WRITER), str(path), "--seed-only", "--cases", "40"], check=True)
    from workbench.store import Store

    store = Store(path)
    with store.transaction() as con:
        (run_id,) = con.execute("SELECT run_id FROM runs").fetchone()
        # SELECT * REPLACE: the copies follow the schema, whatever columns later migrations add
        con.execute(
            "INSERT INTO runs SELECT r.* REPLACE (r.run_id || '-' || i AS run_id, r.name || ' ' || i AS name, "
            "r.created_at - to_seconds(i) AS created_at) FROM runs r, range(1, $1) t(i)",
            [runs],
        )
        con.execute(
            "INSERT INTO run_variants SELECT v.* REPLACE (v.run_id || '-' || i AS run_id) "
            "FROM run_variants v, range(1, $1) t(i)",
            [runs],
        )
        con.execute(
            "INSERT INTO cells SELECT c.* REPLACE (c.run_id || '-' || i AS run_id) "
            "FROM cells c, range(1, $1) t(i) WHERE c.run_id = $2",
            [runs, run_id],
        )


def big_run(path: Path, cases: int, variants: int) -> str:
    """A ``cases`` x ``variants`` run: dataset and run records through the API, cells and scores in SQL."""
    import workbench as wb
    from workbench.store import Store

    ws = wb.open(path)
    rows = [
        {"id": f"c{i:05d}", "question": f"question number {i} about topic {i % 97}", "answer": f"answer {i % 13}"}
        for i in range(cases)
    ]
    ds = ws.add_dataset("big", rows, id="id")
    prompts = [wb.Prompt(f"p{j}", f"Q{j}: {{{{ question }}}}") for j in range(variants)]
    exp = ws.experiment(
        ds, prompts, ["local/extractive"], [{"name": "token_f1", "expected": "answer"}, "latency"], name="big"
    )
    store: Store = ws.store
    run_id = "big-run"
    store.create_run(
        run_id,
        "big",
        ds.name,
        ds.hash,
        exp.to_record(),
        1,
        cases * variants,
        [v.record() for v in exp.variants],
        [exp.variants[0].model.record()],
        [v.prompt.record() for v in exp.variants],
    )
    names = [v.name for v in exp.variants]
    with store.transaction() as con:
        con.execute(
            "INSERT INTO cells (run_id, case_id, variant, repeat, output, latency_ms, cost, cached) "
            "SELECT $1, 'c' || lpad(i::TEXT, 5, '0'), v, 0, 'output ' || i || ' of ' || v, (i * 7 % 1000)::DOUBLE, "
            "0.0001, false FROM range($2) t(i), unnest($3) u(v)",
            [run_id, cases, names],
        )
        con.execute(
            "INSERT INTO scores SELECT run_id, case_id, variant, repeat, m, "
            "CASE m WHEN 'token_f1' THEN (hash(case_id || variant) % 1000) / 1000.0 ELSE latency_ms END, NULL, NULL "
            "FROM cells, unnest(['token_f1', 'latency']) u(m) WHERE run_id = $1",
            [run_id],
        )
    return run_id


# ---------------------------------------------------------------------------------------------
# parts


def part1(api: Api, path: Path, runs: int, trials: int) -> None:
    out(f"\n1. sidebar load, {runs} runs in the workspace (target < 1 s)")
    import workbench as wb

    ws = wb.Workspace(path, read_only=True)
    pool = ThreadPoolExecutor(8)
    calls = ["workspaces", "overview?ws=.llmops&limit=200"]

    def sidebar() -> None:
        list(pool.map(api.get, calls))

    import psutil

    server = psutil.Process(api.server.proc.pid)

    def server_cpu() -> float:
        t = server.cpu_times()
        return float(t.user + t.system)

    c0 = server_cpu()
    t_cold = timed(sidebar)  # the first load after the server started: imports, first open of the workspace
    cpu_cold = server_cpu() - c0
    t_side: list[float] = []
    cpu_side: list[float] = []
    t_floor: list[float] = []
    t_all: list[float] = []
    for _ in range(trials):  # interleaved
        c0 = server_cpu()
        t_side.append(timed(sidebar))
        cpu_side.append(server_cpu() - c0)
        t_floor.append(timed(ws.runs))
        t_all.append(timed(lambda: api.get("runs?ws=.llmops&limit=1000")))
    n = api.get("runs?ws=.llmops&limit=1")["total"]
    out(f"   runs in workspace: {n}")
    out(
        f"   sidebar load (workspaces + overview):  median {statistics.median(t_side) * 1000:.0f} ms  "
        f"{[round(t * 1000) for t in t_side]}"
    )
    out(f"   first load after server start:         {t_cold * 1000:.0f} ms wall, server CPU {cpu_cold * 1000:.0f} ms")
    out(
        f"   server CPU per sidebar load:           median {statistics.median(cpu_side) * 1000:.0f} ms  "
        f"{[round(t * 1000) for t in cpu_side]}"
    )
    out(f"   runs?limit=1000 over HTTP:             median {statistics.median(t_all) * 1000:.0f} ms")
    out(
        f"   floor ws.runs() in-process:            median {statistics.median(t_floor) * 1000:.0f} ms  "
        f"(sidebar / floor = {statistics.median(t_side) / statistics.median(t_floor):.1f}x)"
    )


def part2(api: Api, path: Path, run_id: str, cases: int, variants: int, trials: int) -> None:
    out(f"\n2. grid panel first page, {cases} x {variants} run, 25 rows (target < 1 s)")
    import workbench as wb

    def grid(**state: Any) -> str:
        """The sidebar grid's request: the notebook grid's view state as JSON."""
        q = urllib.parse.quote(json.dumps({"page_size": 25, **state}))
        return f"runs/{run_id}/grid?ws=big/.llmops&view={q}"

    base = grid()
    page = api.get(base)
    v0, v1 = page["columns"][0]["key"], page["columns"][1]["key"]
    queries = {
        "default order": base,
        "sorted by token_f1 delta vs baseline": grid(
            sort_by="delta", sort_metric="token_f1", sort_column=v0, baseline=v1, sort_desc=True
        ),
        "failures token_f1 < 0.5": grid(show="failures", failure_metric="token_f1", failure_threshold=0.5),
        "search 'topic 42'": grid(search="topic 42"),
        "last page": grid(page=cases // 25 - 1),
    }
    ws = wb.Workspace(path, read_only=True)
    run = ws.get_run(run_id)
    results: dict[str, list[float]] = {k: [] for k in queries}
    full: list[float] = []
    for _ in range(trials):
        for k, q in queries.items():
            results[k].append(timed(lambda q=q: api.get(q)))
        if len(full) < 2:
            full.append(timed(run.results))
    out(f"   total cases {page['total']}, rows on the page {len(page['rows'])}")
    for k, ts in results.items():
        out(f"   {k:38s} median {statistics.median(ts) * 1000:6.0f} ms  {[round(t * 1000) for t in ts]}")
    out(
        f"   baseline: run.results() (whole run) median {statistics.median(full) * 1000:.0f} ms  "
        f"(first page / whole = {statistics.median(results['default order']) / statistics.median(full):.2f})"
    )


def part3(api: Api, root: Path, cases: int, latency: float, trials: int) -> None:
    out(
        f"\n3. a kernel running a grid ({2 * cases} cells, latency {latency * 1000:.0f} ms, concurrency 8), "
        "alone vs with the sidebar refreshing every second (target: < 5 % slower)"
    )
    import shutil

    from openai_server import ServerProcess

    seeded = root / "kernel-seed" / ".llmops"
    subprocess.run(
        [sys.executable, str(WRITER), str(seeded), "--seed-only", "--cases", str(cases)],
        check=True,
        capture_output=True,
    )
    trial = {"n": 0}

    def sidebar_poller(ws: str, stop: threading.Event, counts: dict[str, int]) -> None:
        """What the sidebar does: the stamp every second; on a change, its overview and an open grid page.
        A 503 (the kernel held the workspace for the whole lock timeout) is counted and retried, as the
        sidebar does."""
        last = ""
        while not stop.is_set():
            try:
                stamp = api.get(f"stamp?ws={ws}")["stamp"]
                counts["polls"] += 1
                if stamp != last:
                    runs = api.get(f"overview?ws={ws}&limit=200")["runs"]["items"]
                    live = [r for r in runs if r["name"] == "live"]
                    if live:
                        state = urllib.parse.quote(json.dumps({"page_size": 25}))
                        api.get(f"runs/{live[0]['run_id']}/grid?ws={ws}&view={state}")
                    last = stamp
                    counts["reloads"] += 1
            except urllib.error.HTTPError as exc:
                counts[f"http {exc.code}"] = counts.get(f"http {exc.code}", 0) + 1
            stop.wait(1.0)

    with ServerProcess(latency=latency) as srv:

        def one(with_sidebar: bool) -> float:
            # a fresh copy of the seeded workspace each time: an empty response cache, so every cell calls
            trial["n"] += 1
            ws_path = root / f"kernel-{trial['n']}" / ".llmops"
            shutil.copytree(seeded, ws_path)
            ws = f"kernel-{trial['n']}/.llmops"
            stop = threading.Event()
            counts = {"polls": 0, "reloads": 0}
            th = threading.Thread(target=sidebar_poller, args=(ws, stop, counts)) if with_sidebar else None
            if th:
                th.start()
            proc = subprocess.run(
                [
                    sys.executable,
                    str(WRITER),
                    str(ws_path),
                    "--no-seed",
                    "--cases",
                    str(cases),
                    "--api-base",
                    srv.base_url,
                    "--concurrency",
                    "8",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            stop.set()
            if th:
                th.join()
            secs = float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("SECONDS")))
            if with_sidebar:
                out(f"     (sidebar: {counts})")
            return secs

        one(False)  # warm the OS file cache and the server
        alone: list[float] = []
        side: list[float] = []
        for i in range(trials):
            for flag in (False, True) if i % 2 == 0 else (True, False):
                (side if flag else alone).append(one(flag))
    a, s = statistics.median(alone), statistics.median(side)
    out(f"   run alone:            median {a:.2f} s  {[round(t, 2) for t in alone]}")
    out(f"   run with the sidebar: median {s:.2f} s  {[round(t, 2) for t in side]}")
    out(f"   slowdown: {100 * (s / a - 1):+.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--variants", type=int, default=6)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--grid-cases", type=int, default=150, help="cases of the kernel's grid in part 3")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--grid-trials", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip, e.g. 3")
    args = parser.parse_args()
    import harness

    out(f"load average {os.getloadavg()[0]:.2f}, cpus {os.cpu_count()}")
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-labserver-") as tmp:
        root = Path(tmp) / "root"
        t = time.perf_counter()
        many_runs(root / ".llmops", args.runs)
        run_id = big_run(root / "big" / ".llmops", args.cases, args.variants) if "2" not in skip else ""
        out(f"workspaces built in {time.perf_counter() - t:.1f} s")
        with harness.JupyterServer(root, root / ".llmops", app="lab") as server:
            api = Api(server)
            if "1" not in skip:
                part1(api, root / ".llmops", args.runs, args.trials)
            if "2" not in skip:
                part2(api, root / "big" / ".llmops", run_id, args.cases, args.variants, args.trials)
            if "3" not in skip:
                part3(api, root, args.grid_cases, args.latency, args.grid_trials)
    out(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
