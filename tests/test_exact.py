"""``exact`` against closed forms, and against real leave-one-out retraining in the convex case."""

import copy

import numpy as np
import torch
from torch import nn

import ifscope
from conftest import fit_logistic


def test_exact_matches_closed_form_linear_regression():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.randn(50, generator=gen,
                                                                                      dtype=torch.float64)
    wd = 0.05
    model = nn.Linear(3, 1).double()
    xt = torch.cat([x, torch.ones(50, 1, dtype=x.dtype)], 1)
    theta = torch.linalg.solve(xt.T @ xt / 50 + wd * torch.eye(4, dtype=x.dtype), xt.T @ y / 50)
    with torch.no_grad():
        model.weight.copy_(theta[:3][None])
        model.bias.copy_(theta[3:])
    task = ifscope.Task(model, loss=lambda out, t: 0.5 * (out[:, 0] - t) ** 2)
    s = ifscope.Influence(task, (x, y), method="exact", weight_decay=wd, dtype=torch.float64,
                          progress=False).scores((x[:7], y[:7]))
    h = xt.T @ xt / 50 + wd * torch.eye(4, dtype=x.dtype)
    g = (xt @ theta - y)[:, None] * xt  # per-example gradients (weight, bias)
    expected = g[:7] @ torch.linalg.solve(h, g.T)
    assert torch.allclose(s, expected, rtol=1e-9, atol=1e-12)


def test_exact_matches_closed_form_binary_logistic_regression():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(60, 3, generator=gen, dtype=torch.float64)
    y = (x[:, 0] - x[:, 1] + 0.5 * torch.randn(60, generator=gen, dtype=torch.float64) > 0).double()
    wd = 0.02
    model = nn.Linear(3, 1, bias=False).double()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=500, tolerance_grad=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x)[:, 0], y) + 0.5 * wd * (model.weight ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    task = ifscope.Task(model, loss=lambda out, t: nn.functional.binary_cross_entropy_with_logits(
        out[:, 0], t, reduction="none"))
    s = ifscope.Influence(task, (x, y), method="exact", weight_decay=wd, dtype=torch.float64,
                          progress=False).scores((x[:5], y[:5]))
    w = model.weight.detach()[0]
    p = torch.sigmoid(x @ w)
    h = (x.T * (p * (1 - p))) @ x / 60 + wd * torch.eye(3, dtype=x.dtype)
    g = (p - y)[:, None] * x
    assert torch.allclose(s, g[:5] @ torch.linalg.solve(h, g.T), rtol=1e-8, atol=1e-12)


def test_convex_leave_one_out_retraining_pearson(logistic):
    model, (x, y), (xq, yq), wd = logistic
    task = ifscope.classification(model)
    s = ifscope.Influence(task, (x, y), method="exact", weight_decay=wd, dtype=torch.float64,
                          progress=False).scores((xq[:6], yq[:6]))
    base = nn.functional.cross_entropy(model(xq[:6]), yq[:6], reduction="none").detach()
    removed = list(range(0, 80, 2))[:32]
    actual, predicted = [], []
    for i in removed:
        keep = torch.arange(len(x)) != i
        re = fit_logistic(x[keep], y[keep], wd, model=copy.deepcopy(model))
        after = nn.functional.cross_entropy(re(xq[:6]), yq[:6], reduction="none").detach()
        actual.append(after - base)
        predicted.append(s[:, i] / len(x))
    a, p = torch.stack(actual).flatten().numpy(), torch.stack(predicted).flatten().numpy()
    r = np.corrcoef(a, p)[0, 1]
    print(f"convex LOO: Pearson {r:.4f} over {len(a)} (removed, test) pairs")
    assert r >= 0.99
