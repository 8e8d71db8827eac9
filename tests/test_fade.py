"""fade_curve on a tiny convex model, its JSON shape, and the ``ifscope fade`` command end to end."""

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
from ifscope.experiments.fade import gd_schedule, trajectory_checkpoints
from ifscope.truth.training import load_params, train

WD = 0.02
STEPS = [1, 3, 10, 30, 100]


def _convex():
    torch.manual_seed(0)
    x = torch.randn(80, 5, dtype=torch.float64)
    y = (x[:, :3].sum(1) + 0.8 * torch.randn(80, dtype=torch.float64) > 0).long() + (x[:, 3] > 1).long()
    model = nn.Linear(5, 3).double()
    task = ifscope.classification(model)
    load_params(model, train(task, (x[:60], y[:60]), steps=400, lr=1.0, weight_decay=WD, dtype=torch.float64).params)
    return task, (x[:60], y[:60]), (x[60:], y[60:])


@pytest.fixture(scope="module")
def fade():
    task, tr, te = _convex()
    shared = dict(weight_decay=WD, dtype=torch.float64, progress=False)
    graddot = ifscope.Influence(task, tr, method="graddot", **shared)
    schedule = gd_schedule(graddot, max(STEPS))  # full-batch GD, lr = 1/λ_max
    methods = {
        "horizon": ifscope.Influence(task, tr, method="horizon", horizon=max(STEPS), lr=schedule.lr, **shared),
        "exact": ifscope.Influence(task, tr, method="exact", **shared),
        "graddot": graddot,
        "tracin": ifscope.Influence(task, tr, method="tracin", per_step=True, **shared,
                                    checkpoints=trajectory_checkpoints(task, tr, schedule, max(STEPS), torch.float64)),
        "arnoldi_horizon": ifscope.Influence(task, tr, method="arnoldi", rank=4, iterations=15, horizon=max(STEPS),
                                             lr=schedule.lr, **shared),
    }
    ids = list(range(0, 60, 5))
    removal = ifscope.fade_curve(methods, te, ids, steps=STEPS, schedule=schedule, progress=False)
    up = ifscope.fade_curve(methods, te, ids, steps=STEPS, mode="upweight", epsilon=1e-3, schedule=schedule,
                            progress=False)
    return removal, up


def test_keys_and_shapes(fade):
    removal, _ = fade
    d = json.loads(json.dumps(removal.to_dict()))
    assert d["steps"] == STEPS and d["mode"] == "remove" and d["n_ids"] == 12 and d["n_queries"] == 20
    assert set(d["methods"]) == {"horizon", "exact", "graddot", "tracin", "arnoldi_horizon"}
    for m in d["methods"].values():
        for key in ("pearson", "spearman", "pearson_per_query", "spearman_per_query", "slope"):
            assert len(m[key]) == len(STEPS)
    assert len(d["gap"]) == len(STEPS) and isinstance(d["gap_rate"], float) and d["gap_exponent"] > 0
    assert d["epsilon"] == pytest.approx(-1 / 60)
    assert removal.predicted["horizon"].shape == removal.truth.delta.shape == (len(STEPS), 12, 20)


def test_horizon_predicts_continued_training_on_a_convex_model(fade):
    removal, up = fade
    for res in (removal, up):
        h = res.methods["horizon"]
        assert min(h["pearson"]) > 0.95, h["pearson"]
        assert min(h["spearman"]) > 0.9, h["spearman"]
        # and at every T it is at least as good as the classic IF and the gradient dot product
        for other in ("exact", "graddot"):
            assert all(a >= b - 1e-3 for a, b in zip(h["pearson"], res.methods[other]["pearson"])), other
    # small-ε up-weighting is in the linear regime: predicted and actual changes agree in scale too
    assert all(abs(s - 1) < 0.05 for s in up.methods["horizon"]["slope"]), up.methods["horizon"]["slope"]
    # the gap grows with T (a saturating, negative rate on a strongly convex model)
    assert all(a < b for a, b in zip(removal.gap, removal.gap[1:]))


def test_tracin_is_lr_times_graddot_at_one_step(fade):
    removal, _ = fade
    torch.testing.assert_close(removal.predicted["tracin"][0], removal.lr * removal.predicted["graddot"][0])


