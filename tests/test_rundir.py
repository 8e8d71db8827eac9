"""One run, many questions: every command reads the fitted run directory instead of refitting."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import TINY

import ifscope
from ifscope.cli import main
from ifscope.core import krylov
from ifscope.estimators import arnoldi_sizing as arnoldi_estimator  # where the estimator runs its Krylov loop
from ifscope.run.store import CURVATURE, RunDir

FIT = ["--recipe", TINY, "--rank", "30", "--iterations", "40", "--hessian-samples", "64", "--block", "1"]


@pytest.fixture
def arnoldi_calls(monkeypatch):
    """Counts Arnoldi iterations started anywhere (the estimator's fit and the spectrum of other methods)."""
    calls = []

    def counting(*args, **kw):
        calls.append(kw.get("iterations", args[2] if len(args) > 2 else None))
        return real(*args, **kw)
    real = krylov.arnoldi
    monkeypatch.setattr(krylov, "arnoldi", counting)
    monkeypatch.setattr(arnoldi_estimator, "arnoldi", counting)
    return calls


def _json(capsys, argv):
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_fade_diagnose_correct_reuse_the_fit(tmp_path, capsys, arnoldi_calls):
    workdir = ["--workdir", str(tmp_path), "--recipe", TINY]  # a recorded recipe file runs only when named
    fit = _json(capsys, ["fit", *FIT, *workdir])
    assert arnoldi_calls == [40] and fit["config"]["rank"] == 30
    sha = RunDir(tmp_path).sha256(CURVATURE)
    assert fit["curvature_sha256"] == sha
    arnoldi_calls.clear()
    results = {
        "scores": _json(capsys, ["scores", *workdir]),
        "top": _json(capsys, ["top", *workdir, "--queries", "0-1", "-k", "2"]),
        "fade": _json(capsys, ["fade", *workdir, "--n-ids", "3", "--n-queries", "2", "--steps", "1,3",
                               "--krylov", "5"]),
        "diagnose": _json(capsys, ["diagnose", *workdir, "--n-queries", "3", "--n-train", "20", "--n-ids", "2",
                                   "--steps", "1", "3", "--epsilons", "0.5", "--n-checkpoints", "0"]),
        "correct": _json(capsys, ["correct", *workdir, "--queries", "1", "--k", "4", "--steps", "2",
                                  "--baselines", "random"]),
    }
    assert arnoldi_calls == []  # no command refitted the eigenbasis or recomputed the spectrum
    for name, out in results.items():
        assert out["config"] == fit["config"], name
        assert out["config"]["rank"] == 30 and out["curvature_sha256"] == sha and out["reused_fit"], name
    assert "arnoldi" in results["fade"]["methods"] and "arnoldi_horizon" in results["fade"]["methods"]
    manifest = RunDir(tmp_path).manifest["artifacts"]
    assert {"top.json", "fade.json", "diagnose.json", "correct.json", "scores.safetensors"} <= set(manifest)

    # another rank refits, says so, and drops what the old fit made
    capsys.readouterr()
    assert main(["fit", "--rank", "10", *workdir, "--json"]) == 0
    out, err = capsys.readouterr()
    refit = json.loads(out)
    assert refit["config"]["rank"] == 10 and refit["curvature_sha256"] != sha and "refitting" in err
    assert not {"top.json", "fade.json", "diagnose.json", "correct.json"} & set(RunDir(tmp_path).manifest["artifacts"])
    assert not (tmp_path / "fade.json").exists()


def test_open_rebuilds_the_fitted_influence_without_refitting(tmp_path, capsys, arnoldi_calls):
    assert main(["fit", *FIT, "--workdir", str(tmp_path)]) == 0
    with pytest.raises(ifscope.ConfigError, match="records the recipe file"):  # code from data: not run unnamed
        ifscope.Influence.open(tmp_path, progress=False)
    recipe = ifscope.load_recipe(TINY)
    arnoldi_calls.clear()
    inf = ifscope.Influence.open(tmp_path, recipe.task, recipe.train, progress=False)
    assert arnoldi_calls == [] and inf.reused and inf.config["rank"] == 30
    queries = (recipe.test[0][:3], recipe.test[1][:3])
    fresh = ifscope.Influence(recipe.task, recipe.train, rank=30, iterations=40, hessian_samples=64, block=1, progress=False,
                              weight_decay=recipe.info["weight_decay"]).fit()
    assert torch.allclose(inf.scores(queries), fresh.scores(queries), rtol=1e-4, atol=1e-6)
    assert torch.allclose(inf.scores(queries, train_ids=[5, 0, 7]), fresh.scores(queries)[:, [5, 0, 7]],
                          rtol=1e-4, atol=1e-6)
    with pytest.raises(ifscope.ArtifactError, match="no fitted run"):
        ifscope.Influence.open(tmp_path / "nothing")


def test_changed_tracin_checkpoints_of_the_same_shapes_refit(tmp_path):
    recipe = ifscope.load_recipe(TINY)
    params = dict(recipe.model.named_parameters())
    first = [({k: v.detach().clone() for k, v in params.items()}, 0.1)]
    second = [({k: v.detach() * 1.01 for k, v in params.items()}, 0.1)]

    def run(checkpoints):
        inf = ifscope.Influence(recipe.task, recipe.train, method="tracin", checkpoints=checkpoints,
                                workdir=tmp_path, progress=False).fit()
        return inf, inf.scores(recipe.test)
    a, sa = run(first)
    b, sb = run(second)
    assert a.config_json["checkpoints"] != b.config_json["checkpoints"]  # bound by content, not shape
    assert b.dropped and not b.reused and b.run.shards_computed > 0 and not torch.equal(sa, sb)
    c, sc = run(second)
    assert c.reused and c.run.shards_reused > 0 and torch.equal(sb, sc)
    reopened = ifscope.Influence.open(tmp_path, recipe.task, recipe.train, progress=False)
    assert torch.equal(reopened.scores(recipe.test), sb)  # the checkpoints come back from the saved state
