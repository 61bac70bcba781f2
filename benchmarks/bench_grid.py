"""Grid benchmark: the workbench runner against the floor litellm allows, the ideal, and promptfoo.

Run from the repository root (about 3-5 minutes with the defaults on 2 cores)::

    /work/venv/bin/python benchmarks/bench_grid.py [--cases 200] [--latency 0.05] [--concurrency 16]
        [--skip-promptfoo] [--big 10000] [--huge 20000] [--trials 3] [--data PATH]

Everything is measured in one invocation against the local OpenAI-compatible test server
(``tests/openai_server.py``, a separate process) over real HTTP. It prints figures, never asserts:

1. a 2-prompt x N-case PubMedQA grid: (a) ``exp.run`` in a fresh workspace, (b) a plain
   asyncio.Semaphore + ``litellm.acompletion`` loop over the same rendered requests (the floor our
   dependency allows), (c) the ideal calls x latency / concurrency, (d) ``promptfoo eval --no-cache``;
2. a fully cached re-run of that grid;
3. a cached re-run of ``--big`` cells (cache filled first at server latency 0);
4. the peak RSS of a ``--huge``-cell cached run, in a child process (hidden ``--child-mem`` mode);
5. ``import workbench`` time in a fresh interpreter and which heavy modules it pulls in;
6. litellm's per-call overhead against raw aiohttp / httpx, a sweep of litellm flags, the workbench's
   own per-cell overhead at latency 0, and a cProfile of the workbench run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/work/shared/data/pubmedqa/ori_pqal.json")
DEMO_DATA = ROOT / "workbench" / "data" / "pubmedqa_demo.jsonl"
SETUP_PROMPTFOO = Path("/work/shared/tools/setup-promptfoo.sh")
MODEL = "openai/test-model"
API_KEY = "sk-test"
PROMPTS = (("p1", "Question: {{ question }}"), ("p2", "Please answer: {{ question }}"))
HEAVY = ("litellm", "pandas", "faiss", "duckdb", "pyarrow", "numpy", "openai", "httpx", "aiohttp", "jinja2")


# ---------------------------------------------------------------------------------------------
# small helpers


def out(line: str = "") -> None:
    print(line, flush=True)


def header(title: str) -> None:
    out()
    out("=" * 100)
    out(title)
    out("=" * 100)


def table(rows: list[list[Any]], headers: list[str]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    out("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    out("  ".join("-" * w for w in widths))
    for r in cells:
        out("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def fmt_s(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def rss_mb() -> float:
    """Current resident set size (VmRSS) of this process in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def hwm_mb() -> float:
    """Peak RSS of this process image (VmHWM): unlike ru_maxrss, never inherited from the parent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# A child's ru_maxrss starts at its parent's RSS at fork time (Linux carries the forked address space's high-water
# mark across exec), so a child of this 400+ MB process would report 400+ MB whatever it does. A small launcher
# process in between keeps the measurement honest.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Swallow progress bars (tqdm writes to stderr) while still paying for them."""
    saved = sys.stderr
    sys.stderr = io.StringIO()
    try:
        yield
    finally:
        sys.stderr = saved


# ---------------------------------------------------------------------------------------------
# data


def load_base_cases(path: Path) -> tuple[list[dict[str, str]], str]:
    """PubMedQA labelled questions (id, question, long answer); the shipped demo subset if ``path`` is absent."""
    if path.exists():
        raw = json.loads(path.read_text())
        rows = [{"id": pmid, "question": v["QUESTION"], "answer": v["LONG_ANSWER"]} for pmid, v in raw.items()]
        return rows, f"{path} ({len(rows)} questions)"
    rows = []
    with DEMO_DATA.open() as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append({"id": str(r["pmid"]), "question": r["question"], "answer": r["long_answer"]})
    return rows, f"{DEMO_DATA} ({len(rows)} questions; {path} not found)"


