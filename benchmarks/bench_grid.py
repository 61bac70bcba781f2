"""Grid benchmark: the workbench on each model-call route against plain client loops, the ideal and promptfoo.

Run from the repository root with the project's environment (about 5-8 minutes with the defaults on 2 cores)::

    python benchmarks/bench_grid.py [--cases 200] [--latency 0.05] [--concurrency 16] [--trials 3]
        [--data PATH] [--promptfoo PATH | --skip-promptfoo] [--skip-memory] [--quick]

Every model call goes over real HTTP to the local OpenAI-compatible test server (``tests/openai_server.py``,
a separate process). The script prints figures and never asserts. Fairness rules it follows:

- every compared side runs the same number of trials, in an order rotated each trial (drift and warm-up
  never favour one side); figures are MEDIANS, and every trial is printed too;
- each side is warmed the same way before timing (one tiny run / one call), and nothing a timed run could
  reuse is prepared for it (the plain loops' requests are rendered from a separate, throw-away workspace);
- where promptfoo's process is timed (Node start-up, config loading), the workbench is timed as a cold
  ``llmops run`` process too (Python start-up and every import included);
- CPU figures are this process's CPU time (all its threads); the server runs in its own process.

Parts: 1. the grid (a: workbench per route, b: plain litellm loop, b2: plain openai SDK loop, c: ideal,
d: promptfoo eval); 2. cold processes: ``llmops run`` vs ``promptfoo eval``, and ``llmops demo``;
3. client CPU per call (concurrency 1, latency 0); 4. the workbench's own per-cell overhead over the SDK
loop (latency 0); 5. throughput ceiling (latency 0, concurrency 64); 6. cached re-run; 7-8. big cached
re-run and peak memory (``--skip-memory`` skips them); 9. ``import workbench``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
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
# where the project's promptfoo setup script (Node 22 + promptfoo from npm) puts its wrapper by default
PROMPTFOO_DEFAULT = Path.home() / ".cache" / "llmops-peers" / "promptfoo"
MODEL = "openai/test-model"
API_KEY = "sk-test"
PROMPTS = (("p1", "Question: {{ question }}"), ("p2", "Please answer: {{ question }}"))
HEAVY = ("litellm", "openai", "pandas", "faiss", "duckdb", "pyarrow", "numpy", "httpx", "aiohttp", "jinja2")
ROUTES = ("openai", "litellm")


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """All trials, so a reader sees the noise behind a median."""
    return " ".join(f"{x:.3f}" for x in xs)


def rotated(sides: list[str], trial: int) -> list[str]:
    """Trial k runs the sides starting from side k: each side goes first equally often."""
    k = trial % len(sides)
    return sides[k:] + sides[:k]


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


def load_base_cases(path: Path | None) -> tuple[list[dict[str, str]], str]:
    """PubMedQA questions (id, question, long answer), found as every benchmark finds them (``pubmedqa.py``)."""
    import pubmedqa

    chosen = pubmedqa.resolve(path)
    rows = [{"id": r["pmid"], "question": r["question"], "answer": r["long_answer"]} for r in pubmedqa.load(chosen)]
    return rows, f"{pubmedqa.shown(chosen)} ({len(rows)} questions)"


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


def model_spec(base_url: str, client: str = "openai") -> dict[str, Any]:
    return {"name": "m", "model": MODEL, "api_base": base_url, "params": {"temperature": 0}, "client": client}


def build_experiment(ws: Any, ds: Any, base_url: str, concurrency: int, client: str = "openai") -> Any:
    import workbench as wb

    return ws.experiment(
        ds, [wb.Prompt(name, user) for name, user in PROMPTS], [model_spec(base_url, client)],
        [{"name": "token_f1", "expected": "answer"}], concurrency=concurrency,
    )


def fresh_experiment(root: Path, label: str, cases: list[dict[str, str]], base_url: str, concurrency: int,
                     dataset: str = "bench", client: str = "openai") -> Any:
    import workbench as wb

    ws = wb.open(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
    ds = ws.add_dataset(dataset, cases, id="id")
    return build_experiment(ws, ds, base_url, concurrency, client)


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


# ---------------------------------------------------------------------------------------------
# plain client loops (the floors)


def litellm_mod() -> Any:
    from workbench.providers import litellm_module

    return litellm_module()


def render_requests(cases: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """The grid's requests, case-major like the runner; checked against a workbench plan by ``check_requests``."""
    return [[{"role": "user", "content": user.replace("{{ question }}", c["question"])}]
            for c in cases for _, user in PROMPTS]


