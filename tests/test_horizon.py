"""Horizon-aware scores against the dense formula ``∇ℓ(q)ᵀ H⁻¹(I − (I − ηH)^T) ∇ℓ(z)`` on tiny float64 models."""

import math

import pytest
import torch
from torch import nn

import ifscope
from ifscope.core.curvature import Curvature
from ifscope.core.projection import per_example_grads
from ifscope.estimators.horizon import horizon_filter
from ifscope.truth.training import load_params, train

WD = 0.05


def _setup(hidden: int | None):
    torch.manual_seed(0)
    x = torch.randn(40, 3, dtype=torch.float64)
    y = (x[:, 0] + 0.3 * torch.randn(40, dtype=torch.float64) > 0).long()
    layers = [nn.Linear(3, 2)] if hidden is None else [nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 2)]
    model = nn.Sequential(*layers).double()
    task = ifscope.classification(model)
    result = train(task, (x, y), steps=200, lr=0.5, weight_decay=WD, dtype=torch.float64)
    load_params(model, result.params)
    return task, (x[:30], y[:30]), (x[30:], y[30:])


def _dense_scores(task, train, queries, horizon, lr):
    params, rest = task.state(torch.float64)
    h = Curvature(task, params, rest, [train], weight_decay=WD).dense()
    vals, vecs = torch.linalg.eigh(h)
    f = torch.tensor([(1 - (1 - lr * v) ** horizon) / v if not math.isinf(horizon) else 1 / v for v in vals.tolist()],
                     dtype=torch.float64)
    gq = per_example_grads(task, params, rest, queries)
    gz = per_example_grads(task, params, rest, train)
    return gq @ (vecs * f) @ vecs.T @ gz.T, float(vals.max())


def _influence(task, train, **options):
    return ifscope.Influence(task, train, weight_decay=WD, dtype=torch.float64, batch_size=16, progress=False, **options)


@pytest.mark.parametrize("horizon,solver", [(1, "recursion"), (7, "recursion"), (40, "lanczos"), (3000, "lanczos")])
def test_horizon_matches_dense_formula(horizon, solver):
    task, train, queries = _setup(hidden=4)  # 26 parameters, indefinite Hessian allowed
    lr = 0.8
    dense, _ = _dense_scores(task, train, queries, horizon, lr)
    inf = _influence(task, train, method="horizon", horizon=horizon, lr=lr, solver=solver, krylov=26)
    got = inf.scores(queries)
    torch.testing.assert_close(got, dense, rtol=1e-6, atol=1e-8 * float(dense.abs().max()))


def test_lanczos_with_few_steps_is_close_to_recursion():
    task, train, queries = _setup(hidden=4)
    rec = _influence(task, train, method="horizon", horizon=30, lr=0.8, solver="recursion").scores(queries)
    lan = _influence(task, train, method="horizon", horizon=30, lr=0.8, solver="lanczos", krylov=12).scores(queries)
    assert torch.corrcoef(torch.stack([rec.flatten(), lan.flatten()]))[0, 1] > 0.999


