"""Each estimator against exact answers on models small enough to invert the Hessian."""

import numpy as np
import pytest
import torch
from torch import nn

import ifscope
from ifscope.core.curvature import Curvature
from ifscope.core.projection import jvp_projections, per_example_grads


def _scores(task, train, queries, method, wd, **opts):
    return ifscope.Influence(task, train, method=method, weight_decay=wd, dtype=torch.float64, progress=False,
                             **opts).scores(queries)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_arnoldi_at_full_rank_equals_exact(logistic):
    model, train, test, wd = logistic
    task = ifscope.classification(model)
    dim = sum(p.numel() for p in model.parameters())
    exact = _scores(task, train, test, "exact", wd)
    arnoldi = _scores(task, train, test, "arnoldi", wd, rank=dim, iterations=dim)
    assert _rel(arnoldi, exact) <= 1e-4


@pytest.mark.parametrize("method,opts", [("cg", {}), ("lissa", {"depth": 400})])
def test_iterative_solvers_agree_with_exact(logistic, method, opts):
    model, train, test, wd = logistic
    task = ifscope.classification(model)
    exact = _scores(task, train, test, "exact", wd)
    approx = _scores(task, train, test, method, wd, **opts)
    assert np.corrcoef(approx.flatten(), exact.flatten())[0, 1] >= 0.99


def _mlp_setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    x = torch.randn(30, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    return model, x, y


def test_jvp_and_vmap_projection_paths_agree():
    model, x, y = _mlp_setup()
    task = ifscope.classification(model)
    params, rest = task.state()
    basis = torch.linalg.qr(torch.randn(sum(p.numel() for p in params.values()), 6, dtype=torch.float64))[0].T
    via_jvp = jvp_projections(task, params, rest, (x, y), basis)
    via_vmap = per_example_grads(task, params, rest, (x, y)) @ basis.T
    assert _rel(via_jvp, via_vmap) <= 1e-5
    s_jvp = _scores(task, (x, y), (x[:4], y[:4]), "arnoldi", 0.1, rank=5, iterations=20, projection="jvp")
    s_vmap = _scores(task, (x, y), (x[:4], y[:4]), "arnoldi", 0.1, rank=5, iterations=20, projection="vmap")
    assert _rel(s_jvp, s_vmap) <= 1e-5


def test_per_example_gradients_match_autograd():
    model, x, y = _mlp_setup()
    task = ifscope.classification(model)
    params, rest = task.state()
    g = per_example_grads(task, params, rest, (x[:3], y[:3]))
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        expected = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert torch.allclose(g[i], expected, atol=1e-12)


def test_dense_hessian_matches_autograd_and_ggn_equals_hessian_for_linear_model(logistic):
    model, x, y = _mlp_setup()
    task = ifscope.classification(model)
    params, rest = task.state()
    names = list(params)
    dense = Curvature(task, params, rest, [(x, y)], weight_decay=0.3).dense()

    def flat_loss(*tensors):
        p = dict(zip(names, tensors))
        return nn.functional.cross_entropy(torch.func.functional_call(model, p, (x,)), y)
    blocks = torch.autograd.functional.hessian(flat_loss, tuple(params.values()))
    sizes = [p.numel() for p in params.values()]
    h = torch.cat([torch.cat([blocks[i][j].reshape(sizes[i], sizes[j]) for j in range(len(names))], 1)
                   for i in range(len(names))])
    assert torch.allclose(dense, h + 0.3 * torch.eye(len(h), dtype=h.dtype), atol=1e-10)
    lin, train, _, wd = logistic
    ltask = ifscope.classification(lin)
    lp, lr = ltask.state()
    hess = Curvature(ltask, lp, lr, [train], weight_decay=wd).dense()
    ggn = Curvature(ltask, lp, lr, [train], weight_decay=wd, kind="ggn").dense()
    assert torch.allclose(hess, ggn, atol=1e-12)


def test_graddot_and_tracin_equal_their_definitions():
    model, x, y = _mlp_setup()
    task = ifscope.classification(model)
    ck1 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ck2 = {k: v + 0.05 * torch.randn_like(v) for k, v in ck1.items()}
    lrs = (0.1, 0.03)

    def grads_at(state, xs, ys):
        out = []
        for i in range(len(xs)):
            m = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
            m.load_state_dict(state)
            nn.functional.cross_entropy(m(xs[i:i + 1]), ys[i:i + 1]).backward()
            out.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
        return torch.stack(out)
    gq1, gt1 = grads_at(ck1, x[:3], y[:3]), grads_at(ck1, x, y)
    gq2, gt2 = grads_at(ck2, x[:3], y[:3]), grads_at(ck2, x, y)
    by_hand = lrs[0] * gq1 @ gt1.T + lrs[1] * gq2 @ gt2.T
    tracin = _scores(task, (x, y), (x[:3], y[:3]), "tracin", 0.0, checkpoints=[(ck1, lrs[0]), (ck2, lrs[1])])
    assert torch.allclose(tracin, by_hand, atol=1e-12)
    graddot = _scores(task, (x, y), (x[:3], y[:3]), "graddot", 0.0)
    assert torch.allclose(graddot, gq1 @ gt1.T, atol=1e-12)


def test_self_influence_is_the_diagonal_and_top_matches_scores(logistic):
    model, train, _, wd = logistic
    task = ifscope.classification(model)
    inf = ifscope.Influence(task, train, method="arnoldi", rank=10, iterations=15, weight_decay=wd,
                            dtype=torch.float64, progress=False, batch_size=16)
    s = inf.scores(train)
    assert torch.allclose(inf.self_influence(), s.diagonal(), atol=1e-10)
    top = inf.top((train[0][:5], train[1][:5]), k=4)
    assert torch.equal(top.proponents, s[:5].topk(4, dim=1).indices)
    assert torch.allclose(top.opponent_scores, -(-s[:5]).topk(4, dim=1).values)


def test_same_seed_gives_identical_scores_twice():
    from ifscope.recipes.digits import digits_data, mlp
    (x, y), (xt, yt), _ = digits_data(200, 20, seed=3)
    task = ifscope.classification(mlp(16, seed=3))
    runs = [ifscope.Influence(task, (x, y), method="arnoldi", rank=8, iterations=30, seed=5, hessian_samples=100,
                              progress=False).scores((xt, yt)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_parameter_selection_and_buffers_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    model.train()
    model(x)  # give BatchNorm non-trivial running statistics
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    task = ifscope.classification(model, params=["3.*"])
    assert task.parameter_names == ["3.weight", "3.bias"]
    inf = ifscope.Influence(task, (x, y), method="exact", weight_decay=0.1, progress=False)
    s1, s2 = inf.scores((x[:3], y[:3])), inf.scores((x[:3], y[:3]))
    assert torch.equal(s1, s2) and s1.shape == (3, 40)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    with pytest.raises(ifscope.IfscopeError, match="matches no trainable parameter"):
        ifscope.classification(model, params=["encoder.*"])


def test_self_influence_finds_flipped_digit_labels():
    from sklearn.metrics import roc_auc_score

    from ifscope.recipes.digits import digits_mlp
    recipe = digits_mlp(n_train=600, n_test=10, flip=0.1, steps=1500)
    inf = ifscope.Influence(recipe.task, recipe.train, method="arnoldi", rank=50, iterations=100,
                            weight_decay=recipe.info["weight_decay"], progress=False)
    auc = roc_auc_score(recipe.info["flipped"].numpy(), inf.self_influence().numpy())
    print(f"flipped-label ROC AUC (ABIF self-influence, 10% flipped, 600 digits): {auc:.4f}")
    assert auc >= 0.95