def check_requests(root: Path, cases: list[dict[str, str]], base_url: str, concurrency: int) -> None:
    """The plain loops send exactly what the workbench sends: compared with a plan made in a throw-away
    workspace (so no timed workbench run finds anything prepared)."""
    exp = fresh_experiment(root, "reference", cases, base_url, concurrency)
    planned = sorted(json.dumps(c.messages) for c in exp.plan().cells)
    ours = sorted(json.dumps(m) for m in render_requests(cases))
    if planned != ours:
        raise SystemExit("bench_grid: the plain loops' requests differ from the workbench's; fix render_requests")


async def plain_litellm(requests: list[list[dict[str, str]]], base_url: str, concurrency: int) -> int:
    litellm = litellm_mod()
    sem = asyncio.Semaphore(concurrency)

    async def one(messages: list[dict[str, str]]) -> str:
        async with sem:
            resp = await litellm.acompletion(model=MODEL, messages=messages, api_base=base_url, api_key=API_KEY,
                                             temperature=0, max_retries=0)
            return str(resp.choices[0].message.content)

    return len(await asyncio.gather(*(one(m) for m in requests)))


async def plain_openai(requests: list[list[dict[str, str]]], base_url: str, concurrency: int) -> int:
    """The new floor: one ``openai.AsyncOpenAI`` with the aiohttp transport, pooled to the concurrency."""
    import openai

    from workbench.providers import _limits

    client = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0,
                                http_client=openai.DefaultAioHttpClient(limits=_limits(concurrency)))
    sem = asyncio.Semaphore(concurrency)

    async def one(messages: list[dict[str, str]]) -> str:
        async with sem:
            resp = await client.chat.completions.create(model="test-model", messages=messages, temperature=0)  # type: ignore[arg-type]
            return str(resp.choices[0].message.content)

    try:
        return len(await asyncio.gather(*(one(m) for m in requests)))
    finally:
        await client.close()


PLAIN = {"b": plain_litellm, "b2": plain_openai}


def time_plain(which: str, requests: list[list[dict[str, str]]], base_url: str, concurrency: int
               ) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one plain loop."""
    t, cpu = time.perf_counter(), time.process_time()
    n = asyncio.run(PLAIN[which](requests, base_url, concurrency))
    elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert n == len(requests)
    return elapsed, cpu


def reset_server(server: Any, latency: float) -> None:
    server.reset()
    server.configure(latency=latency)


def run_sides(sides: list[str], trials: int, one: Callable[[str, int], dict[str, Any]]) -> dict[str, list[dict]]:
    """Run every side once per trial, order rotated per trial; returns each side's trial records."""
    got: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for trial in range(trials):
        for side in rotated(sides, trial):
            got[side].append(one(side, trial))
    return got


def grid_side(side: str, trial: int, *, root: Path, server: Any, cases: list[dict[str, str]], requests: list,
              latency: float, concurrency: int, label: str) -> dict[str, Any]:
    """One timed run of one side: 'a-openai' / 'a-litellm' (exp.run, fresh workspace), 'b' / 'b2' (plain loops)."""
    reset_server(server, latency)
    if side.startswith("a-"):
        exp = fresh_experiment(root, f"{label}-{side}-{trial}", cases, server.base_url, concurrency,
                               client=side[2:])
        wall, cpu, run = timed_run(exp)
        st = server.stats()
        if run.last.model_calls != len(requests) or st["chat"] != len(requests):
            out(f"  WARNING {side}: workbench made {run.last.model_calls} calls, server saw {st['chat']}")
        return {"wall": wall, "cpu": cpu, "inflight": st["max_in_flight"], "clients": run.last.clients}
    wall, cpu = time_plain(side, requests, server.base_url, concurrency)
    st = server.stats()
    if st["chat"] != len(requests):
        out(f"  WARNING {side}: server saw {st['chat']} requests, expected {len(requests)}")
    return {"wall": wall, "cpu": cpu, "inflight": st["max_in_flight"]}


