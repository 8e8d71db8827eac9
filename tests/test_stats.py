"""The shared statistics: correlations, the half-life of a fade curve, the one gap-growth fit."""

import math

import numpy as np
import pytest
import torch

from ifscope.core.stats import fit_gap_growth, half_life, peak_rate, pearson, spearman, spearman_rows


def test_gap_growth_fit_recovers_exponential_saturating_and_linear_gaps():
    steps = [1, 3, 10, 30, 100]
    for r in (0.05, 0.02, -0.05):
        gap = [2e-3 * math.expm1(r * t) / r for t in steps]
        fit, scale = fit_gap_growth(steps, gap)
        assert fit == pytest.approx(r, rel=1e-3) and scale == pytest.approx(2e-3, rel=1e-2)
    fit, _ = fit_gap_growth(steps, [1e-3 * t for t in steps])
    assert abs(fit) < 1e-4
    assert all(math.isnan(v) for v in fit_gap_growth([1, 2], [0.0, 1.0]))  # one positive point: no fit


def test_half_life_and_peak_rate():
    assert half_life([1, 10, 100], [0.9, 0.6, 0.3]) == pytest.approx(math.exp(math.log(10) + 0.5 * math.log(10)))
    assert half_life([1, 10, 100], [0.9, 0.8, 0.7]) is None
    assert peak_rate([1, 2, 4], [1.0, 2.0, 4.0]) == pytest.approx(0.0)  # linear growth has no excess rate
    assert peak_rate([1, 2], [1.0, 2.0 * math.e]) == pytest.approx(1.0)


def test_correlations():
    a = torch.randn(3, 50)
    assert spearman_rows(a, 2 * a + 1) == pytest.approx(1.0)
    assert spearman_rows(a, -a) == pytest.approx(-1.0)
    x = np.arange(10.0)
    assert pearson(x, x ** 3) < 1 and spearman(x, x ** 3) == pytest.approx(1.0)
    assert math.isnan(pearson(x, np.ones(10))) and math.isnan(spearman(np.ones(10), x))
