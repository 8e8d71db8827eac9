"""LDS and leave-top-k-out against models whose retraining is known exactly (closed-form least squares, one SGD step)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import ifscope as run_cli
from torch import nn

import ifscope
from ifscope.experiments.evaluate import lds_from_outcomes, lds_per_query
from ifscope.truth.subsets import Continue, Scratch, outcomes, random_masks
from ifscope.truth.training import Schedule, make_batches, replay

WD = 0.5  # strong ridge: the optimum moves almost linearly with the subset, so exact influence predicts it well


def _ridge(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``argmin mean ½(xθ − y)² + (wd/2)‖θ‖²`` in closed form."""
    n = len(x)
    return torch.linalg.solve(x.T @ x / n + WD * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y / n)


@pytest.fixture(scope="module")
def ridge():
    """A least-squares model at its ridge optimum, its closed-form retraining, training data and queries."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(140, 4, generator=gen, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64) + 0.7 * torch.randn(140, generator=gen,
                                                                                         dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(_ridge(x[:100], y[:100])[None])
    task = ifscope.Task(model, loss=lambda out, t: 0.5 * (out[:, 0] - t) ** 2)

    def retrain(data, seed):
        return {"weight": _ridge(data[0], data[1])[None]}
    inf = ifscope.Influence(task, (x[:100], y[:100]), method="exact", weight_decay=WD, dtype=torch.float64,
                            progress=False)
    return task, inf, retrain, (x[100:], y[100:])


@pytest.fixture(scope="module")
def ridge_outcomes(ridge):
    task, inf, retrain, queries = ridge
    return outcomes(task, inf.train, queries, random_masks(100, 120, 0.5, seed=1), Scratch(retrain), progress=False)


def test_exact_influence_predicts_closed_form_retraining(ridge, ridge_outcomes):
    task, inf, retrain, queries = ridge
    result = ifscope.lds(inf, queries, subsets=120, seed=1, retrain=retrain, progress=False)
    assert torch.equal(result.outcomes.mean_loss, ridge_outcomes.mean_loss)  # same seed, same subsets
    assert result.methods["exact"]["lds"] > 0.95
    lo, hi = result.methods["exact"]["ci"]
    assert lo <= result.methods["exact"]["lds"] <= hi
    assert "lds_margin" not in result.methods["exact"]  # a regression has no margin
    d = result.to_dict()
    assert d["methods"]["exact"]["lds"] == result.methods["exact"]["lds"] and d["retrain"] == "scratch"
    json.dumps(d)


def test_noise_scores_have_no_lds_and_the_sign_convention_matters(ridge, ridge_outcomes):
    task, inf, _, queries = ridge
    exact = inf.scores(queries).double()
    noise = torch.randn(exact.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    res = lds_from_outcomes({"exact": exact, "flipped": -exact, "noise": noise}, ridge_outcomes)
    assert res.methods["exact"]["lds"] > 0.95
    assert res.methods["flipped"]["lds"] == pytest.approx(-res.methods["exact"]["lds"], abs=1e-12)
    assert abs(res.methods["noise"]["lds"]) < 0.1
    # a proponent (positive score) kept in the subset lowers the loss: predicted loss ∝ −Σ_S score
    per_q = lds_per_query(exact, ridge_outcomes.masks, ridge_outcomes.mean_loss)
    assert (per_q > 0).all() and np.median(per_q) > 0.95


def test_one_step_of_continued_training_is_predicted_by_gradient_dot_products(ridge):
    task, _, _, queries = ridge
    graddot = ifscope.Influence(task, ridge[1].train, method="graddot", weight_decay=WD, dtype=torch.float64,
                                progress=False)
    schedule = Schedule(make_batches(100, 1, None, 0), lr=0.01, weight_decay=WD)
    res = ifscope.lds(graddot, queries, subsets=60, retrain="continue", steps=1, schedule=schedule, progress=False)
    assert res.methods["graddot"]["lds"] > 0.99  # first order in the step: only the O(η²) term is left


def test_continued_outcomes_match_a_plain_replay(ridge):
    task, inf, _, queries = ridge
    schedule = Schedule(make_batches(100, 5, 20, 0), lr=0.1, weight_decay=WD)
    masks = random_masks(100, 5, 0.3, seed=2)
    got = outcomes(task, inf.train, queries, masks, Continue(schedule, 5, chunk=2), progress=False)
    params = replay(task, task.state()[0], inf.train, schedule, weights=masks[3].double()).params
    want = task.per_example_loss(params, {}, queries).detach()
    assert torch.allclose(got.loss[0, 3], want, rtol=1e-10, atol=1e-12)


def test_leave_top_k_out_removes_what_helps(ridge):
    task, inf, retrain, queries = ridge
    res = ifscope.leave_top_k_out(inf, queries, ks=[5, 20], retrain=retrain, progress=False)
    pro, opp, rnd = (res.methods["exact"]["proponents"]["increase"], res.methods["exact"]["opponents"]["increase"],
                     res.random["increase"])
    assert pro[-1] > rnd[-1] > opp[-1] and pro[-1] > 0 > opp[-1]
    assert pro[1] > pro[0]
    assert np.sign(res.methods["exact"]["proponents"]["predicted"][-1]) == 1
    d = res.to_dict()
    assert d["k"] == [5, 20] and d["n_queries"] == len(queries[0])
    json.dumps(d)


def test_bad_input_is_refused(ridge):
    task, inf, retrain, queries = ridge
    for kwargs, words in [({"fraction": 1.0}, "fraction"), ({"fraction": 0.0}, "fraction"), ({"subsets": 2}, "subsets"),
                          ({"retrain": "scratch"}, "recipe.retrain"), ({"retrain": "again"}, "not a way"),
                          ({"retrain": "continue", "steps": 0}, "steps"), ({"retrain": retrain, "seeds": 0}, "seeds"),
                          ({"retrain": lambda data, seed: {"bias": torch.zeros(1)}}, "weight")]:
        with pytest.raises(ifscope.ConfigError, match=words):
            ifscope.lds(inf, queries, **{"retrain": retrain, **kwargs}, progress=False)
    with pytest.raises(ifscope.ConfigError, match="ks"):
        ifscope.leave_top_k_out(inf, queries, ks=[0], retrain=retrain, progress=False)
    with pytest.raises(ifscope.ConfigError, match="Influence"):
        ifscope.lds({"x": torch.zeros(3)}, queries, retrain=retrain)


def test_digits_linear_retrains_to_its_own_optimum_at_any_thread_count():
    recipe = ifscope.load_recipe("digits-linear", n_train=150, n_test=20)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        at_two = recipe.retrain(recipe.train, 5)
    finally:
        torch.set_num_threads(before)
    again = recipe.retrain(recipe.train, 5)
    other_seed = recipe.retrain(recipe.train, 7)
    for name, p in recipe.model.named_parameters():
        assert torch.equal(at_two[name], again[name])
        assert torch.allclose(other_seed[name], again[name], atol=1e-6)  # convex: the start does not matter
        assert torch.allclose(p.double(), again[name], atol=1e-6)        # the recipe's weights are that optimum


def test_cli_lds_and_counterfactual(tmp_path: Path):
    small = ["--recipe", "digits-linear", "--recipe-arg", "n_train=120", "--recipe-arg", "n_test=20"]
    out = json.loads(run_cli("lds", *small, "--method", "exact,graddot", "--subsets", "8", "--queries", "4",
                             "--workdir", str(tmp_path / "lds"), "--json").stdout)
    for name in ("exact", "graddot"):
        assert -1 <= out["methods"][name]["lds"] <= 1 and len(out["methods"][name]["ci"]) == 2
    assert out["retrain"] == "scratch" and out["subsets"] == 8 and out["n_queries"] == 4
    assert json.loads((tmp_path / "lds" / "lds.json").read_text())["methods"]["exact"]["lds"] == \
        out["methods"]["exact"]["lds"]
    one = json.loads(run_cli("lds", *small, "--method", "exact", "--subsets", "6", "--queries", "3", "--retrain",
                             "continue", "--steps", "3", "--workdir", str(tmp_path / "one"), "--json").stdout)
    assert one["retrain"] == "continue" and one["steps"] == 3 and one["train_batch_size"] is None
    sgd = json.loads(run_cli("lds", *small, "--method", "exact", "--subsets", "6", "--queries", "3", "--retrain",
                             "continue", "--steps", "3", "--train-batch-size", "10", "--workdir", str(tmp_path / "sgd"),
                             "--json").stdout)
    assert sgd["train_batch_size"] == 10 and sgd["steps"] == 3 and -1 <= sgd["methods"]["exact"]["lds"] <= 1
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert "lds.json" in manifest["artifacts"]  # one method: written through its bound run directory
    cf = json.loads(run_cli("counterfactual", *small, "--method", "exact", "--k", "2,4", "--queries", "3",
                            "--workdir", str(tmp_path / "cf"), "--json").stdout)
    assert cf["k"] == [2, 4] and len(cf["methods"]["exact"]["proponents"]["increase"]) == 2
    bad = run_cli("lds", *small, "--fraction", "1.5", "--workdir", str(tmp_path / "bad"), check=False)
    assert bad.returncode == 2 and "fraction" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("name, options", [("digits-mlp", dict(n_train=60, n_test=20, steps=30, hidden=8)),
                                           ("digits-cnn", dict(n_train=40, n_test=20, width=4, epochs=2))])
def test_recipe_retrain_is_the_recipes_own_training(name, options):
    recipe = ifscope.load_recipe(name, seed=3, **options)
    state = recipe.retrain(recipe.train, 3)  # the whole training set and the recipe's seed: its own weights again
    model_state = recipe.model.state_dict()
    assert set(recipe.task.parameter_names) <= set(state)
    for key, value in state.items():
        assert torch.equal(value, model_state[key]), key
    other = recipe.retrain(recipe.train, 4)
    assert not torch.equal(other[recipe.task.parameter_names[0]], state[recipe.task.parameter_names[0]])
