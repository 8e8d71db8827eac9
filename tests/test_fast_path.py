"""The projection paths agree, and ``auto`` picks by rank and memory budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ifscope
from ifscope.core.projection import VMAP_MIN_RANK, choose_path, project


def test_jvp_and_vmap_paths_give_the_same_projections():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    task = ifscope.classification(model)
    params, rest = task.state()
    dim = sum(p.numel() for p in params.values())
    batch = (torch.randn(9, 5, dtype=torch.float64), torch.randint(0, 3, (9,)))
    basis = torch.randn(70, dim, dtype=torch.float64)  # more than one JVP chunk
    jvp = project(task, params, rest, batch, basis, path="jvp")
    vmap = project(task, params, rest, batch, basis, path="vmap")
    assert jvp.shape == (9, 70)
    torch.testing.assert_close(jvp, vmap, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rank,budget,expected", [
    (10, 2**30, "jvp"), (VMAP_MIN_RANK - 1, 2**30, "jvp"), (VMAP_MIN_RANK, 2**30, "vmap"),
    (VMAP_MIN_RANK, 1000, "jvp"),  # per-example gradients over the budget
])
def test_auto_picks_by_rank_and_budget(rank, budget, expected):
    assert choose_path("auto", 128, 10_000, 4, memory_budget=budget, rank=rank) == expected
    assert choose_path("vmap", 128, 10_000, 4, memory_budget=1, rank=1) == "vmap"


def test_unknown_path_is_a_config_error():
    with pytest.raises(ifscope.ConfigError, match="jvp"):
        choose_path("fast", 1, 1, 4)


def test_hessian_vector_products_match_the_dense_hessian():
    from torch.autograd.functional import hessian

    from ifscope.core.curvature import Curvature
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    task = ifscope.classification(model)
    params, rest = task.state()
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    op = Curvature(task, params, rest, [(x[:17], y[:17]), (x[17:], y[17:])], weight_decay=0.1)
    flat = op.space.flatten(params)
    h = hessian(lambda f: task.per_example_loss(op.space.unflatten(f), rest, (x, y)).mean(), flat)
    h = h + 0.1 * torch.eye(op.dim, dtype=torch.float64)
    vs = torch.randn(3, op.dim, dtype=torch.float64)
    torch.testing.assert_close(op.matmat(vs), vs @ h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.matvec(vs[0]), h @ vs[0], rtol=1e-10, atol=1e-12)


def test_vmapped_products_are_capped_by_the_activation_memory_they_hold(monkeypatch):
    """Products batched by vmap hold one forward's saved tensors each: the rows per call follow a memory budget
    (measured by saved-tensor hooks), and capping them changes no product."""
    from torch.autograd.functional import hessian

    from ifscope.core import curvature
    from ifscope.core.curvature import Curvature, saved_bytes
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 3)).double()
    task = ifscope.classification(model)
    params, rest = task.state()
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,))
    op = Curvature(task, params, rest, [(x[:17], y[:17]), (x[17:], y[17:])], batching="vmap")
    per = saved_bytes(op._batch_loss((x[:17], y[:17])), params)
    assert per >= 17 * 64 * 8  # at least the hidden activations of the 17 examples, in float64
    monkeypatch.setattr(curvature, "ROWS_MEMORY_BUDGET", 2 * curvature.PRODUCT_MEMORY_FACTOR * per)
    assert op.rows_per_call() == 2
    calls = []
    batched = op._batched
    monkeypatch.setattr(op, "_batched", lambda block: calls.append(len(block)) or batched(block))
    vs = torch.randn(5, op.dim, dtype=torch.float64)
    flat = op.space.flatten(params)
    h = hessian(lambda f: task.per_example_loss(op.space.unflatten(f), rest, (x, y)).mean(), flat)
    torch.testing.assert_close(op.matmat(vs), vs @ h, rtol=1e-10, atol=1e-12)
    assert calls == [2, 2]  # and the fifth row alone, unbatched


@pytest.mark.parametrize("slow", ["jvp", "vmap"])
def test_measured_choice_takes_the_faster_path(monkeypatch, slow):
    import time

    from ifscope.core import projection
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    task = ifscope.classification(model)
    params, rest = task.state()
    batch = (torch.randn(20, 5, dtype=torch.float64), torch.randint(0, 3, (20,)))
    basis = torch.randn(4, 66, dtype=torch.float64)
    original = projection.project

    def delayed(*args, path="auto", **kwargs):
        if path == slow:
            time.sleep(0.3)  # far above either path on this model, even on a loaded machine
        return original(*args, path=path, **kwargs)
    monkeypatch.setattr(projection, "project", delayed)
    choice, out = projection.measure_paths(task, params, rest, batch, basis)
    assert choice.path != slow and set(choice.seconds) == {"jvp", "vmap"}
    assert choice.seconds[slow] > 0.3 / 20  # per example of the 20-example batch
    torch.testing.assert_close(out, original(task, params, rest, batch, basis, path="jvp"), rtol=1e-10, atol=1e-12)
    small, none = projection.measure_paths(task, params, rest, batch, basis, batch_size=128,
                                           memory_budget=128 * 66 * 8 - 1)
    assert small.path == "jvp" and small.seconds == {} and "exceed" in small.reason and none is None


def test_arnoldi_measures_once_per_fit_and_scores_match_a_fixed_path():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    options = dict(rank=5, iterations=20, dtype=torch.float64, weight_decay=0.1, batch_size=16, progress=False)
    auto = ifscope.Influence(ifscope.classification(model), (x, y), **options).fit()
    scores = auto.scores((x[:3], y[:3]))  # 3 queries take the rank rule; the first training batch is timed
    choice = auto.estimator.path_choice
    assert choice.path in ("jvp", "vmap") and set(choice.seconds) == {"jvp", "vmap"}
    auto.self_influence()
    assert auto.estimator.path_choice is choice  # not measured again
    fixed = ifscope.Influence(ifscope.classification(model), (x, y), projection="jvp", **options)
    torch.testing.assert_close(scores, fixed.scores((x[:3], y[:3])), rtol=1e-9, atol=1e-12)
    assert fixed.estimator.path_choice.path == "jvp" and fixed.estimator.path_choice.seconds == {}
    auto.estimator.ctx.projection = "vmap"  # another option asked: the choice follows it
    auto.query_embeddings((x[:2], y[:2]))
    assert auto.estimator.path_choice.path == "vmap" and auto.estimator.path_choice.asked == "vmap"
    assert auto.fit().estimator.path_choice is None  # a new fit measures anew


def test_a_measured_path_is_kept_for_later_processes(tmp_path, monkeypatch):
    from ifscope.core import decisions
    from ifscope.core.projection import PathChoice
    monkeypatch.setenv("IFSCOPE_CACHE", str(tmp_path))
    monkeypatch.setattr(decisions, "_memo", {})
    calls = []

    def measure(path):
        calls.append(path)
        return PathChoice(path, "measured", {"jvp": 1.0, "vmap": 2.0}), torch.zeros(1)
    first, out = decisions.decided("key", lambda: measure("vmap"))
    assert first.path == "vmap" and out is not None
    monkeypatch.setattr(decisions, "_memo", {})  # as a new process would start
    again, out = decisions.decided("key", lambda: measure("jvp"))
    assert again == first and out is None and calls == ["vmap"]
    assert decisions.decided("other", lambda: measure("jvp"))[0].path == "jvp" and calls == ["vmap", "jvp"]
