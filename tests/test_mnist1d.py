"""The mnist1d recipes at tiny sizes: offline data, cached weights, retraining, EK-FAC on a Conv1d, the CLI."""

import json
import random

import numpy as np
import pytest
import torch
from cli_helpers import ifscope as run_cli

import ifscope
from ifscope.recipes import load_recipe

TINY = dict(n_train=60, n_test=20, epochs=1)


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IFSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_data_is_generated_offline_once_and_leaves_the_global_seeds_alone(tmp_cache):
    np.random.seed(7)
    random.seed(7)
    first = load_recipe("mnist1d-mlp", **TINY)
    assert np.random.rand() == np.random.RandomState(7).rand() and random.random() == random.Random(7).random()
    x, y = first.train
    assert x.shape == (60, 40) and x.dtype == torch.float32 and set(y.tolist()) <= set(range(10))
    assert len(list(tmp_cache.glob("mnist1d-data-*.safetensors"))) == 1
    again = load_recipe("mnist1d-mlp", **TINY)
    assert again.info["cached"] and torch.equal(again.train[0], x) and torch.equal(again.test[1], first.test[1])
    with pytest.raises(ifscope.IfscopeError, match="multiple of 10"):
        load_recipe("mnist1d-mlp", n_train=61, n_test=20)


@pytest.mark.parametrize("name", ["mnist1d-mlp", "mnist1d-cnn"])
def test_retrain_is_the_recipes_own_training_and_ekfac_scores(name):
    recipe = load_recipe(name, seed=2, **TINY)
    state = recipe.retrain(recipe.train, 2)
    assert all(torch.equal(v, recipe.model.state_dict()[k]) for k, v in state.items())
    inf = ifscope.Influence(recipe.task, recipe.train, "ekfac", progress=False)
    assert len(inf.fit().estimator.layers) == 3  # every layer factored: Linear and Conv1d alike
    assert inf.scores((recipe.test[0][:2], recipe.test[1][:2])).shape == (2, 60)


def test_cli_lds_with_ekfac_and_top_with_the_recipes_defaults(tmp_path):
    small = ["--recipe", "mnist1d-mlp", *(f"--recipe-arg={k}={v}" for k, v in TINY.items())]
    out = json.loads(run_cli("lds", *small, "--method", "ekfac", "--subsets", "4", "--queries", "3",
                             "--workdir", str(tmp_path / "lds"), "--json").stdout)
    assert out["subsets"] == 4 and -1 <= out["methods"]["ekfac"]["lds"] <= 1
    top = run_cli("top", "--recipe", "mnist1d-cnn", *(f"--recipe-arg={k}={v}" for k, v in TINY.items()),
                  "--workdir", str(tmp_path / "top"), "--json")
    assert json.loads(top.stdout)
    fit = json.loads(run_cli("fit", "--recipe", "mnist1d-cnn", *(f"--recipe-arg={k}={v}" for k, v in TINY.items()),
                             "--method", "ekfac", "--workdir", str(tmp_path / "ekfac"), "--json").stdout)
    assert fit["method"] == "ekfac" and fit["eigenvalues"] is None  # per-layer eigenvalues are not a kept spectrum
