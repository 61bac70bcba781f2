"""Statistics for comparing variants: confidence intervals, paired tests, agreement, multiple testing.

Pure functions over arrays; no workspace access. ``run.compare(a, b)`` and ``run.winner(...)`` build on
them. Every function drops missing values (``NaN``/``None``) the same way and says how many it dropped,
and small samples give ``NaN`` results with a ``reason`` instead of raising, so one empty variant does
not break a whole comparison table.

scipy is imported inside the functions that need it so ``import workbench`` stays fast.

References:

- Efron & Tibshirani (1993), *An Introduction to the Bootstrap*: percentile (ch. 13) and BCa
  (ch. 14) intervals, as implemented by :func:`scipy.stats.bootstrap`.
- Fisher (1935) / Pitman (1937) paired randomisation test: under H0 "no difference" each pair's
  labels are exchangeable, i.e. the sign of each difference is a fair coin
  (:func:`scipy.stats.permutation_test` with ``permutation_type="samples"``).
- Hall & Wilson (1991), "Two guidelines for bootstrap hypothesis testing", *Biometrics* 47:757-762:
  the bootstrap p-value compares ``|mean* - mean|`` with ``|mean|``.
- Cohen (1960) kappa; Cohen (1968) weighted kappa.
- Holm (1979), "A simple sequentially rejective multiple test procedure", *Scand. J. Statist.* 6:65-70.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "CI",
    "Correlation",
    "PairedResult",
    "ShiftResult",
    "TwoSampleResult",
    "cohen_kappa",
    "holm",
    "mean_ci",
    "mmd_test",
    "paired_compare",
    "sample_size_two_means",
    "spearman",
    "two_sample_compare",
]

CIMethod = Literal["auto", "bca", "percentile", "basic"]

# BCa needs a jackknife (n leave-one-out means, O(n^2) work); above this size percentile and BCa
# intervals agree to within noise, so "auto" switches to percentile.
_BCA_MAX_N = 5000
# Cap on the number of floats scipy materialises per vectorised batch of resamples.
_BATCH_ELEMENTS = 2_000_000
# scipy's paired permutation_test costs ~1 s per 3000 pairs at 9999 resamples; above this size
# an equivalent vectorised sign-flip is used (see _sign_flip_p).
_SCIPY_PERMUTATION_MAX_N = 5000


@dataclass(frozen=True)
class CI:
    """A point estimate with a confidence interval, and why the interval is NaN when it is."""

    estimate: float
    low: float
    high: float
    n: int
    method: str
    confidence: float = 0.95
    n_dropped: int = 0
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) for storing in the workspace or showing in a table."""
        return asdict(self)


@dataclass(frozen=True)
class PairedResult:
    """Paired comparison of two variants scored on the same cases; ``diff`` is ``mean(a - b)``."""

    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    method: str
    confidence: float = 0.95
    ci_method: str = "percentile"
    n_dropped: int = 0
    reason: str | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the two-sided p-value is below ``alpha`` (False when it is NaN)."""
        return bool(not math.isnan(self.p_value) and self.p_value < alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) for storing in the workspace or showing in a table."""
        return asdict(self)


@dataclass(frozen=True)
class Correlation:
    """A rank correlation with its two-sided p-value."""

    rho: float
    p_value: float
    n: int
    n_dropped: int = 0
    reason: str | None = None


# --------------------------------------------------------------------------------------------------
# helpers


def _is_missing(v: Any) -> bool:
    """None, float NaN, and pandas' NA/NaT (recognised by type name so pandas is never imported)."""
    if v is None or type(v).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(v, (float, np.floating)) and bool(np.isnan(v))


def _as_float_array(values: Any, name: str) -> np.ndarray:
    """1-D float array; missing values (None, NaN, pandas NA) become NaN. Raises ValueError for non-numbers."""
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if arr.dtype.kind not in "biuf":
        try:
            arr = np.asarray([math.nan if _is_missing(v) else float(v) for v in arr.ravel()]).reshape(arr.shape)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must contain numbers (or None/NaN for missing): {exc}") from None
    arr = arr.astype(float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_lengths(a: Sequence[Any] | np.ndarray, b: Sequence[Any] | np.ndarray, what: str) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"{what} needs two sequences of the same length (one value per case), "
            f"got len(a)={len(a)} and len(b)={len(b)}"
        )


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), got {confidence!r}")