def make_cases(base: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    """``n`` unique cases: the real questions first, then cycled with a follow-up suffix to keep them unique.

    Deterministic, so the first k cases of a bigger set equal a smaller set (their responses are cached).
    """
    cases = []
    for i in range(n):
        b = base[i % len(base)]
        k = i // len(base)
        if k == 0:
            cases.append(dict(b))
        else:
            cases.append({"id": f"{b['id']}-f{k}", "question": f"{b['question']} (follow-up cohort {k})",
                          "answer": b["answer"]})
    return cases


# ---------------------------------------------------------------------------------------------
# workbench side


def build_experiment(ws: Any, ds: Any, base_url: str, concurrency: int) -> Any:
    import workbench as wb

    return ws.experiment(
        ds, [wb.Prompt(name, user) for name, user in PROMPTS],
        [{"name": "m", "model": MODEL, "api_base": base_url, "params": {"temperature": 0}}],
        [{"name": "token_f1", "expected": "answer"}], concurrency=concurrency,
    )


def fresh_experiment(root: Path, label: str, cases: list[dict[str, str]], base_url: str, concurrency: int,
                     dataset: str = "bench") -> Any:
    import workbench as wb

    ws = wb.open(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
    ds = ws.add_dataset(dataset, cases, id="id")
    return build_experiment(ws, ds, base_url, concurrency)


def timed_run(exp: Any, progress: bool = False) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process incl. its threads, run) of one ``exp.run``."""
    t, cpu = time.perf_counter(), time.process_time()
    if progress:
        with quiet_stderr():
            run = exp.run(progress=True)
    else:
        run = exp.run(progress=False)
    return time.perf_counter() - t, time.process_time() - cpu, run


class StoreTimer:
    """Wraps the public methods of one Store instance: calls, total time (any thread) and peak-RSS increase."""

    def __init__(self, store: Any) -> None:
        self.totals: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        for name in dir(type(store)):
            attr = getattr(store, name, None)
            if name.startswith("_") or not callable(attr) or name in ("connect", "transaction"):
                continue
            setattr(store, name, self._wrap(name, attr))
        if callable(getattr(store, "_connect_once", None)):  # every DuckDB open: count them, nested in the above
            store._connect_once = self._wrap("  (DuckDB opens, inside the above)", store._connect_once)

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            peak, t = peak_rss_mb(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    entry = self.totals.setdefault(name, [0, 0.0, 0.0])
                    entry[0] += 1
                    entry[1] += time.perf_counter() - t
                    entry[2] += peak_rss_mb() - peak

        return wrapper

    def print(self, with_memory: bool = False) -> None:
        rows = [[k, int(v[0]), f"{v[1] * 1000:.1f}"] + ([f"{v[2]:+.0f}"] if with_memory else [])
                for k, v in sorted(self.totals.items(), key=lambda kv: -kv[1][1])]
        table(rows, ["Store method", "calls", "total ms"] + (["peak RSS raised (MB)"] if with_memory else []))


# ---------------------------------------------------------------------------------------------
# plain loops (the floor)


def litellm_mod() -> Any:
    from workbench.llm import litellm_module

    return litellm_module()


async def plain_litellm(requests: list[list[dict[str, str]]], base_url: str, concurrency: int) -> list[str]:
    litellm = litellm_mod()
    sem = asyncio.Semaphore(concurrency)

    async def one(messages: list[dict[str, str]]) -> str:
        async with sem:
            resp = await litellm.acompletion(model=MODEL, messages=messages, api_base=base_url, api_key=API_KEY,
                                             temperature=0, max_retries=0)
            return str(resp.choices[0].message.content)

    return await asyncio.gather(*(one(m) for m in requests))


def time_plain(requests: list[list[dict[str, str]]], base_url: str, concurrency: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the plain loop."""
    t, cpu = time.perf_counter(), time.process_time()
    outputs = asyncio.run(plain_litellm(requests, base_url, concurrency))
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert len(outputs) == len(requests)
    return elapsed, cpu


async def sequential_litellm(base_url: str, n: int, extra: dict[str, Any] | None = None) -> tuple[float, float]:
    litellm = litellm_mod()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await litellm.acompletion(model=MODEL, messages=[{"role": "user", "content": f"Question: overhead probe {i}?"}],
                                  api_base=base_url, api_key=API_KEY, temperature=0, max_retries=0, **(extra or {}))
    return (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


def _body(i: int) -> dict[str, Any]:
    return {"model": "test-model", "temperature": 0,
            "messages": [{"role": "user", "content": f"Question: overhead probe {i}?"}]}


async def sequential_aiohttp(base_url: str, n: int) -> tuple[float, float]:
    import aiohttp

    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as session:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            async with session.post(base_url + "/chat/completions", json=_body(i), headers=headers) as r:
                data = await r.json()
                _ = data["choices"][0]["message"]["content"]
        return (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


async def sequential_httpx(base_url: str, n: int) -> tuple[float, float]:
    import httpx

    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient() as client:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            r = await client.post(base_url + "/chat/completions", json=_body(i), headers=headers)
            _ = r.json()["choices"][0]["message"]["content"]
        return (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


# ---------------------------------------------------------------------------------------------
# promptfoo


def run_promptfoo(args: argparse.Namespace, server: Any, cases: list[dict[str, str]], root: Path) -> dict[str, Any]:
    """Install (idempotent), warm up on a 1-case config, then time ``promptfoo eval`` on the full grid."""
    res: dict[str, Any] = {"seconds": None, "note": ""}
    if not SETUP_PROMPTFOO.exists():
        res["note"] = f"{SETUP_PROMPTFOO} not found"
        return res
    try:
        t = time.perf_counter()
        setup = subprocess.run(["bash", str(SETUP_PROMPTFOO)], capture_output=True, text=True, timeout=900)
        res["setup_seconds"] = time.perf_counter() - t
    except subprocess.TimeoutExpired:
        res["note"] = "setup-promptfoo.sh timed out after 900 s"
        return res
    wrapper = setup.stdout.strip().splitlines()[-1] if setup.stdout.strip() else ""
    if setup.returncode != 0 or not wrapper or not Path(wrapper).exists():
        res["note"] = f"setup-promptfoo.sh failed (rc={setup.returncode}): {setup.stderr.strip()[-500:]}"
        return res
    pf_dir = root / "promptfoo"
    pf_dir.mkdir(exist_ok=True)
    env = dict(os.environ, PROMPTFOO_CONFIG_DIR=str(pf_dir / "home"), PROMPTFOO_DISABLE_TELEMETRY="1",
               PROMPTFOO_DISABLE_UPDATE="1", NO_COLOR="1")
    version = subprocess.run([wrapper, "--version"], capture_output=True, text=True, timeout=120, env=env)
    res["version"] = version.stdout.strip()
    t = time.perf_counter()
    subprocess.run([wrapper, "--version"], capture_output=True, text=True, timeout=120, env=env)
    res["startup_seconds"] = time.perf_counter() - t

    def config(path: Path, rows: list[dict[str, str]]) -> None:
        cfg = {
            "description": "workbench bench_grid",
            "prompts": [user for _, user in PROMPTS],
            "providers": [{"id": "openai:chat:test-model",
                           "config": {"apiBaseUrl": server.base_url, "apiKey": API_KEY, "temperature": 0}}],
            "tests": [{"vars": {"question": r["question"]}} for r in rows],
        }
        path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML

    def evaluate(path: Path, output: Path) -> tuple[subprocess.CompletedProcess[str] | None, float]:
        cmd = [wrapper, "eval", "-c", str(path), "--no-cache", "-j", str(args.concurrency), "--no-table",
               "--no-progress-bar", "--no-share", "-o", str(output)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.promptfoo_timeout, env=env,
                                  cwd=pf_dir)
        except subprocess.TimeoutExpired:
            return None, time.perf_counter() - t0
        return proc, time.perf_counter() - t0

    warm_cfg, full_cfg = pf_dir / "warmup.yaml", pf_dir / "promptfooconfig.yaml"
    config(warm_cfg, cases[:1])
    config(full_cfg, cases)
    proc, seconds = evaluate(warm_cfg, pf_dir / "warmup.json")
    res["warmup_seconds"] = seconds
    if proc is None:
        res["note"] = f"promptfoo warm-up eval timed out after {args.promptfoo_timeout} s"
        return res
    reset_server(server, args.latency)
    proc, seconds = evaluate(full_cfg, pf_dir / "results.json")
    stats = server.stats()
    res["requests"], res["max_in_flight"] = stats["chat"], stats["max_in_flight"]
    if proc is None:
        res["note"] = f"promptfoo eval timed out after {args.promptfoo_timeout} s ({stats['chat']} requests made)"
        return res
    expected = len(cases) * len(PROMPTS)
    # promptfoo exits 100 when some test "fails"; with no assertions it should be 0. Either way count requests.
    if stats["chat"] != expected:
        res["note"] = (f"promptfoo made {stats['chat']} requests, expected {expected} (rc={proc.returncode}); "
                       f"stderr: {proc.stderr.strip()[-400:]} stdout: {proc.stdout.strip()[-400:]}")
        return res
    res["seconds"] = seconds
    res["returncode"] = proc.returncode
    try:
        stats = json.loads((pf_dir / "results.json").read_text())["results"]["stats"]
        res["successes"], res["errors"] = stats.get("successes"), stats.get("errors")
        res["eval_ms"] = stats.get("evaluationDurationMs") or stats.get("durationMs")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if res.get("errors"):
        res["note"] = f"{res['errors']} of the promptfoo results are errors"
    return res


# ---------------------------------------------------------------------------------------------
# sections


def reset_server(server: Any, latency: float) -> None:
    server.reset()
    server.configure(latency=latency)


def section_grid(args: argparse.Namespace, server: Any, cases: list[dict[str, str]], root: Path,
                 results: dict[str, Any]) -> Any:
    n_calls = len(cases) * len(PROMPTS)
    header(f"1. Grid: {len(PROMPTS)} prompts x {len(cases)} cases = {n_calls} calls, "
           f"latency {args.latency * 1000:g} ms, concurrency {args.concurrency}")
    # Warm-up: litellm import (reported), the first HTTP call, and the workbench's first run (duckdb, pyarrow...).
    t = time.perf_counter()
    litellm_mod()
    results["litellm_import"] = time.perf_counter() - t
    asyncio.run(plain_litellm([[{"role": "user", "content": "warm-up"}]], server.base_url, 1))
    t = time.perf_counter()
    exp = fresh_experiment(root, "warmup", cases[:4], server.base_url, args.concurrency)
    exp.run(progress=False)
    results["wb_first_run"] = time.perf_counter() - t
    out(f"litellm import (excluded from a and b): {results['litellm_import']:.2f} s; workbench first tiny run "
        f"(duckdb/pyarrow/metric imports, excluded): {results['wb_first_run']:.2f} s")

    a_times: list[float] = []
    b_times: list[float] = []
    a_cpu: list[float] = []
    b_cpu: list[float] = []
    a_inflight: list[int] = []
    b_inflight: list[int] = []
    a_seconds: list[float] = []
    for trial in range(args.trials):
        exp = fresh_experiment(root, f"grid{trial}", cases, server.base_url, args.concurrency)
        requests = [c.messages for c in exp.plan().cells]
        assert len(requests) == n_calls and len({json.dumps(m) for m in requests}) == n_calls
        order = ("a", "b") if trial % 2 == 0 else ("b", "a")  # alternate, so drift does not favour one side
        for which in order:
            reset_server(server, args.latency)
            if which == "a":
                seconds, cpu, run = timed_run(exp)
                a_times.append(seconds)
                a_cpu.append(cpu)
                a_seconds.append(run.last.seconds)
                st = server.stats()
                a_inflight.append(st["max_in_flight"])
                if run.last.model_calls != n_calls or st["chat"] != n_calls:
                    out(f"  WARNING: workbench made {run.last.model_calls} calls, server saw {st['chat']}")
                results["grid_exp"] = exp
            else:
                seconds, cpu = time_plain(requests, server.base_url, args.concurrency)
                b_times.append(seconds)
                b_cpu.append(cpu)
                st = server.stats()
                b_inflight.append(st["max_in_flight"])
                if st["chat"] != n_calls:
                    out(f"  WARNING: plain loop: server saw {st['chat']} requests")
        out(f"trial {trial + 1}: a = {a_times[-1]:.3f} s wall / {a_cpu[-1]:.3f} s CPU (run.last.seconds "
            f"{a_seconds[-1]:.3f}; plan + create_run {a_times[-1] - a_seconds[-1]:.3f}), "
            f"b = {b_times[-1]:.3f} s wall / {b_cpu[-1]:.3f} s CPU")
    results["a"] = statistics.median(a_times)
    results["b"] = statistics.median(b_times)
    results["a_all"], results["b_all"] = a_times, b_times
    results["a_cpu"], results["b_cpu"] = statistics.median(a_cpu), statistics.median(b_cpu)
    results["a_inflight"], results["b_inflight"] = max(a_inflight), max(b_inflight)
    results["c"] = n_calls * args.latency / args.concurrency
    results["n_calls"] = n_calls

    if args.skip_promptfoo:
        results["d"] = None
        results["d_note"] = "skipped (--skip-promptfoo)"
    else:
        out("promptfoo: installing / checking (shared/tools/setup-promptfoo.sh), warm-up eval, then the timed eval ...")
        try:
            pf = run_promptfoo(args, server, cases, root)
        except (OSError, subprocess.SubprocessError) as exc:
            pf = {"seconds": None, "note": f"{type(exc).__name__}: {exc}"}
        results["d"] = pf["seconds"]
        results["d_info"] = pf
        results["d_note"] = pf.get("note", "")
        if pf.get("version"):
            eval_s = f"{pf['eval_ms'] / 1000:.2f} s" if pf.get("eval_ms") else "n/a"
            out(f"promptfoo {pf['version']}: CLI start-up (`promptfoo --version`) "
                f"{pf.get('startup_seconds', 0):.2f} s, "
                f"warm-up eval (1 case) {pf.get('warmup_seconds', 0):.2f} s; timed eval made {pf.get('requests')} "
                f"requests (max in flight {pf.get('max_in_flight')}), results: {pf.get('successes')} ok / "
                f"{pf.get('errors')} errors; promptfoo's own evaluation duration {eval_s} (its wall time below "
                "also counts Node start-up, config loading and writing its results)")
        if results["d"] is None:
            out(f"promptfoo not measured: {results['d_note']}")
    print_grid_table(results)
    return results["grid_exp"]


def print_grid_table(r: dict[str, Any]) -> None:
    out()
    d = r.get("d")
    pf = r.get("d_info") or {}
    rows = [
        ["a", "workbench exp.run (fresh workspace, median)", fmt_s(r["a"]), fmt_s(r["a_cpu"]), r["a_inflight"],
         " ".join(f"{x:.3f}" for x in r["a_all"])],
        ["b", "plain asyncio + litellm.acompletion (median)", fmt_s(r["b"]), fmt_s(r["b_cpu"]), r["b_inflight"],
         " ".join(f"{x:.3f}" for x in r["b_all"])],
        ["c", "ideal = calls x latency / concurrency", fmt_s(r["c"]), "", "", ""],
        ["d", "promptfoo eval --no-cache -j N (incl. node start-up)", fmt_s(d), "", pf.get("max_in_flight", ""),
         r.get("d_note", "")],
    ]
    table(rows, ["", "what", "wall s", "client CPU s", "max in flight", "trials (wall s) / note"])
    out()
    ab = r["a"] / r["b"]
    out(f"a/b = {ab:.3f} (median wall; target <= 1.25)   best-of-trials a/b = {min(r['a_all']) / min(r['b_all']):.3f}"
        f"   CPU a/b = {r['a_cpu'] / r['b_cpu']:.3f}   a/c = {r['a'] / r['c']:.3f}   b/c = {r['b'] / r['c']:.3f}")
    out(f"b is CPU-bound when litellm's CPU per call x calls ({r['b_cpu']:.2f} s) exceeds the ideal ({r['c']:.2f} s): "
        "one event loop cannot issue requests faster than litellm's own overhead allows.")
    if d:
        line = (f"a/d = {r['a'] / d:.3f}  (target < 1)   (a + litellm import {r['a'] + r['litellm_import']:.3f} s "
                f"vs d: {(r['a'] + r['litellm_import']) / d:.3f}")
        if pf.get("eval_ms"):
            line += (f"; a vs promptfoo's own evaluation duration {pf['eval_ms'] / 1000:.3f} s: "
                     f"{r['a'] * 1000 / pf['eval_ms']:.3f}")
        out(line + ")")
    else:
        out("a/d = n/a (promptfoo not measured)")


def section_cached_grid(exp: Any, results: dict[str, Any]) -> None:
    header("2. Fully cached re-run of the same grid (same experiment, second exp.run)")
    times, calls, cached = [], [], []
    for _ in range(3):
        seconds, _cpu, run = timed_run(exp)
        times.append(seconds)
        calls.append(run.last.model_calls)
        cached.append(run.last.cached)
    results["cached_grid"] = min(times)
    results["cached_grid_calls"] = max(calls)
    out(f"cached re-run: {' '.join(f'{t:.3f}' for t in times)} s (best {min(times):.3f} s, target < 0.3 s); "
        f"model calls {calls} (must be 0); cells from cache {cached}")


def section_big(args: argparse.Namespace, server: Any, base: list[dict[str, str]], root: Path,
                results: dict[str, Any]) -> tuple[Any, str]:
    n_cases = args.big // len(PROMPTS)
    header(f"3. Cached re-run of {n_cases * len(PROMPTS)} cells ({n_cases} cases x {len(PROMPTS)} prompts)")
    reset_server(server, 0.0)
    import workbench as wb

    ws = wb.open(tempfile.mkdtemp(prefix="big-", dir=root))
    exp = build_experiment(ws, ws.add_dataset("big", make_cases(base, n_cases), id="id"), server.base_url,
                           args.concurrency)
    fill, fill_cpu, run = timed_run(exp)
    calls = max(run.last.model_calls, 1)
    out(f"fill (server latency 0): {fill:.2f} s wall, {fill_cpu:.2f} s CPU, {run.last.model_calls} model calls "
        f"({run.last.model_calls / fill:.0f} calls/s; {fill / calls * 1000:.2f} ms wall and "
        f"{fill_cpu / calls * 1000:.2f} ms CPU per call at concurrency {args.concurrency}); "
        f"server saw {server.stats()['chat']} requests")
    times, cpus, n_calls = [], [], []
    for i in range(3):
        timer = StoreTimer(exp.store) if i == 2 else None
        seconds, cpu, run = timed_run(exp)
        times.append(seconds)
        cpus.append(cpu)
        n_calls.append(run.last.model_calls)
    t = time.perf_counter()
    exp.plan()
    plan_s = time.perf_counter() - t
    results["big_cells"] = n_cases * len(PROMPTS)
    results["big_fill"] = fill
    results["big_cached"] = min(times)
    out(f"cached re-run: {' '.join(f'{t:.3f}' for t in times)} s wall (best {min(times):.3f} s, target < 2 s; "
        f"CPU {' '.join(f'{c:.3f}' for c in cpus)} s); model calls {n_calls}")
    out(f"where a cached re-run goes: plan() alone {plan_s:.3f} s (render + hash {results['big_cells']} cells); "
        "storage in the last re-run:")
    if timer is not None:
        timer.print()
    return ws, str(ws.path)


def section_huge(args: argparse.Namespace, server: Any, base: list[dict[str, str]], ws: Any, ws_path: str,
                 results: dict[str, Any]) -> None:
    n_cases = args.huge // len(PROMPTS)
    header(f"4. Peak memory of a {n_cases * len(PROMPTS)}-cell cached run (child process)")
    reset_server(server, 0.0)
    exp = build_experiment(ws, ws.add_dataset("huge", make_cases(base, n_cases), id="id"), server.base_url,
                           args.concurrency)
    fill, _cpu, run = timed_run(exp)
    out(f"fill in this process (first {args.big // len(PROMPTS)} cases already cached): {fill:.2f} s, "
        f"{run.last.model_calls} model calls, {run.last.cached} cells from cache")
    cmd = [sys.executable, "-c", LAUNCHER, sys.executable, str(Path(__file__).resolve()), "--child-mem", ws_path,
           "--child-base-url", server.base_url, "--concurrency", str(args.concurrency)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        out(f"child failed (rc={proc.returncode}): {proc.stderr.strip()[-1500:]}")
        results["huge"] = None
        return
    child = json.loads(lines[-1])
    results["huge"] = child
    table([
        ["after `import workbench`", f"{child['rss_import']:.0f}"],
        ["after wb.open + dataset + experiment (before run)", f"{child['rss_before']:.0f}"],
        ["after the run (current)", f"{child['rss_after']:.0f}"],
        ["peak (ru_maxrss at the end)", f"{child['peak']:.0f}"],
        ["peak (VmHWM at the end, cross-check)", f"{child['hwm']:.0f}"],
    ], ["child RSS", "MB"])
    out(f"peak RSS {child['peak']:.0f} MB (target < 600 MB); run {child['seconds']:.2f} s, {child['cells']} cells, "
        f"model calls {child['model_calls']}, cached {child['cached']}; workspace.duckdb {child['db_mb']:.0f} MB "
        f"(holds every earlier run of parts 3-4); heavy modules loaded in the child: "
        f"{', '.join(child['modules']) or 'none'}")
    out("storage calls in the child and how much each raised the peak RSS:")
    table([[k, int(v[0]), f"{v[1] * 1000:.1f}", f"{v[2]:+.0f}"]
           for k, v in sorted(child["store"].items(), key=lambda kv: -kv[1][2])],
          ["Store method", "calls", "total ms", "peak RSS raised (MB)"])


def child_mem(args: argparse.Namespace) -> None:
    """Hidden mode: one cached run of the 'huge' dataset; prints a JSON line with RSS figures."""
    import workbench as wb

    rss_import = rss_mb()
    ws = wb.open(args.child_mem)
    exp = build_experiment(ws, ws.dataset("huge"), args.child_base_url, args.concurrency)
    rss_before = rss_mb()
    timer = StoreTimer(exp.store)
    t = time.perf_counter()
    run = exp.run(progress=False)
    seconds = time.perf_counter() - t
    print(json.dumps({
        "rss_import": rss_import, "rss_before": rss_before, "rss_after": rss_mb(), "peak": peak_rss_mb(),
        "hwm": hwm_mb(),
        "seconds": seconds, "cells": run.last.cells, "model_calls": run.last.model_calls, "cached": run.last.cached,
        "modules": [m for m in HEAVY if m in sys.modules], "store": timer.totals,
        "db_mb": (Path(args.child_mem) / "workspace.duckdb").stat().st_size / 2**20,
    }), flush=True)


def section_import(results: dict[str, Any]) -> None:
    header("5. `import workbench` in a fresh interpreter (median of 5, minus `python -c pass`)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}

    def once(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
        return time.perf_counter() - t

    once("import workbench")  # page cache / .pyc warm-up
    imp, bare = [], []
    for _ in range(5):
        imp.append(once("import workbench"))
        bare.append(once("pass"))
    probe = ("import json, sys, workbench; "
             f"print(json.dumps({{m: m in sys.modules for m in {list(HEAVY)!r}}}))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, env=env, capture_output=True,
                                       text=True).stdout)
    results["import"] = statistics.median(imp) - statistics.median(bare)
    out(f"python -c 'import workbench': median {statistics.median(imp):.3f} s; python -c pass: median "
        f"{statistics.median(bare):.3f} s; import cost {results['import']:.3f} s (target < 0.3 s)")
    out("in sys.modules after `import workbench`: "
        + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in loaded.items()))


FLAG_CONFIGS: list[tuple[str, dict[str, Any], dict[str, str], dict[str, Any]]] = [
    # label, litellm attributes, environment, per-call kwargs
    ("as configured by workbench.llm.litellm_module()", {}, {}, {}),
    ("litellm.turn_off_message_logging = False", {"turn_off_message_logging": False}, {}, {}),
    ("litellm.disable_aiohttp_transport = True (httpx)", {"disable_aiohttp_transport": True}, {}, {}),
    ("LITELLM_RUST=1 (rust logger opt-in)", {}, {"LITELLM_RUST": "1"}, {}),
    ('per-call kwarg "no-log": True', {}, {}, {"no-log": True}),
]


def section_overhead(args: argparse.Namespace, server: Any, cases: list[dict[str, str]], root: Path,
                     results: dict[str, Any]) -> None:
    header(f"6. Per-call overhead at server latency 0 (N={args.overhead_calls}, concurrency 1)")
    litellm = litellm_mod()
    reset_server(server, 0.0)
    n = args.overhead_calls
    rows = []
    measured: dict[str, tuple[float, float]] = {}
    for name, fn in (("litellm.acompletion", lambda: sequential_litellm(server.base_url, n)),
                     ("aiohttp POST (one session)", lambda: sequential_aiohttp(server.base_url, n)),
                     ("httpx.AsyncClient POST", lambda: sequential_httpx(server.base_url, n))):
        asyncio.run(fn())  # warm
        measured[name] = asyncio.run(fn())
        rows.append([name, f"{measured[name][0]:.2f}", f"{measured[name][1]:.2f}"])
    table(rows, ["client", "wall ms/call", "client CPU ms/call"])
    lit, raw = measured["litellm.acompletion"], measured["aiohttp POST (one session)"]
    results["overhead_ms"] = lit[0] - raw[0]
    out(f"litellm overhead over raw aiohttp: {lit[0] - raw[0]:.2f} ms/call wall, {lit[1] - raw[1]:.2f} ms/call CPU")

    # -- litellm flag sweep. Client CPU per call depends far less on other load than wall time does, and the
    # number of Python function calls per request (counted by cProfile) does not depend on load at all.
    out()
    out(f"litellm flag sweep ({args.sweep_rounds} interleaved rounds x {args.sweep_calls} sequential calls: min "
        "CPU ms/call, median wall ms/call; plus Python function calls per request, counted once under cProfile):")
    samples: dict[str, list[tuple[float, float]]] = {c[0]: [] for c in FLAG_CONFIGS}
    fcalls: dict[str, float] = {}

    @contextlib.contextmanager
    def configured(attrs: dict[str, Any], env: dict[str, str]) -> Iterator[None]:
        saved = {k: getattr(litellm, k) for k in attrs}
        for k, v in attrs.items():
            setattr(litellm, k, v)
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                setattr(litellm, k, v)
            for k in env:
                os.environ.pop(k, None)

    for rnd in range(args.sweep_rounds):
        for label, attrs, env, kwargs in FLAG_CONFIGS if rnd % 2 == 0 else FLAG_CONFIGS[::-1]:
            with configured(attrs, env):
                try:
                    samples[label].append(asyncio.run(sequential_litellm(server.base_url, args.sweep_calls, kwargs)))
                    if rnd == 0:
                        prof = cProfile.Profile()
                        prof.runcall(asyncio.run, sequential_litellm(server.base_url, 50, kwargs))
                        fcalls[label] = pstats.Stats(prof).total_calls / 50  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001 - a flag this litellm version rejects is reported, not fatal
                    out(f"  {label}: {type(exc).__name__}: {exc}")
                    samples[label].append((float("nan"), float("nan")))
    base_cpu = min(c for _, c in samples[FLAG_CONFIGS[0][0]])
    rows = []
    for label, vals in samples.items():
        cpu = min(c for _, c in vals)
        rows.append([label, f"{cpu:.2f}", f"{cpu - base_cpu:+.2f}", f"{statistics.median(w for w, _ in vals):.2f}",
                     f"{fcalls.get(label, float('nan')):.0f}"])
    table(rows, ["configuration", "CPU ms/call", "vs workbench", "wall ms/call", "Python calls/request"])

    # -- the workbench's cost fallback: litellm already tried to price the response; for an unpriced model
    # (local servers) workbench.llm._cost calls completion_cost again, which fails again.
    from workbench.llm import _cost

    async def one() -> Any:
        return await litellm.acompletion(model=MODEL, messages=[{"role": "user", "content": "price me"}],
                                         api_base=server.base_url, api_key=API_KEY, max_retries=0)

    resp = asyncio.run(one())
    hidden = getattr(resp, "_hidden_params", None) or {}
    reps = 200
    t = time.process_time()
    for _ in range(reps):
        cost = _cost(litellm, resp)
    cost_ms = (time.process_time() - t) / reps * 1000
    results["cost_fallback_ms"] = cost_ms
    out()
    out(f"workbench.llm._cost on an unpriced model: hidden response_cost={hidden.get('response_cost')!r} "
        f"(key present: {'response_cost' in hidden}); _cost -> {cost!r} costs {cost_ms:.2f} ms CPU per call "
        "(a second, failing litellm.completion_cost)")

    # -- the workbench against the plain loop at latency 0: its own per-cell overhead.
    n_calls = len(cases) * len(PROMPTS)
    out()
    out(f"workbench vs plain loop at latency 0, concurrency {args.concurrency}, {n_calls} calls:")
    exp = fresh_experiment(root, "lat0", cases, server.base_url, args.concurrency)
    t = time.perf_counter()
    plan = exp.plan()
    plan_s = time.perf_counter() - t
    requests = [c.messages for c in plan.cells]
    b0, b0_cpu = time_plain(requests, server.base_url, args.concurrency)
    a0, a0_cpu, _ = timed_run(exp)
    exp_bar = fresh_experiment(root, "lat0bar", cases, server.base_url, args.concurrency)
    a0_bar, a0_bar_cpu, _ = timed_run(exp_bar, progress=True)
    results["a0"], results["b0"], results["a0_cpu"], results["b0_cpu"] = a0, b0, a0_cpu, b0_cpu

    def row(label: str, wall: float, cpu: float | None) -> list[str]:
        return [label, f"{wall:.3f}", f"{wall / n_calls * 1000:.2f}",
                "" if cpu is None else f"{cpu:.3f}", "" if cpu is None else f"{cpu / n_calls * 1000:.2f}"]

    table([
        row("plain loop (b0)", b0, b0_cpu),
        row("workbench exp.run, progress=False (a0)", a0, a0_cpu),
        row("workbench exp.run, progress=True (tqdm to a buffer)", a0_bar, a0_bar_cpu),
        row("  of which plan(): render + request keys (timed alone)", plan_s, None),
    ], ["", "wall s", "wall ms/cell", "CPU s", "CPU ms/cell"])
    out(f"a0/b0 = {a0 / b0:.3f} wall, {a0_cpu / b0_cpu:.3f} CPU; workbench overhead over the plain loop "
        f"{(a0 - b0) / n_calls * 1000:.2f} ms/cell wall, {(a0_cpu - b0_cpu) / n_calls * 1000:.2f} ms/cell CPU")

    # -- cProfile of the workbench run (main thread only; storage runs in a worker thread, timed separately).
    exp = fresh_experiment(root, "prof", cases, server.base_url, args.concurrency)
    timer = StoreTimer(exp.store)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.runcall(exp.run, progress=False)
    prof_s = time.perf_counter() - t
    out()
    out(f"cProfile of the workbench run at latency 0 ({prof_s:.2f} s under the profiler, main thread):")
    print_profile(prof)
    out()
    out("storage calls during that run (timed in whichever thread ran them):")
    timer.print()
    from workbench.store import Store

    store = Store(exp.store.path)
    walls, cpus = [], []
    for _ in range(10):
        t, cpu = time.perf_counter(), time.process_time()
        with store.connect() as con:
            con.execute("SELECT 1").fetchall()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - cpu)
    results["connect_ms"] = statistics.median(walls) * 1000
    out(f"one short-lived connection (open, SELECT 1, close) on that workspace: median {results['connect_ms']:.1f} ms "
        f"wall (min {min(walls) * 1000:.1f}), {statistics.median(cpus) * 1000:.1f} ms CPU")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.rsplit("/", 2)[-1] if "/" in filename else filename


def print_profile(prof: cProfile.Profile) -> None:
    stats = pstats.Stats(prof)
    entries = stats.stats  # type: ignore[attr-defined]
    total = max((ct for (_, _, _), (_, _, _, ct, _) in entries.items()), default=0.0)

    def rows(keep: Callable[[str], bool], key: int, limit: int) -> list[list[Any]]:
        picked = [(k, v) for k, v in entries.items() if keep(k[0])]
        picked.sort(key=lambda kv: -kv[1][key])
        return [[nc, f"{tt:.3f}", f"{ct:.3f}", f"{ct / total * 100:.0f}%" if total else "",
                 f"{_short(f)}:{line}({fn})"]
                for (f, line, fn), (_, nc, tt, ct, _) in picked[:limit]]

    cols = ["ncalls", "tottime", "cumtime", "of run", "function"]
    out("top 15 cumulative in workbench/:")
    table(rows(lambda f: "/workbench/" in f, 3, 15), cols)
    out()
    out("top 15 cumulative in litellm/:")
    table(rows(lambda f: "/litellm/" in f, 3, 15), cols)
    out()
    out("top 12 self time (tottime), any module:")
    table(rows(lambda f: True, 2, 12), cols)


# ---------------------------------------------------------------------------------------------
# main


def summary(results: dict[str, Any]) -> None:
    header("Summary (one invocation)")
    d = results.get("d")
    huge = results.get("huge") or {}
    rows = [
        ["1a workbench grid (s)", fmt_s(results.get("a")), ""],
        ["1b plain litellm loop (s)", fmt_s(results.get("b")), ""],
        ["1c ideal (s)", fmt_s(results.get("c")), ""],
        ["1d promptfoo (s)", fmt_s(d), results.get("d_note", "")],
        ["a/b", fmt_s(results["a"] / results["b"]) if results.get("b") else "n/a",
         f"target <= 1.25 (median wall); CPU a/b {results['a_cpu'] / results['b_cpu']:.3f}"
         if results.get("b_cpu") else "target <= 1.25"],
        ["a/d", fmt_s(results["a"] / d) if d else "n/a", "target < 1"],
        ["max in flight a / b", f"{results.get('a_inflight')} / {results.get('b_inflight')}", ""],
        ["2 cached grid re-run (s)", fmt_s(results.get("cached_grid")),
         f"target < 0.3; model calls {results.get('cached_grid_calls')}"],
        [f"3 cached {results.get('big_cells', '?')}-cell re-run (s)", fmt_s(results.get("big_cached")), "target < 2"],
        ["4 peak RSS 20k-cell cached run (MB)", f"{huge['peak']:.0f}" if huge else "n/a",
         f"target < 600; baseline before run {huge['rss_before']:.0f} MB" if huge else ""],
        ["5 import workbench (s)", fmt_s(results.get("import")), "target < 0.3"],
        ["6 litellm overhead vs aiohttp (ms/call)", fmt_s(results.get("overhead_ms"), 2), "concurrency 1"],
        ["6 workbench overhead vs plain loop (ms/cell)",
         fmt_s((results["a0"] - results["b0"]) / results["n_calls"] * 1000, 2) if "a0" in results else "n/a",
         "latency 0, wall; CPU: " + (fmt_s((results["a0_cpu"] - results["b0_cpu"]) / results["n_calls"] * 1000, 2)
                                     if "a0" in results else "n/a")],
        ["litellm import (s)", fmt_s(results.get("litellm_import"), 2), "excluded from a and b"],
    ]
    table(rows, ["figure", "value", "note"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=200, help="cases in the grid of parts 1-2 and 6 (default 200)")
    p.add_argument("--latency", type=float, default=0.05, help="server latency in seconds (default 0.05)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrency of every run (default 16)")
    p.add_argument("--skip-promptfoo", action="store_true", help="do not install or run promptfoo")
    p.add_argument("--big", type=int, default=10000, help="cells of the cached re-run of part 3 (default 10000)")
    p.add_argument("--huge", type=int, default=20000, help="cells of the memory run of part 4 (default 20000)")
    p.add_argument("--trials", type=int, default=3, help="interleaved trials of 1a and 1b; medians reported")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"PubMedQA ori_pqal.json (default {DEFAULT_DATA})")
    p.add_argument("--overhead-calls", type=int, default=400, help="sequential calls per client in part 6")
    p.add_argument("--sweep-calls", type=int, default=100, help="sequential calls per flag configuration and round")
    p.add_argument("--sweep-rounds", type=int, default=6, help="interleaved rounds of the litellm flag sweep")
    p.add_argument("--promptfoo-timeout", type=float, default=300, help="seconds before a promptfoo eval is killed")
    p.add_argument("--skip-memory", action="store_true", help="skip parts 3 and 4 (the cache fills take the longest)")
    p.add_argument("--child-mem", help=argparse.SUPPRESS)
    p.add_argument("--child-base-url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.child_mem:
        child_mem(args)
        return

    sys.path.insert(0, str(ROOT / "tests"))
    from openai_server import ServerProcess

    started = time.perf_counter()
    base, source = load_base_cases(args.data)
    cases = make_cases(base, args.cases)
    out(f"bench_grid: data {source}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine skews wall times)")
    results: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    try:
        with ServerProcess(latency=args.latency) as server:
            exp = section_grid(args, server, cases, root, results)
            section_cached_grid(exp, results)
            section_overhead(args, server, cases, root, results)
            if not args.skip_memory:
                ws, ws_path = section_big(args, server, base, root, results)
                section_huge(args, server, base, ws, ws_path, results)
        section_import(results)
        summary(results)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s; load average now "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
