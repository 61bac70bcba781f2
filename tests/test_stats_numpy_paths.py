"""The numpy bootstrap and Welch p-value in workbench.stats equal scipy's exactly (same random stream, same arithmetic).

They exist so that ``two_sample_compare`` (the monitor's retrieval-drift test, A/B above 5000 values) does not
import scipy.stats, which costs more than a second of CPU on a cold ``llmops monitor``. Exact equality, not
closeness: the figures a report shows must not move because of how they were computed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from workbench import stats


def _samples(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=n)
    if kind == "binary":
        return rng.integers(0, 2, size=n).astype(float)
    if kind == "skewed":
        return rng.exponential(size=n) * 1000
    return rng.normal(1e6, 1e-3, size=n)  # near-constant: cancellation in the variance


CASES = [(2, 3), (7, 5), (60, 80), (900, 1100), (2400, 2600), (5000, 7000), (20000, 15000)]


@pytest.mark.parametrize("na,nb", CASES)
@pytest.mark.parametrize("kind", ["normal", "binary", "skewed", "flat"])
def test_bootstrap_and_welch_equal_scipy(na: int, nb: int, kind: str) -> None:
    rng = np.random.default_rng(na * 31 + nb)
    a, b = _samples(kind, na, rng), _samples(kind, nb, rng) + (0.1 if kind != "binary" else 0)

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    for confidence, seed, batch in ((0.95, 0, max(1, 2_000_000 // (na + nb))), (0.9, 7, 333)):
        ref = sps.bootstrap(
            (a, b), mean_diff, n_resamples=2000, confidence_level=confidence, method="percentile",
            vectorized=True, batch=batch, rng=np.random.default_rng(seed),
        )  # fmt: skip
        ours = stats._bootstrap_diff_ci(a, b, 2000, confidence, batch, seed)
        assert ours == (float(ref.confidence_interval.low), float(ref.confidence_interval.high))
    assert stats._welch_p(a, b) == float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def test_two_sample_compare_welch_path_imports_no_scipy_stats() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from workbench import stats; rng = np.random.default_rng(0); "
        "r = stats.two_sample_compare(rng.normal(size=4000), rng.normal(size=4000)); "
        "assert r.method == 'welch' and 0 <= r.p_value <= 1; print('scipy.stats' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
