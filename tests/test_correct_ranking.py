"""rank_by="unrolled": the correction's top-k by the exact derivative through its own fine-tuning schedule."""

from __future__ import annotations

import pytest
import torch
from test_correct import setup  # noqa: F401  (the tiny digits MLP and its mistakes)

from ifscope import ConfigError, Influence, correct
from ifscope.core.data import take
from ifscope.experiments.correct_ranking import horizon_ranker, unrolled_ranker
from ifscope.truth.training import replay

K = 8


def first_order_change(inf, queries, steps: int, lr: float, selected: list[list[int]]) -> torch.Tensor:
    """Predicted change of each query's loss after fine-tuning on its selection: linearised at the same steps on the
    whole training set, ``Δℓ(1) − (1/k) Σ_S s + (1/N) Σ s`` (correct_ranking's docstring)."""
    ranker = unrolled_ranker(inf, steps, lr)
    s = ranker.scores(queries).double()
    est = ranker.estimator
    end = replay(inf.task, est.ctx.params, inf.train, est.schedule, rest=est.ctx.rest).params
    with inf.task.evaluating():
        batch = inf.task.cast(queries, inf.dtype)
        whole = (inf.task.per_example_loss(end, est.ctx.rest, batch)
                 - inf.task.per_example_loss(est.ctx.params, est.ctx.rest, batch)).double()
    return torch.stack([whole[j] - s[j, sel].sum() / len(sel) + s[j].mean() for j, sel in enumerate(selected)])


def test_unrolled_top_k_lowers_the_query_loss_as_predicted_and_more_than_random(setup):  # noqa: F811
    _, inf, test, wrong, _ = setup
    idx = wrong[:4]
    for steps, lr in ((2, 0.001), (10, 0.2)):
        res = correct(inf, test, indices=idx, k=K, steps=steps, lr=lr, anchor=0, baselines=["random"],
                      rank_by="unrolled", progress=False)
        assert res.config["rank_by"] == "unrolled"
        picked = [q.outcomes["influence"].selected for q in res.queries]
        actual = torch.tensor([q.outcomes["influence"].loss_after - q.loss_before for q in res.queries],
                              dtype=torch.float64)
        random = torch.tensor([q.outcomes["random"].loss_after - q.loss_before for q in res.queries],
                              dtype=torch.float64)
        predicted = first_order_change(inf, take(test, idx), steps, lr, picked)
        scores = unrolled_ranker(inf, steps, lr).scores(take(test, idx))
        for j, sel in enumerate(picked):  # the selection is the unrolled top-k
            assert set(sel) == set(torch.topk(scores[j], K).indices.tolist())
        assert (actual < random).all(), (actual, random)
        assert (actual < 0).all() and (predicted < 0).all()
        if lr == 0.001:  # small steps: the fine-tuning is the first-order prediction
            assert ((actual - predicted).abs() <= 0.02 * predicted.abs()).all(), (actual, predicted)


def test_a_bad_ranking_is_a_config_error(setup):  # noqa: F811
    _, inf, test, wrong, _ = setup
    with pytest.raises(ConfigError, match="rank_by"):
        correct(inf, test, indices=wrong[:1], rank_by="exact", progress=False)


def test_horizon_ranking_is_the_fit_filtered_at_the_corrections_own_steps_and_lr(setup):  # noqa: F811
    _, inf, test, wrong, _ = setup
    idx, steps, lr = wrong[:3], 7, 0.05
    values = inf.estimator.pairs.values.clone()
    res = correct(inf, test, indices=idx, k=K, steps=steps, lr=lr, anchor=0, baselines=[], rank_by="horizon",
                  progress=False)
    ranker = horizon_ranker(inf, steps, lr)
    assert torch.equal(ranker.estimator.pairs.values, values)  # the run's eigenpairs: no refit
    assert ranker.estimator.horizon == steps and ranker.estimator.lr == lr
    scores = ranker.scores(take(test, idx))
    checkpoint = inf.scores(take(test, idx))
    for j, q in enumerate(res.queries):
        assert set(q.outcomes["influence"].selected) == set(torch.topk(scores[j], K).indices.tolist())
    assert not torch.allclose(scores, checkpoint)  # another ranking than the checkpoint's
    assert inf.estimator.horizon is None  # the run itself is untouched


def test_horizon_ranking_needs_a_fitted_spectrum(setup):  # noqa: F811
    recipe, _, test, wrong, _ = setup
    inf = Influence(recipe.task, recipe.train, method="graddot", progress=False).fit()
    with pytest.raises(ConfigError, match="rank_by='horizon'"):
        correct(inf, test, indices=wrong[:1], rank_by="horizon", progress=False)
