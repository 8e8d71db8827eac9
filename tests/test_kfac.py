"""K-FAC and EK-FAC against closed forms and dense Fisher matrices on tiny float64 models."""

import math

import pytest
import torch
from torch import nn

import ifscope
from ifscope.core.projection import per_example_grads
from ifscope.core.task import Task
from ifscope.estimators.kronecker import find_layers, layer_signals


def _data(n=24, d=3, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=gen)


def _fitted(task, train, method="ekfac", **options):
    options.setdefault("dtype", torch.float64)
    return ifscope.Influence(task, train, method, progress=False, **options).fit()


def test_kfac_factors_of_one_linear_layer_equal_the_closed_form():
    torch.manual_seed(0)
    model = nn.Linear(3, 4).double()
    x, y = _data(classes=4)
    inf = _fitted(ifscope.classification(model), (x, y), "kfac", fisher="empirical", damping=0.1)
    a = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)                  # bias: a constant input 1
    g = torch.softmax(model(x), dim=1).detach() - nn.functional.one_hot(y, 4).double()     # ∂ℓ/∂s for cross-entropy
    s_closed, a_closed = g.T @ g / len(x), a.T @ a / len(x)
    s_fit, a_fit = inf.estimator.factors[0]
    torch.testing.assert_close(s_fit, s_closed)
    torch.testing.assert_close(a_fit, a_closed)
    # the preconditioned score is gᵀ (S ⊗ A + δ)⁻¹ g in the row-major layout of [W | b]
    grads = per_example_grads(inf.task, inf.estimator.ctx.params, inf.estimator.ctx.rest, (x, y))
    flat = torch.cat([grads[:, :12].reshape(-1, 4, 3), grads[:, 12:].unsqueeze(-1)], dim=2).flatten(1)
    dense = flat[:5] @ torch.linalg.inv(torch.kron(s_closed, a_closed) + 0.1 * torch.eye(16, dtype=torch.float64)) @ flat.T
    torch.testing.assert_close(inf.scores((x[:5], y[:5])), dense)


def _one_output_regression():
    """One linear layer with one output and residuals ±1: the empirical Fisher is exactly 1 ⊗ A, so EK-FAC is exact."""
    torch.manual_seed(1)
    model = nn.Linear(4, 1).double()
    x, _ = _data(n=20, d=4)
    sign = torch.where(torch.arange(20) % 2 == 0, 1.0, -1.0).double()
    y = (model(x)[:, 0] + sign).detach()
    task = Task(model=model, loss=lambda out, t: 0.5 * (out[:, 0] - t) ** 2)
    return task, (x, y)


def test_ekfac_equals_the_dense_empirical_fisher_inverse_where_exact():
    task, train = _one_output_regression()
    params, rest = task.state(torch.float64)
    g = per_example_grads(task, params, rest, train)
    fisher = g.T @ g / len(g)
    dense = g[:6] @ torch.linalg.inv(fisher + 0.05 * torch.eye(5, dtype=torch.float64)) @ g.T
    inf = _fitted(task, train, fisher="empirical", damping=0.05)
    torch.testing.assert_close(inf.scores((train[0][:6], train[1][:6])), dense)


def test_ekfac_eigenvalues_are_the_fisher_diagonal_in_the_kronecker_basis():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = _data()
    inf = _fitted(ifscope.classification(model), (x, y), fisher="empirical")
    est = inf.estimator
    grads = est.ctx.space.unflatten(per_example_grads(inf.task, est.ctx.params, est.ctx.rest, (x, y)))
    for layer, qs, qa, lam in zip(est.layers, est.qs, est.qa, est.values):
        rotated = qs.T @ layer.gradient(grads) @ qa
        torch.testing.assert_close(lam, (rotated ** 2).mean(0))
        assert est.damping[est.layers.index(layer)] == pytest.approx(0.1 * float(lam.mean()))  # damping=None rule


def test_ekfac_horizon_is_lr_times_graddot_at_one_step_and_ekfac_at_infinity():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = _data()
    task, queries = ifscope.classification(model), (x[:4], y[:4])
    ekfac = _fitted(task, (x, y), damping=0.01).scores(queries)
    graddot = _fitted(task, (x, y), "graddot").scores(queries)
    one = _fitted(task, (x, y), damping=0.01, horizon=1, lr=0.3).scores(queries)
    torch.testing.assert_close(one, 0.3 * graddot)
    torch.testing.assert_close(_fitted(task, (x, y), damping=0.01, horizon=math.inf, lr=0.3).scores(queries), ekfac)
    gap = [float((_fitted(task, (x, y), damping=0.01, horizon=t).scores(queries) - ekfac).norm()) for t in (10, 100, 3000)]
    assert gap[0] > gap[1] > gap[2] and gap[2] < 1e-6 * float(ekfac.norm())  # η = 1/λ_max: (1 − ηλ)^T → 0
    over = _fitted(task, (x, y), damping=0.01, horizon=50, lr=0.3).estimator
    torch.testing.assert_close(over.scores_over_horizons(queries, (x, y), [1, 50])[1],
                               _fitted(task, (x, y), damping=0.01, horizon=50, lr=0.3).scores(queries))


