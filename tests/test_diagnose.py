"""Verdicts of ifscope.experiments.diagnose on tiny models where each assumption is known to hold or to fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import ifscope
from ifscope.experiments.diagnose.common import AGREE_HOLD, AGREE_QUESTION, REMAINDER_QUESTION
from ifscope.truth.training import load_params, train

N, D, C = 300, 5, 3


def blobs(seed: int = 0, scales: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Three overlapping Gaussian classes in 5 dimensions (so the optimum is finite without weight decay too)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % C
    centers = torch.randn(C, D, generator=gen)
    x = centers[y] + 1.5 * torch.randn(N, D, generator=gen)
    return (x * scales if scales is not None else x), y


def logistic(data, steps: int, wd: float = 1e-2, lr: float = 0.5, seed: int = 0):
    """A convex softmax regression trained by full-batch GD from its seeded initialisation; returns (task, initial)."""
    torch.manual_seed(seed)
    model = nn.Linear(D, C)
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    task = ifscope.classification(model)
    if steps:
        load_params(model, train(task, data, steps=steps, lr=lr, weight_decay=wd).params)
    return task, initial


def influence(task, data, wd: float, rank: int = 18, **kw) -> ifscope.Influence:
    return ifscope.Influence(task, data, method="arnoldi", rank=rank, iterations=18, weight_decay=wd,
                             progress=False, **kw)


def test_convex_model_holds_everywhere_it_should():
    data = blobs()
    task, initial = logistic(data, steps=400)
    d = ifscope.diagnose(influence(task, data, 1e-2), data, n_queries=6, n_train=40, n_ids=3, steps=(1, 5, 25),
                         initial=initial)
    a = d.to_dict()["assumptions"]
    assert set(a) == {"convexity", "stability", "trajectory", "divergence", "first_order"}
    assert a["convexity"]["verdict"] == "holds"
    assert a["convexity"]["lambda_min"] >= 1e-2 * 0.99  # weight decay bounds the spectrum from below
    assert a["convexity"]["negative_count"] == 0 and a["convexity"]["kept_negative"] == 0
    assert a["trajectory"]["verdict"] == "holds", a["trajectory"]
    assert a["divergence"]["verdict"] == "holds" and a["divergence"]["rate"] < 0  # GD on a convex loss saturates
    assert min(a["divergence"]["agreement_with_unrolled"]) > 0.99 and a["divergence"]["frozen_valid_up_to"] == 25
    f = a["first_order"]
    assert f["exact"]["n_ids"] == 3 and f["exact"]["n_queries"] == 6
    assert all(abs(s - 1) < 0.05 for s in f["slope"]) and min(f["pearson_with_exact"]) > 0.99
    # the remainder is second order: relative to the linear part it grows like |ε| (ε = 0.1 vs ε = 1)
    for small, large in zip(f["remainder"]["0.1"], f["remainder"]["1"]):
        assert 0.05 < small / large < 0.2
    assert f["verdict"] == "holds" and f["max_remainder"] < 0.1 and min(f["r2"]) > 0.99
    assert f["linear_up_to"] == 25
    for v in a.values():
        assert v["verdict"] in ("holds", "questionable", "violated") and v["advice"]
    json.dumps(d.to_dict())  # JSON-ready (no inf, no tensors)
    assert "convexity" in d.table() and "holds" in d.table()


def test_first_order_and_divergence_are_the_fade_s_figures_on_the_same_sample():
    """diagnose and fade cannot contradict: on the same ids, queries and schedule, diagnose's first-order figures are
    the fade's unrolled row and its divergence figures the fade's horizon of validity of horizon."""
    from ifscope.core.data import as_dataset, take
    from ifscope.experiments.fade import fade_curve, gd_schedule, reference_methods
    from ifscope.experiments.validity import fade_validity
    data = blobs()
    task, _ = logistic(data, steps=30)  # not converged: figures that move with T
    inf = influence(task, data, 1e-2)
    schedule = gd_schedule(inf.fit(), 25)
    d = ifscope.diagnose(inf, data, checks=["divergence", "first_order"], n_queries=5, n_ids=4, epsilon_ids=1,
                         epsilons=[], steps=(1, 5, 25), schedule=schedule,
                         n_train=len(as_dataset(data))).assumptions  # divergence ranks the scored sample: all here
    refs = reference_methods(inf, ("unrolled", "horizon"), schedule, 25, dtype=torch.float64)
    queries, ids = take(as_dataset(data), range(5)), torch.tensor(d["divergence"]["ids"])
    fade = fade_curve({"unrolled": refs["unrolled"]}, queries, ids, steps=[1, 5, 25], schedule=schedule,
                      progress=False).methods["unrolled"]
    assert d["first_order"]["slope"] == pytest.approx(fade["slope"], rel=1e-9)
    assert d["first_order"]["pearson_with_exact"] == pytest.approx(fade["pearson"], rel=1e-9)
    validity = fade_validity(refs, queries, [1, 5, 25], schedule)["horizon"]
    assert d["divergence"]["agreement_with_unrolled"] == pytest.approx(validity["summary"]["mean_spearman"])
    assert d["divergence"]["frozen"]["per_query"] == validity["per_query"]


def test_on_minibatches_the_frozen_reference_follows_the_batches():
    """With minibatch SGD the frozen response is summed over the batches that hold each example (horizon_schedule):
    at T = 1 it is the exact derivative, so the divergence check measures the freezing (of H to its full-batch
    average and of the gradients), not batch membership."""
    data = blobs()
    task, _ = logistic(data, steps=400)
    dv = ifscope.diagnose(influence(task, data, 1e-2), data, checks=["divergence"], n_queries=4, n_ids=2,
                          steps=(1, 5, 25), train_batch_size=50).assumptions["divergence"]
    assert dv["frozen"]["method"] == "horizon_schedule" and dv["schedule"]["batch_size"] == 50
    assert dv["agreement_with_unrolled"][0] > 0.99  # plain horizon would score the examples outside batch 1 too


def saddle(scale: float = 0.0):
    """A two-layer linear classifier at (or near) its saddle W1 = W2 = 0: the Hessian there is [[0, B], [Bᵀ, 0]]."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(D, 4, bias=False), nn.Linear(4, C, bias=False))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return ifscope.classification(model)


