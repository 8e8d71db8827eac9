"""Tasks beyond classification: ``ifscope.regression`` against a dense-Hessian reference, its judge, ``correct`` on a
regressor (influence beats random), ``top`` through the judge, and a custom ``Task`` with its own loss and judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import ifscope as run_cli
from torch import nn

import ifscope
from ifscope import ConfigError, Influence, correct, split_mispredicted
from ifscope.core.data import as_dataset
from ifscope.core.judges import RegressionJudge
from ifscope.recipes import load_recipe

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "regression.py") + ":make"
WD = 0.05


class Squeezed(nn.Module):
    """The same MLP returning ``[B]`` instead of ``[B, 1]``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[:, 0]


def _regressor(n: int = 40) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """A tanh MLP 3→4→1 (21 parameters, float64) trained by L-BFGS to a minimum of the mean squared error + L2,
    on fractional targets (a ``.long()`` anywhere on the path would change every score)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = torch.sin(x[:, 0]) - 0.5 * x[:, 1] + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64) + 0.37
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=500, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((model(x)[:, 0] - y) ** 2).mean() + 0.5 * WD * sum((p ** 2).sum() for p in model.parameters())
        loss.backward()
        return loss
    opt.step(closure)
    return model, (x, y)


def _dense_scores(model: nn.Module, train: tuple, queries: tuple) -> torch.Tensor:
    """``∇ℓ(q)ᵀ H⁻¹ ∇ℓ(zᵢ)`` with ``ℓ = (ŷ − y)²`` and ``H`` the dense Hessian of the mean loss + ``(WD/2)‖θ‖²``."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def unflat(t):
        out, i = {}, 0
        for n, s in zip(names, shapes):
            out[n] = t[i:i + s.numel()].reshape(s)
            i += s.numel()
        return out

    def losses(t, x, y):
        return (torch.func.functional_call(model, unflat(t), (x,))[:, 0] - y) ** 2

    h = torch.autograd.functional.hessian(lambda t: losses(t, *train).mean() + 0.5 * WD * (t ** 2).sum(), theta)
    def grads(x, y):
        return torch.autograd.functional.jacobian(lambda t: losses(t, x, y), theta)  # row i: ∇ℓ(zᵢ)
    return grads(*queries) @ torch.linalg.solve(h, grads(*train).T)


@pytest.mark.parametrize("squeeze", [False, True], ids=["[B,1]", "[B]"])
def test_regression_exact_scores_equal_a_dense_hessian_reference(squeeze):
    model, train = _regressor()
    queries = (train[0][:5] + 0.3, train[1][:5] - 0.21)
    expected = _dense_scores(model, train, queries)
    task = ifscope.regression(Squeezed(model) if squeeze else model)
    s = Influence(task, train, method="exact", weight_decay=WD, dtype=torch.float64, progress=False).scores(queries)
    assert torch.allclose(s, expected, rtol=1e-8, atol=1e-10)


def test_regression_judge_counts_mistakes_by_tolerance_and_refuses_without_one():
    y = torch.tensor([0.0, 1.0, 2.5])
    out = torch.tensor([[0.4], [1.0], [1.0]])
    judge = RegressionJudge(lambda b: b[1], tolerance=0.5)
    assert judge.wrong(out, (None, y)).tolist() == [False, False, True]
    assert torch.allclose(judge.held_out(out, (None, y)), torch.tensor([0.16, 0.0, 2.25], dtype=torch.float64))
    assert judge.group((None, y)) is None
    assert judge.show_target((None, y), 2) == "y = 2.5" and judge.show_prediction(out, (None, y), 0) == "ŷ = 0.4"
    with pytest.raises(ConfigError, match="without a tolerance: pass tolerance="):
        RegressionJudge(lambda b: b[1]).wrong(out, (None, y))
    with pytest.raises(ConfigError, match="tolerance must be a positive number"):
        ifscope.regression(nn.Linear(2, 1), tolerance=-1.0)


@pytest.fixture(scope="module")
def fitted_regressor():
    recipe = load_recipe(EXAMPLE, n_train=150, n_test=80, steps=300)
    inf = Influence(recipe.task, recipe.train, rank=20, iterations=60, weight_decay=recipe.info["weight_decay"],
                    progress=False).fit()
    return recipe, inf, as_dataset(recipe.test)


def test_correct_on_a_regressor_beats_random_and_needs_a_tolerance(fitted_regressor):
    recipe, inf, test = fitted_regressor
    with pytest.raises(ConfigError, match="regression task has no mistakes without a tolerance"):
        correct(inf, test, k=8, steps=10, progress=False)
    wrong, right = split_mispredicted(inf, test, tolerance=0.75)
    assert len(wrong) >= 10
    res = correct(inf, test, heldout=torch.utils.data.Subset(test, right), indices=wrong, k=8, steps=10, anchor=50,
                  tolerance=0.75, progress=False)
    assert res.methods() == ["influence", "random", "query_itself"]  # no groups: no same-class baseline
    assert res.fix_rate("influence") >= res.fix_rate("random") + 0.2
    d = res.to_dict()
    assert d["heldout_figure"]["name"] == "squared error" and d["heldout_accuracy"]["before"] is None
    with torch.no_grad():
        squared = ((recipe.model(test.tensors[0][right])[:, 0] - test.tensors[1][right]) ** 2).mean()
    assert d["heldout_figure"]["before"] == pytest.approx(float(squared), rel=1e-5)
    q = d["queries"][0]
    assert isinstance(q["label"], float) and isinstance(q["predicted_before"], float)
    assert abs(q["label"] - q["predicted_before"]) > 0.75
    json.dumps(d)


