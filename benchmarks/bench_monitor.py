"""`llmops monitor LOG` over a 1M-request log, cold (a fresh process, imports included): target < 5 s.

Generates a synthetic log in the server's format (tests/synthetic_log.py: real PubMedQA questions,
abstract sentences as answers, three retrieved chunks, 2% errors, some PII / secrets / injections):
100k requests written by Python, replicated with DuckDB into ``--rows`` requests in 10 segment files
(~790 bytes per request). Every figure is a fresh process started the way a user starts it
(``python -m workbench.cli monitor LOG ...``, what the ``llmops`` script runs), timed from the outside:
wall time, and CPU time (user + system, all threads) from ``getrusage`` of the child, which moves far less
with the load of a shared machine. Configurations, interleaved in rotated order within each round:

- floor: a process that imports DuckDB and parses the same JSON once into the monitor's typed columns;
- ``--no-cache``: every segment parsed (the first look at a log, or a read-only log folder);
- first run: the segment cache emptied before the run, so the run parses and writes it (the default);
- cache warm: finished segments read from the Parquet cache (monitoring a growing log every few minutes);
- ``--dataset eval``: ``--no-cache`` plus the drift test against 100 eval questions in a workspace.

``--baseline-ref REF`` runs the same configurations with the package as it was at git commit REF
(``git archive`` into a temporary folder), interleaved with the current tree, so before/after come from
the same rounds. Prints per configuration the median of the rounds, every round, the spread
((max - min) / median) and whether every round printed the same report.

    python benchmarks/bench_monitor.py [--rows 1000000] [--repeats 3] [--baseline-ref GIT_REF]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def generate(folder: Path, rows: int) -> None:
    import duckdb
    from synthetic_log import OFF_TOPIC, held_out_rows, make_requests, write_log

    base_n = min(rows, 100_000)
    reqs = make_requests(
        base_n,
        questions=held_out_rows() + OFF_TOPIC[:5],
        arms=("A", "B"),
        error_rate=0.02,
        pii_rate=0.002,
        secrets_rate=0.001,
        injection_rate=0.002,
        spacing_s=0.5,
        seed=1,
    )
    seed_dir = folder / "seed"
    write_log(seed_dir, reqs, segment=base_n)
    copies = max(1, rows // base_n)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    span_s = int(base_n * 0.5) + 1
    iso = "%Y-%m-%dT%H:%M:%S.%fZ"
    for k in range(copies):
        target = folder / "log" / f"requests-{k:06d}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"""
            COPY (SELECT strftime(CAST(ts AS TIMESTAMP) + INTERVAL ({k * span_s}) SECOND, '{iso}') AS ts,
                         request_id || '-{k}' AS request_id, bundle_hash, arm, "user", input, output, retrieved,
                         latency_ms, prompt_tokens, completion_tokens, cost, error, status
                  FROM read_json('{seed_dir}/requests-*.jsonl', format='newline_delimited',
                                 columns={{'ts': 'TIMESTAMPTZ', 'request_id': 'VARCHAR', 'bundle_hash': 'VARCHAR',
                                          'arm': 'VARCHAR', 'user': 'VARCHAR', 'input': 'JSON', 'output': 'JSON',
                                          'retrieved': 'JSON', 'latency_ms': 'DOUBLE', 'prompt_tokens': 'BIGINT',
                                          'completion_tokens': 'BIGINT', 'cost': 'DOUBLE', 'error': 'VARCHAR',
                                          'status': 'INTEGER'}}))
            TO '{target}' (FORMAT json)
            """
        )
        os.utime(target, (time.time() - 60, time.time() - 60))  # finished segments, as after rotation
    shutil.rmtree(seed_dir)


FLOOR = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute("SELECT count(*), max(ts), max(input.question), max(length(output)), avg(latency_ms) FROM read_json(?, "
            "format='newline_delimited', ignore_errors=true, columns=" + sys.argv[2] + ")",
            [sys.argv[1] + "/requests-*.jsonl"]).fetchall()
"""