def test_convexity_violated_at_a_saddle():
    data = blobs()
    inf = ifscope.Influence(saddle(), data, method="arnoldi", rank=5, iterations=32, progress=False)
    a = ifscope.diagnose(inf, data, checks=["convexity"]).to_dict()["assumptions"]
    c = a["convexity"]
    assert c["verdict"] == "violated"
    assert c["lambda_min"] == pytest.approx(-c["lambda_max"], rel=1e-3)  # the spectrum of [[0,B],[Bᵀ,0]] is ±σ
    assert c["negative_count"] >= 1 and c["negative_mass"] > 0.5
    # keeping eigenvalues by magnitude puts negative ones into the inverse: counted
    mag = ifscope.Influence(saddle(), data, method="arnoldi", rank=4, iterations=32, select="magnitude",
                            progress=False)
    m = ifscope.diagnose(mag, data, checks=["convexity"]).assumptions["convexity"]
    assert m["kept_negative"] == 2 and m["verdict"] == "violated"


def test_divergence_violated_near_a_saddle():
    data = blobs()
    inf = ifscope.Influence(saddle(1e-3), data, method="arnoldi", rank=5, iterations=32, progress=False)
    a = ifscope.diagnose(inf, data, checks=["divergence"], n_queries=4, n_ids=2, steps=(1, 10, 30, 100)).assumptions["divergence"]
    assert a["rate"] > 0 and a["verdict"] == "violated", a
    assert a["horizon"] < 50
    # leaving the saddle, the exact response departs from the one frozen at the checkpoint
    assert a["agreement_with_unrolled"][0] > 0.9 > AGREE_QUESTION > a["agreement_with_unrolled"][-1]
    assert a["frozen_valid_up_to"] == 10 and len(a["frozen"]["per_query"]) == 4


def tiny_tanh(n: int, hidden: int):
    """A tanh MLP on n of the blobs (no weight decay), trained 300 full-batch steps: removing one of n examples is a
    large perturbation, so the first-order response holds at T = 1 only."""
    x, y = blobs()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(D, hidden), nn.Tanh(), nn.Linear(hidden, C))
    task = ifscope.classification(model)
    load_params(model, train(task, (x[:n], y[:n]), steps=300, lr=0.5).params)
    inf = ifscope.Influence(task, (x[:n], y[:n]), method="arnoldi", rank=10, iterations=30, progress=False)
    return inf, (x[n:n + 20], y[n:n + 20])


