"""Estimator options for recipe-driven commands: flag > manifest > recipe defaults > estimator defaults."""

import json

import pytest
from cli_helpers import ROOT, ifscope
from torch import nn

import ifscope as ifs
from ifscope.core.errors import ConfigError
from ifscope.run.resolve import resolve, select_parameters
from ifscope.run.store import RunDir

SIZED = str(ROOT / "tests" / "recipes_for_tests.py") + ":sized"


@pytest.fixture
def task():
    return ifs.classification(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)))


def test_layers_in_order(task):
    recipe = {"rank": 5, "iterations": 30, "hessian_samples": 64}
    saved = {"method": "arnoldi", "rank": 7, "hessian_samples": None}
    got = resolve({"rank": None, "iterations": 12}, saved, recipe, task)
    mine = ("rank", "iterations", "hessian_samples", "select")
    assert got.method == "arnoldi"
    assert {k: got.options[k] for k in mine} == {"rank": 7, "iterations": 12, "hessian_samples": None,
                                                 "select": "positive"}
    assert {k: got.source[k] for k in mine} == {"rank": "manifest", "iterations": "flag",
                                                "hessian_samples": "manifest", "select": "library"}
    assert "iterations 12 (flag)" in got.describe()
    # a manifest of another method says nothing about this one; the recipe's arnoldi sizes do not reach cg
    other = resolve({}, {"method": "cg", "rank": 7}, recipe, task, method_flag="arnoldi")
    assert {k: other.options[k] for k in recipe} == recipe
    got = resolve({}, {"method": "cg", "rank": 7}, recipe, task)
    assert got.method == "cg" and got.options["hessian_samples"] == 64 and "rank" not in got.options
    assert {k for k, v in got.source.items() if v != "library"} == {"hessian_samples"}


def test_bad_options_are_named(task):
    with pytest.raises(ConfigError, match="--rank is not an option of method 'cg'"):
        resolve({"rank": 3}, {}, {}, task, method_flag="cg")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['rnak'\]"):
        resolve({}, {}, {"rnak": 3}, task)
    with pytest.raises(ConfigError, match="unknown --method 'nope'"):
        resolve({}, {}, {"method": "nope"}, task)


def test_selection_by_names_keeps_the_model(task):
    head = select_parameters(task, names=["2.weight", "2.bias"])
    assert head.parameter_names == ["2.weight", "2.bias"] and head.model is task.model
    assert select_parameters(task) is task


def test_cli_takes_the_recipe_defaults_then_the_manifest(tmp_path):
    workdir = tmp_path / "run"
    proc = ifscope("fit", "--recipe", SIZED, "--workdir", str(workdir), "--json")
    out = json.loads(proc.stdout)
    assert len(out["eigenvalues"]) <= 6 and "rank 6 (recipe)" in proc.stderr
    config = RunDir(workdir).config
    assert (config["rank"], config["iterations"], config["hessian_samples"], config["batch_size"]) == (6, 18, 50, 40)
    # a later command with one flag changed keeps the rest from the manifest
    proc = ifscope("fit", "--recipe", SIZED, "--workdir", str(workdir), "--rank", "4", "--json")
    assert "rank 4 (flag)" in proc.stderr and "iterations 18 (manifest)" in proc.stderr
    assert RunDir(workdir).config["rank"] == 4


def test_last_blocks_from_the_recipe_then_the_flag_then_the_manifest():
    from test_hf import tiny_bert
    task = ifs.hf_classification(tiny_bert())
    head = ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]
    assert resolve({}, {}, {"last_blocks": 0}, task).task.parameter_names == head
    flagged = resolve({"last_blocks": 1}, {}, {"last_blocks": 0}, task).task
    assert flagged.parameter_names[0].startswith("bert.encoder.layer.1.") and flagged.parameter_names[-4:] == head
    saved = {"method": "arnoldi", "parameters": head[2:]}
    assert resolve({}, saved, {"last_blocks": 1}, task).task.parameter_names == head[2:]
    assert resolve({}, {}, {}, task).task is task


def test_top_on_a_text_recipe_prints_texts_with_the_recipe_defaults(tmp_path):
    texts = str(ROOT / "tests" / "recipes_for_tests.py") + ":texts"
    proc = ifscope("top", "--recipe", texts, "--workdir", str(tmp_path), "--queries", "0", "-k", "2")
    assert "rank 2 (recipe)" in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("test #0: label") and lines[1].endswith("test text 0 <0>")
    assert lines[2] == "  proponents:" and " train text " in lines[3] and lines[5] == "  opponents:"
    config = RunDir(tmp_path).config
    assert config["parameters"] == ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight",
                                    "classifier.bias"]  # last_blocks 0 from the recipe, recorded in the manifest
