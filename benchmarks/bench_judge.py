"""Judge-run overhead: a workbench run whose only model calls are judge calls, against the raw calls.

Run from the repository root, in the project's virtualenv (about a minute with the defaults)::

    python benchmarks/bench_judge.py [--cells 200] [--latency 0.05] [--concurrency 16] [--trials 3]

Against the local OpenAI-compatible test server (``tests/openai_server.py``, its own process, real HTTP):

1. a grid of ``--cells`` cases x 1 prompt is run once without judge metrics, at latency 0, to fill the
   response cache with the model outputs;
2. at ``--latency``, the same grid with ``faithfulness`` (2 judge calls per cell: statements, then
   verdicts; scripted JSON replies): only the judge calls go over the wire. Each trial uses a new judge
   ``seed`` param so no judge reply is cached;
3. a plain asyncio + ``litellm.acompletion`` loop making the same judge calls (same prompts, the two
   calls of a cell in sequence, ``--concurrency`` workers), parsing the JSON replies;
4. the ideal: calls x latency / concurrency; and a fully cached re-run (zero requests).

Trials interleave the two sides and alternate which goes first (workbench first in even trials, the raw
loop first in odd ones); an untimed warm-up round of each side runs before them, so neither side alone
pays for cold imports, connection pools or the first HTTP call. Figures are medians over trials, with
every trial listed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

JUDGE = "openai/judge-model"
STATEMENTS = {"statements": ["The item is red.", "The item is an apple.", "The item grows on Mars."]}
VERDICTS = [
    {"statement": 1, "reason": "stated", "verdict": 1},
    {"statement": 2, "reason": "stated", "verdict": 1},
    {"statement": 3, "reason": "not stated", "verdict": 0},
]


def out(line: str = "") -> None:
    print(line, flush=True)


def cases(n: int) -> list[dict[str, str]]:
    return [
        {"qid": f"q{i}", "question": f"What is item {i} and where does it grow?",
         "context": f"Item {i} is a red apple. It grows in orchard number {i % 17}."}
        for i in range(n)
    ]


def judge_spec(base_url: str, seed: int) -> dict[str, Any]:
    return {"model": JUDGE, "api_base": base_url, "params": {"temperature": 0, "seed": seed}}


async def raw_loop(base_url: str, items: list[tuple[str, str, str]], concurrency: int, seed: int) -> int:
    """The same judge calls with nothing around them: statements, then verdicts, per cell; N workers."""
    import litellm

    from workbench.metrics import judge as jm

    queue = list(reversed(items))
    calls = 0

    async def ask(messages: list[dict[str, str]]) -> str:
        nonlocal calls
        resp = await litellm.acompletion(model=JUDGE, messages=messages, api_base=base_url, api_key="sk-no-key",
                                         temperature=0, seed=seed, max_retries=0, num_retries=0)
        calls += 1
        return str(resp.choices[0].message.content)

    async def worker() -> None:
        while queue:
            question, answer, context = queue.pop()
            reply = await ask(jm.statements_messages(question, answer))
            statements = json.loads(reply)["statements"]
            json.loads(await ask(jm.verdicts_messages(context, statements)))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()

    from openai_server import ServerProcess

    import workbench as wb
    from workbench.llm import litellm_module

    litellm_module()  # import outside the timings
    replies = [
        {"pattern": "atomic statements", "reply": json.dumps(STATEMENTS)},
        {"pattern": "faithfulness of a series of statements", "reply": json.dumps(VERDICTS)},
    ]
    with tempfile.TemporaryDirectory() as tmp, ServerProcess() as server:
        server.configure(replies=replies, latency=0.0)
        ws = wb.open(Path(tmp) / "ws")
        ds = ws.add_dataset("bench", cases(args.cells), id="qid")
        prompt = wb.Prompt("p", "Question: {{ question }}")
        model = {"name": "fake", "model": "openai/test-model", "api_base": server.base_url}

        t0 = time.perf_counter()
        fill = ws.experiment(ds, [prompt], [model], [], concurrency=args.concurrency).run(progress=False)
        out(f"cache fill (no judge, latency 0): {args.cells} cells in {time.perf_counter() - t0:.2f} s")
        outputs = fill.results().set_index("case_id")["output"].to_dict()
        items = [(f"Question: {c['question']}", outputs[c["qid"]], c["context"]) for c in cases(args.cells)]

        server.configure(latency=args.latency)
        wb_times: list[float] = []
        raw_times: list[float] = []
        calls_wb: list[int] = []
        calls_raw: list[int] = []

        def judged(seed: int) -> float:
            metric = {"name": "faithfulness", "judge": judge_spec(server.base_url, seed), "context": "context"}
            exp = ws.experiment(ds, [prompt], [model], [metric], concurrency=args.concurrency)
            before = server.stats()["by_model"].get("judge-model", 0)
            t0 = time.perf_counter()
            run = exp.run(progress=False)
            took = time.perf_counter() - t0
            calls_wb.append(server.stats()["by_model"].get("judge-model", 0) - before)
            assert run.results()["faithfulness"].round(6).eq(round(2 / 3, 6)).all()
            return took

        def raw(seed: int) -> float:
            before = server.stats()["by_model"].get("judge-model", 0)
            t0 = time.perf_counter()
            made = asyncio.run(raw_loop(server.base_url, items, args.concurrency, seed))
            took = time.perf_counter() - t0
            calls_raw.append(server.stats()["by_model"].get("judge-model", 0) - before)
            assert made == calls_raw[-1]
            return took

        judged(900)  # untimed warm-up of both sides (seeds no trial uses)
        raw(900 + 10_000)
        calls_wb.clear()
        calls_raw.clear()
        for trial in range(args.trials):
            seed = 1000 + trial
            if trial % 2 == 0:
                wb_times.append(judged(seed))
                raw_times.append(raw(seed + 10_000))
            else:
                raw_times.append(raw(seed + 10_000))
                wb_times.append(judged(seed))

        seed = 1000 + args.trials - 1
        metric = {"name": "faithfulness", "judge": judge_spec(server.base_url, seed), "context": "context"}
        before = server.stats()["requests"]
        t0 = time.perf_counter()
        cached = ws.experiment(ds, [prompt], [model], [metric], concurrency=args.concurrency).run(progress=False)
        cached_s = time.perf_counter() - t0
        cached_requests = server.stats()["requests"] - before
        judgements = len(cached.judgements())

    n_calls = args.cells * 2
    ideal = n_calls * args.latency / args.concurrency
    wb_med, raw_med = statistics.median(wb_times), statistics.median(raw_times)
    out()
    out(f"{args.cells} cells x faithfulness (2 judge calls/cell), latency {args.latency * 1000:.0f} ms, "
        f"concurrency {args.concurrency}, {args.trials} interleaved trials (median; all trials listed)")
    out(f"  judge calls per trial: workbench {calls_wb}, raw loop {calls_raw} (expected {n_calls})")
    out(f"  ideal (calls x latency / concurrency):  {ideal:7.2f} s")
    out(f"  raw asyncio + litellm loop:             {raw_med:7.2f} s  {[round(t, 2) for t in raw_times]}")
    out(f"  workbench run (judge calls only):       {wb_med:7.2f} s  {[round(t, 2) for t in wb_times]}")
    out(f"  ratio workbench / raw:                  {wb_med / raw_med:7.2f}x")
    out(f"  ratio workbench / ideal:                {wb_med / ideal:7.2f}x")
    out(f"  overhead per judge call vs raw:         {(wb_med - raw_med) / n_calls * 1000:7.2f} ms")
    out(f"  fully cached re-run (one run):          {cached_s:7.2f} s, {cached_requests} requests, "
        f"{judgements} judgements recorded")


if __name__ == "__main__":
    main()