def run(cmd: list[str], pythonpath: str, cwd: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of one fresh process, and what it printed."""
    env = {**os.environ, "PYTHONPATH": pythonpath, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - w0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # 1 = alerts, a normal outcome
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def baseline_tree(ref: str, target: Path) -> Path:
    """The package as it was at ``ref`` (git archive), for a before/after in the same rounds."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "workbench"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-ref", help="git commit to compare with (e.g. the one before a change)")
    parser.add_argument("--skip-dataset", action="store_true", help="skip the --dataset (drift) configuration")
    args = parser.parse_args()

    from synthetic_log import eval_rows

    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    try:
        t0 = time.perf_counter()
        generate(tmp, args.rows)
        log = tmp / "log"
        size = sum(f.stat().st_size for f in log.glob("requests-*.jsonl"))
        print(f"generated {args.rows:,} requests ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        trees = {"": str(ROOT)}
        if args.baseline_ref:
            trees["base "] = str(baseline_tree(args.baseline_ref, tmp / "baseline"))
        questions = [{"question": r["question"], "pmid": r["pmid"]} for r in eval_rows()]
        for tag, tree in trees.items():  # each tree its own workspace (schemas differ between versions)
            code = (
                "import json, sys, workbench as wb; wb.open(sys.argv[1]).add_dataset('eval', json.loads(sys.argv[2]))"
            )
            ws = tmp / f"ws-{tag.strip() or 'now'}"
            subprocess.run([sys.executable, "-c", code, str(ws), json.dumps(questions)], check=True, cwd=tmp,
                           env={**os.environ, "PYTHONPATH": tree})  # fmt: skip
        from workbench.requestlog import _TYPED_COLUMNS, _sql_struct

        # every field of a request, typed: DuckDB's reader is slowest when asked for a few fields late in each
        # object (about twice the time of this full schema here), so that would not be a floor
        schema = _sql_struct(_TYPED_COLUMNS)

        def cli(tag: str) -> list[str]:
            ws = tmp / f"ws-{tag.strip() or 'now'}"
            return [sys.executable, "-m", "workbench.cli", "monitor", str(log), "--workspace", str(ws)]

        cache = log / ".monitor-cache"

        def clear_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        configs: dict[str, tuple[list[str], str, object]] = {
            "floor (DuckDB parse, fresh process)": ([sys.executable, "-c", FLOOR, str(log), schema], str(ROOT), None)
        }
        for tag, tree in trees.items():
            configs[f"{tag}--no-cache"] = ([*cli(tag), "--no-cache"], tree, None)
            configs[f"{tag}first run (fills the cache)"] = (cli(tag), tree, clear_cache)
            configs[f"{tag}cache warm"] = (cli(tag), tree, None)
            if not args.skip_dataset:
                configs[f"{tag}--no-cache --dataset eval"] = (
                    [*cli(tag), "--no-cache", "--dataset", "eval"],
                    tree,
                    None,
                )
        for cmd, tree, _ in configs.values():  # warm the page cache and the .pyc files, fill the segment cache
            run(cmd, tree, tmp)
        wall: dict[str, list[float]] = {k: [] for k in configs}
        cpu: dict[str, list[float]] = {k: [] for k in configs}
        outputs: dict[str, set[str]] = {k: set() for k in configs}
        loads = [os.getloadavg()[0]]
        names = list(configs)
        for r in range(args.repeats):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
            for name in order:
                cmd, tree, before = configs[name]
                if callable(before):
                    before()
                elif "warm" in name and not cache.exists():
                    run(cli(""), tree, tmp)  # a warm run needs the cache a "first run" just removed... and refilled
                w, c, out = run(cmd, tree, tmp)
                wall[name].append(w)
                cpu[name].append(c)
                outputs[name].add(out)
            loads.append(os.getloadavg()[0])
        print(
            f"load average (1 min) during the rounds: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores; "
            "wall times move with it, CPU times much less"
        )
        width = max(map(len, names))
        for name in names:
            mw, mc = statistics.median(wall[name]), statistics.median(cpu[name])
            same = "" if name.startswith("floor") else ("  same report every round" if len(outputs[name]) == 1
                                                         else f"  {len(outputs[name])} DIFFERENT reports")  # fmt: skip
            target = "" if name.startswith(("floor", "base")) else ("  < 5 s" if mw < 5 else "  over the 5 s target")
            print(
                f"{name:<{width}}  wall {mw:5.2f} s (runs {_fmt(wall[name])}; spread {_spread(wall[name])})  "
                f"cpu {mc:5.2f} s (runs {_fmt(cpu[name])}; spread {_spread(cpu[name])}){target}{same}"
            )
        if args.baseline_ref:
            print(f"current tree vs {args.baseline_ref} (ratio of medians, < 1 = faster now):")
            for name in names:
                if name.startswith(("floor", "base")):
                    continue
                base = "base " + name
                print(
                    f"  {name:<{width}}  wall {statistics.median(wall[name]) / statistics.median(wall[base]):.2f}x  "
                    f"cpu {statistics.median(cpu[name]) / statistics.median(cpu[base]):.2f}x"
                )
        floor = statistics.median(wall[names[0]])
        print(f"(floor = {floor:.2f} s wall: the JSON parse alone, in a fresh process)")
        print("report of the last --no-cache run:")
        print(sorted(outputs["--no-cache"])[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _spread(values: list[float]) -> str:
    return f"{100 * (max(values) - min(values)) / statistics.median(values):.0f}%"


if __name__ == "__main__":
    main()
