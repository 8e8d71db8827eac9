"""Exact unrolled influence against central finite differences of real training (float64, tiny models)."""

import math

import pytest
import torch
from torch import nn

import ifscope
from ifscope.truth import adjoint
from ifscope.truth.adjoint import segment_count, segment_length
from ifscope.truth.training import Schedule, make_batches, replay

N = 12


def _mlp(batchnorm: bool = False):
    torch.manual_seed(0)
    x = torch.randn(N + 3, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (N + 3,))
    layers = [nn.Linear(3, 4), *([nn.BatchNorm1d(4)] if batchnorm else []), nn.Tanh(), nn.Linear(4, 2)]
    model = nn.Sequential(*layers).double()
    if batchnorm:  # running statistics far from (0, 1), so that eval mode matters
        model[1].running_mean.copy_(torch.randn(4, dtype=torch.float64))
        model[1].running_var.copy_(torch.rand(4, dtype=torch.float64) + 0.5)
    return ifscope.classification(model), (x[:N], y[:N]), (x[N:], y[N:])


def least_squares(n: int = 20, wd: float = 0.1):
    """Ridge regression at its exact minimum: a quadratic loss (constant Hessian, condition number ~10³)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 5, 4, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.3, 0.1],
                                                                             dtype=torch.float64)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
         + 0.5 * torch.randn(n + 5, generator=g, dtype=torch.float64))[:, None]
    xa = torch.cat([x[:n], torch.ones(n, 1, dtype=torch.float64)], 1)
    theta = torch.linalg.solve(xa.T @ xa / n + wd * torch.eye(5, dtype=torch.float64), xa.T @ y[:n] / n)
    model = nn.Linear(4, 1).double()
    with torch.no_grad():
        model.weight.copy_(theta[:4].T)
        model.bias.copy_(theta[4])
    task = ifscope.Task(model=model, loss=lambda out, t: 0.5 * ((out - t) ** 2).sum(1))
    return task, (x[:n], y[:n]), (x[n:], y[n:]), wd


def _unrolled(task, train, **options):
    return ifscope.Influence(task, train, method="unrolled", dtype=torch.float64, progress=False, **options)


def finite_differences(task, train, queries, schedule: Schedule, h: float = 1e-5) -> torch.Tensor:
    """``−N ∂ℓ(q, θ_T)/∂wᵢ`` by central differences of real training (``replay`` with ``wᵢ = 1 ± h``)."""
    n = len(train[0])
    params0, rest = task.state(torch.float64)
    out = torch.zeros(len(queries[0]), n, dtype=torch.float64)
    for i in range(n):
        losses = []
        for sign in (1.0, -1.0):
            w = torch.ones(n, dtype=torch.float64)
            w[i] += sign * h
            end = replay(task, params0, train, schedule, weights=w, rest=rest).params
            with task.evaluating():
                losses.append(task.per_example_loss(end, rest, queries))
        out[:, i] = -n * (losses[0] - losses[1]) / (2 * h)
    return out


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.3), ("momentum", 0.2), ("adam", 0.03)])
@pytest.mark.parametrize("batch", [None, 5])
def test_unrolled_matches_finite_differences_of_real_training(optimizer, lr, batch):
    task, train, queries = _mlp()
    inf = _unrolled(task, train, horizon=7, lr=lr, optimizer=optimizer, train_batch_size=batch, weight_decay=0.01,
                    seed=3)
    got = inf.scores(queries)
    schedule = inf.estimator.schedule
    assert schedule.optimizer == optimizer and len(schedule) == 7
    assert all(len(b) == (N if batch is None else batch) for b in schedule.batches)
    fd = finite_differences(task, train, queries, schedule)
    assert _relative(got, fd) <= 1e-5
    assert got.shape == (len(queries[0]), N) and fd.abs().max() > 0


def test_batchnorm_in_eval_mode_matches_finite_differences():
    task, train, queries = _mlp(batchnorm=True)
    task.model.train()  # the replay and its adjoint both run in eval mode whatever the caller's mode
    inf = _unrolled(task, train, horizon=6, lr=0.2, optimizer="momentum", train_batch_size=4, weight_decay=0.01)
    got = inf.scores(queries)
    assert task.model.training
    assert _relative(got, finite_differences(task, train, queries, inf.estimator.schedule)) <= 1e-5


def test_one_reverse_pass_over_a_grid_equals_separate_runs_and_train_ids_select_columns():
    task, train, queries = _mlp()
    grid = [2, 5, 9]
    inf = _unrolled(task, train, horizon=9, lr=0.2, optimizer="adam", train_batch_size=4)
    inf.fit()
    ids = torch.tensor([0, 3, 11])
    with task.evaluating():
        many = inf.estimator.scores_over_horizons(queries, None, grid)
        some = inf.estimator.scores_over_horizons(queries, ids, grid)
    torch.testing.assert_close(some, many[..., ids])
    for k, t in enumerate(grid):  # a shorter horizon replays a prefix of the same seeded batch order
        alone = _unrolled(task, train, horizon=t, lr=0.2, optimizer="adam", train_batch_size=4).scores(queries)
        torch.testing.assert_close(many[k], alone, rtol=1e-10, atol=1e-12)


def test_query_blocks_give_the_same_scores():
    task, train, queries = _mlp()
    whole = _unrolled(task, train, horizon=5, lr=0.3).scores(queries)
    blocks = _unrolled(task, train, horizon=5, lr=0.3, batch_size=2).scores(queries)  # 3 queries in blocks of 2
    torch.testing.assert_close(blocks, whole, rtol=1e-12, atol=1e-14)


def test_scores_follow_parameters_changed_after_fit_with_the_same_queries_and_schedule():
    task, train, queries = _mlp()
    inf = _unrolled(task, train, horizon=5, lr=0.3)
    before = inf.scores(queries)
    inf.estimator.last = None  # set by every reverse pass
    torch.testing.assert_close(inf.scores(queries), before, rtol=0, atol=0)
    assert inf.estimator.last is None  # same parameters, queries and schedule: the memo answers
    with torch.no_grad():  # the model moves on after the fit
        for p in task.model.parameters():
            p.mul_(1.5)
    torch.testing.assert_close(inf.scores(queries), before, rtol=0, atol=0)  # the fit keeps its own checkpoint
    moved = _unrolled(task, train, horizon=5, lr=0.3).scores(queries)
    assert not torch.allclose(moved, before)
    # a copy of the fitted estimator on the moved model (Influence.derive; it shares the memo) scores the new weights
    torch.testing.assert_close(inf.derive(task=task, train=train).scores(queries), moved, rtol=1e-12, atol=1e-14)
    with torch.no_grad():  # the fitted checkpoint itself changed in place
        for p in inf.estimator.ctx.params.values():
            p.mul_(1.5)
    torch.testing.assert_close(inf.scores(queries), moved, rtol=1e-12, atol=1e-14)


def test_quadratic_loss_at_its_minimum_equals_the_schedule_aware_horizon_score():
    # θ stays at the minimum, so H_t = H and ∇ℓᵢ(θ_t) = ∇ℓᵢ(θ₀): the freezing behind `horizon` is then exact
    task, train, queries, wd = least_squares()
    steps = [1, 4, 30, 200]
    un = _unrolled(task, train, horizon=200, lr=0.1, weight_decay=wd)
    hz = ifscope.Influence(task, train, method="horizon", horizon=200, lr=0.1, batch_order="schedule", krylov=5,
                           weight_decay=wd, dtype=torch.float64, progress=False).fit()
    un.fit()
    ids = torch.arange(len(train[0]))
    with task.evaluating():
        exact = un.estimator.scores_over_horizons(queries, None, steps)
        frozen = hz.estimator.scores_for_schedule(queries, train, ids, un.estimator.schedule, len(ids), steps)
    assert _relative(exact, frozen) <= 1e-9


def test_linear_loss_with_minibatches_equals_the_schedule_aware_horizon_score():
    # per-example gradients constant in θ and the Hessian wd·I on every batch: exact for minibatch SGD too
    torch.manual_seed(1)
    x, c = torch.randn(N, 3, dtype=torch.float64), torch.randn(N, 2, dtype=torch.float64)
    task = ifscope.Task(model=nn.Linear(3, 2).double(), loss=lambda out, t: -(out * t).sum(1))
    queries = (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))
    un = _unrolled(task, (x, c), horizon=9, lr=0.3, train_batch_size=4, weight_decay=0.5).fit()
    hz = ifscope.Influence(task, (x, c), method="horizon", horizon=9, lr=0.3, batch_order="schedule",
                           weight_decay=0.5, dtype=torch.float64, progress=False).fit()
    schedule = un.estimator.schedule
    assert len({tuple(b.tolist()) for b in schedule.batches}) > 1
    with task.evaluating():
        exact = un.estimator.scores_over_horizons(queries, None, [3, 9])
        frozen = hz.estimator.scores_for_schedule(queries, (x, c), torch.arange(N), schedule, N, [3, 9])
    assert _relative(exact, frozen) <= 1e-9


@pytest.mark.parametrize("steps", [1, 4, 17, 64, 150])
def test_memory_is_bounded_by_about_two_root_t_states(steps, monkeypatch):
    monkeypatch.setattr(adjoint, "GRAPH_MEMORY_BUDGET", 0)  # nothing fits: checkpoint every ⌈√T⌉ steps
    task, train, queries = _mlp()
    inf = _unrolled(task, train, horizon=steps, lr=0.05, train_batch_size=6)
    inf.scores(queries)
    last = inf.estimator.last
    root = math.ceil(math.sqrt(steps))
    assert segment_length(steps) == root
    assert last.checkpoints == segment_count(steps) == math.ceil(steps / root) <= root
    assert last.peak_states <= 2 * root + 2 and last.graphs == root
    assert last.state_bytes == 3 * 26 * 8  # (θ, m, v) of the 26 parameters in float64


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_pass_that_fits_the_budget_keeps_every_graph_and_scores_as_the_checkpointed_one(optimizer, monkeypatch):
    task, train, queries = _mlp()
    whole = _unrolled(task, train, horizon=30, lr=0.05, train_batch_size=6, optimizer=optimizer)
    scores = whole.scores(queries)
    last = whole.estimator.last
    assert (last.checkpoints, last.graphs, last.peak_states) == (1, 30, 31)  # one segment: no recomputation
    monkeypatch.setattr(adjoint, "GRAPH_MEMORY_BUDGET", 0)
    whole.estimator._memo = None
    checkpointed = whole.scores(queries)
    assert whole.estimator.last.graphs == segment_length(30) == 6
    assert _relative(scores, checkpointed) <= 1e-12


def test_top_ranks_the_direct_scores_and_embeddings_are_refused():
    task, train, queries = _mlp()
    inf = _unrolled(task, train, horizon=4, lr=0.3, batch_size=5)
    s = inf.scores(queries)
    top = inf.top(queries, k=3)
    torch.testing.assert_close(top.proponent_scores, s.topk(3, dim=1).values)
    torch.testing.assert_close(top.proponents, s.topk(3, dim=1).indices)
    torch.testing.assert_close(top.opponent_scores, -(-s).topk(3, dim=1).values)
    with pytest.raises(ifscope.ConfigError, match="scores directly"):
        inf.query_embeddings(queries)
    with pytest.raises(ifscope.ConfigError, match="scores directly"):
        inf.self_influence()


def test_upweighting_fade_tracks_the_ground_truth_exactly():
    task, train, queries = _mlp()
    schedule = Schedule(make_batches(N, 20, 4, seed=0), lr=0.3, weight_decay=0.01)
    inf = _unrolled(task, train, horizon=20, lr=0.3, train_batch_size=4, weight_decay=0.01)
    result = ifscope.fade_curve({"unrolled": inf}, queries, list(range(N)), steps=[1, 5, 20], mode="upweight",
                                epsilon=1e-4, schedule=schedule, progress=False)
    row = result.methods["unrolled"]
    assert min(row["pearson"]) > 0.9999
    assert all(abs(s - 1) < 1e-3 for s in row["slope"])


@pytest.mark.parametrize("options,match", [
    ({}, "horizon=T"), ({"horizon": 0}, "horizon=T"), ({"horizon": 2.5}, "horizon=T"),
    ({"horizon": math.inf}, "horizon=T"), ({"horizon": 3, "lr": -1.0}, "lr must"),
    ({"horizon": 3, "optimizer": "rmsprop"}, "optimizer"), ({"horizon": 3, "momentum": 1.0}, "momentum"),
    ({"horizon": 3, "betas": (0.9,)}, "betas"), ({"horizon": 3, "eps": 0.0}, "eps"),
    ({"horizon": 3, "train_batch_size": 0}, "train_batch_size"),
])
def test_bad_options_are_config_errors(options, match):
    task, train, queries = _mlp()
    with pytest.raises(ifscope.ConfigError, match=match):
        _unrolled(task, train, **options).scores(queries)


def test_an_unknown_option_is_refused_with_the_method_s_option_names():
    task, train, _ = _mlp()
    with pytest.raises(ifscope.ConfigError, match="train_batch_size"):
        _unrolled(task, train, horizon=3, batch_order="schedule")


def test_full_batch_gd_from_a_converged_checkpoint_advises_horizon():
    task, train, _, wd = least_squares()  # at its exact minimum: θ does not move, horizon's freezing is exact
    converged = _unrolled(task, train, horizon=200, lr=0.1, weight_decay=wd).fit()
    assert "method='horizon' (horizon=200" in converged.chosen["text"]
    assert _unrolled(task, train, horizon=200, lr=0.1, weight_decay=wd, train_batch_size=5).fit().chosen is None
    assert _unrolled(task, train, horizon=200, lr=0.1, weight_decay=wd, optimizer="momentum").fit().chosen is None
    mlp_task, mlp_train, _ = _mlp()  # an untrained MLP: full-batch GD moves it, the trajectory matters
    assert _unrolled(mlp_task, mlp_train, horizon=50, lr=0.1).fit().chosen is None
