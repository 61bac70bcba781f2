"""A kernel-like process for the server-extension tests: seeds a workspace, then runs a real grid in it.

Run as a script (the tests start it as a subprocess, so it holds its own DuckDB connections the way a
notebook kernel does)::

    python tests/labserver_writer.py WORKSPACE --api-base URL [--cases N] [--concurrency C] [--seed-only]

It prints ``SEEDED`` once the dataset, two versions of a prompt and a finished baseline run are stored, then
``RUNNING`` as the live run (named ``live``) starts, ``SECONDS <run time>`` and ``DONE <run_id> <status>``.
The live run calls the local OpenAI-compatible test server (tests/openai_server.py) over HTTP, so its pace
is set by that server's latency.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def seed(path: Path, cases: int = 40) -> None:
    import workbench as wb
    from workbench.demo import data_path

    ws = wb.open(path)
    rows = [line for line in data_path().read_text().splitlines() if line.strip()][:cases]
    import json

    ws.add_dataset("pubmedqa", [json.loads(r) for r in rows], id="pmid")
    ws.add_prompt("answer", "Question: {{ question }}", system="You answer biomedical questions.")
    ws.add_prompt("answer", "Context: {{ context }}\nQuestion: {{ question }}", system="Answer from the abstract.")
    exp = ws.experiment(
        "pubmedqa",
        [
            wb.Prompt("with-context", "Context: {{ context }}\nQuestion: {{ question }}"),
            wb.Prompt("question-only", "Question: {{ question }}"),
        ],
        ["local/extractive"],
        [{"name": "token_f1", "expected": "long_answer"}, {"name": "contains", "expected": "final_decision"}],
        name="baseline",
    )
    exp.run(progress=False)


def live_run(path: Path, api_base: str, concurrency: int) -> None:
    import workbench as wb

    ws = wb.open(path)
    model = {"name": "test-model", "model": "openai/test-model", "api_base": api_base, "params": {"temperature": 0}}
    exp = ws.experiment(
        "pubmedqa",
        [wb.Prompt("terse", "Question: {{ question }}"), wb.Prompt("polite", "Please answer: {{ question }}")],
        [model],
        [{"name": "token_f1", "expected": "long_answer"}, {"name": "contains", "expected": "final_decision"}],
        concurrency=concurrency,
        name="live",
    )
    import litellm  # noqa: F401  - warm, as %load_ext does in a kernel: the run then starts calling at once

    print("RUNNING", flush=True)
    t = time.perf_counter()
    run = exp.run(progress=False)
    print("SECONDS", f"{time.perf_counter() - t:.3f}", flush=True)
    print("DONE", run.run_id, run.status, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--api-base", default=None)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--no-seed", action="store_true", help="the workspace is seeded already: only the live run")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-test")
    if not args.no_seed:
        seed(args.workspace, args.cases)
    print("SEEDED", flush=True)
    if not args.seed_only:
        if not args.api_base:
            sys.exit("--api-base is needed for the live run")
        live_run(args.workspace, args.api_base, args.concurrency)


if __name__ == "__main__":
    main()