def summarise(got: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {s: {"wall": med([r["wall"] for r in rs]), "cpu": med([r["cpu"] for r in rs]),
                "walls": [r["wall"] for r in rs], "cpus": [r["cpu"] for r in rs],
                "inflight": max(r["inflight"] for r in rs)} for s, rs in got.items()}


# ---------------------------------------------------------------------------------------------
# promptfoo


def find_promptfoo(args: argparse.Namespace) -> tuple[str | None, str]:
    """The promptfoo executable: --promptfoo, $PROMPTFOO, `promptfoo` on PATH, or the setup script's default."""
    if args.skip_promptfoo:
        return None, "skipped (--skip-promptfoo)"
    for candidate in (args.promptfoo, os.environ.get("PROMPTFOO"), shutil.which("promptfoo"), str(PROMPTFOO_DEFAULT)):
        if candidate and Path(candidate).exists():
            return candidate, ""
    return None, ("promptfoo not installed: it needs Node 22 (install it, e.g. with the project's "
                  "setup-promptfoo.sh, and pass --promptfoo PATH); the promptfoo figures are skipped")


class Promptfoo:
    """``promptfoo eval --no-cache`` on the same grid, as a whole process (Node start-up included)."""

    def __init__(self, exe: str, server: Any, cases: list[dict[str, str]], root: Path, concurrency: int,
                 timeout: float) -> None:
        self.exe, self.server, self.cases, self.concurrency, self.timeout = exe, server, cases, concurrency, timeout
        self.dir = root / "promptfoo"
        self.dir.mkdir(exist_ok=True)
        self.env = dict(os.environ, PROMPTFOO_CONFIG_DIR=str(self.dir / "home"), PROMPTFOO_DISABLE_TELEMETRY="1",
                        PROMPTFOO_DISABLE_UPDATE="1", NO_COLOR="1")
        self.version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120,
                                      env=self.env).stdout.strip()

    def _config(self, path: Path, rows: list[dict[str, str]]) -> None:
        cfg = {
            "description": "workbench bench_grid",
            "prompts": [user for _, user in PROMPTS],
            "providers": [{"id": "openai:chat:test-model",
                           "config": {"apiBaseUrl": self.server.base_url, "apiKey": API_KEY, "temperature": 0}}],
            "tests": [{"vars": {"question": r["question"]}} for r in rows],
        }
        path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML

    def eval(self, rows: list[dict[str, str]], name: str) -> dict[str, Any]:
        cfg, output = self.dir / f"{name}.yaml", self.dir / f"{name}.json"
        self._config(cfg, rows)
        cmd = [self.exe, "eval", "-c", str(cfg), "--no-cache", "-j", str(self.concurrency), "--no-table",
               "--no-progress-bar", "--no-share", "-o", str(output)]
        t = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout, env=self.env,
                                  cwd=self.dir)
        except subprocess.TimeoutExpired:
            return {"wall": None, "note": f"timed out after {self.timeout:g} s"}
        res: dict[str, Any] = {"wall": time.perf_counter() - t, "rc": proc.returncode}
        st = self.server.stats()
        res["requests"], res["inflight"] = st["chat"], st["max_in_flight"]
        try:
            stats = json.loads(output.read_text())["results"]["stats"]
            res["errors"] = stats.get("errors")
            ms = stats.get("evaluationDurationMs") or stats.get("durationMs")
            res["eval_s"] = ms / 1000 if ms else None
        except (OSError, ValueError, KeyError, TypeError):
            res["eval_s"] = None
        expected = len(rows) * len(PROMPTS)
        if st["chat"] != expected or res.get("errors"):
            res["note"] = (f"made {st['chat']} requests (expected {expected}), {res.get('errors')} errors, "
                           f"rc={proc.returncode}: {proc.stderr.strip()[-300:]}")
        return res
# ---------------------------------------------------------------------------------------------
# 1. the grid


