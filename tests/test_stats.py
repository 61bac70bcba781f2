"""Tests for workbench.stats: checked against scipy, exact enumeration and hand-worked examples."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from workbench import stats

# --------------------------------------------------------------------------------------------------
# mean_ci


def test_mean_ci_matches_scipy_bootstrap_with_same_seed() -> None:
    x = np.random.default_rng(3).exponential(2.0, size=80)
    for ours, theirs in (("percentile", "percentile"), ("bca", "BCa")):
        ci = stats.mean_ci(x, n_resamples=3000, seed=11, method=ours)  # type: ignore[arg-type]
        ref = sps.bootstrap(
            (x,), np.mean, n_resamples=3000, method=theirs, confidence_level=0.95, **stats._rng_kwargs(11)
        )
        assert ci.low == pytest.approx(ref.confidence_interval.low)
        assert ci.high == pytest.approx(ref.confidence_interval.high)
        assert ci.estimate == pytest.approx(x.mean())
        assert ci.method == f"bootstrap-{theirs}"


def test_mean_ci_on_large_normal_sample_covers_true_mean_and_agrees_with_t_interval() -> None:
    x = np.random.default_rng(0).normal(3.0, 1.0, size=2000)
    ci = stats.mean_ci(x)
    assert ci.low < 3.0 < ci.high
    t_low, t_high = sps.t.interval(0.95, df=x.size - 1, loc=x.mean(), scale=sps.sem(x))
    # For a normal sample the bootstrap and Student-t intervals agree closely.
    assert ci.low == pytest.approx(t_low, abs=0.01)
    assert ci.high == pytest.approx(t_high, abs=0.01)


def test_mean_ci_coverage_is_close_to_nominal() -> None:
    rng = np.random.default_rng(42)
    reps, covered = 120, 0
    for i in range(reps):
        x = rng.normal(0.0, 1.0, size=40)
        ci = stats.mean_ci(x, n_resamples=1000, seed=i)
        covered += ci.low <= 0.0 <= ci.high
    # Binomial(120, 0.95): mean 114, sd ~2.4. A broken interval lands far outside this band.
    assert 0.87 <= covered / reps <= 1.0


def test_mean_ci_wider_at_higher_confidence() -> None:
    x = np.random.default_rng(5).normal(size=60)
    ci90 = stats.mean_ci(x, confidence=0.90)
    ci99 = stats.mean_ci(x, confidence=0.99)
    assert ci99.low < ci90.low < ci90.high < ci99.high


def test_mean_ci_drops_nan_and_none_and_says_so() -> None:
    ci = stats.mean_ci([1.0, float("nan"), 2.0, None, 6.0])
    assert ci.n == 3
    assert ci.n_dropped == 2
    assert ci.estimate == pytest.approx(3.0)
    assert ci.reason is not None and "dropped 2" in ci.reason
    assert ci.low <= 3.0 <= ci.high


@pytest.mark.parametrize("values", [[], [float("nan")], [4.0], [4.0, None]])
def test_mean_ci_small_samples_give_nan_interval_with_reason(values: list) -> None:
    ci = stats.mean_ci(values)
    assert math.isnan(ci.low) and math.isnan(ci.high)
    assert ci.reason
    if ci.n == 1:
        assert ci.estimate == 4.0 and "n=1" in ci.reason
    else:
        assert ci.n == 0 and math.isnan(ci.estimate)


def test_mean_ci_constant_values_give_degenerate_interval() -> None:
    ci = stats.mean_ci([1, 1, 1, 1])
    assert (ci.estimate, ci.low, ci.high) == (1.0, 1.0, 1.0)
    assert ci.reason == "all values are equal"


def test_mean_ci_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="confidence"):
        stats.mean_ci([1, 2, 3], confidence=95)
    with pytest.raises(ValueError, match="numbers"):
        stats.mean_ci(["a", "b"])
    with pytest.raises(ValueError, match="CI method"):
        stats.mean_ci([1, 2, 3], method="wald")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# paired_compare


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def test_permutation_p_equals_scipy_with_same_seed() -> None:
    rng = np.random.default_rng(7)
    b = rng.uniform(0, 1, 40)
    a = b + rng.normal(0.05, 0.2, 40)
    res = stats.paired_compare(a, b, n_resamples=4999, seed=123)
    ref = sps.permutation_test(
        (a, b),
        _mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=4999,
        **stats._rng_kwargs(123),
    )
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.diff == pytest.approx(np.mean(a - b))
    assert res.method == "permutation"


def test_permutation_p_is_exact_for_small_n() -> None:
    # 2**8 = 256 sign patterns <= n_resamples, so the test must be exact: enumerate every sign flip.
    a = np.array([0.9, 0.7, 0.8, 0.6, 1.0, 0.4, 0.75, 0.85])
    b = np.array([0.5, 0.6, 0.9, 0.3, 0.7, 0.5, 0.55, 0.6])
    d = a - b
    null = np.array([np.mean(np.array(s) * d) for s in itertools.product([1, -1], repeat=d.size)])
    obs = d.mean()
    tol = 1e-12
    exact = min(1.0, 2 * min(np.mean(null <= obs + tol), np.mean(null >= obs - tol)))
    res = stats.paired_compare(a, b)
    assert res.p_value == pytest.approx(exact)


def test_clearly_better_variant_is_significant_with_both_methods() -> None:
    rng = np.random.default_rng(1)
    b = rng.uniform(0.3, 0.7, 100)
    a = b + 0.15 + rng.normal(0, 0.1, 100)
    for method in ("permutation", "bootstrap"):
        res = stats.paired_compare(a, b, method=method)  # type: ignore[arg-type]
        assert res.p_value < 0.01
        assert res.ci_low > 0 and res.ci_high > res.ci_low
        assert res.ci_low < res.diff < res.ci_high
        assert res.significant(0.05) and res.significant(0.01)
        assert res.mean_a == pytest.approx(a.mean()) and res.mean_b == pytest.approx(b.mean())


def test_swapping_variants_negates_the_difference_and_keeps_p() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.5, 0.2, 50), rng.normal(0.45, 0.2, 50)
    ab = stats.paired_compare(a, b, ci_method="percentile")
    ba = stats.paired_compare(b, a, ci_method="percentile")
    assert ba.diff == pytest.approx(-ab.diff)
    assert ba.p_value == pytest.approx(ab.p_value, abs=0.02)
    assert ba.ci_low == pytest.approx(-ab.ci_high, abs=1e-9)
    assert ba.ci_high == pytest.approx(-ab.ci_low, abs=1e-9)


@pytest.mark.parametrize("method", ["permutation", "bootstrap"])
def test_identical_variants_give_p_one_and_zero_interval(method: str) -> None:
    a = np.random.default_rng(4).uniform(size=30)
    res = stats.paired_compare(a, a.copy(), method=method)  # type: ignore[arg-type]
    assert res.p_value == 1.0
    assert (res.diff, res.ci_low, res.ci_high) == (0.0, 0.0, 0.0)
    assert not res.significant(0.05)


def test_no_true_difference_is_rarely_significant_bootstrap() -> None:
    # Calibration: under H0 the bootstrap test should reject about 5% of the time.
    rng = np.random.default_rng(10)
    rejections = 0
    reps = 200
    for i in range(reps):
        a, b = rng.normal(size=30), rng.normal(size=30)
        rejections += stats.paired_compare(a, b, method="bootstrap", n_resamples=999, seed=i).significant(0.05)
    assert rejections / reps < 0.11


def test_constant_nonzero_difference() -> None:
    a = np.arange(12, dtype=float)
    res = stats.paired_compare(a + 1, a)
    assert res.diff == 1.0 and res.ci_low == 1.0 and res.ci_high == 1.0
    # Exact test: only the all-positive and all-negative sign patterns are as extreme: 2 / 2**12.
    assert res.p_value == pytest.approx(2 / 2**12)


def test_paired_drops_pairs_with_missing_side() -> None:
    a = [0.9, None, 0.8, 0.7, float("nan"), 0.95, 0.85, 0.9]
    b = [0.5, 0.4, float("nan"), 0.6, 0.3, 0.5, 0.55, 0.45]
    res = stats.paired_compare(a, b)
    clean_a, clean_b = [0.9, 0.7, 0.95, 0.85, 0.9], [0.5, 0.6, 0.5, 0.55, 0.45]
    ref = stats.paired_compare(clean_a, clean_b)
    assert res.n == 5 and res.n_dropped == 3
    assert res.reason is not None and "dropped 3" in res.reason
    assert (res.diff, res.p_value, res.ci_low, res.ci_high) == pytest.approx(
        (ref.diff, ref.p_value, ref.ci_low, ref.ci_high)
    )
    assert res.mean_a == pytest.approx(np.mean(clean_a))


def test_paired_length_mismatch_says_the_lengths() -> None:
    with pytest.raises(ValueError, match=r"len\(a\)=3 and len\(b\)=2"):
        stats.paired_compare([1, 2, 3], [1, 2])


@pytest.mark.parametrize(("a", "b"), [([1.0], [0.0]), ([], []), ([1.0, None], [None, 2.0])])
def test_paired_too_few_pairs_gives_nan_with_reason(a: list, b: list) -> None:
    res = stats.paired_compare(a, b)
    assert math.isnan(res.p_value) and math.isnan(res.ci_low) and math.isnan(res.ci_high)
    assert res.reason and "at least 2" in res.reason
    assert not res.significant(0.05)


def test_paired_large_n_fast_path_agrees_with_scipy() -> None:
    # 6000 pairs (above the size where a vectorised sign-flip replaces scipy): 90 cases where only A
    # passes, 60 where only B passes, the rest tie. Under H0 the 150 non-zero differences have random
    # signs, so the exact two-sided p-value is 2 * P(Binomial(150, 1/2) >= 90) ~ 0.018.
    n = 6000
    a = np.zeros(n)
    b = np.zeros(n)
    a[:90] = 1
    b[90:150] = 1
    np.random.default_rng(8).shuffle(idx := np.arange(n))
    a, b = a[idx], b[idx]
    res = stats.paired_compare(a, b, n_resamples=4000)
    ref = sps.permutation_test(
        (a, b),
        _mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=4000,
        **stats._rng_kwargs(0),
    )
    exact = 2 * sps.binom.sf(89, 150, 0.5)
    # Same test, different random streams: p-values agree within Monte Carlo error (sd ~0.002 here).
    assert abs(res.p_value - ref.pvalue) < 0.008
    assert abs(res.p_value - exact) < 0.008
    assert res.diff == pytest.approx(30 / n)


def test_paired_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="permutation"):
        stats.paired_compare([1, 2], [2, 1], method="ttest")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# cohen_kappa


def test_kappa_textbook_example() -> None:
    # Wikipedia, "Cohen's kappa", simple example: 50 grant proposals, reader A / reader B
    # yes-yes 20, yes-no 5, no-yes 10, no-no 15 -> p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5, kappa = 0.4.
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert stats.cohen_kappa(a, b) == pytest.approx(0.4)


def test_weighted_kappa_hand_worked() -> None:
    # a = [0,0,1,1,2,2], b = [0,1,1,2,2,2]; marginals a = (2,2,2)/6, b = (1,2,3)/6.
    # Two disagreements, both at distance 1.
    # unweighted: p_o = 4/6, p_e = (2*1 + 2*2 + 2*3)/36 = 1/3 -> kappa = (2/3 - 1/3) / (2/3) = 0.5
    # linear:    observed = 2/6, expected = sum a_i b_j |i-j| / 36 = (16 + 8 + 8)/36 -> 1 - 12/32 = 0.625
    # quadratic: observed = 2/6, expected = sum a_i b_j (i-j)^2 / 36 = (28 + 8 + 12)/36 -> 1 - 12/48 = 0.75
    a, b = [0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 2]
    assert stats.cohen_kappa(a, b) == pytest.approx(0.5)
    assert stats.cohen_kappa(a, b, weights="linear") == pytest.approx(0.625)
    assert stats.cohen_kappa(a, b, weights="quadratic") == pytest.approx(0.75)


def _kappa_agreement_form(a: list, b: list, cats: list, weights: str | None) -> float:
    """Independent formulation: agreement weights and kappa_w = (p_o - p_e) / (1 - p_e) (Cohen 1968)."""
    k, n = len(cats), len(a)
    pos = {c: i for i, c in enumerate(cats)}

    def agree(i: int, j: int) -> float:
        if weights is None:
            return 1.0 if i == j else 0.0
        dist = abs(i - j) / (k - 1)
        return 1 - dist if weights == "linear" else 1 - dist**2

    p_o = sum(agree(pos[x], pos[y]) for x, y in zip(a, b, strict=True)) / n
    ma = [sum(pos[x] == i for x in a) / n for i in range(k)]
    mb = [sum(pos[y] == j for y in b) / n for j in range(k)]
    p_e = sum(agree(i, j) * ma[i] * mb[j] for i in range(k) for j in range(k))
    return (p_o - p_e) / (1 - p_e)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_matches_direct_formula_on_random_ratings(weights: str | None) -> None:
    rng = np.random.default_rng(12)
    a = rng.integers(1, 6, 200)
    b = np.clip(a + rng.integers(-1, 2, 200), 1, 5)
    expected = _kappa_agreement_form(a.tolist(), b.tolist(), [1, 2, 3, 4, 5], weights)
    assert stats.cohen_kappa(a, b, weights=weights) == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_kappa_matches_sklearn(weights: str | None) -> None:
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(13)
    a = rng.integers(0, 4, 150)
    b = np.where(rng.random(150) < 0.6, a, rng.integers(0, 4, 150))
    assert stats.cohen_kappa(a, b, weights=weights) == pytest.approx(  # type: ignore[arg-type]
        skm.cohen_kappa_score(a, b, weights=weights)
    )


def test_kappa_binary_weighting_makes_no_difference() -> None:
    a = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
    b = [1, 0, 0, 1, 0, 1, 1, 0, 1, 0]
    k = stats.cohen_kappa(a, b)
    assert stats.cohen_kappa(a, b, weights="linear") == pytest.approx(k)
    assert stats.cohen_kappa(a, b, weights="quadratic") == pytest.approx(k)


def test_kappa_uses_given_label_order_for_weights() -> None:
    a = ["bad", "ok", "good", "good", "ok"]
    b = ["ok", "ok", "good", "ok", "bad"]
    order = ["bad", "ok", "good"]
    as_numbers = {"bad": 0, "ok": 1, "good": 2}
    ours = stats.cohen_kappa(a, b, weights="linear", labels=order)
    ref = stats.cohen_kappa([as_numbers[x] for x in a], [as_numbers[x] for x in b], weights="linear")
    assert ours == pytest.approx(ref)
    # alphabetical order (bad, good, ok) is a different scale and gives a different answer
    assert stats.cohen_kappa(a, b, weights="linear") != pytest.approx(ours)
    with pytest.raises(ValueError, match="not in labels"):
        stats.cohen_kappa(a, b, labels=["bad", "ok"])


def test_kappa_edge_cases() -> None:
    assert stats.cohen_kappa([1, 2, 3], [1, 2, 3]) == 1.0
    assert math.isnan(stats.cohen_kappa(["x", "x"], ["x", "x"]))  # chance agreement is 1: undefined
    assert math.isnan(stats.cohen_kappa([], []))
    # missing ratings are dropped pairwise
    assert stats.cohen_kappa([1, None, 2, 1], [1, 2, float("nan"), 2]) == pytest.approx(
        stats.cohen_kappa([1, 1], [1, 2])
    )
    with pytest.raises(ValueError, match=r"len\(a\)=2 and len\(b\)=3"):
        stats.cohen_kappa([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="weights"):
        stats.cohen_kappa([1, 2], [1, 2], weights="cubic")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# spearman


def test_spearman_equals_scipy_including_ties() -> None:
    rng = np.random.default_rng(14)
    a = rng.integers(1, 6, 60).astype(float)
    b = a + rng.normal(0, 1.5, 60)
    ref = sps.spearmanr(a, b)
    res = stats.spearman(a, b)
    assert res.rho == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.n == 60


def test_spearman_drops_missing_pairs_like_scipy_omit() -> None:
    a = [1.0, 2.0, None, 4.0, 5.0, 6.0, float("nan")]
    b = [2.0, 1.0, 3.0, 5.0, float("nan"), 7.0, 1.0]
    res = stats.spearman(a, b)
    ref = sps.spearmanr([1.0, 2.0, 4.0, 6.0], [2.0, 1.0, 5.0, 7.0])
    assert res.n == 4 and res.n_dropped == 3
    assert res.rho == pytest.approx(ref.statistic)


def test_spearman_is_rank_based_and_handles_degenerate_input() -> None:
    x = np.linspace(0.1, 3, 20)
    assert stats.spearman(x, np.exp(x)).rho == pytest.approx(1.0)
    assert stats.spearman(x, -(x**3)).rho == pytest.approx(-1.0)
    const = stats.spearman(x, np.ones(20))
    assert math.isnan(const.rho) and const.reason and "constant" in const.reason
    assert math.isnan(stats.spearman([1, 2], [2, 1]).rho)
    with pytest.raises(ValueError, match=r"len\(a\)=2 and len\(b\)=1"):
        stats.spearman([1, 2], [1])


# --------------------------------------------------------------------------------------------------
# holm


def test_holm_hand_worked() -> None:
    # m = 4, sorted p: 0.005, 0.01, 0.03, 0.04 -> 4*0.005=0.02, 3*0.01=0.03, 2*0.03=0.06, 1*0.04=0.04
    # running max -> 0.02, 0.03, 0.06, 0.06; back in input order:
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def _holm_rejections(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's procedure as published: reject H_(1..k-1) where k is the first p_(k) > alpha / (m - k + 1)."""
    m = p.size
    order = np.argsort(p)
    reject = np.zeros(m, dtype=bool)
    for rank, i in enumerate(order):
        if p[i] > alpha / (m - rank):
            break
        reject[i] = True
    return reject


