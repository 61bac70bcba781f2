"""Run archives: export and import time and size for a 10,000-cell run, against the Parquet of its tables.

Run from the repository root, in the project's virtualenv (about a minute with the defaults)::

    python benchmarks/bench_archive.py [--cases 1000] [--variants 10] [--trials 3]

A real run (``--cases`` PubMedQA-demo-shaped cases x ``--variants`` prompts, model ``local/extractive``,
metrics ``contains`` and ``rouge1``) is made once. Then each trial, in alternating order:

- baseline: DuckDB ``COPY ... TO parquet (zstd)`` of the same rows the archive carries (one file per table);
- export: ``run.archive(path)`` (those tables + run.json + sha256 manifest in one zip);
- import: ``ws.import_run(path)`` into a fresh workspace (checksums verified, one transaction).

Printed: medians over trials (every trial listed), archive bytes vs the baseline's bytes. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()

    import workbench as wb
    from workbench import archive

    tmp = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    ws = wb.open(tmp / "ws")
    words = "aspirin stroke risk trial cohort outcome dose placebo mortality survival".split()
    rows = [
        {
            "id": f"c{i}",
            "question": f"Does {words[i % 10]} change {words[(i * 3) % 10]} in study {i}?",
            "context": " ".join(words[(i + k) % 10] for k in range(60)) + f". Study {i} found an effect.",
            "answer": "yes" if i % 2 else "no",
        }
        for i in range(args.cases)
    ]
    ws.add_dataset("bench", rows, id="id")
    prompts = [
        {"name": f"p{j}", "user": f"Variant {j}. Context: {{{{ context }}}}\nQuestion: {{{{ question }}}}"}
        for j in range(args.variants)
    ]
    t0 = time.perf_counter()
    run = ws.experiment(
        "bench",
        prompts=prompts,
        models=[{"name": "ex", "model": "local/extractive"}],
        metrics=[{"name": "contains", "expected": "answer"}, {"name": "rouge1", "expected": "context"}],
    ).run(progress=False)
    n_cells = len(run.results())
    print(f"run: {n_cells} cells in {time.perf_counter() - t0:.1f} s (setup, not timed below)")

    base_t, exp_t, imp_t, base_b, arch_b = [], [], [], [], []
    fill = {"run": archive._lit(run.run_id), "ds": archive._lit(run.info["dataset_hash"]), "dsname": "'bench'"}
    for trial in range(args.trials):
        out = tmp / f"t{trial}"
        out.mkdir()

        def baseline(out: Path = out) -> None:
            t = time.perf_counter()
            size = 0
            with ws.store.connect() as con:
                for table, query in archive._TABLES.items():
                    path = out / f"{table}.parquet"
                    con.execute(f"COPY ({query.format(**fill)}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
                    size += path.stat().st_size
            base_t.append(time.perf_counter() - t)
            base_b.append(size)

        def export(out: Path = out) -> None:
            t = time.perf_counter()
            path = run.archive(out / "run.zip")
            exp_t.append(time.perf_counter() - t)
            arch_b.append(path.stat().st_size)

        for step in [baseline, export] if trial % 2 == 0 else [export, baseline]:
            step()
        fresh = wb.open(out / "ws")
        t = time.perf_counter()
        fresh.import_run(out / "run.zip")
        imp_t.append(time.perf_counter() - t)
        assert len(fresh.get_run(run.run_id).results()) == n_cells

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.3f} s  (trials: {', '.join(f'{x:.3f}' for x in xs)})"

    print(f"baseline parquet COPY: {fmt(base_t)}; {statistics.median(base_b) / 1e6:.2f} MB")
    print(f"export (run.archive):  {fmt(exp_t)}; {statistics.median(arch_b) / 1e6:.2f} MB")
    print(f"import (ws.import_run): {fmt(imp_t)}")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"archive / parquet size: {statistics.median(arch_b) / statistics.median(base_b):.2f}x; "
        f"export / baseline time: {statistics.median(exp_t) / statistics.median(base_t):.2f}x"
    )


if __name__ == "__main__":
    main()
