"""Benchmark: workbench similarity metrics against the reference packages on PubMedQA-length pairs.

Builds ``--pairs`` (hypothesis, reference) pairs from PubMedQA (``ori_pqal.json``): the hypothesis is a
context paragraph of one question, the reference the LONG_ANSWER of the same question on the first
pass over the paragraphs, of the next question on the second pass, and so on. From the second pass on
the paragraph's sentences are rotated, so hypotheses are (nearly all) distinct strings and no
whole-text cache can help; the references repeat, as they do across the cells of an evaluation grid.

Reference timings call the reference packages pair by pair (rouge_score's RougeScorer, sacrebleu's
sentence_bleu / sentence_chrf, rapidfuzz's Levenshtein.normalized_similarity). "ours (batch)" calls
the batch functions once per metric in a fresh process, with empty token caches; "ours (warm)"
repeats it with the caches filled; "ours (per pair)" calls the single-pair functions (what a metric
registered in the workbench runs for each cell) after the batch runs. Every row checks the scores:
"max |diff|" is the largest difference to the reference over all pairs. Imports are done before timing.

Usage: python benchmarks/bench_similarity.py [--pairs 10000] [--data /work/shared/data/pubmedqa/ori_pqal.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATA = "/work/shared/data/pubmedqa/ori_pqal.json"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def build_pairs(path: str, n_pairs: int) -> tuple[list[str], list[str]]:
    """(hypotheses, references): context paragraphs against LONG_ANSWERs, cycling to ``n_pairs``."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    questions = list(data.values())
    paragraphs = [(qi, p) for qi, q in enumerate(questions) for p in q["CONTEXTS"]]
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
        refs.append(questions[(qi + cycle) % len(questions)]["LONG_ANSWER"])
    return hyps, refs


CPU: dict[str, float] = {}


def timed(fn: Callable[[], Any], label: str = "") -> tuple[float, Any]:
    """Wall-clock seconds and result; the process CPU seconds go to CPU[label] (robust on a busy machine)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    if label:
        CPU[label] = CPU.get(label, 0.0) + time.process_time() - cpu
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000, help="number of pairs (default 10000)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="path to PubMedQA ori_pqal.json")
    parser.add_argument("--skip-per-pair", action="store_true", help="do not time the single-pair functions")
    args = parser.parse_args(argv)

    import numpy as np
    import sacrebleu
    from rapidfuzz.distance import Levenshtein
    from rouge_score import rouge_scorer

    from workbench.metrics import similarity as sim

    hyps, refs = build_pairs(args.data, args.pairs)
    n = len(hyps)
    print(
        f"{n} pairs from {args.data}: {len(set(hyps))} distinct hypotheses, {len(set(refs))} distinct "
        f"references, mean length {sum(map(len, hyps)) / n:.0f} / {sum(map(len, refs)) / n:.0f} chars"
    )
    # Imports and lazy loaders outside the timings (nltk alone takes ~1.5 s to import).
    sim.rouge_tokenize("warming", True)
    sim.tokenize_13a("x")
    sim.edit_similarity_score("a", "b")
    sim.clear_caches()

    def ours_rouge() -> Any:
        return sim.rouge_batch(hyps, refs, use_stemmer=True)

    def ours_bleu() -> Any:
        return sim.bleu_batch(hyps, refs)

    def ours_chrf() -> Any:
        return sim.chrf_batch(hyps, refs)

    def ours_edit() -> Any:
        return sim.edit_similarity_batch(hyps, refs)

    ours = {"rouge1/2/L": ours_rouge, "bleu": ours_bleu, "chrf": ours_chrf, "edit_similarity": ours_edit}
    cold = {name: timed(fn, "ours") for name, fn in ours.items()}
    warm = {name: timed(fn)[0] for name, fn in ours.items()}

    def per_pair_rouge() -> Any:
        return [(sim.rouge_n(h, r, 1), sim.rouge_n(h, r, 2), sim.rouge_l_score(h, r)) for h, r in zip(hyps, refs)]

    per_pair: dict[str, float] = {}
    if not args.skip_per_pair:
        per_pair = {
            "rouge1/2/L": timed(per_pair_rouge)[0],
            "bleu": timed(lambda: [sim.sentence_bleu(h, r) for h, r in zip(hyps, refs)])[0],
            "chrf": timed(lambda: [sim.sentence_chrf(h, r) for h, r in zip(hyps, refs)])[0],
            "edit_similarity": timed(lambda: [sim.edit_similarity_score(h, r) for h, r in zip(hyps, refs)])[0],
        }

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    ref_times = {
        "rouge1/2/L": timed(lambda: [scorer.score(r, h) for h, r in zip(hyps, refs)], "reference"),
        "bleu": timed(lambda: [sacrebleu.sentence_bleu(h, [r]).score / 100 for h, r in zip(hyps, refs)], "reference"),
        "chrf": timed(lambda: [sacrebleu.sentence_chrf(h, [r]).score / 100 for h, r in zip(hyps, refs)], "reference"),
        "edit_similarity": timed(
            lambda: [Levenshtein.normalized_similarity(h, r) for h, r in zip(hyps, refs)], "reference"
        ),
    }

    def max_diff(name: str) -> float:
        ref = ref_times[name][1]
        got = cold[name][1]
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
    print(header)
    print("-" * len(header))
    for name in ours:
        ref_s = ref_times[name][0]
        ours_s = cold[name][0]
        pp = f"{per_pair[name]:>18.3f}" if per_pair else f"{'-':>18}"
        print(
            f"{name:<16} {ref_s:>12.3f} {ours_s:>15.3f} {ref_s / ours_s:>6.1f}x {warm[name]:>14.3f} {pp} "
            f"{max_diff(name):>11.2e}"
        )
    total_ref = sum(t for t, _ in ref_times.values())
    total_cold = sum(t for t, _ in cold.values())
    total_warm = sum(warm.values())
    total_pp = f"{sum(per_pair.values()):>18.3f}" if per_pair else f"{'-':>18}"
    print("-" * len(header))
    print(
        f"{'total':<16} {total_ref:>12.3f} {total_cold:>15.3f} {total_ref / total_cold:>6.1f}x "
        f"{total_warm:>14.3f} {total_pp}"
    )
    print(
        f"process CPU seconds: reference {CPU['reference']:.3f}, ours (batch) {CPU['ours']:.3f} "
        f"({CPU['reference'] / CPU['ours']:.1f}x); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