@pytest.mark.parametrize("n,hidden,steps,want", [(6, 4, (1,), "holds"), (10, 8, (1, 10, 100), "questionable"),
                                                 (6, 4, (1, 30, 300), "violated")])
def test_first_order_flips_with_the_size_of_the_perturbation(n, hidden, steps, want):
    inf, queries = tiny_tanh(n, hidden)
    f = ifscope.diagnose(inf, queries, checks=["first_order"], n_queries=10, n_ids=n, epsilon_ids=2,
                         steps=steps).assumptions["first_order"]
    assert f["verdict"] == want, f
    assert f["exact"]["n_ids"] == n and len(f["epsilon_ids"]) == 2
    if want != "holds":  # the actual change outgrows the exact first-order one
        assert f["max_remainder"] > REMAINDER_QUESTION and f["slope"][-1] > 2
        assert (min(f["pearson_with_exact"]) >= AGREE_HOLD) == (want == "questionable")


def test_stability_flips_with_conditioning():
    data = blobs()
    task, _ = logistic(data, steps=400, wd=1.0)  # strong weight decay: all eigenvalues within a factor ~3
    cheap = ifscope.diagnose(influence(task, data, 1.0), data, checks=["stability"], n_queries=6,
                             n_train=40).assumptions["stability"]
    assert cheap["verdict"] == "holds" and cheap["refits"] == [], cheap  # read off the fit alone
    good = ifscope.diagnose(influence(task, data, 1.0), data, checks=["stability"], n_queries=6, n_train=40,
                            refit=True).assumptions["stability"]
    assert good["verdict"] == "holds", good
    assert good["agreement"]["float32_vs_float64"] > 0.99
    assert good["agreement"]["rank_k_vs_2k"] is None  # rank 18 is the whole space
    # features on scales from 1 to 1e-4 and no weight decay: Hessian eigenvalues span ~8 decades
    scales = torch.logspace(0, -4, D)
    bad_data = blobs(scales=scales)
    bad_task, _ = logistic(bad_data, steps=400, wd=0.0)
    bad = ifscope.diagnose(influence(bad_task, bad_data, 0.0), bad_data, checks=["stability"], n_queries=6,
                           n_train=40).assumptions["stability"]
    assert bad["verdict"] == "violated", bad
    assert bad["condition_times_epsilon"] > 1e-2
    assert "condition" in bad["problems"]


def test_trajectory_flips_far_from_convergence():
    data = blobs()
    verdicts = {}
    for steps in (2, 400):
        task, initial = logistic(data, steps=steps)
        t = ifscope.diagnose(influence(task, data, 1e-2), data, checks=["trajectory"], initial=initial,
                             n_queries=6, n_train=40).assumptions["trajectory"]
        verdicts[steps] = t
    assert verdicts[2]["verdict"] == "violated" and verdicts[2]["gradient_ratio"] > 0.1
    assert verdicts[400]["verdict"] == "holds" and verdicts[400]["gradient_ratio"] < 1e-2
    # without the start of training, the mean gradient against the per-example ones still flips
    for steps, want in ((2, "violated"), (400, "holds")):
        task, _ = logistic(data, steps=steps)
        t = ifscope.diagnose(influence(task, data, 1e-2), data, checks=["trajectory"], n_queries=6,
                             n_train=40).assumptions["trajectory"]
        assert t["gradient_reference"] == "per-example gradients" and t["verdict"] == want, (steps, t)


def test_checkpoint_agreement_is_measured():
    data = blobs()
    task, _ = logistic(data, steps=400)
    state = {k: v.detach().clone() for k, v in task.model.named_parameters()}
    early, _ = logistic(data, steps=3)
    early_state = {k: v.detach().clone() for k, v in early.model.named_parameters()}
    t = ifscope.diagnose(influence(task, data, 1e-2), data, checks=["trajectory"], n_queries=6, n_train=40,
                         checkpoints=[(early_state, 0.5), state], refit=True).assumptions["trajectory"]
    assert t["checkpoint_agreement"][1] == pytest.approx(1.0)  # the same parameters give the same scores
    assert t["checkpoint_agreement"][0] < t["checkpoint_agreement"][1]
    assert torch.equal(task.model.weight, state["weight"])  # the model is restored afterwards