def test_holm_adjusted_p_reproduces_the_step_down_procedure() -> None:
    rng = np.random.default_rng(15)
    for _ in range(200):
        p = rng.uniform(0, 0.2, rng.integers(1, 8))
        adjusted = stats.holm(p)
        assert np.all(adjusted >= p - 1e-15) and np.all(adjusted <= 1)
        for alpha in (0.01, 0.05, 0.1):
            np.testing.assert_array_equal(adjusted <= alpha, _holm_rejections(p, alpha))


def test_holm_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.array([0.001, 0.2, 0.013, 0.04, 0.5, 0.03])
    np.testing.assert_allclose(stats.holm(p), multitest.multipletests(p, method="holm")[1])


def test_holm_edge_cases() -> None:
    np.testing.assert_allclose(stats.holm([0.03]), [0.03])
    assert stats.holm([]).size == 0
    out = stats.holm([0.01, float("nan"), 0.04])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])  # m = 2: NaN does not count
    np.testing.assert_allclose(stats.holm([0.6, 0.7]), [1.0, 1.0])
    with pytest.raises(ValueError, match="between 0 and 1"):
        stats.holm([0.5, 1.5])


def test_import_does_not_load_scipy() -> None:
    import subprocess
    import sys

    code = "import sys, workbench.stats; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_accepts_pandas_nullable_columns() -> None:
    pd = pytest.importorskip("pandas")
    scores = pd.Series([0.2, None, 0.6, 0.9], dtype="Float64")
    ci = stats.mean_ci(scores)
    assert ci.n == 3 and ci.n_dropped == 1
    assert ci.estimate == pytest.approx(np.mean([0.2, 0.6, 0.9]))
    res = stats.paired_compare(pd.Series([1, 0, None, 1], dtype="Int64"), [0, 0, 1, 0])
    assert res.n == 3 and res.diff == pytest.approx(2 / 3)
    kappa = stats.cohen_kappa(pd.Series(["a", "b", None, "a"], dtype="string"), ["a", "b", "b", "a"])
    assert kappa == 1.0