def section_grid(args: argparse.Namespace, server: Any, cases: list[dict[str, str]], root: Path,
                 results: dict[str, Any], pf: Promptfoo | None) -> None:
    n_calls = len(cases) * len(PROMPTS)
    header(f"1. Grid: {len(PROMPTS)} prompts x {len(cases)} cases = {n_calls} calls, latency "
           f"{args.latency * 1000:g} ms, concurrency {args.concurrency}; {args.trials} trials per side, order "
           "rotated per trial, MEDIANS")
    requests = render_requests(cases)
    check_requests(root, cases, server.base_url, args.concurrency)
    # Same warm-up for every side: the imports it needs and one small run / call, none of it timed.
    t = time.perf_counter()
    litellm_mod()
    results["litellm_import"] = time.perf_counter() - t
    for side in ("b", "b2"):
        time_plain(side, requests[:2], server.base_url, 2)
    for client in ROUTES:
        fresh_experiment(root, f"warm-{client}", cases[:2], server.base_url, 2, client=client).run(progress=False)
    out(f"warm-up (not timed, same for every side): litellm import {results['litellm_import']:.2f} s; "
        "one small run per workbench route, one small batch per plain loop")
    sides = ["a-openai", "a-litellm", "b", "b2"]
    got = run_sides(sides, args.trials, lambda s, k: grid_side(
        s, k, root=root, server=server, cases=cases, requests=requests, latency=args.latency,
        concurrency=args.concurrency, label="grid"))
    g = results["grid"] = summarise(got)
    results["c"] = n_calls * args.latency / args.concurrency
    results["n_calls"] = n_calls
    served = {r["clients"].get("m") for r in got["a-openai"]} | {r["clients"].get("m") for r in got["a-litellm"]}
    if pf is not None:
        out("promptfoo: one warm-up eval (1 case, not timed), then the same grid, timed as a process ...")
        pf.eval(cases[:1], "warmup")
        d_runs = []
        for _ in range(args.process_trials):
            reset_server(server, args.latency)
            d_runs.append(pf.eval(cases, "grid"))
        ok = [r for r in d_runs if r.get("wall") is not None and not r.get("note")]
        results["d"] = med([r["wall"] for r in ok]) if ok else None
        results["d_eval"] = med([r["eval_s"] for r in ok if r.get("eval_s")]) if any(r.get("eval_s") for r in ok) \
            else None
        results["d_walls"] = [r["wall"] for r in ok]
        results["d_inflight"] = max((r.get("inflight", 0) for r in ok), default=None)
        for r in d_runs:
            if r.get("note"):
                out(f"  promptfoo trial not counted: {r['note']}")
    rows = [
        ["a", "workbench exp.run, openai SDK route", g["a-openai"]],
        ["a'", "workbench exp.run, litellm route", g["a-litellm"]],
        ["b", "plain asyncio + litellm.acompletion", g["b"]],
        ["b2", "plain asyncio + openai SDK (aiohttp)", g["b2"]],
    ]
    table([[k, what, f"{r['wall']:.3f}", f"{r['cpu']:.3f}", r["inflight"], spread(r["walls"])] for k, what, r in rows]
          + [["c", "ideal = calls x latency / concurrency", f"{results['c']:.3f}", "", "", ""]]
          + ([["d", f"promptfoo {pf.version} eval process (Node start-up incl.)", fmt_s(results.get("d")), "",
               results.get("d_inflight", ""), spread(results.get("d_walls") or [])]] if pf else
             [["d", "promptfoo", "n/a", "", "", results.get("d_note", "")]]),
          ["", "what", "median wall s", "median CPU s", "max in flight", "all trials (wall s)"])
    a, a2, b, b2 = (g[s]["wall"] for s in ("a-openai", "a-litellm", "b", "b2"))
    c = results["c"]
    out(f"routes that served the runs: {sorted(x for x in served if x)}")
    out(f"a/b2 = {a / b2:.3f} (target <= 1.15)   a/c = {a / c:.3f} (target <= 1.6)   a'/b = {a2 / b:.3f}   "
        f"a/a' = {a / a2:.3f}   b2/b = {b2 / b:.3f}   CPU a/b2 = {g['a-openai']['cpu'] / g['b2']['cpu']:.3f}")
    if results.get("d_eval"):
        out(f"in-process comparison, start-up excluded on both sides: a = {a:.3f} s vs promptfoo's own evaluation "
            f"duration {results['d_eval']:.3f} s -> {a / results['d_eval']:.3f}. Whole processes: part 2.")


# ---------------------------------------------------------------------------------------------
# 2. cold processes


def write_spec(root: Path, cases: list[dict[str, str]], base_url: str, concurrency: int, client: str) -> Path:
    data = root / "grid.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps(c) + "\n" for c in cases))
    spec = {
        "dataset": {"name": "bench", "path": str(data), "id": "id"},
        "prompts": [{"name": name, "user": user} for name, user in PROMPTS],
        "models": [model_spec(base_url, client)],
        "metrics": [{"name": "token_f1", "expected": "answer"}],
        "concurrency": concurrency,
    }
    path = root / f"spec-{client}.yaml"
    path.write_text(json.dumps(spec))
    return path


# A pip-installed package is byte-compiled; this checkout is compiled once up front (main) and the child
# processes may read and write __pycache__, so no side recompiles its modules on every start.
NO_CHILD_ENV = ("PYTHONPROFILEIMPORTTIME", "OPENAI_API_KEY", "PYTHONDONTWRITEBYTECODE")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NO_CHILD_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env | extra


def cold_cli(argv: list[str], root: Path, env: dict[str, str], timeout: float = 600) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``python -m workbench.cli ARGV`` (what the ``llmops`` script runs), imports included."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=root)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"llmops {' '.join(argv)} failed: {proc.stderr.strip()[-800:]}")
    return wall, json.loads(proc.stdout)