def test_infinite_horizon_is_the_exact_influence_function():
    task, train, queries = _setup(hidden=None)  # logistic regression + weight decay: H ≻ 0
    exact = _influence(task, train, method="exact").scores(queries)
    inf_t = _influence(task, train, method="horizon", horizon=math.inf, solver="lanczos", krylov=8).scores(queries)
    torch.testing.assert_close(inf_t, exact, rtol=1e-7, atol=1e-10)
    long_t = _influence(task, train, method="horizon", horizon=20000, solver="lanczos", krylov=8).scores(queries)
    torch.testing.assert_close(long_t, exact, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("complement", [False, True])
def test_arnoldi_horizon_on_a_full_basis_matches_dense(complement):
    task, train, queries = _setup(hidden=4)
    dense, _ = _dense_scores(task, train, queries, 25, 0.8)
    inf = _influence(task, train, method="arnoldi", rank=26, iterations=26, select="value", horizon=25, lr=0.8,
                     complement=complement)
    torch.testing.assert_close(inf.scores(queries), dense, rtol=1e-5, atol=1e-7 * float(dense.abs().max()))


def test_arnoldi_complement_gets_eta_t():
    # a one-vector basis: everything else is carried by the complement term η·T·(g_q·g_z − P_q·P_z)
    task, train, queries = _setup(hidden=4)
    lr, t = 0.01, 3
    inf = _influence(task, train, method="arnoldi", rank=1, iterations=26, horizon=t, lr=lr)
    s = inf.scores(queries)
    params, rest = task.state(torch.float64)
    u = inf.estimator.pairs.vectors
    lam = inf.estimator.pairs.values
    gq, gz = per_example_grads(task, params, rest, queries), per_example_grads(task, params, rest, train)
    expected = (gq @ u.T) * horizon_filter(lam, t, lr) @ (gz @ u.T).T + lr * t * (gq @ gz.T - (gq @ u.T) @ (gz @ u.T).T)
    torch.testing.assert_close(s, expected)


def test_plain_arnoldi_is_unchanged_and_horizon_options_are_checked():
    task, train, queries = _setup(hidden=4)
    inf = _influence(task, train, method="arnoldi", rank=5, iterations=26)
    assert inf.estimator is None or inf.estimator.horizon is None
    inf.fit()
    torch.testing.assert_close(inf.estimator.inv, 1 / inf.estimator.pairs.values)
    with pytest.raises(ifscope.ConfigError, match="horizon"):
        _influence(task, train, method="horizon").fit()
    with pytest.raises(ifscope.ConfigError, match="horizon"):
        _influence(task, train, method="horizon", horizon=2.5).fit()
    with pytest.raises(ifscope.ConfigError, match="lr"):
        _influence(task, train, method="horizon", horizon=3, lr=-1.0).fit()


def test_filter_is_stable_near_zero_and_has_the_right_limits():
    lam = torch.tensor([0.0, 1e-14, 1e-3, 0.5, -0.1], dtype=torch.float64)
    f = horizon_filter(lam, 100, 0.1)
    assert f[0] == pytest.approx(10.0) and f[1] == pytest.approx(10.0)
    assert f[2] == pytest.approx((1 - (1 - 1e-4) ** 100) / 1e-3)
    assert f[4] == pytest.approx((1 - 1.01 ** 100) / -0.1)
    torch.testing.assert_close(horizon_filter(lam[2:4], math.inf, 0.1), 1 / lam[2:4])


def test_schedule_aware_scores_match_the_dense_sum_over_the_batches_holding_each_example():
    from ifscope.truth.training import Schedule, make_batches
    task, train, queries = _setup(hidden=4)
    lr = 0.3
    schedule = Schedule(make_batches(30, 12, 10, seed=1), lr=lr)
    ids = torch.tensor([0, 4, 17, 29])
    params, rest = task.state(torch.float64)
    h = Curvature(task, params, rest, [train], weight_decay=WD).dense()
    gq = per_example_grads(task, params, rest, queries)
    gz = per_example_grads(task, params, rest, (train[0][ids], train[1][ids]))
    prop = torch.eye(len(h), dtype=torch.float64) - lr * h
    inf = _influence(task, train, method="horizon", horizon=12, lr=lr, krylov=26, batch_order="schedule").fit()
    got = inf.estimator.scores_for_schedule(queries, (train[0][ids], train[1][ids]), ids, schedule, 30, [1, 5, 12])
    for k, t in enumerate([1, 5, 12]):
        expected = torch.zeros(len(gq), len(ids), dtype=torch.float64)
        for s in range(t):
            held = torch.isin(ids, schedule.batches[s]).double()
            expected += lr * (30 / 10) * (gq @ torch.linalg.matrix_power(prop, t - 1 - s) @ gz.T) * held
        torch.testing.assert_close(got[k], expected, rtol=1e-7, atol=1e-10)
    with pytest.raises(ifscope.ConfigError, match="batch order"):
        inf.scores(queries)


def test_lanczos_blocks_of_queries_give_the_same_scores(monkeypatch):
    import ifscope.estimators.horizon as horizon_module
    task, train, queries = _setup(hidden=4)
    inf = _influence(task, train, method="horizon", horizon=50, lr=0.8, solver="lanczos", krylov=10).fit()
    whole = inf.scores(queries)
    monkeypatch.setattr(horizon_module, "KRYLOV_BUDGET", 1)  # one query per block
    inf._train_emb = None
    torch.testing.assert_close(inf.scores(queries), whole)