def _rng_kwargs(seed: int | None) -> dict[str, Any]:
    """scipy >= 1.15 takes ``rng=``; older versions only ``random_state=``."""
    import inspect

    from scipy import stats

    gen = np.random.default_rng(seed)
    if "rng" in inspect.signature(stats.bootstrap).parameters:
        return {"rng": gen}
    return {"random_state": gen}  # pragma: no cover - old scipy


def _resolve_ci_method(method: str, n: int) -> str:
    m = method.lower()
    if m == "auto":
        return "BCa" if n <= _BCA_MAX_N else "percentile"
    if m == "bca":
        return "BCa"
    if m in ("percentile", "basic"):
        return m
    raise ValueError(f"unknown CI method {method!r}; use 'auto', 'bca', 'percentile' or 'basic'")


def _bootstrap_mean(
    x: np.ndarray, confidence: float, n_resamples: int, seed: int | None, method: str
) -> tuple[float, float, str, np.ndarray]:
    """Bootstrap CI of ``mean(x)`` via scipy; falls back to percentile when BCa is undefined."""
    import warnings

    from scipy import stats

    resolved = _resolve_ci_method(method, len(x))
    batch = max(1, _BATCH_ELEMENTS // max(1, len(x)))

    def run(m: str) -> Any:
        with warnings.catch_warnings():
            # BCa warns (and returns NaN) on degenerate jackknife distributions; handled below.
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", getattr(stats, "DegenerateDataWarning", RuntimeWarning))
            return stats.bootstrap(
                (x,),
                np.mean,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method=m,
                vectorized=True,
                batch=batch,
                **_rng_kwargs(seed),
            )

    res = run(resolved)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if resolved == "BCa" and not (math.isfinite(low) and math.isfinite(high)):
        resolved = "percentile"
        res = run(resolved)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high, f"bootstrap-{resolved}", np.asarray(res.bootstrap_distribution)


# --------------------------------------------------------------------------------------------------
# confidence interval of a mean


def mean_ci(
    values: Sequence[Any] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
    method: CIMethod = "auto",
) -> CI:
    """Bootstrap confidence interval of the mean (Efron & Tibshirani 1993, via ``scipy.stats.bootstrap``).

    The bootstrap makes no normality assumption, which matters for 0/1 pass rates and bounded judge
    scores. ``method="auto"`` uses BCa (ch. 14; better coverage for skewed data) up to 5000 values
    and the percentile interval above. NaN/None values are dropped and counted in ``n_dropped``.
    With fewer than two values the interval is ``(nan, nan)`` and ``reason`` says why; when every
    value is the same the interval is that value (there is nothing to resample).
    """
    _check_confidence(confidence)
    arr = _as_float_array(values, "values")
    finite = arr[~np.isnan(arr)]
    dropped = int(arr.size - finite.size)
    note = f"dropped {dropped} missing value(s)" if dropped else None
    n = int(finite.size)

    def reason(text: str) -> str:
        return f"{text}; {note}" if note else text

    if n == 0:
        return CI(math.nan, math.nan, math.nan, 0, "none", confidence, dropped, reason("no values"))
    estimate = float(finite.mean())
    if n == 1:
        return CI(estimate, math.nan, math.nan, 1, "none", confidence, dropped, reason("n=1: need at least 2 values"))
    if np.all(finite == finite[0]):
        return CI(estimate, estimate, estimate, n, "constant", confidence, dropped, reason("all values are equal"))
    low, high, used, _ = _bootstrap_mean(finite, confidence, n_resamples, seed, method)
    return CI(estimate, low, high, n, used, confidence, dropped, note)


# --------------------------------------------------------------------------------------------------
# paired comparison


def paired_compare(
    a: Sequence[Any] | np.ndarray,
    b: Sequence[Any] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int | None = 0,
    method: Literal["permutation", "bootstrap"] = "permutation",
    ci_method: CIMethod = "auto",
) -> PairedResult:
    """Compare two variants scored on the same cases: is ``mean(a - b)`` different from 0?

    Pairs where either score is missing are dropped (``n_dropped``). The CI is a paired bootstrap of
    the mean difference (resampling cases, not scores, so per-case difficulty cancels). The p-value
    is two-sided:

    - ``"permutation"`` (default): the paired randomisation test. Under H0 the two scores of a case
      are exchangeable, so each difference's sign is flipped at random
      (``scipy.stats.permutation_test(..., permutation_type="samples")``); exact when
      ``2**n <= n_resamples``, otherwise Monte Carlo with ``p = (k + 1) / (n_resamples + 1)``.
      Use ``np.random.default_rng(seed)`` with scipy to reproduce it.
    - ``"bootstrap"``: Hall & Wilson (1991) bootstrap test from the same resamples as the CI,
      ``p = (#{|mean* - mean| >= |mean|} + 1) / (n_resamples + 1)``.

    All-zero differences give ``p = 1`` and CI ``(0, 0)``. Fewer than two pairs gives NaN with a reason.
    """
    _check_confidence(confidence)
    if method not in ("permutation", "bootstrap"):
        raise ValueError(f"unknown method {method!r}; use 'permutation' or 'bootstrap'")
    _check_lengths(a, b, "paired_compare")
    xa = _as_float_array(a, "a")
    xb = _as_float_array(b, "b")
    keep = ~(np.isnan(xa) | np.isnan(xb))
    xa, xb = xa[keep], xb[keep]
    dropped = int(keep.size - keep.sum())
    note = f"dropped {dropped} pair(s) with a missing score" if dropped else None
    n = int(xa.size)

    def with_note(text: str) -> str:
        return f"{text}; {note}" if note else text

    mean_a = float(xa.mean()) if n else math.nan
    mean_b = float(xb.mean()) if n else math.nan
    d = xa - xb
    diff = float(d.mean()) if n else math.nan
    if n < 2:
        return PairedResult(
            mean_a=mean_a, mean_b=mean_b, diff=diff, ci_low=math.nan, ci_high=math.nan, p_value=math.nan,
            n=n, method=method, confidence=confidence, ci_method="none", n_dropped=dropped,
            reason=with_note(f"n={n}: need at least 2 complete pairs"),
        )  # fmt: skip
    boot: np.ndarray | None = None
    if np.all(d == d[0]):
        if d[0] == 0:
            return PairedResult(
                mean_a=mean_a, mean_b=mean_b, diff=0.0, ci_low=0.0, ci_high=0.0, p_value=1.0,
                n=n, method=method, confidence=confidence, ci_method="constant", n_dropped=dropped,
                reason=with_note("all differences are zero"),
            )  # fmt: skip
        ci_low = ci_high = diff
        ci_used = "constant"
    else:
        ci_low, ci_high, ci_used, boot = _bootstrap_mean(d, confidence, n_resamples, seed, ci_method)

    if method == "permutation":
        p = _paired_permutation_p(xa, xb, n_resamples, seed)
    else:
        if boot is None:  # every difference equal and non-zero: no resample reaches 0
            p = 1.0 / (n_resamples + 1)
        else:
            extreme = int(np.count_nonzero(np.abs(boot - diff) >= abs(diff) * (1 - 1e-12)))
            p = min(1.0, (extreme + 1) / (boot.size + 1))
    return PairedResult(
        mean_a=mean_a, mean_b=mean_b, diff=diff, ci_low=ci_low, ci_high=ci_high, p_value=p,
        n=n, method=method, confidence=confidence, ci_method=ci_used, n_dropped=dropped, reason=note,
    )  # fmt: skip


def _paired_permutation_p(xa: np.ndarray, xb: np.ndarray, n_resamples: int, seed: int | None) -> float:
    """Two-sided paired permutation p-value; scipy up to 5000 pairs, an equivalent sign-flip above."""
    if xa.size > _SCIPY_PERMUTATION_MAX_N and 2 ** min(xa.size, 64) > n_resamples:
        return _sign_flip_p(xa - xb, n_resamples, seed)
    from scipy import stats

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    res = stats.permutation_test(
        (xa, xb),
        mean_diff,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        batch=max(1, _BATCH_ELEMENTS // max(1, xa.size)),
        **_rng_kwargs(seed),
    )
    return float(min(1.0, res.pvalue))


def _sign_flip_p(d: np.ndarray, n_resamples: int, seed: int | None) -> float:
    """Monte Carlo sign-flip test, the same null and p-value rule as scipy's ``permutation_test``.

    scipy draws a full permutation per pair and per resample, which takes ~15 s for 20,000 pairs;
    flipping signs with one matrix product per batch is the same test an order of magnitude faster.
    Only the random stream differs from scipy's.
    """
    rng = np.random.default_rng(seed)
    n = d.size
    observed = float(d.mean())
    total = float(d.sum())
    batch = max(1, _BATCH_ELEMENTS // n)
    null = np.empty(n_resamples)
    for start in range(0, n_resamples, batch):
        m = min(batch, n_resamples - start)
        flips = rng.integers(0, 2, size=(m, n), dtype=np.int8)
        # mean(s * d) with s = 1 - 2 * flip
        null[start : start + m] = (total - 2.0 * (flips @ d)) / n
    gamma = abs(np.finfo(float).eps * 100 * observed)
    less = (np.count_nonzero(null <= observed + gamma) + 1.0) / (n_resamples + 1.0)
    greater = (np.count_nonzero(null >= observed - gamma) + 1.0) / (n_resamples + 1.0)
    return float(min(1.0, 2.0 * min(less, greater)))


# --------------------------------------------------------------------------------------------------
# agreement and correlation


def _drop_missing_pairs(a: Sequence[Any], b: Sequence[Any]) -> tuple[list[Any], list[Any], int]:
    pa: list[Any] = []
    pb: list[Any] = []
    for x, y in zip(a, b, strict=True):
        if _is_missing(x) or _is_missing(y):
            continue
        pa.append(x.item() if isinstance(x, np.generic) else x)
        pb.append(y.item() if isinstance(y, np.generic) else y)
    return pa, pb, len(a) - len(pa)


def cohen_kappa(
    a: Sequence[Hashable] | np.ndarray,
    b: Sequence[Hashable] | np.ndarray,
    weights: Literal["linear", "quadratic"] | None = None,
    labels: Sequence[Hashable] | None = None,
) -> float:
    """Cohen's kappa between two raters (e.g. LLM judge vs human) on categorical labels.

    ``kappa = 1 - sum(w * O) / sum(w * E)`` with O the observed and E the chance-expected
    (product of marginals) contingency proportions. Unweighted (Cohen 1960): ``w = 0`` on the
    diagonal and 1 elsewhere. Weighted (Cohen 1968) for ordinal scales: ``w = |i - j|`` ("linear")
    or ``(i - j)**2`` ("quadratic"), where i, j are positions in ``labels`` (default: the sorted
    labels seen), the same convention as ``sklearn.metrics.cohen_kappa_score``.

    Pairs with a missing rating are dropped. Returns NaN when kappa is undefined (no pairs, or
    chance disagreement is zero because both raters used one single label).
    """
    _check_lengths(a, b, "cohen_kappa")
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    ra, rb, _ = _drop_missing_pairs(list(a), list(b))
    if not ra:
        return math.nan
    if labels is None:
        seen = set(ra) | set(rb)
        try:
            cats = sorted(seen)
        except TypeError:  # mixed types: order by their text
            cats = sorted(seen, key=str)
    else:
        cats = list(labels)
        unknown = (set(ra) | set(rb)) - set(cats)
        if unknown:
            raise ValueError(f"ratings {sorted(map(str, unknown))} are not in labels {cats!r}")
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    observed = np.zeros((k, k))
    for x, y in zip(ra, rb, strict=True):
        observed[index[x], index[y]] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((k, k))
    if weights is None:
        w = (i != j).astype(float)
    elif weights == "linear":
        w = np.abs(i - j).astype(float)
    else:
        w = ((i - j) ** 2).astype(float)
    denom = float((w * expected).sum())
    if denom == 0:
        return math.nan
    return float(1.0 - (w * observed).sum() / denom)


def spearman(a: Sequence[Any] | np.ndarray, b: Sequence[Any] | np.ndarray) -> Correlation:
    """Spearman rank correlation (``scipy.stats.spearmanr``), e.g. judge score vs human score.

    Rank-based, so it only asks whether the judge orders cases like the human does, not whether
    the scales match. Pairs with a missing value are dropped; fewer than 3 pairs or a constant
    side give NaN with a reason.
    """
    _check_lengths(a, b, "spearman")
    xa = _as_float_array(a, "a")
    xb = _as_float_array(b, "b")
    keep = ~(np.isnan(xa) | np.isnan(xb))
    xa, xb = xa[keep], xb[keep]
    dropped = int(keep.size - keep.sum())
    n = int(xa.size)
    if n < 3:
        return Correlation(math.nan, math.nan, n, dropped, f"n={n}: need at least 3 complete pairs")
    if np.all(xa == xa[0]) or np.all(xb == xb[0]):
        return Correlation(math.nan, math.nan, n, dropped, "one side is constant: correlation is undefined")
    from scipy import stats

    res = stats.spearmanr(xa, xb)
    return Correlation(float(res.statistic), float(res.pvalue), n, dropped, None)


# --------------------------------------------------------------------------------------------------
# multiple testing


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order.

    Use when a winner is compared with several variants: rejecting where ``adjusted < alpha``
    controls the family-wise error rate at ``alpha`` without assuming independence. With the m
    p-values sorted ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))``.
    NaN p-values stay NaN and do not count towards m.
    """
    p = _as_float_array(p_values, "p_values")
    valid = ~np.isnan(p)
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError(f"p-values must be between 0 and 1, got {p[valid].tolist()}")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(valid)
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


# --------------------------------------------------------------------------------------------------
# independent samples (A/B arms, traffic windows)

# Above this many values in total the permutation test gives way to Welch's t-test (see two_sample_compare).
_PERMUTATION_MAX_TOTAL = 5000


@dataclass(frozen=True)
class TwoSampleResult:
    """Comparison of two independent samples (e.g. A/B arms); ``diff`` is ``mean(a) - mean(b)``."""

    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_a: int
    n_b: int
    method: str
    confidence: float = 0.95
    ci_method: str = "percentile"
    sd_a: float = math.nan
    sd_b: float = math.nan
    n_dropped: int = 0
    reason: str | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the two-sided p-value is below ``alpha`` (False when it is NaN)."""
        return bool(not math.isnan(self.p_value) and self.p_value < alpha)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def two_sample_compare(
    a: Sequence[Any] | np.ndarray,
    b: Sequence[Any] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int | None = 0,
    method: Literal["auto", "permutation", "welch"] = "auto",
) -> TwoSampleResult:
    """Is ``mean(a)`` different from ``mean(b)`` when a and b are independent samples (A/B arms)?

    Unlike :func:`paired_compare` nothing pairs the values (different users saw different arms).
    The CI is a bootstrap of the difference of means that resamples each arm on its own (percentile
    interval; ``scipy.stats.bootstrap`` with two samples). The p-value is two-sided:

    - ``"permutation"``: Fisher-Pitman permutation test (arm labels are exchangeable under H0;
      ``scipy.stats.permutation_test(..., permutation_type="independent")``); no distributional assumption.
    - ``"welch"``: Welch's unequal-variance t-test (Welch 1947, ``scipy.stats.ttest_ind(equal_var=False)``);
      valid for large arms by the central limit theorem and O(n), so it scales to millions of requests.
    - ``"auto"`` (default): permutation up to 5000 values in total, Welch above.

    Missing values are dropped (``n_dropped``); fewer than two values in an arm gives NaN with a reason.
    """
    _check_confidence(confidence)
    if method not in ("auto", "permutation", "welch"):
        raise ValueError(f"unknown method {method!r}; use 'auto', 'permutation' or 'welch'")
    xa = _as_float_array(a, "a")
    xb = _as_float_array(b, "b")
    dropped = int(np.isnan(xa).sum() + np.isnan(xb).sum())
    xa, xb = xa[~np.isnan(xa)], xb[~np.isnan(xb)]
    na, nb = int(xa.size), int(xb.size)
    note = f"dropped {dropped} missing value(s)" if dropped else None
    mean_a = float(xa.mean()) if na else math.nan
    mean_b = float(xb.mean()) if nb else math.nan
    sd_a = float(xa.std(ddof=1)) if na > 1 else math.nan
    sd_b = float(xb.std(ddof=1)) if nb > 1 else math.nan
    diff = mean_a - mean_b
    resolved = method if method != "auto" else ("permutation" if na + nb <= _PERMUTATION_MAX_TOTAL else "welch")
    base: dict[str, Any] = dict(mean_a=mean_a, mean_b=mean_b, diff=diff, n_a=na, n_b=nb, confidence=confidence,
                sd_a=sd_a, sd_b=sd_b, n_dropped=dropped)  # fmt: skip
    if na < 2 or nb < 2:
        why = f"n_a={na}, n_b={nb}: need at least 2 values in each sample"
        return TwoSampleResult(
            ci_low=math.nan, ci_high=math.nan, p_value=math.nan, method=resolved, ci_method="none",
            reason=f"{why}; {note}" if note else why, **base,
        )  # fmt: skip
    if np.all(xa == xa[0]) and np.all(xb == xb[0]):
        p = 1.0 if xa[0] == xb[0] else 0.0
        return TwoSampleResult(
            ci_low=diff, ci_high=diff, p_value=p, method=resolved, ci_method="constant", reason=note, **base
        )
    batch = max(1, _BATCH_ELEMENTS // max(1, na + nb))
    ci_low, ci_high = _bootstrap_diff_ci(xa, xb, min(n_resamples, 2000), confidence, batch, seed)
    if resolved == "permutation":
        from scipy import stats

        def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.mean(x, axis=axis) - np.mean(y, axis=axis)

        res = stats.permutation_test(
            (xa, xb), mean_diff, permutation_type="independent", vectorized=True, n_resamples=n_resamples,
            alternative="two-sided", batch=batch, **_rng_kwargs(seed),
        )  # fmt: skip
        p = float(min(1.0, res.pvalue))
    else:
        p = _welch_p(xa, xb)
        if math.isnan(p):  # one arm constant and equal to the other's mean: no evidence of a difference
            p = 1.0
    return TwoSampleResult(
        ci_low=ci_low, ci_high=ci_high, p_value=p, method=resolved, ci_method="bootstrap-percentile",
        reason=note, **base,
    )  # fmt: skip


def _bootstrap_diff_ci(
    xa: np.ndarray, xb: np.ndarray, n_resamples: int, confidence: float, batch: int, seed: int | None
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(xa) - mean(xb)``, each sample resampled on its own.

    The same random stream and arithmetic as ``scipy.stats.bootstrap((xa, xb), mean_diff,
    method="percentile", vectorized=True, batch=batch, rng=np.random.default_rng(seed))`` (a test checks
    they agree exactly), written with numpy because importing ``scipy.stats`` costs more than a second of
    CPU, most of a cold ``llmops monitor``.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(0, n_resamples, batch):
        size = min(batch, n_resamples - k)
        ra = xa[..., rng.integers(0, xa.shape[-1], (size, xa.shape[-1]), dtype=np.int64)]
        rb = xb[..., rng.integers(0, xb.shape[-1], (size, xb.shape[-1]), dtype=np.int64)]
        parts.append(np.mean(ra, axis=-1) - np.mean(rb, axis=-1))
    theta = np.sort(np.concatenate(parts, axis=-1))
    # Hyndman & Fan (1996) definition 7 ("linear"), written as scipy.stats.quantile computes it
    alpha = np.asarray((1 - confidence) / 2)
    p = np.stack((alpha, 1 - alpha), axis=-1)
    n = np.asarray([theta.shape[-1]], dtype=theta.dtype)
    jg = p * n + (1 - p)
    jp1 = jg // 1
    j = jp1 - 1
    g = jg % 1
    g[j < 0] = 0
    j = np.clip(j, 0.0, n - 1)
    jp1 = np.clip(jp1, 0.0, n - 1)
    ci = (1 - g) * theta[j.astype(np.int64)] + g * theta[jp1.astype(np.int64)]
    return float(ci[0]), float(ci[1])


def _welch_p(xa: np.ndarray, xb: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test, computed as ``scipy.stats.ttest_ind(equal_var=False)`` does.

    Only ``scipy.special`` is imported (a fraction of ``scipy.stats``' import time); a test checks the
    p-value equals scipy's exactly.
    """
    from scipy import special

    def var(x: np.ndarray) -> Any:
        n = np.asarray(x.shape[-1], dtype=x.dtype)
        return np.mean((x - np.mean(x, axis=-1, keepdims=True)) ** 2, axis=-1) * (n / (n - 1))

    n1, n2 = xa.shape[-1], xb.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        vn1, vn2 = var(xa) / n1, var(xb) / n2
        df = (vn1 + vn2) ** 2 / (vn1**2 / (n1 - 1) + vn2**2 / (n2 - 1))
        df = np.where(np.isnan(df), 1.0, df)
        t = np.divide(np.mean(xa, axis=-1) - np.mean(xb, axis=-1), np.sqrt(vn1 + vn2))
    return float(2 * special.stdtr(np.asarray(df, dtype=t.dtype), -np.abs(t)))


def sample_size_two_means(sd_a: float, sd_b: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Values needed per arm to detect a true difference ``delta`` with a two-sided test (normal approximation).

    ``n = (z_{1-alpha/2} + z_{power})^2 (sd_a^2 + sd_b^2) / delta^2`` (e.g. Chow, Shao & Wang,
    *Sample Size Calculations in Clinical Research*, 2008, sec. 3.2). Infinite when ``delta`` is 0.
    """
    from scipy.stats import norm

    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be between 0 and 1, got {alpha!r} and {power!r}")
    if not delta or math.isnan(delta) or math.isnan(sd_a) or math.isnan(sd_b):
        return math.inf
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return float(math.ceil(z * z * (sd_a * sd_a + sd_b * sd_b) / (delta * delta)))


@dataclass(frozen=True)
class ShiftResult:
    """Permutation test of a shift between two sets of vectors (e.g. question embeddings)."""

    statistic: float
    threshold: float
    p_value: float
    n_a: int
    n_b: int
    n_resamples: int
    alpha: float
    kernel: str = "rbf"

    @property
    def shifted(self) -> bool:
        return bool(self.p_value < self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shifted": self.shifted}


def mmd_test(
    a: np.ndarray,
    b: np.ndarray,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
    kernel: Literal["rbf", "linear"] = "rbf",
    max_n: int = 1000,
) -> ShiftResult:
    """Do the rows of ``a`` and ``b`` come from different distributions? Kernel two-sample permutation test.

    Statistic: the (biased) squared maximum mean discrepancy, MMD^2 (Gretton et al. 2012, "A kernel
    two-sample test", JMLR 13). With the Gaussian kernel (``"rbf"``; bandwidth by the median heuristic:
    the median squared distance between the pooled rows) it reacts to any difference of distribution,
    including a minority of rows in a region where ``b`` has none (new topics); ``"linear"`` is the
    squared distance between the two means. The null distribution comes from shuffling the set labels
    ``n_resamples`` times; ``threshold`` is its ``1 - alpha`` quantile, so "shifted" means "larger than
    label shuffling produces", not a constant picked by hand. ``p = (#{null >= observed} + 1) /
    (n_resamples + 1)``. Each side is first subsampled (seeded) to ``max_n`` rows to bound the O(n^2) cost.
    """
    rng = np.random.default_rng(seed)
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.ndim != 2 or xb.ndim != 2 or xa.shape[1] != xb.shape[1]:
        raise ValueError(f"a and b must be 2-D with the same width, got shapes {xa.shape} and {xb.shape}")
    if kernel not in ("rbf", "linear"):
        raise ValueError(f"kernel must be 'rbf' or 'linear', got {kernel!r}")
    if len(xa) > max_n:
        xa = xa[rng.choice(len(xa), max_n, replace=False)]
    if len(xb) > max_n:
        xb = xb[rng.choice(len(xb), max_n, replace=False)]
    na, nb = len(xa), len(xb)
    if na < 2 or nb < 2:
        return ShiftResult(math.nan, math.nan, math.nan, na, nb, 0, alpha, kernel)
    pooled = np.vstack([xa, xb])
    n = na + nb
    gram = pooled @ pooled.T
    if kernel == "rbf":
        sq = np.diag(gram)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
        off = d2[~np.eye(n, dtype=bool)]
        scale = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
        k = np.exp(-d2 / scale)
    else:
        k = gram
    w = np.concatenate([np.full(na, 1.0 / na), np.full(nb, -1.0 / nb)])
    observed = float(w @ k @ w)
    null = np.empty(n_resamples)
    batch = max(1, _BATCH_ELEMENTS // n)
    for start in range(0, n_resamples, batch):
        m = min(batch, n_resamples - start)
        ws = np.stack([w[rng.permutation(n)] for _ in range(m)])
        null[start : start + m] = np.einsum("ij,ij->i", ws @ k, ws)
    p = float((np.count_nonzero(null >= observed * (1 - 1e-12)) + 1) / (n_resamples + 1))
    return ShiftResult(observed, float(np.quantile(null, 1 - alpha)), p, na, nb, n_resamples, alpha, kernel)
