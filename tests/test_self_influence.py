"""`ifscope self-influence`: suspects ranked by score(z, z), the ROC AUC against flipped labels, the report section."""

import json

import pytest
import torch
from cli_helpers import ROOT, ifscope
from recipes_for_tests import flipped
from sklearn.metrics import roc_auc_score

from ifscope import Influence
from ifscope.cli.self_influence import flip_auc
from ifscope.core.errors import ConfigError
from ifscope.report import render_report

FLIPPED = str(ROOT / "tests" / "recipes_for_tests.py") + ":flipped"
OPTIONS = ["--rank", "8", "--iterations", "24", "--batch-size", "64"]


def test_flip_auc_counts_pairs_ranked_right():
    # 2 flipped x 2 clean pairs: (0.9 > 0.1), (0.9 > 0.5), (0.4 < 0.5), (0.4 > 0.1) -> 3 of 4 right
    assert flip_auc(torch.tensor([0.9, 0.1, 0.4, 0.5]), [True, False, True, False]) == 0.75
    assert flip_auc(torch.tensor([1.0, 2.0]), [False, False]) is None
    with pytest.raises(ConfigError, match="3 entries for 2"):
        flip_auc(torch.tensor([1.0, 2.0]), [True, False, False])


def test_cli_ranks_by_the_api_self_influence_and_reports_the_auc(tmp_path):
    workdir = tmp_path / "run"
    out = json.loads(ifscope("self-influence", "--recipe", FLIPPED, "--recipe-arg", "flip=0.1", *OPTIONS, "-k", "7",
                             "--workdir", str(workdir), "--json").stdout)
    recipe = flipped(flip=0.1)
    expected = Influence(recipe.task, recipe.train, rank=8, iterations=24, batch_size=64, progress=False,
                         weight_decay=recipe.info["weight_decay"]).self_influence()
    order = torch.argsort(expected, descending=True)[:7].tolist()
    assert [e["index"] for e in out["top"]] == order
    torch.testing.assert_close(torch.tensor([e["score"] for e in out["top"]]), expected[order])
    assert [e["label"] for e in out["top"]] == recipe.train[1][order].tolist()
    assert out["auc"] == pytest.approx(roc_auc_score(recipe.info["flipped"].numpy(), expected.numpy()))
    assert out["n_flipped"] == 20 and all(len(e["pixels"]) == 64 for e in out["top"])
    assert json.loads((workdir / "self_influence.json").read_text())["top"] == out["top"]
    page = render_report(workdir).read_text()
    section = page.split('id="suspects"')[1]
    assert 'data-computed="yes"' in page.split('<section id="suspects"')[1][:40]
    assert section.count('class="card sus"') == 7 and section.count("<img") == 7
    assert f"ROC AUC {out['auc']:.3f}" in section


def test_no_flips_means_no_auc(tmp_path):
    out = json.loads(ifscope("self-influence", "--recipe", FLIPPED, *OPTIONS, "-k", "3",
                             "--workdir", str(tmp_path / "run"), "--json").stdout)
    assert out["auc"] is None and len(out["top"]) == 3 and "flipped" in out["top"][0]


def test_bad_k_is_a_user_error(tmp_path):
    proc = ifscope("self-influence", "--recipe", FLIPPED, "-k", "0", "--workdir", str(tmp_path), check=False)
    assert proc.returncode == 2 and "k must be a positive integer" in proc.stderr