def test_a_fitted_ekfac_takes_another_horizon_or_damping_without_refitting():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = _data()
    task, queries = ifscope.classification(model), (x[:4], y[:4])
    fitted = _fitted(task, (x, y), damping=0.01)
    one = fitted.derive(horizon=1, lr=0.3)
    assert one.estimator.values[0] is fitted.estimator.values[0]  # the fit carried over
    torch.testing.assert_close(one.scores(queries), 0.3 * _fitted(task, (x, y), "graddot").scores(queries))
    torch.testing.assert_close(fitted.derive(damping=0.5).scores(queries),
                               _fitted(task, (x, y), damping=0.5).scores(queries))


@pytest.mark.parametrize("conv", ["1d", "2d", "embedding"])
def test_conv_layer_signals_rebuild_the_per_example_gradient(conv):
    torch.manual_seed(4)
    if conv == "embedding":  # 4 tokens per example
        model = nn.Sequential(nn.Embedding(7, 3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3))
        x = torch.randint(0, 7, (6, 4))
    elif conv == "1d":
        model = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(9, 3))
        x = torch.randn(6, 2, 5)
    else:
        model = nn.Sequential(nn.Conv2d(2, 3, (2, 3), padding=(1, 0), dilation=(1, 1)), nn.ReLU(), nn.Flatten(),
                              nn.Linear(3 * 5 * 2, 3))
        x = torch.randn(6, 2, 4, 4)
    model = model.double()
    task, batch = ifscope.classification(model), (x if conv == "embedding" else x.double(), torch.randint(0, 3, (6,)))
    params, rest = task.state(torch.float64)
    layers = find_layers(task, params)
    signals = layer_signals(task, params, rest, layers, batch, "empirical", torch.Generator())
    grads = ifscope.core.params.ParamSpace(params).unflatten(per_example_grads(task, params, rest, batch))
    for layer, (a, g) in zip(layers, signals):
        torch.testing.assert_close(torch.einsum("bpo,bpi->boi", g, a), layer.gradient(grads))


def _one_embedding_regression(n=30, rows=5):
    """One nn.Embedding with one output, one token per example and residuals ±1: the empirical Fisher is the diagonal
    of the token frequencies, 1 ⊗ A, so K-FAC's factors are known in closed form and EK-FAC is exact."""
    torch.manual_seed(6)
    model = nn.Embedding(rows, 1).double()
    tokens = torch.arange(n) % 4  # token 4 never occurs: a zero row of A, left to the damping
    sign = torch.where(torch.arange(n) % 3 == 0, 1.0, -1.0).double()
    y = (model(tokens)[:, 0] + sign).detach()
    return Task(model=model, loss=lambda out, t: 0.5 * (out[:, 0] - t) ** 2), (tokens, y)


def test_embedding_factors_are_the_token_frequencies_and_ekfac_is_exact_there():
    task, (tokens, y) = _one_embedding_regression()
    kfac = _fitted(task, (tokens, y), "kfac", fisher="empirical", damping=0.05)
    s_fit, a_fit = kfac.estimator.factors[0]
    torch.testing.assert_close(a_fit, torch.diag(torch.bincount(tokens, minlength=5).double() / len(tokens)))
    torch.testing.assert_close(s_fit, torch.ones(1, 1, dtype=torch.float64))  # g = ±1
    params, rest = task.state(torch.float64)
    g = per_example_grads(task, params, rest, (tokens, y))
    dense = g[:6] @ torch.linalg.inv(g.T @ g / len(g) + 0.05 * torch.eye(5, dtype=torch.float64)) @ g.T
    ekfac = _fitted(task, (tokens, y), fisher="empirical", damping=0.05)
    torch.testing.assert_close(ekfac.scores((tokens[:6], y[:6])), dense)
    torch.testing.assert_close(kfac.scores((tokens[:6], y[:6])), dense)


def test_true_fisher_samples_labels_and_is_reused_from_the_run_directory(tmp_path):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = _data()
    task = ifscope.classification(model)
    fitted = ifscope.Influence(task, (x, y), "ekfac", progress=False, dtype=torch.float64, workdir=tmp_path).fit()
    empirical = _fitted(task, (x, y), fisher="empirical")
    assert not torch.allclose(fitted.estimator.values[0], empirical.estimator.values[0])
    reopened = ifscope.Influence(task, (x, y), "ekfac", progress=False, dtype=torch.float64, workdir=tmp_path).fit()
    assert reopened.reused
    torch.testing.assert_close(reopened.scores((x[:3], y[:3])), fitted.scores((x[:3], y[:3])))


def test_unsupported_parameters_and_options_are_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 3)).double()
    x, y = _data()
    with pytest.raises(ifscope.IfscopeError, match="LayerNorm"):
        _fitted(ifscope.classification(model), (x, y))
    inf = _fitted(ifscope.classification(model, params=["0.*", "2.*"]), (x, y), "kfac")
    assert [layer.name for layer in inf.estimator.layers] == ["0", "2"]
    with pytest.raises(ifscope.IfscopeError, match="fisher"):
        _fitted(ifscope.classification(model), (x, y), fisher="model")
    task, train = _one_output_regression()
    with pytest.raises(ifscope.IfscopeError, match="fisher='empirical'"):
        _fitted(task, train)
    for embedding, why in ((nn.Embedding(9000, 2), "9000 rows"), (nn.Embedding(5, 2, max_norm=1.0), "max_norm")):
        big = nn.Sequential(embedding, nn.Flatten(), nn.Linear(2, 3)).double()
        with pytest.raises(ifscope.IfscopeError, match=why):
            _fitted(ifscope.classification(big), (torch.randint(0, 5, (6, 1)), torch.randint(0, 3, (6,))))
