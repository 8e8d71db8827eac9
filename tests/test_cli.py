"""Every subcommand through the real command line (``python -m ifscope``), its ``--json`` output parsed."""

import json
import shutil

import pytest
import torch
from cli_helpers import TINY, ifscope
from recipes_for_tests import tiny
from report_fixtures import write_fixtures

from ifscope import Influence
from ifscope.cli import main
from ifscope.report import render_report
from ifscope.run.store import RunDir

FIT = ["--recipe", TINY, "--rank", "8", "--iterations", "24", "--batch-size", "64"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A run directory after `ifscope fit`, and that command's parsed JSON."""
    workdir = tmp_path_factory.mktemp("run")
    out = json.loads(ifscope("fit", *FIT, "--workdir", str(workdir), "--json").stdout)
    return workdir, out


def test_fit_json_and_reuse(fitted, capsys):
    workdir, out = fitted
    assert out["method"] == "arnoldi" and not out["reused"] and out["n_train"] == 200
    assert len(out["eigenvalues"]) == 8 and out["eigenvalues"] == sorted(out["eigenvalues"], reverse=True)
    assert main(["fit", "--recipe", TINY, "--workdir", str(workdir)]) == 0
    again = capsys.readouterr().out
    assert again.startswith("reused the curvature") and "{" not in again


def test_scores_json_matches_the_python_api(fitted):
    workdir, _ = fitted
    out = json.loads(ifscope("scores", "--recipe", TINY, "--workdir", str(workdir), "--queries", "0-9,20",
                             "--json").stdout)
    assert out["shape"] == [11, 200] and out["queries"] == [*range(10), 20] and out["reused_curvature"]
    assert out["shards_computed"] + out["shards_reused"] == 4
    saved = RunDir(workdir).load_tensors("scores.safetensors")
    recipe = tiny()
    expected = Influence(recipe.task, recipe.train, rank=8, iterations=24, batch_size=64, progress=False,
                         weight_decay=recipe.info["weight_decay"]).fit().scores(
        (recipe.test[0][saved["queries"]], recipe.test[1][saved["queries"]]))
    torch.testing.assert_close(saved["scores"], expected)
    assert out["min"] == pytest.approx(float(expected.min()), rel=1e-4)


def test_top_json_is_sorted_and_carries_the_gallery(fitted):
    workdir, _ = fitted
    out = json.loads(ifscope("top", "--recipe", TINY, "--workdir", str(workdir), "--queries", "0-2", "-k", "4",
                             "--json").stdout)
    assert out["k"] == 4 and [q["index"] for q in out["queries"]] == [0, 1, 2] and out["view"] == "image"
    for q in out["queries"]:
        pro = [e["score"] for e in q["proponents"]]
        opp = [e["score"] for e in q["opponents"]]
        assert pro == sorted(pro, reverse=True) and opp == sorted(opp) and pro[0] > 0 > opp[0]
        assert len(q["pixels"]) == 64 and all(len(e["pixels"]) == 64 for e in q["proponents"])
    assert json.loads((workdir / "top.json").read_text())["queries"] == out["queries"]


def test_report_json_and_missing_sections(fitted, tmp_path):
    workdir, _ = fitted
    assert main(["top", "--recipe", TINY, "--workdir", str(workdir), "--queries", "0", "-k", "2"]) == 0
    page = render_report(workdir).read_text()
    for cmd in ("fade", "diagnose", "correct"):
        assert f"not computed — run <code>ifscope {cmd}</code>" in page
    assert 'id="spectrum" data-computed="yes"' in page and 'id="gallery" data-computed="yes"' in page
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    write_fixtures(copy)
    out = json.loads(ifscope("report", str(copy), "--json").stdout)
    assert out["sections"] == dict.fromkeys(("fade", "gap", "spectrum", "assumptions", "correction", "gallery",
                                             "suspects", "lds"), True)
    lds = (copy / "report" / "index.html").read_text().split('id="lds"')[1]
    assert "<td>exact</td><td>0.95</td><td>[0.95, 0.96]</td>" in lds and "100 random 0.50 subsets" in lds
    assert (copy / "report" / "fade.png").stat().st_size > 1000


def test_demo_json(tmp_path):
    workdir = tmp_path / "demo"
    proc = ifscope("demo", "--quick", "--recipe", TINY, "--workdir", str(workdir), "--rank", "6", "--iterations", "20",
                   "--queries", "0-1", "-k", "3", "--json")
    out = json.loads(proc.stdout)
    assert list(out["steps"]) == ["fit", "scores", "top", "fade", "diagnose", "correct", "report"]
    assert out["report"].endswith("index.html") and (workdir / "report" / "index.html").exists()
    assert out["steps"]["scores"]["shape"] == [40, 200] and len(out["steps"]["fit"]["eigenvalues"]) == 6
    assert "ifscope demo: report done" in proc.stderr


def test_demo_prints_the_report_path_last_and_reuses(tmp_path, capsys):
    args = ["demo", "--quick", "--recipe", TINY, "--workdir", str(tmp_path), "--rank", "6", "--iterations", "20",
            "-k", "2"]
    assert main(args) == 0 and main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"report: {(tmp_path / 'report' / 'index.html').resolve()}"
    assert any("reused the curvature" in line for line in lines)
    found = {line.split(":")[0].strip(): line for line in lines if line.startswith("  ")}
    assert "Pearson" in found["fade"] and "at T=10" in found["fade"]
    assert "convexity " in found["diagnose"] and "divergence " in found["diagnose"]
    assert "influence fixed " in found["correct"] or "no mistakes" in found["correct"]


def test_user_errors_exit_2_without_traceback(fitted, tmp_path, capsys):
    workdir, _ = fitted
    other = str(TINY).replace(":tiny", ":wide")
    proc = ifscope("fit", "--recipe", other, "--workdir", str(workdir), check=False)
    assert proc.returncode == 2 and "made for another model" in proc.stderr and "Traceback" not in proc.stderr
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not an ifscope run directory" in capsys.readouterr().err
    assert main(["scores", "--recipe", TINY, "--workdir", str(workdir), "--queries", "7-99"]) == 2
    assert "--queries '7-99' names indices [40, 41" in capsys.readouterr().err
    assert main(["fit", "--recipe", "no-such-recipe", "--workdir", str(tmp_path)]) == 2
    assert "no built-in recipe 'no-such-recipe'" in capsys.readouterr().err


def test_report_gallery_shows_texts_escaped(tmp_path):
    run = RunDir(tmp_path)
    run.bind({"model": "m", "train": "d"}, {"method": "graddot"})
    run.save_json("top.json", {
        "k": 1, "n_train": 2, "method": "graddot", "view": "text", "image_shape": [], "classes": ["neg", "pos"],
        "queries": [{"index": 0, "label": 1, "predicted": 0, "text": "a <b>great</b> film",
                     "proponents": [{"index": 1, "label": 1, "score": 0.5, "text": "loved it"}],
                     "opponents": [{"index": 0, "label": 0, "score": -0.25, "text": "dull & long"}]}]})
    page = render_report(tmp_path).read_text()
    assert "a &lt;b&gt;great&lt;/b&gt; film" in page and "dull &amp; long" in page and "label pos" in page
    assert "predicted neg" in page and "score +0.5" in page and "<img" not in page.split('id="gallery"')[1]
    assert "Method graddot keeps no eigenvalues" in page
