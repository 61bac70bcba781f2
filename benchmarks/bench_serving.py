"""Serving benchmark: served throughput and latency with and without the request log, start-up time, and
export / load time and size of a bundle holding a 100k-chunk index. Prints figures; asserts nothing.

Usage::

    python benchmarks/bench_serving.py [--requests 300] [--concurrency 16] [--rounds 3] [--chunks 100000]
                                       [--skip-scale]

Part 1: a bundle of the demo's RAG variant on the embedded defaults (local/extractive, wordllama, FAISS,
hybrid BM25) served by two `llmops serve` subprocesses on 127.0.0.1, one writing the request log and one
with --no-log. Rounds alternate between them (interleaved, so machine load hits both alike); each round
sends --requests POSTs to /v1/answer at --concurrency. Prints per-round and median throughput, p50 and
p95 latency (client-side), the p95 ratio log/no-log (target: < 1.10), and the servers' CPU time per
request (from /proc; far less sensitive to other load on the machine). Then the time from starting
`llmops serve` to its first answer (process start, bundle verification, imports, warm-up).

Part 2: a workspace run whose retriever indexes --chunks synthetic chunks (one chunk per document, made
of PubMedQA sentences) in a flat FAISS index; then `run.export` (directory and zip), `verify` and
`load_bundle` times and sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} (1 / 5 min) on {os.cpu_count()} cores, shared by other agents"


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children) from /proc: the figure machine load barely moves."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def fire(url: str, n: int, concurrency: int, seed: int) -> dict[str, float]:
    import aiohttp

    rng = random.Random(seed)
    questions = [
        f"Does treatment {rng.randrange(1000)} reduce mortality in patients with condition {rng.randrange(50)}?"
        for _ in range(n)
    ]
    latencies: list[float] = []
    errors = 0

    async def main() -> float:
        nonlocal errors
        queue = list(questions)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:

            async def worker() -> None:
                nonlocal errors
                while queue:
                    q = queue.pop()
                    t0 = time.perf_counter()
                    async with session.post(url + "/v1/answer", json={"question": q}) as resp:
                        await resp.read()
                        if resp.status != 200:
                            errors += 1
                    latencies.append((time.perf_counter() - t0) * 1000)

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t

    seconds = asyncio.run(main())
    return {
        "rps": n / seconds,
        "p50": quantile(latencies, 0.5),
        "p95": quantile(latencies, 0.95),
        "errors": errors,
    }


def part1(args: argparse.Namespace, work: Path) -> None:
    from served import BundleServer, demo_run, post

    print("== part 1: served throughput and latency, embedded defaults (rag-hybrid128 bundle)")
    run = demo_run(work, n_cases=30)
    bundle = run.export(work / "rag", "rag-hybrid128")
    log_dir = work / "logs"
    servers = {
        "log": BundleServer(bundle, "--log-dir", log_dir).start(),
        "no-log": BundleServer(bundle, "--no-log").start(),
    }
    try:
        for srv in servers.values():  # warm both (first requests pay lazy imports)
            fire(srv.url, 50, args.concurrency, seed=0)
        results: dict[str, list[dict[str, float]]] = {k: [] for k in servers}
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(list(servers)))
            for name in order:
                pid = servers[name].proc.pid  # type: ignore[union-attr]
                cpu0 = cpu_seconds(pid)
                res = fire(servers[name].url, args.requests, args.concurrency, seed=r + 1)
                res["cpu_ms"] = (cpu_seconds(pid) - cpu0) * 1000 / args.requests
                results[name].append(res)
                print(
                    f"  round {r + 1} {name:>6}: {res['rps']:6.1f} req/s  p50 {res['p50']:7.1f} ms  "
                    f"p95 {res['p95']:7.1f} ms  server CPU {res['cpu_ms']:5.1f} ms/request  "
                    f"non-200: {int(res['errors'])}   ({load_note()})"
                )
        keys = ("rps", "p50", "p95", "cpu_ms")
        med = {k: {m: statistics.median(x[m] for x in v) for m in keys} for k, v in results.items()}
        for name, m in med.items():
            print(
                f"  median {name:>6}: {m['rps']:6.1f} req/s  p50 {m['p50']:7.1f} ms  p95 {m['p95']:7.1f} ms  "
                f"server CPU {m['cpu_ms']:5.1f} ms/request"
            )
        print(f"  server CPU per request with log / without: {med['log']['cpu_ms'] / med['no-log']['cpu_ms']:.3f}")
        ratio = med["log"]["p95"] / med["no-log"]["p95"]
        print(
            f"  p95 with log / without: {ratio:.3f} (target < 1.10); throughput ratio "
            f"{med['log']['rps'] / med['no-log']['rps']:.3f}"
        )
    finally:
        servers["log"].stop()
        servers["no-log"].stop()
    from workbench.requestlog import read_requests

    sent = 50 + args.rounds * args.requests
    print(f"  logged rows after graceful stop: {len(read_requests(log_dir))} of {sent} sent to the logging server")

    print("== time from `llmops serve` to the first answer")
    for i in range(2):
        t0 = time.perf_counter()
        srv = BundleServer(bundle, "--no-log").start()
        status, _ = post(srv.url + "/v1/answer", {"question": "Does aspirin prevent stroke?"})
        took = time.perf_counter() - t0
        srv.stop()
        ready = next((line.split("; ", 1)[-1] for line in srv.output if "ready" in line), "")
        print(f"  start {i + 1}: {took:.2f} s to the first answer (status {status}; {ready}) ({load_note()})")


def part2(args: argparse.Namespace, work: Path) -> None:
    import pandas as pd

    import workbench as wb
    from workbench.bundles import verify
    from workbench.demo import data_path

    n = args.chunks
    print(f"== part 2: export / load of a bundle with a {n:,}-chunk flat FAISS index")
    sentences: list[str] = []
    for line in data_path().read_text().splitlines():
        rec = json.loads(line)
        sentences.extend(s.strip() for s in rec["context"].split(". ") if len(s.split()) > 5)
    rng = random.Random(0)
    docs = [
        {"id": f"d{i}", "text": f"{rng.choice(sentences)}. {rng.choice(sentences)}. (record {i})"} for i in range(n)
    ]
    corpus_path = work / "big.jsonl"
    pd.DataFrame(docs).to_json(corpus_path, orient="records", lines=True)
    cases = [{"id": str(i), "question": rng.choice(sentences) + "?", "answer": "x"} for i in range(10)]
    ws = wb.open(work / "bigws")
    spec = {
        "dataset": {"name": "q"},
        "prompts": [{"name": "rag", "user": "Context: {{ context }}\nQuestion: {{ question }}"}],
        "models": [{"name": "extractive", "model": "local/extractive"}],
        "retrievers": [
            {
                "name": "big",
                "corpus": {"path": str(corpus_path), "id": "id", "text": "text"},
                "chunker": {"size": 256, "overlap": 16},
                "index": {"type": "flat"},
                "top_k": 3,
            }
        ],
        "metrics": [{"name": "token_f1", "expected": "answer"}],
    }
    ws.add_dataset("q", cases, id="id")
    t0 = time.perf_counter()
    run = ws.run(spec, progress=False)
    print(f"  building the run (chunk, embed, index {n:,} chunks, 10 cases): {time.perf_counter() - t0:.1f} s")
    for zipped in (False, True):
        target = work / ("big.zip" if zipped else "big")
        t0 = time.perf_counter()
        out = run.export(target, zip=zipped)
        export_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else out.stat().st_size
        t0 = time.perf_counter()
        verify(out)
        verify_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        b = wb.load_bundle(out)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        a = b.answer(question=cases[0]["question"])
        first_s = time.perf_counter() - t0
        print(
            f"  {'zip' if zipped else 'dir'}: export {export_s:.2f} s, size {size / 1e6:.1f} MB, "
            f"verify {verify_s:.2f} s, "
            f"load (verify + read) {load_s:.2f} s, first answer {first_s:.2f} s "
            f"({b.retriever.n_chunks:,} chunks, answer ok: {bool(a.answer)}) ({load_note()})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--skip-scale", action="store_true", help="skip part 2")
    parser.add_argument("--skip-serving", action="store_true", help="skip part 1")
    args = parser.parse_args()
    print(f"bench_serving: {load_note()}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        if not args.skip_serving:
            part1(args, work)
        if not args.skip_scale:
            part2(args, work)


if __name__ == "__main__":
    main()