def test_tolerance_is_refused_for_a_classifier_and_a_task_without_judge(fitted_regressor):
    recipe, inf, test = fitted_regressor
    clf = Influence(ifscope.classification(nn.Linear(10, 3)), (test.tensors[0], torch.zeros(80, dtype=torch.long)),
                    method="exact", weight_decay=0.1, progress=False).fit()
    with pytest.raises(ConfigError, match="tolerance applies to regression tasks"):
        correct(clf, (test.tensors[0], torch.zeros(80, dtype=torch.long)), tolerance=0.5, k=4, progress=False)
    bare = ifscope.Task(recipe.model, loss=lambda out, y: (out[:, 0] - y) ** 2)
    inf2 = Influence(bare, recipe.train, rank=4, iterations=10, progress=False).fit()
    with pytest.raises(ConfigError, match="correct needs to know what a wrong prediction is"):
        correct(inf2, test, k=4, progress=False)


def test_a_custom_task_with_its_own_loss_and_judge_corrects(fitted_regressor):
    """The custom-loss example of docs/models.md: a Huber loss per example, judged as a regression."""
    recipe, _, test = fitted_regressor

    def huber(out, y):
        return nn.functional.huber_loss(out[:, 0], y, reduction="none", delta=1.0)
    task = ifscope.Task(recipe.model, loss=huber, judge=RegressionJudge(targets=lambda batch: batch[1], tolerance=0.75))
    inf = Influence(task, recipe.train, rank=20, iterations=60, weight_decay=recipe.info["weight_decay"],
                    progress=False)
    wrong, _ = split_mispredicted(inf.fit(), test)
    res = correct(inf, test, indices=wrong[:6], k=8, steps=10, anchor=50, baselines=["random"], progress=False)
    assert res.n_queries == 6 and res.fix_rate("influence") >= res.fix_rate("random")


def test_top_self_influence_and_correct_cli_show_real_targets(tmp_path):
    work = str(tmp_path / "run")
    recipe = ["--recipe", EXAMPLE, "--workdir", work, "--rank", "8", "--iterations", "20"]
    top = json.loads(run_cli("top", *recipe, "--queries", "0-1", "-k", "2", "--json").stdout)
    q = top["queries"][0]
    assert q["target"].startswith("y = ") and q["prediction"].startswith("ŷ = ") and not top["grouped"]
    assert isinstance(q["label"], float) and isinstance(q["proponents"][0]["label"], float)
    suspects = json.loads(run_cli("self-influence", *recipe, "-k", "2", "--json").stdout)["top"]
    assert all(isinstance(r["label"], float) for r in suspects)
    proc = run_cli("correct", *recipe, "--queries", "3", "--k", "4", "--steps", "3", "--tolerance", "0.5")
    assert "held-out squared error" in proc.stdout
    saved = json.loads((tmp_path / "run" / "correct.json").read_text())
    assert saved["settings"]["tolerance"] == 0.5 and saved["n_queries"] == 3
    run_cli("report", "--workdir", work)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "held-out squared error before" in page and "ŷ = " in page and "carry their query" not in page


def test_classification_judge_is_argmax_against_the_label_and_top_refuses_a_task_without_judge():
    from ifscope.cli.top import _labels
    from ifscope.recipes import Recipe
    judge = ifscope.classification(nn.Linear(2, 3)).judge
    logits, y = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0]]), torch.tensor([0, 1])
    assert judge.kind == "classification" and judge.held_out_name == "accuracy"
    assert judge.wrong(logits, (None, y)).tolist() == [False, True]
    assert judge.group((None, y)).tolist() == [0, 1] and judge.predicted_group(logits).tolist() == [0, 2]
    assert judge.held_out(logits, (None, y)).tolist() == [1.0, 0.0]
    assert (judge.show_target((None, y), 1), judge.show_prediction(logits, (None, y), 1)) == ("label 1", "predicted 2")
    model = nn.Linear(2, 1)
    bare = Recipe(model, ifscope.Task(model, loss=lambda out, t: (out[:, 0] - t) ** 2), None, None)
    data = as_dataset((torch.randn(3, 2), torch.tensor([0.5, 1.5, -0.25])))
    assert [r["label"] for r in _labels(bare, data, [0, 2], outputs=False)] == [0.5, -0.25]
    with pytest.raises(ConfigError, match="top needs to know what a wrong prediction is"):
        _labels(bare, data, [0])