def section_processes(args: argparse.Namespace, server: Any, cases: list[dict[str, str]], root: Path,
                      results: dict[str, Any], pf: Promptfoo | None) -> None:
    n_calls = len(cases) * len(PROMPTS)
    header(f"2. Cold processes on the same {n_calls}-call grid ({args.process_trials} trials per side, order "
           "rotated, MEDIANS): `llmops run` (Python start-up and every import counted) vs `promptfoo eval` "
           "(Node start-up counted)")
    env = cli_env()
    specs = {c: write_spec(root, cases, server.base_url, args.concurrency, c) for c in ROUTES}
    sides = [f"llmops-{c}" for c in ROUTES] + (["promptfoo"] if pf else [])

    def one(side: str, trial: int) -> dict[str, Any]:
        reset_server(server, args.latency)
        if side == "promptfoo":
            assert pf is not None
            r = pf.eval(cases, "process")
            return {"wall": r.get("wall") if not r.get("note") else None}
        client = side.split("-", 1)[1]
        ws = tempfile.mkdtemp(prefix=f"cold-{client}-", dir=root)
        wall, summary = cold_cli(["run", str(specs[client]), "--json", "-w", ws], root, env)
        return {"wall": wall, "calls": summary.get("model_calls"), "clients": summary.get("clients")}

    got = run_sides(sides, args.process_trials, one)
    rows = []
    for side, rs in got.items():
        walls = [r["wall"] for r in rs if r["wall"] is not None]
        results[f"proc_{side}"] = med(walls) if walls else None
        rows.append([side, fmt_s(results[f"proc_{side}"]), spread(walls),
                     ", ".join(sorted({str(r.get("clients")) for r in rs})) if side != "promptfoo" else ""])
    table(rows, ["process", "median wall s", "all trials", "routes served (from --json)"])
    lo, p = results.get("proc_llmops-openai"), results.get("proc_promptfoo")
    if lo and p:
        out(f"cold llmops run (openai route) / promptfoo process = {lo / p:.3f} (target <= 0.5)")
    else:
        out("cold llmops run / promptfoo process = n/a (promptfoo not measured)")

    demo_env = cli_env(HF_HUB_OFFLINE="1")
    walls = []
    for k in range(args.process_trials):
        ws = tempfile.mkdtemp(prefix="demo-", dir=root)
        wall, summary = cold_cli(["demo", "--json", "-w", ws], root, demo_env)
        walls.append(wall)
        if k == 0:
            out(f"cold `llmops demo`: {summary.get('stored')} cells, routes {summary.get('clients')}")
    results["demo"] = med(walls)
    out(f"cold `llmops demo` in a fresh workspace: median {results['demo']:.2f} s (trials {spread(walls)}; "
        "target < 10 s)")


# ---------------------------------------------------------------------------------------------
# 3. client CPU per call