def test_figure_is_written(fade, tmp_path):
    path = ifscope.plot_fade(fade[0], tmp_path / "fade.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tracin_over_training_checkpoints_is_scored_once():
    task, tr, te = _convex()
    params, _ = task.state(torch.float64)
    inf = ifscope.Influence(task, tr, method="tracin", checkpoints=[(params, 0.1), (params, 0.2)], weight_decay=WD,
                            dtype=torch.float64, progress=False)
    res = ifscope.fade_curve(inf, te, [0, 5, 9], steps=STEPS, schedule=None, progress=False)
    assert torch.equal(res.predicted["tracin"][0], res.predicted["tracin"][-1])  # not a horizon-aware score


def test_bad_arguments():
    task, tr, te = _convex()
    inf = ifscope.Influence(task, tr, method="graddot", weight_decay=WD, progress=False)
    with pytest.raises(ifscope.ConfigError, match="mode"):
        ifscope.fade_curve(inf, te, [0, 1], steps=[1], mode="delete")
    with pytest.raises(ifscope.ConfigError, match="ids"):
        ifscope.fade_curve(inf, te, [0, 999], steps=[1], progress=False)
    with pytest.raises(ifscope.ConfigError, match="Influence"):
        ifscope.fade_curve({"x": 3}, te, [0, 1], steps=[1])


RECIPE = textwrap.dedent("""
    import torch
    from torch import nn
    import ifscope
    from ifscope.recipes import Recipe
    from ifscope.truth.training import load_params, train

    def make():
        torch.manual_seed(0)
        x = torch.randn(50, 4)
        y = (x[:, 0] > 0).long()
        model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
        task = ifscope.classification(model)
        load_params(model, train(task, (x[:40], y[:40]), steps=100, lr=0.5, weight_decay=0.01).params)
        return Recipe(model, task, (x[:40], y[:40]), (x[40:], y[40:]), info={"weight_decay": 0.01})
""")


def test_cli_fade_json(tmp_path):
    recipe = tmp_path / "tiny.py"
    recipe.write_text(RECIPE)
    src = str(Path(ifscope.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ifscope", "fade", "--recipe", f"{recipe}:make", "--workdir", str(tmp_path / "run"),
           "--steps", "1,3,10", "--n-ids", "5", "--n-queries", "4", "--rank", "5", "--iterations", "20",
           "--krylov", "5", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout)
    assert d["steps"] == [1, 3, 10] and d["mode"] == "remove"
    assert set(d["methods"]) == {"horizon", "arnoldi", "arnoldi_horizon", "exact", "graddot", "tracin", "unrolled"}
    validity = d["validity_horizon"]  # every checkpoint method against unrolled, per query
    assert set(validity) == {"horizon", "arnoldi", "arnoldi_horizon", "exact", "graddot"}
    assert all(len(v["per_query"]) == 4 and v["steps"] == [1, 3, 10] for v in validity.values())
    assert all(h is None or h in (1, 3, 10) for v in validity.values() for h in v["per_query"])
    assert all(len(m["pearson"]) == 3 and len(m["spearman"]) == 3 for m in d["methods"].values())
    assert {"gap", "gap_rate", "horizon_half"} <= set(d)
    assert json.loads((tmp_path / "run" / "fade.json").read_text())["steps"] == [1, 3, 10]
    assert (tmp_path / "run" / "report" / "fade_curve.png").stat().st_size > 0
    assert d["config"]["rank"] == 5 and d["curvature_sha256"]
    bad = subprocess.run(cmd[:-1] + ["--n-ids", "500"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "--n-ids" in bad.stderr and "Traceback" not in bad.stderr


def test_schedule_aware_horizon_follows_a_minibatch_order():
    task, tr, te = _convex()
    shared = dict(weight_decay=WD, dtype=torch.float64, progress=False)
    probe = ifscope.Influence(task, tr, method="graddot", **shared)
    # 3 batches per epoch (each id in 1 of 3 steps); a small step, so that batch noise barely moves the trajectory
    schedule = gd_schedule(probe, 30, lr=0.2, batch_size=20, seed=3)
    methods = {name: ifscope.Influence(task, tr, method="horizon", horizon=30, lr=schedule.lr, krylov=15,
                                       batch_order=order, **shared)
               for name, order in (("horizon", "average"), ("horizon_schedule", "schedule"))}
    res = ifscope.fade_curve(methods, te, list(range(0, 60, 4)), steps=[1, 2, 10, 30], mode="upweight",
                             epsilon=1e-3, schedule=schedule, progress=False)
    sched, avg = res.methods["horizon_schedule"]["pearson"], res.methods["horizon"]["pearson"]
    assert min(sched) > 0.99, sched
    assert sched[0] > avg[0] + 0.2  # after one step only the ids in the first batch have moved anything
