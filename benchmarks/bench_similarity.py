"""Benchmark: workbench similarity metrics against the reference packages on PubMedQA-length pairs.

Builds ``--pairs`` (hypothesis, reference) pairs from PubMedQA (see ``benchmarks/pubmedqa.py`` for which
file: ``--data``, else the full labelled set beside the repo, else the 200 questions the repo ships): the
hypothesis is a context paragraph of one question, the reference the LONG_ANSWER of the same question on
the first pass over the paragraphs, of the next question on the second pass, and so on. From the second
pass on the paragraph's sentences are rotated, so hypotheses are (nearly all) distinct strings and no
whole-text cache can help; the references repeat, as they do across the cells of an evaluation grid.

Reference timings call the reference packages pair by pair (rouge_score's RougeScorer, sacrebleu's
sentence_bleu / sentence_chrf, rapidfuzz's Levenshtein.normalized_similarity); they keep no cache between
calls. "ours (batch)" calls the batch functions once per metric with our token caches emptied first, so
both sides start cold; "ours (per pair)" calls the single-pair functions (what a metric registered in the
workbench runs for each cell), also from empty caches. "ours (warm)" repeats the batch call with the
caches filled: what a second grid over the same texts costs, not a like-for-like comparison. Each of the
``--trials`` rounds times every side once, the order of the sides rotating from round to round; the
table shows medians over the rounds (all rounds are listed below it). Every row checks the scores:
"max |diff|" is the largest difference to the reference over all pairs. Imports are done before timing.

Usage: python benchmarks/bench_similarity.py [--pairs 10000] [--trials 3] [--data PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pubmedqa

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def build_pairs(path: Path, n_pairs: int) -> tuple[list[str], list[str]]:
    """(hypotheses, references): context paragraphs against LONG_ANSWERs, cycling to ``n_pairs``."""
    questions = pubmedqa.load(path)
    paragraphs = [(qi, p) for qi, q in enumerate(questions) for p in q["contexts"]]
    hyps: list[str] = []
    refs: list[str] = []
    for k in range(n_pairs):
        qi, para = paragraphs[k % len(paragraphs)]
        cycle = k // len(paragraphs)
        if cycle:
            sentences = _SENTENCE_END.split(para)
            shift = cycle % len(sentences)
            para = " ".join(sentences[shift:] + sentences[:shift])
        hyps.append(para)
        refs.append(questions[(qi + cycle) % len(questions)]["long_answer"])
    return hyps, refs


CPU: dict[str, list[float]] = {}


def timed(fn: Callable[[], Any], label: str = "") -> tuple[float, Any]:
    """Wall-clock seconds and result; the process CPU seconds go to CPU[label] (robust on a busy machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if label:
        CPU.setdefault(label, []).append(time.process_time() - cpu)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000, help="number of pairs (default 10000)")
    parser.add_argument("--trials", type=int, default=3, help="rounds of every side, order rotating (default 3)")
    parser.add_argument("--data", default=None, help="PubMedQA ori_pqal.json or a .jsonl like the shipped demo")
    parser.add_argument("--skip-per-pair", action="store_true", help="do not time the single-pair functions")
    args = parser.parse_args(argv)

    import numpy as np
    import sacrebleu
    from rapidfuzz.distance import Levenshtein
    from rouge_score import rouge_scorer

    from workbench.metrics import similarity as sim

    data = pubmedqa.resolve(args.data)
    hyps, refs = build_pairs(data, args.pairs)
    n = len(hyps)
    print(
        f"{n} pairs from {pubmedqa.shown(data)}: {len(set(hyps))} distinct hypotheses, {len(set(refs))} distinct "
        f"references, mean length {sum(map(len, hyps)) / n:.0f} / {sum(map(len, refs)) / n:.0f} chars"
    )
    # Imports and lazy loaders outside the timings (nltk alone takes ~1.5 s to import), on both sides.
    sim.rouge_tokenize("warming", True)
    sim.tokenize_13a("x")
    sim.edit_similarity_score("a", "b")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scorer.score("warming up", "warming")
    sacrebleu.sentence_bleu("a b", ["a b"])
    sacrebleu.sentence_chrf("a b", ["a b"])

    def cold(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            sim.clear_caches()  # timed with the call: emptying the caches costs microseconds
            return fn()

        return run

    batch: dict[str, Callable[[], Any]] = {
        "rouge1/2/L": lambda: sim.rouge_batch(hyps, refs, use_stemmer=True),
        "bleu": lambda: sim.bleu_batch(hyps, refs),
        "chrf": lambda: sim.chrf_batch(hyps, refs),
        "edit_similarity": lambda: sim.edit_similarity_batch(hyps, refs),
    }

    def per_pair_rouge() -> Any:
        return [(sim.rouge_n(h, r, 1), sim.rouge_n(h, r, 2), sim.rouge_l_score(h, r)) for h, r in zip(hyps, refs)]

    sides: dict[str, dict[str, Callable[[], Any]]] = {
        "reference": {
            "rouge1/2/L": lambda: [scorer.score(r, h) for h, r in zip(hyps, refs)],
            "bleu": lambda: [sacrebleu.sentence_bleu(h, [r]).score / 100 for h, r in zip(hyps, refs)],
            "chrf": lambda: [sacrebleu.sentence_chrf(h, [r]).score / 100 for h, r in zip(hyps, refs)],
            "edit_similarity": lambda: [Levenshtein.normalized_similarity(h, r) for h, r in zip(hyps, refs)],
        },
        "ours": {m: cold(fn) for m, fn in batch.items()},
    }
    if not args.skip_per_pair:
        sides["per pair"] = {
            "rouge1/2/L": cold(per_pair_rouge),
            "bleu": cold(lambda: [sim.sentence_bleu(h, r) for h, r in zip(hyps, refs)]),
            "chrf": cold(lambda: [sim.sentence_chrf(h, r) for h, r in zip(hyps, refs)]),
            "edit_similarity": cold(lambda: [sim.edit_similarity_score(h, r) for h, r in zip(hyps, refs)]),
        }
    names = list(sides["ours"])
    times: dict[str, dict[str, list[float]]] = {side: {m: [] for m in names} for side in sides}
    results: dict[str, dict[str, Any]] = {side: {} for side in sides}
    order = list(sides)
    for trial in range(args.trials):
        k = trial % len(order)
        for side in order[k:] + order[:k]:  # rotate which side goes first
            for m in names:
                took, results[side][m] = timed(sides[side][m], side)
                times[side][m].append(took)
    warm: dict[str, list[float]] = {}
    for m in names:  # after all trials; each metric's caches filled by an untimed call first
        sides["ours"][m]()
        warm[m] = [timed(batch[m])[0] for _ in range(args.trials)]

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def max_diff(name: str) -> float:
        ref = results["reference"][name]
        got = results["ours"][name]
        if name == "rouge1/2/L":
            worst = 0.0
            for rtype in ("rouge1", "rouge2", "rougeL"):
                for field in ("precision", "recall", "fmeasure"):
                    expected = np.array([getattr(s[rtype], field) for s in ref])
                    worst = max(worst, float(np.max(np.abs(expected - getattr(got[rtype], field)))))
            return worst
        return float(np.max(np.abs(np.asarray(ref, dtype=float) - got)))

    header = (
        f"{'metric':<16} {'reference s':>12} {'ours (batch) s':>15} {'ratio':>7} {'ours (warm) s':>14} "
        f"{'ours (per pair) s':>18} {'max |diff|':>11}"
    )
    print(f"medians of {args.trials} interleaved trials; batch and per-pair runs start from empty caches")
    print(header)
    print("-" * len(header))
    for name in names:
        ref_s = med(times["reference"][name])
        ours_s = med(times["ours"][name])
        pp = f"{med(times['per pair'][name]):>18.3f}" if "per pair" in times else f"{'-':>18}"
        print(
            f"{name:<16} {ref_s:>12.3f} {ours_s:>15.3f} {ref_s / ours_s:>6.1f}x {med(warm[name]):>14.3f} {pp} "
            f"{max_diff(name):>11.2e}"
        )
    total_ref = sum(med(times["reference"][m]) for m in names)
    total_ours = sum(med(times["ours"][m]) for m in names)
    total_warm = sum(med(warm[m]) for m in names)
    total_pp = f"{sum(med(times['per pair'][m]) for m in names):>18.3f}" if "per pair" in times else f"{'-':>18}"
    print("-" * len(header))
    print(
        f"{'total':<16} {total_ref:>12.3f} {total_ours:>15.3f} {total_ref / total_ours:>6.1f}x "
        f"{total_warm:>14.3f} {total_pp}"
    )
    print("all trials (s):")
    for side in sides:
        for m in names:
            print(f"  {side:<10} {m:<16} {[round(t, 3) for t in times[side][m]]}")
    cpu_ref, cpu_ours = sum(CPU["reference"]) / args.trials, sum(CPU["ours"]) / args.trials
    print(
        f"process CPU seconds per round (mean of {args.trials}): reference {cpu_ref:.3f}, ours (batch) "
        f"{cpu_ours:.3f} ({cpu_ref / cpu_ours:.1f}x); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
