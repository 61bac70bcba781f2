"""`monitor` over a 1M-request log (target: < 5 s), against the floor of parsing the same JSON once.

Generates a synthetic log in the server's format (tests/synthetic_log.py: real PubMedQA questions,
abstract sentences as answers, three retrieved chunks, 2% errors, some PII / secrets / injections):
100k requests written by Python, replicated with DuckDB into ``--rows`` requests in 10 segment files
(~790 bytes per request). Then, interleaved, ``--repeats`` times each:

- floor: ``SELECT count(*), avg(latency_ms)`` over the JSON with DuckDB (one parse, nothing else);
- monitor cold: ``monitoring.monitor(log, cache=False)`` (parses every segment);
- monitor warm: ``monitoring.monitor(log)`` with the segment cache filled (the normal case when
  monitoring runs every few minutes over a growing log: only new segments are parsed).

Every monitor call includes the drift test against 100 eval questions, the retrieval-score test and
safety flags on a 20k sample. Prints medians and the ratio to the floor.

    python benchmarks/bench_monitor.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import duckdb
    from synthetic_log import eval_rows

    from workbench import monitoring

    tmp = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    try:
        t0 = time.perf_counter()
        generate(tmp, args.rows)
        log = tmp / "log"
        size = sum(f.stat().st_size for f in log.glob("requests-*.jsonl"))
        print(f"generated {args.rows:,} requests ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        reference = [r["question"] for r in eval_rows()]
        monitoring.monitor(log, reference=reference, cache=False)  # warm imports (scipy, wordllama) once

        def floor() -> None:
            con = duckdb.connect()
            con.execute("SET enable_progress_bar = false")
            con.execute(
                f"SELECT count(*), avg(latency_ms) FROM read_json('{log}/requests-*.jsonl', "
                "format='newline_delimited', ignore_errors=true, columns={'ts': 'TIMESTAMPTZ', 'latency_ms': 'DOUBLE'})"
            ).fetchall()

        def cold() -> None:
            monitoring.monitor(log, reference=reference, cache=False)

        def warm() -> None:
            report = monitoring.monitor(log, reference=reference)
            assert report.summary["requests"] == args.rows

        monitoring.monitor(log, reference=reference)  # fill the segment cache
        wall: dict[str, list[float]] = {"floor": [], "cold": [], "warm": []}
        cpu: dict[str, list[float]] = {"floor": [], "cold": [], "warm": []}
        for _ in range(args.repeats):
            for name, fn in (("floor", floor), ("cold", cold), ("warm", warm)):
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
        med = {k: statistics.median(v) for k, v in wall.items()}
        mcpu = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (process CPU time is less load-bound)")
        labels = {
            "floor": "JSON parse floor (DuckDB count over the log)",
            "cold": "monitor, cold (every segment parsed)",
            "warm": "monitor, warm (segment cache)",
        }
        for name, label in labels.items():
            ratio = "" if name == "floor" else f" = {med[name] / med['floor']:.2f}x floor"
            target = "  target < 5 s" if name != "floor" else ""
            print(
                f"{label:<46} wall {med[name]:6.2f} s{ratio}  cpu {mcpu[name]:6.2f} s  "
                f"(runs: {_fmt(wall[name])}){target}"
            )
        print(monitoring.monitor(log, reference=reference))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
