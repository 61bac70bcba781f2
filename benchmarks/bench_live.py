"""Live panel benchmark: what showing progress in a notebook costs a running grid.

Run from the repository root (about 1-2 minutes with the defaults)::

    python benchmarks/bench_live.py [--cases 200] [--latency 0.05] [--concurrency 8] [--trials 5]

A real Jupyter kernel (jupyter_client) runs a 2-prompt x N-case grid (400 cells by default) against the
local OpenAI-compatible test server (tests/openai_server.py, real HTTP, 50 ms latency), alternating
``exp.run(progress=True)`` (the live panel: one HTML output updated in place about once a second) and
``exp.run(progress=False)``, trials interleaved so machine load hits both alike. Every trial uses new prompt
text, so nothing comes from the cache. Printed: median wall time of each, the ratio (target: panel < 3% of
wall time), the panel's own time per run (summed inside the kernel around every update) and the number of
updates. It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

KERNEL_SETUP = """
import json, time, workbench as wb
from workbench import progress as _progress
_spent = {{"seconds": 0.0, "updates": 0}}
_update = _progress.LivePanel.update
def _timed(self, snap):
    t = time.perf_counter()
    _update(self, snap)
    _spent["seconds"] += time.perf_counter() - t
    _spent["updates"] += 1
_progress.LivePanel.update = _timed
ws = wb.open({ws!r})
ws.add_dataset("d", [{{"id": f"c{{i}}", "q": f"question number {{i}} about a topic"}} for i in range({cases})], id="id")
model = {{"name": "m", "model": "openai/test-model", "api_base": {base!r}}}
"""

KERNEL_TRIAL = """
_spent.update(seconds=0.0, updates=0)
exp = ws.experiment("d", [wb.Prompt("a", "{nonce} A {{{{ q }}}}"), wb.Prompt("b", "{nonce} B {{{{ q }}}}")], [model],
                    [{{"name": "contains", "expected": "q"}}], concurrency={concurrency})
t = time.perf_counter()
run = exp.run(progress={progress})
wall = time.perf_counter() - t
print("RESULT " + json.dumps({{"wall": wall, "panel_s": _spent["seconds"], "updates": _spent["updates"],
                              "status": run.status}}))
"""


def run_code(kc, code: str, timeout: float = 600) -> str:
    msg_id = kc.execute(code)
    text = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text.append(msg["content"]["text"])
        if msg["msg_type"] == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=200, help="cases (cells = 2 x cases)")
    ap.add_argument("--latency", type=float, default=0.05, help="server latency in seconds")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--trials", type=int, default=5, help="interleaved trials of each mode")
    args = ap.parse_args()

    from jupyter_client.manager import start_new_kernel
    from openai_server import ServerProcess

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp, ServerProcess() as server:
        server.configure(latency=args.latency)
        km, kc = start_new_kernel(kernel_name="python3")
        try:
            run_code(kc, KERNEL_SETUP.format(ws=str(Path(tmp) / "ws"), cases=args.cases, base=server.base_url))
            # warm-up: imports, first requests, the index of the dataset
            run_code(kc, KERNEL_TRIAL.format(nonce="warm", concurrency=args.concurrency, progress=False))
            results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
            for trial in range(args.trials):
                for panel in (True, False) if trial % 2 == 0 else (False, True):
                    out = run_code(
                        kc,
                        KERNEL_TRIAL.format(nonce=f"t{trial}{panel}", concurrency=args.concurrency, progress=panel),
                    )
                    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
                    res = json.loads(line[len("RESULT ") :])
                    assert res["status"] == "completed", res
                    results[panel].append(res)
                    print(
                        f"trial {trial} panel={'on ' if panel else 'off'}: {res['wall']:.3f} s wall, "
                        f"panel {res['panel_s'] * 1000:.1f} ms in {res['updates']} updates",
                        flush=True,
                    )
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    cells = 2 * args.cases
    on = statistics.median(r["wall"] for r in results[True])
    off = statistics.median(r["wall"] for r in results[False])
    own = statistics.median(r["panel_s"] for r in results[True])
    updates = statistics.median(r["updates"] for r in results[True])
    ideal = cells * args.latency / args.concurrency
    print()
    print(
        f"{cells} cells, latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}, "
        f"{args.trials} trials each"
    )
    print(f"ideal (calls x latency / concurrency): {ideal:.3f} s")
    print(f"median wall, panel off: {off:.3f} s")
    print(
        f"median wall, panel on:  {on:.3f} s   ratio on/off {on / off:.3f} ({(on / off - 1) * 100:+.1f}%; target < +3%)"
    )
    print(
        f"panel's own time per run (median): {own * 1000:.1f} ms over {updates:.0f} updates = "
        f"{own / on * 100:.2f}% of the run's wall time"
    )
    tally_s = tally_cost(cells)
    print(
        f"per-cell bookkeeping behind the panel (Tally.add, in process, always on): {tally_s * 1000:.2f} ms for "
        f"{cells} cells = {tally_s / off * 100:.3f}% of the panel-off wall time"
    )
    print(f"load average at end: {os.getloadavg()}")


def tally_cost(cells: int, rounds: int = 20) -> float:
    """Median time of Tally.add over ``cells`` finished cells with one metric (what every cell pays)."""
    import time

    from workbench.progress import Tally

    cell = {
        "variant": "a",
        "error": None,
        "cached": False,
        "cost": 0.0,
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "latency_ms": 50.0,
    }
    scores = [{"metric": "contains", "value": 1.0}]
    times = []
    for _ in range(rounds):
        tally = Tally(["a", "b"], ["contains"])
        t = time.perf_counter()
        for _ in range(cells):
            tally.add(cell, scores)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


if __name__ == "__main__":
    main()
