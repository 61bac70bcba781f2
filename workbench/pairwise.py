"""Pairwise judging of two variants of a stored run: which answer is better, case by case.

Why a separate step and not a metric: a metric sees one cell, a comparison needs two. Each pair is
judged twice with the answers' positions swapped (:func:`workbench.metrics.judge.pairwise`), because
LLM judges favour a position; a variant wins a case only when it wins in both orders.

Judge calls go through the same :class:`~workbench.judge.Judge` as judge metrics (response cache, gateway
retries, cost), and every prompt and reply is stored in the run's ``judgements`` table under the variant
``"<A> vs <B>"`` and the metric ``pairwise:<digest of judge, criteria and question>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workbench.errors import MetricError, ModelError, ModelFatalError, NotFoundError
from workbench.judge import Judge, judge_config
from workbench.llm import Gateway
from workbench.metrics.judge import DEFAULT_PAIRWISE_CRITERIA, JudgeParseError, pairwise
from workbench.store import dumps

if TYPE_CHECKING:
    import pandas as pd

    from workbench.runner import Run

__all__ = ["pairwise", "pairwise_run", "pairwise_summary"]

_COLUMNS = [
    "case_id",
    "repeat",
    "question",
    "answer_a",
    "answer_b",
    "winner",
    "consistent",
    "first_winner",
    "swapped_winner",
    "reason_first",
    "reason_swapped",
    "error",
]


def pairwise_run(
    run: Run,
    variant_a: str,
    variant_b: str,
    judge: str | Mapping[str, Any] | None = None,
    criteria: str = DEFAULT_PAIRWISE_CRITERIA,
    question: str | None = "question",
    concurrency: int = 8,
) -> pd.DataFrame:
    """Judge every case answered by both variants; one row per (case, repeat) with winner and reasons.

    ``judge``: litellm model string or dict (default ``$LLMOPS_JUDGE_MODEL``). ``question``: the dataset
    column shown to the judge as the question, or ``None`` for the rendered prompt (the last user message).
    ``winner`` is ``A``, ``B``, ``tie``, ``inconsistent`` (opposite verdicts when positions were swapped:
    position bias) or ``None`` when a cell failed. ``df.attrs["summary"]`` holds the counts
    (also :func:`pairwise_summary`).
    """
    import pandas as pd

    if variant_a == variant_b:
        raise MetricError("pairwise_run: compare two different variants")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise MetricError(f"pairwise_run: concurrency must be an integer >= 1, got {concurrency!r}")
    known = [v["variant"] for v in run.store.run_variants(run.run_id)]
    for v in (variant_a, variant_b):
        if v not in known:
            raise NotFoundError(f"run {run.run_id} has no variant {v!r}; its variants are {known}")
    config = judge_config(judge, "pairwise")
    res = run.results()
    a = res[res["variant"] == variant_a].set_index(["case_id", "repeat"])
    b = res[res["variant"] == variant_b].set_index(["case_id", "repeat"])
    keys = [k for k in a.index if k in b.index]
    cases: dict[str, dict[str, Any]] = {}
    if question is not None:
        info = run.info
        cases = {cid: json.loads(data) for cid, data in run.store.dataset_cases(info["dataset_hash"])}
        columns = sorted({c for case in cases.values() for c in case})
        if cases and question not in columns:
            raise MetricError(
                f"pairwise_run: the dataset has no column {question!r} (columns: {columns}); pass question=<column>, "
                "or question=None to show the judge the rendered prompt"
            )

    pairs: list[dict[str, Any]] = []
    for case_id, rep in keys:
        ra, rb = a.loc[(case_id, rep)], b.loc[(case_id, rep)]
        q = cases.get(case_id, {}).get(question) if question is not None else ra["prompt"]
        error = None
        for name, row in ((variant_a, ra), (variant_b, rb)):
            if isinstance(row["error"], str) or row["output"] is None:
                error = error or f"variant {name!r} has no output for this case: {row['error']}"
        pairs.append(
            {
                "case_id": case_id,
                "repeat": int(rep),
                "question": "" if q is None else str(q),
                "answer_a": ra["output"],
                "answer_b": rb["output"],
                "error": error,
            }
        )

    digest = hashlib.sha256(dumps({"j": config.hash, "c": criteria, "q": question}).encode()).hexdigest()[:8]
    label = f"pairwise:{digest}"
    pair_name = f"{variant_a} vs {variant_b}"
    rows = _judge_all(run, config, pairs, criteria, concurrency, label, pair_name)
    df = pd.DataFrame(rows, columns=_COLUMNS)
    df.attrs["summary"] = pairwise_summary(df) | {
        "variant_a": variant_a,
        "variant_b": variant_b,
        "judge": config.model,
        "criteria": criteria,
        "label": label,
    }
    return df


def pairwise_summary(df: pd.DataFrame) -> dict[str, Any]:
    """Counts of a :func:`pairwise_run` table: wins A / B, ties, inconsistent (position-bias flips), errors."""
    w = df["winner"]
    decided = int(w.isin(["A", "B", "tie", "inconsistent"]).sum())
    wins_a, wins_b = int((w == "A").sum()), int((w == "B").sum())
    return {
        "pairs": len(df),
        "wins_a": wins_a,
        "wins_b": wins_b,
        "ties": int((w == "tie").sum()),
        "inconsistent": int((w == "inconsistent").sum()),
        "errors": int(df["error"].notna().sum()),
        "win_rate_a": wins_a / decided if decided else None,
        "win_rate_b": wins_b / decided if decided else None,
    }


def _judge_all(
    run: Run, config: Any, pairs: list[dict[str, Any]], criteria: str, concurrency: int, label: str, pair_name: str
) -> list[dict[str, Any]]:
    """Judge the pairs with at most ``concurrency`` in flight, then store responses and judgements in one batch."""
    from workbench.runner import _run_coroutine

    store = run.store
    responses: list[dict[str, Any]] = []
    judgements: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    state: dict[str, Any] = {}

    async def main() -> None:
        state["loop"], state["task"] = asyncio.get_running_loop(), asyncio.current_task()
        cache = await asyncio.to_thread(store.responses_for_models, [config.model])
        base = Judge(config, Gateway(), cache, responses.append)
        sem = asyncio.Semaphore(concurrency)

        async def one(pair: dict[str, Any]) -> dict[str, Any]:
            row = {
                **pair,
                "winner": None,
                "consistent": None,
                "first_winner": None,
                "swapped_winner": None,
                "reason_first": None,
                "reason_swapped": None,
            }
            if pair["error"] is not None:
                return row
            judge = base.bind(label)
            try:
                async with sem:
                    result = await pairwise(judge, pair["question"], pair["answer_a"], pair["answer_b"], criteria)
                row.update(
                    winner=result["winner"],
                    consistent=result["consistent"],
                    first_winner=result["first_order"]["winner"],
                    swapped_winner=result["swapped_order"]["winner"],
                    reason_first=result["first_order"]["reason"],
                    reason_swapped=result["swapped_order"]["reason"],
                )
            except ModelFatalError:
                raise  # a bad key or unknown judge model: stop, as a run does
            except (JudgeParseError, ModelError) as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                judgements.extend(judge.rows(pair["case_id"], pair_name, pair["repeat"]))
            return row

        tasks = [asyncio.create_task(one(p)) for p in pairs]
        try:
            out.extend(await asyncio.gather(*tasks))
        finally:
            for t in tasks:
                t.cancel()
            if responses or judgements:
                await asyncio.to_thread(store.write_batch, run.run_id, [], [], responses, judgements=judgements)

    def cancel() -> None:
        loop, task = state.get("loop"), state.get("task")
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)

    _run_coroutine(main, cancel)
    return out
