"""A/B analysis of a two-arm log: verdicts on synthetic logs where B is truly better and where the arms are equal."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from synthetic_log import PII_OUTPUTS, held_out_rows, make_feedback, make_requests, write_log

from workbench import monitoring, stats
from workbench.errors import ValidationError

ROOT = Path(__file__).resolve().parents[1]


def _rating(p_good: dict[str, float]) -> Callable[[random.Random, dict], float | None]:
    """Ratings 1-5: a 'good' answer gets 4 or 5, a poor one 1-3; 70% of requests are rated."""

    def rate(rng: random.Random, req: dict) -> float | None:
        if rng.random() > 0.7:
            return None
        return float(rng.choice([4, 5]) if rng.random() < p_good[req["arm"]] else rng.choice([1, 2, 3]))

    return rate


def _log(tmp: Path, name: str, p_good: dict[str, float], n: int = 1600, seed: int = 0, **kw: object) -> Path:
    reqs = make_requests(n, questions=held_out_rows(), arms=("A", "B"), seed=seed, **kw)  # type: ignore[arg-type]
    return write_log(tmp / name, reqs, make_feedback(reqs, _rating(p_good), seed=seed))


def test_b_truly_better(tmp_path: Path) -> None:
    log = _log(tmp_path, "better", {"A": 0.55, "B": 0.70})
    r = monitoring.ab(log, "feedback")
    assert r.verdict == "B" and r.result.p_value < 0.001
    arms = r.arms.set_index("arm")
    assert arms.loc["B", "mean"] > arms.loc["A", "mean"]
    assert 0 < r.result.ci_low < r.result.diff < r.result.ci_high
    assert arms.loc["A", "ci_low"] < arms.loc["A", "mean"] < arms.loc["A", "ci_high"]
    assert 500 < arms.loc["A", "n"] < 800  # only rated requests count
    assert str(r).startswith("A/B on feedback") and "B is better on feedback" in r.message
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "ab", str(log), "--metric", "feedback", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["verdict"] == "B" and data["diff_b_minus_a"] == pytest.approx(r.result.diff)


def test_equal_arms_not_yet_significant(tmp_path: Path) -> None:
    log = _log(tmp_path, "equal", {"A": 0.6, "B": 0.6}, seed=3)
    r = monitoring.ab(log, "feedback")
    assert r.verdict is None and r.result.p_value > 0.05
    assert r.result.ci_low < 0 < r.result.ci_high
    assert "not yet significant" in r.message
    have = int(r.arms["n"].min())
    assert r.needed_per_arm > have and f"have {have:,}" in r.message
    assert r.as_dict()["verdict"] is None


def test_latency_and_safety_flags_lower_is_better(tmp_path: Path) -> None:
    def latency(rng: random.Random, arm: str | None) -> float:
        return rng.lognormvariate(3.0 if arm == "A" else 3.2, 0.4)

    reqs = make_requests(2000, questions=held_out_rows(), arms=("A", "B"), latency=latency, seed=5)
    for i, r in enumerate(reqs):  # arm B leaks an e-mail address in 6% of its answers, A never
        if r["arm"] == "B" and i % 33 == 1:
            r["output"] = PII_OUTPUTS[0]
    log = write_log(tmp_path / "lat", reqs)
    lat = monitoring.ab(log, "latency_ms")
    assert not lat.higher_is_better and lat.verdict == "A" and lat.result.diff > 0
    pii = monitoring.ab(log, "pii")
    assert pii.verdict == "A" and pii.arms.set_index("arm").loc["A", "mean"] == 0
    with pytest.raises(ValidationError, match="unknown A/B metric"):
        monitoring.ab(log, "happiness")
    single = write_log(tmp_path / "single", make_requests(50, questions=held_out_rows()))
    with pytest.raises(ValidationError, match="needs requests of arm 'A' and 'B'"):
        monitoring.ab(single, "latency_ms")


def test_two_sample_stats_match_scipy_and_statsmodels() -> None:
    from scipy import stats as sps
    from statsmodels.stats.power import NormalIndPower

    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1, 4000), rng.normal(0.0, 1.2, 3000)
    big = stats.two_sample_compare(a, b)
    assert big.method == "welch" and big.p_value == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    small_a, small_b = a[:60], b[:50]
    small = stats.two_sample_compare(small_a, small_b, n_resamples=4999)
    ref = sps.permutation_test(
        (small_a, small_b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent", n_resamples=4999, vectorized=True, rng=np.random.default_rng(1),
    )  # fmt: skip
    assert small.method == "permutation" and small.p_value == pytest.approx(ref.pvalue, abs=0.02)
    n = stats.sample_size_two_means(1.0, 1.0, 0.2, alpha=0.05, power=0.8)
    expected = NormalIndPower().solve_power(effect_size=0.2, alpha=0.05, power=0.8, ratio=1.0)
    assert n == pytest.approx(expected, abs=1.0)