def _probe(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question: overhead probe {i}?"}]


async def _seq(n: int, call: Callable[[int], Any], setup: Callable[[], Any] | None = None,
               teardown: Callable[[], Any] | None = None) -> tuple[float, float]:
    if setup is not None:
        await setup()
    await call(-1)  # warm: connection, lazy imports
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await call(i)
    res = (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000
    if teardown is not None:
        await teardown()
    return res


def cpu_clients(base_url: str) -> dict[str, Callable[[int], Any]]:
    """Each client as a coroutine factory doing N sequential calls."""
    import aiohttp
    import openai

    from workbench.llm import Gateway, ModelConfig

    def litellm_calls(n: int) -> Any:
        litellm = litellm_mod()
        return _seq(n, lambda i: litellm.acompletion(model=MODEL, messages=_probe(i), api_base=base_url,
                                                     api_key=API_KEY, temperature=0, max_retries=0))

    def sdk_calls(n: int, transport: str) -> Any:
        box: dict[str, Any] = {}

        async def setup() -> None:
            http = openai.DefaultAioHttpClient() if transport == "aiohttp" else openai.DefaultAsyncHttpxClient()
            box["c"] = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY, max_retries=0, http_client=http)

        async def teardown() -> None:
            await box["c"].close()

        return _seq(n, lambda i: box["c"].chat.completions.create(model="test-model", messages=_probe(i),
                                                                  temperature=0), setup, teardown)

    def aiohttp_calls(n: int) -> Any:
        box: dict[str, Any] = {}

        async def setup() -> None:
            box["s"] = aiohttp.ClientSession()

        async def call(i: int) -> Any:
            body = {"model": "test-model", "temperature": 0, "messages": _probe(i)}
            async with box["s"].post(base_url + "/chat/completions", json=body,
                                     headers={"Authorization": f"Bearer {API_KEY}"}) as r:
                return (await r.json())["choices"][0]["message"]["content"]

        async def teardown() -> None:
            await box["s"].close()

        return _seq(n, call, setup, teardown)

    def gateway_calls(n: int, client: str) -> Any:
        cfg = ModelConfig("m", MODEL, params={"temperature": 0}, api_base=base_url, client=client)
        gw = Gateway(1)
        return _seq(n, lambda i: gw.complete(cfg, _probe(i)), None, gw.aclose)

    return {
        "litellm.acompletion": litellm_calls,
        "openai SDK, aiohttp transport": lambda n: sdk_calls(n, "aiohttp"),
        "openai SDK, default httpx transport": lambda n: sdk_calls(n, "httpx"),
        "raw aiohttp POST (no SDK)": aiohttp_calls,
        "workbench Gateway, openai route": lambda n: gateway_calls(n, "openai"),
        "workbench Gateway, litellm route": lambda n: gateway_calls(n, "litellm"),
    }


def section_cpu(args: argparse.Namespace, server: Any, results: dict[str, Any]) -> None:
    header(f"3. Client CPU per call: {args.cpu_calls} sequential calls, latency 0, concurrency 1; "
           f"{args.cpu_rounds} rounds, order rotated per round, MEDIANS")
    reset_server(server, 0.0)
    clients = cpu_clients(server.base_url)
    got = run_sides(list(clients), args.cpu_rounds, lambda s, k: dict(
        zip(("wall", "cpu"), asyncio.run(clients[s](args.cpu_calls)))))
    rows, results["cpu"] = [], {}
    for name, rs in got.items():
        cpu = med([r["cpu"] for r in rs])
        results["cpu"][name] = cpu
        rows.append([name, f"{med([r['wall'] for r in rs]):.2f}", f"{cpu:.2f}", spread([r["cpu"] for r in rs])])
    table(rows, ["client", "median wall ms/call", "median CPU ms/call", "CPU ms/call, all rounds"])
    from workbench import baseline

    msgs = [{"role": "user", "content": "Context: " + " ".join(f"Sentence number {i} is about topic {i % 7}."
                                                              for i in range(30)) + "\nQuestion: topic 3?"}]
    t = time.process_time()
    for _ in range(200):
        baseline.respond(msgs)
    results["cpu"]["local baseline (in-process)"] = (time.process_time() - t) / 200 * 1000
    out(f"in-process local/extractive answer on a 30-sentence context: "
        f"{results['cpu']['local baseline (in-process)']:.2f} ms CPU (no HTTP, no litellm)")


# ---------------------------------------------------------------------------------------------
# 4-5. overhead and ceiling at latency 0


def section_latency0(args: argparse.Namespace, server: Any, cases: list[dict[str, str]], root: Path,
                     results: dict[str, Any], concurrency: int, label: str, sides: list[str], trials: int) -> dict:
    requests = render_requests(cases)
    got = run_sides(sides, trials, lambda s, k: grid_side(
        s, k, root=root, server=server, cases=cases, requests=requests, latency=0.0, concurrency=concurrency,
        label=label))
    g = summarise(got)
    n = len(requests)
    table([[s, f"{r['wall']:.3f}", f"{n / r['wall']:.0f}", f"{r['wall'] / n * 1000:.3f}", f"{r['cpu'] / n * 1000:.3f}",
            r["inflight"], spread(r["walls"])] for s, r in g.items()],
          ["side", "median wall s", "calls/s", "wall ms/call", "CPU ms/call", "max in flight", "all trials"])
    return g


def section_overhead(args: argparse.Namespace, server: Any, cases: list[dict[str, str]], root: Path,
                     results: dict[str, Any]) -> None:
    n = len(cases) * len(PROMPTS)
    header(f"4. The workbench's own per-cell overhead: {n} calls at latency 0, concurrency {args.concurrency} "
           f"({args.trials} trials per side, rotated, MEDIANS)")
    g = section_latency0(args, server, cases, root, results, args.concurrency, "lat0", ["a-openai", "b2"],
                         args.trials)
    results["overhead_ms"] = (g["a-openai"]["wall"] - g["b2"]["wall"]) / n * 1000
    results["overhead_cpu_ms"] = (g["a-openai"]["cpu"] - g["b2"]["cpu"]) / n * 1000
    out(f"workbench (openai route) over the plain SDK loop: {results['overhead_ms']:.3f} ms/cell wall, "
        f"{results['overhead_cpu_ms']:.3f} ms/cell CPU (target < 1 ms; includes planning, scoring, storage)")


def section_ceiling(args: argparse.Namespace, server: Any, base: list[dict[str, str]], root: Path,
                    results: dict[str, Any]) -> None:
    cases = make_cases(base, args.ceiling_cases)
    n = len(cases) * len(PROMPTS)
    header(f"5. Throughput ceiling: {n} calls at latency 0, concurrency 64 ({args.ceiling_trials} trials per side, "
           "rotated, MEDIANS)")
    g = section_latency0(args, server, cases, root, results, 64, "ceiling", ["a-openai", "a-litellm", "b", "b2"],
                         args.ceiling_trials)
    results["ceiling"] = {s: n / r["wall"] for s, r in g.items()}


# ---------------------------------------------------------------------------------------------
# 6. cached re-run


def section_cached_grid(args: argparse.Namespace, server: Any, cases: list[dict[str, str]], root: Path,
                        results: dict[str, Any]) -> None:
    header("6. Fully cached re-run of the grid (first run fills the cache; then 3 timed re-runs, MEDIAN)")
    reset_server(server, 0.0)
    exp = fresh_experiment(root, "cached", cases, server.base_url, args.concurrency)
    exp.run(progress=False)
    times, calls = [], []
    for _ in range(3):
        seconds, _cpu, run = timed_run(exp)
        times.append(seconds)
        calls.append(run.last.model_calls)
    results["cached_grid"] = med(times)
    results["cached_grid_calls"] = max(calls)
    out(f"cached re-run: median {med(times):.3f} s (all {spread(times)}; target < 0.3 s); model calls {calls} "
        "(must be 0)")
def section_big(args: argparse.Namespace, server: Any, base: list[dict[str, str]], root: Path,
                results: dict[str, Any]) -> tuple[Any, str]:
    n_cases = args.big // len(PROMPTS)
    header(f"7. Cached re-run of {n_cases * len(PROMPTS)} cells ({n_cases} cases x {len(PROMPTS)} prompts)")
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
    results["big_cached"] = med(times)
    out(f"cached re-run: {' '.join(f'{t:.3f}' for t in times)} s wall (median {med(times):.3f} s, target < 2 s; "
        f"CPU {' '.join(f'{c:.3f}' for c in cpus)} s); model calls {n_calls}")
    out(f"where a cached re-run goes: plan() alone {plan_s:.3f} s (render + hash {results['big_cells']} cells); "
        "storage in the last re-run:")
    if timer is not None:
        timer.print()
    return ws, str(ws.path)


def section_huge(args: argparse.Namespace, server: Any, base: list[dict[str, str]], ws: Any, ws_path: str,
                 results: dict[str, Any]) -> None:
    n_cases = args.huge // len(PROMPTS)
    header(f"8. Peak memory of a {n_cases * len(PROMPTS)}-cell cached run (child process)")
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
        f"(holds every earlier run of parts 7-8); heavy modules loaded in the child: "
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
    header("9. `import workbench` in a fresh interpreter (median of 5, minus `python -c pass`)")
    env = {k: v for k, v in os.environ.items() if k not in NO_CHILD_ENV}

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


# ---------------------------------------------------------------------------------------------
# summary and main


def summary(args: argparse.Namespace, results: dict[str, Any]) -> None:
    header("Summary (one invocation; MEDIANS of the trials above; wall times move with the machine's load)")
    g = results.get("grid", {})
    a, b2 = g.get("a-openai", {}).get("wall"), g.get("b2", {}).get("wall")
    c, d = results.get("c"), results.get("d")
    lo, p = results.get("proc_llmops-openai"), results.get("proc_promptfoo")
    cpu = results.get("cpu", {})
    ceiling = results.get("ceiling", {})

    def ratio(x: float | None, y: float | None) -> str:
        return f"{x / y:.3f}" if x and y else "n/a"

    rows = [
        ["1a workbench grid, openai route (s)", fmt_s(a), ""],
        ["1a' workbench grid, litellm route (s)", fmt_s(g.get("a-litellm", {}).get("wall")), ""],
        ["1b plain litellm loop (s)", fmt_s(g.get("b", {}).get("wall")), ""],
        ["1b2 plain openai SDK loop (s)", fmt_s(b2), ""],
        ["1c ideal (s)", fmt_s(c), ""],
        ["1d promptfoo eval process (s)", fmt_s(d), results.get("d_note", "")],
        ["a / b2", ratio(a, b2), "target <= 1.15"],
        ["a / c", ratio(a, c), "target <= 1.6"],
        ["a' / b", ratio(g.get("a-litellm", {}).get("wall"), g.get("b", {}).get("wall")), "litellm route vs its floor"],
        ["2 cold `llmops run` process, openai route (s)", fmt_s(lo), "Python start-up + imports included"],
        ["2 cold `llmops run` process, litellm route (s)", fmt_s(results.get("proc_llmops-litellm")), ""],
        ["2 promptfoo eval process (s)", fmt_s(p), "Node start-up included"],
        ["cold llmops run / promptfoo", ratio(lo, p), "target <= 0.5"],
        ["2 cold `llmops demo` (s)", fmt_s(results.get("demo"), 2), "target < 10"],
        ["4 per-cell overhead over the SDK loop (ms)", fmt_s(results.get("overhead_ms"), 3),
         f"target < 1; CPU {fmt_s(results.get('overhead_cpu_ms'), 3)} ms/cell"],
    ]
    rows += [[f"3 CPU ms/call: {k}", f"{v:.2f}", ""] for k, v in cpu.items()]
    rows += [[f"5 ceiling calls/s (latency 0, conc. 64): {k}", f"{v:.0f}", ""] for k, v in ceiling.items()]
    rows += [
        ["6 cached grid re-run (s)", fmt_s(results.get("cached_grid")),
         f"target < 0.3; model calls {results.get('cached_grid_calls')}"],
        ["9 import workbench (s)", fmt_s(results.get("import")), "target < 0.3"],
        ["litellm import (s)", fmt_s(results.get("litellm_import"), 2), "paid only by litellm-routed models"],
    ]
    if not args.skip_memory:
        huge = results.get("huge") or {}
        rows += [[f"7 cached {results.get('big_cells', '?')}-cell re-run (s)", fmt_s(results.get("big_cached")),
                  "target < 2"],
                 ["8 peak RSS of the huge cached run (MB)", f"{huge['peak']:.0f}" if huge else "n/a", "target < 600"]]
    table(rows, ["figure", "value", "note"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=200, help="cases in the grid of parts 1, 2, 4, 6 (default 200)")
    p.add_argument("--latency", type=float, default=0.05, help="server latency in seconds (default 0.05)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrency of the grid runs (default 16)")
    p.add_argument("--trials", type=int, default=3, help="trials per side in parts 1 and 4 (default 3)")
    p.add_argument("--process-trials", type=int, default=2, help="trials per cold process in part 2 (default 2)")
    p.add_argument("--cpu-calls", type=int, default=200, help="sequential calls per client and round in part 3")
    p.add_argument("--cpu-rounds", type=int, default=3, help="rounds of part 3 (default 3)")
    p.add_argument("--ceiling-cases", type=int, default=500, help="cases (x2 prompts) of part 5 (default 500)")
    p.add_argument("--ceiling-trials", type=int, default=2, help="trials per side in part 5 (default 2)")
    p.add_argument("--data", type=Path, default=None,
                   help="PubMedQA ori_pqal.json or .jsonl (default: see benchmarks/pubmedqa.py; the shipped 200 "
                   "questions when nothing else is found)")
    p.add_argument("--promptfoo", default=None, help="promptfoo executable (default: $PROMPTFOO, `promptfoo` on "
                   "PATH, or where the project's setup-promptfoo.sh installs it); absent = its figures are skipped")
    p.add_argument("--skip-promptfoo", action="store_true", help="do not run promptfoo")
    p.add_argument("--promptfoo-timeout", type=float, default=300, help="seconds before a promptfoo eval is killed")
    p.add_argument("--skip-memory", action="store_true", help="skip parts 7-8 (10,000 and 20,000-cell cache fills)")
    p.add_argument("--big", type=int, default=10000, help="cells of the cached re-run of part 7 (default 10000)")
    p.add_argument("--huge", type=int, default=20000, help="cells of the memory run of part 8 (default 20000)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 40 cases, 1 trial, small parts 3-5, no memory")
    p.add_argument("--child-mem", help=argparse.SUPPRESS)
    p.add_argument("--child-base-url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.cases, args.trials, args.process_trials, args.cpu_calls, args.cpu_rounds = 40, 1, 1, 50, 1
        args.ceiling_cases, args.ceiling_trials, args.skip_memory = 100, 1, True
    sys.path.insert(0, str(ROOT))  # this checkout's workbench, whatever else is installed
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/pubmedqa.py
    from workbench.providers import configure_environment

    configure_environment()
    if args.child_mem:
        child_mem(args)
        return

    sys.path.insert(0, str(ROOT / "tests"))
    import compileall

    from openai_server import ServerProcess

    compileall.compile_dir(ROOT / "workbench", quiet=1)  # as `pip install` does for an installed package

    started = time.perf_counter()
    base, source = load_base_cases(args.data)
    cases = make_cases(base, args.cases)
    out(f"bench_grid: data {source}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine skews wall times; CPU "
        "figures resist it better)")
    results: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    try:
        with ServerProcess(latency=args.latency) as server:
            exe, note = find_promptfoo(args)
            pf = None
            if exe:
                pf = Promptfoo(exe, server, cases, root, args.concurrency, args.promptfoo_timeout)
            else:
                results["d_note"] = note
                out(f"promptfoo: {note}")
            section_grid(args, server, cases, root, results, pf)
            section_processes(args, server, cases, root, results, pf)
            section_cpu(args, server, results)
            section_overhead(args, server, cases, root, results)
            section_ceiling(args, server, base, root, results)
            section_cached_grid(args, server, cases, root, results)
            if not args.skip_memory:
                ws, ws_path = section_big(args, server, base, root, results)
                section_huge(args, server, base, ws, ws_path, results)
        section_import(results)
        summary(args, results)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out(f"\ntotal benchmark time {time.perf_counter() - started:.0f} s; load average now "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
