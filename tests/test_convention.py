"""The sign and units of a score, pinned by actually re-weighting training examples."""

import copy

import torch

import ifscope
from conftest import fit_logistic


def test_upweighting_a_proponent_lowers_the_query_loss(logistic):
    model, (x, y), (xq, yq), wd = logistic
    task = ifscope.classification(model)
    inf = ifscope.Influence(task, (x, y), method="exact", weight_decay=wd, dtype=torch.float64, progress=False)
    s = inf.scores((xq[:3], yq[:3]))
    for q in range(3):
        before = torch.nn.functional.cross_entropy(model(xq[q:q + 1]), yq[q:q + 1]).item()
        for idx, sign in ((int(s[q].argmax()), -1), (int(s[q].argmin()), +1)):
            w = torch.ones(len(x), dtype=x.dtype)
            w[idx] = 1 + 5.0  # up-weight: adds (5/N) ℓ(z) to the mean loss
            re = fit_logistic(x, y, wd, model=copy.deepcopy(model), weights=w)
            after = torch.nn.functional.cross_entropy(re(xq[q:q + 1]), yq[q:q + 1]).item()
            assert (after - before) * sign > 0, (q, idx, sign, before, after)
            # the first-order prediction of that change is −ε·score/N
            predicted = -5.0 * float(s[q, idx]) / len(x)
            assert predicted * (after - before) > 0


def test_every_method_shares_the_sign(logistic):
    model, train, (xq, yq), wd = logistic
    task = ifscope.classification(model)
    ref = ifscope.Influence(task, train, method="exact", weight_decay=wd, dtype=torch.float64,
                            progress=False).scores((xq, yq))
    for method, opts in (("cg", {}), ("lissa", {"depth": 300}), ("arnoldi", {"rank": 15, "iterations": 15}),
                         ("graddot", {})):
        s = ifscope.Influence(task, train, method=method, weight_decay=wd, dtype=torch.float64, progress=False,
                              **opts).scores((xq, yq))
        big = ref.abs() > ref.abs().quantile(0.5)
        agree = (torch.sign(s[big]) == torch.sign(ref[big])).double().mean()
        assert agree > (0.7 if method == "graddot" else 0.99), (method, agree)
