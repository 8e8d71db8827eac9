"""Small models whose Hessians can be inverted exactly, shared by the tests; a private recipe cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ifscope


def fit_logistic(x: torch.Tensor, y: torch.Tensor, weight_decay: float, model: nn.Module | None = None,
                 weights: torch.Tensor | None = None) -> nn.Module:
    """L2-regularised multinomial logistic regression trained to convergence (float64 L-BFGS)."""
    if model is None:
        torch.manual_seed(0)
        model = nn.Linear(x.shape[1], int(y.max()) + 1).double()
    w = torch.ones(len(x), dtype=x.dtype) if weights is None else weights
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-13, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (w * nn.functional.cross_entropy(model(x), y, reduction="none")).mean()
        loss = loss + 0.5 * weight_decay * sum((p * p).sum() for p in model.parameters())
        loss.backward()
        return loss
    for _ in range(3):
        opt.step(closure)
    return model


@pytest.fixture(scope="session")
def logistic():
    """A converged 3-class logistic regression in float64 on 80 separable-ish points: (model, train, test, wd)."""
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 4, generator=gen, dtype=torch.float64) * 1.5
    y = torch.randint(0, 3, (100,), generator=gen)
    x = centers[y] + torch.randn(100, 4, generator=gen, dtype=torch.float64)
    wd = 1e-2
    model = fit_logistic(x[:80], y[:80], wd)
    return model, (x[:80], y[:80]), (x[80:], y[80:]), wd


@pytest.fixture()
def logistic_task(logistic):
    return ifscope.classification(logistic[0])


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    """Recipes cache trained weights; tests must never read or write the user's cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("IFSCOPE_CACHE", str(tmp_path_factory.mktemp("ifscope-cache")))
    yield
    mp.undo()
