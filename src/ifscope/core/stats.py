"""The statistics every report shares: correlations (scipy), the fade half-life, and one fit of the parameter gap's
growth ``gap(T) ≈ c·(e^{rT} − 1)/r`` (the shape of the Gronwall bound, docs/science.md, 'The horizon response') for fade and diagnose alike."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

# scipy is imported where it is used: `import scipy.stats` costs about 2 s, which every CLI command paid at start-up
# through this module although most never compute a correlation.


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else float("nan")


def pearson(a, b) -> float:
    """Pearson correlation of two flattened arrays (tensors accepted); NaN when either side is constant."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    from scipy import stats
    return _finite(stats.pearsonr(a, b).statistic)


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    from scipy import stats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _finite(stats.spearmanr(a, b).statistic)


def per_column(fn: Callable[[np.ndarray, np.ndarray], float], pred, actual) -> float:
    """The mean over columns (queries) of ``fn(pred[:, q], actual[:, q])``, skipping NaN columns."""
    pred, actual = np.asarray(pred), np.asarray(actual)
    vals = [fn(pred[:, q], actual[:, q]) for q in range(pred.shape[1])]
    vals = [v for v in vals if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def spearman_rows(a, b) -> float:
    """Mean over rows of the Spearman correlation between ``a[q]`` and ``b[q]`` (``[n_rows, n]``)."""
    return per_column(spearman, np.asarray(a).T, np.asarray(b).T)


def half_life(steps: Sequence[int], corr: Sequence[float]) -> float | None:
    """The first T (log-interpolated) where ``corr`` falls to half its value at the smallest T; None if never."""
    c0 = corr[0]
    if not c0 > 0:
        return None
    for k in range(1, len(steps)):
        if corr[k] <= c0 / 2:
            a, b = corr[k - 1], corr[k]
            frac = (a - c0 / 2) / (a - b) if a != b else 1.0
            return float(math.exp(math.log(steps[k - 1]) + frac * (math.log(steps[k]) - math.log(steps[k - 1]))))
    return None


def fit_gap_growth(steps: Sequence[int], gap: Sequence[float]) -> tuple[float, float]:
    """``(r, c)`` with ``gap(T) ≈ c·(e^{rT} − 1)/r`` fitted by least squares in log space over the positive gaps:
    r > 0 exponential divergence, r ≈ 0 linear growth, r < 0 saturation at ``c/|r|``. NaNs with under two points."""
    t = np.asarray(steps, dtype=float)
    g = np.asarray(gap, dtype=float)
    keep = g > 0
    t, y = t[keep], np.log(g[keep])
    if len(t) < 2:
        return float("nan"), float("nan")

    def log_shape(r: float) -> np.ndarray:
        if abs(r) * t.max() < 1e-8:
            return np.log(t)
        return np.log(np.expm1(r * t) / r)

    def sse(r: float) -> float:
        res = y - log_shape(r)
        return float(((res - res.mean()) ** 2).sum())

    from scipy.optimize import minimize_scalar
    fit = minimize_scalar(sse, bounds=(-2.0 / t.min(), 50.0 / t.max()), method="bounded", options={"xatol": 1e-10})
    r = float(fit.x)
    return r, float(np.exp((y - log_shape(r)).mean()))


def peak_rate(steps: Sequence[int], gap: Sequence[float]) -> float:
    """The largest exponential rate beyond linear growth between consecutive horizons:
    ``max_i [log(g_{i+1}/g_i) − log(T_{i+1}/T_i)] / (T_{i+1} − T_i)`` (catches a burst that later saturates)."""
    rates = [(math.log(g1 / g0) - math.log(t1 / t0)) / (t1 - t0)
             for t0, t1, g0, g1 in zip(steps, steps[1:], gap, gap[1:]) if g0 > 0 and g1 > 0]
    return max(rates) if rates else float("nan")


def gap_exponent(steps: Sequence[int], gap: Sequence[float]) -> float:
    """The slope of log gap against log T: 1 = linear growth, above 1 = divergence."""
    if len(steps) < 2 or not all(g > 0 for g in gap):
        return float("nan")
    return float(np.polyfit(np.log(steps), np.log(gap), 1)[0])