def test_bad_options_raise():
    data = blobs()
    task, _ = logistic(data, steps=0)
    inf = influence(task, data, 1e-2)
    with pytest.raises(ifscope.ConfigError, match="unknown check"):
        ifscope.diagnose(inf, checks=["convexitty"])
    with pytest.raises(ifscope.ConfigError, match="reference_epsilon"):
        ifscope.diagnose(inf, epsilons=[0.001])
    with pytest.raises(ifscope.ConfigError, match="n_ids"):
        ifscope.diagnose(inf, n_ids=0)
    with pytest.raises(ifscope.ConfigError, match="epsilon_ids"):
        ifscope.diagnose(inf, epsilon_ids=0)


def test_cli_writes_json_and_figures(tmp_path: Path):
    recipe = tmp_path / "tiny.py"
    recipe.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_diagnose import blobs, logistic
        from ifscope.recipes import Recipe

        def make(steps=400):
            data = blobs()
            task, initial = logistic(data, steps=steps)
            return Recipe(task.model, task, data, data, info={{"weight_decay": 1e-2, "initial": initial}})
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(ifscope.__file__).parents[1])}
    cmd = [sys.executable, "-m", "ifscope", "diagnose", "--recipe", f"{recipe}:make", "--workdir", str(tmp_path / "run"),
           "--rank", "18", "--iterations", "18", "--n-queries", "4", "--n-train", "30",
           "--n-ids", "2", "--steps", "1", "5", "--checks", "convexity", "trajectory", "divergence", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["assumptions"]) == {"convexity", "trajectory", "divergence"}
    assert result["assumptions"]["trajectory"]["gradient_reference"] == "start of training"
    on_disk = json.loads((tmp_path / "run" / "diagnose.json").read_text())
    assert on_disk["assumptions"]["convexity"]["verdict"] == result["assumptions"]["convexity"]["verdict"]
    assert (tmp_path / "run" / "report" / "diagnose_spectrum.png").stat().st_size > 1000
    assert (tmp_path / "run" / "report" / "diagnose_gap.png").stat().st_size > 1000

def test_cli_rejects_a_bad_recipe_argument(tmp_path: Path, capsys):
    from ifscope.cli import main
    code = main(["diagnose", "--recipe", "digits-mlp", "--workdir", str(tmp_path), "--recipe-arg", "nonsense=1"])
    assert code == 2 and "nonsense" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["exact", "graddot"])
def test_other_methods_are_diagnosed(method):
    data = blobs()
    task, _ = logistic(data, steps=400, wd=1.0)
    inf = ifscope.Influence(task, data, method=method, weight_decay=1.0, progress=False)
    s = ifscope.diagnose(inf, data, checks=["convexity", "stability"], n_queries=4, n_train=30).assumptions
    assert s["convexity"]["verdict"] == "holds"
    assert s["stability"]["agreement"]["float32_vs_float64"] > 0.99
    assert ("disjoint_hessian_samples" in s["stability"]["agreement"]) == (method == "exact")
    assert s["stability"]["verdict"] == "holds", s["stability"]


def test_key_figures_skip_the_horizons_at_which_nothing_had_changed_yet():
    """Under minibatches a T before any removed example was in a batch has no figures (NaN, None in JSON)."""
    from ifscope.experiments.diagnose import first_order
    from ifscope.experiments.diagnose.common import highest, lowest
    assert lowest([None, float("nan"), 0.5, 0.2]) == 0.2 and highest([None, 0.5, float("nan"), 0.2]) == 0.5
    assert lowest([None, float("nan")]) != lowest([None, float("nan")])  # nothing measured: NaN, shown as n/a
    a = dict(max_remainder=0.1, slope=[None, 1.1], pearson_with_exact=[None, 0.97], epsilon_max_remainder=0.01,
             r2=[float("nan"), 0.99])
    text = first_order.key_figures(a)
    assert "min Pearson 0.97" in text and "min R² 0.99" in text and "slope n/a→1.1" in text
