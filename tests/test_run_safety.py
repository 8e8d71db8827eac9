"""A run directory is safe to share and to use from two commands at once: nothing outside it is touched, no code
runs from it, no artifact is reused for another fit or lost, and every problem is one line with exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, cli_env
from recipes_for_tests import tiny

import ifscope
from ifscope import ArtifactError, IfscopeError, Influence, NumericalWarning
from ifscope.cli import main
from ifscope.run.lock import locked
from ifscope.run.store import CURVATURE, MANIFEST, RunDir

FIT = ["--recipe", TINY, "--rank", "8", "--iterations", "24", "--hessian-samples", "64"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """A finished tiny run: fitted, with scores (training shards) and top.json."""
    workdir = tmp_path_factory.mktemp("fitted")
    for argv in (["fit", *FIT], ["scores", "--recipe", TINY, "--queries", "0-3"],
                 ["top", "--recipe", TINY, "--queries", "0-1", "-k", "3"]):
        assert main([*argv, "--workdir", str(workdir)]) == 0
    return workdir


@pytest.fixture
def run_copy(fitted, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(fitted, copy)
    return copy


def _edit(workdir: Path, change) -> None:
    manifest = json.loads((workdir / MANIFEST).read_text())
    change(manifest)
    (workdir / MANIFEST).write_text(json.dumps(manifest))


def _one_line_exit_2(capsys, argv, match: str) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # progress lines ("ifscope: arnoldi: ...") may come first
    errors = [line for line in lines if line.startswith("ifscope: error:")]
    assert errors == lines[-1:] and match in errors[0], lines
    return errors[0]


# 1. containment

@pytest.mark.parametrize("name", ["../victim.txt", "/VICTIM", "report/../../victim.txt"])
def test_a_manifest_naming_files_outside_is_refused_and_nothing_is_deleted(run_copy, capsys, name):
    victim = run_copy.parent / "victim.txt"
    victim.write_text("keep me")
    name = name.replace("/VICTIM", str(victim))
    _edit(run_copy, lambda m: m["artifacts"].update({name: {"sha256": "0" * 64, "bytes": 7}}))
    for argv in (["report"], ["fit", *FIT, "--rank", "6"]):
        _one_line_exit_2(capsys, [*argv, "--workdir", str(run_copy)], "not a plain path inside the run directory")
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("folder", ["train", "report"])
def test_symlinked_train_or_report_folder_is_refused_and_its_target_kept(run_copy, tmp_path, capsys, folder):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "00000.safetensors").write_bytes(b"not yours")
    (elsewhere / "index.html").write_text("not yours")
    shutil.rmtree(run_copy / folder, ignore_errors=True)
    (run_copy / folder).symlink_to(elsewhere, target_is_directory=True)
    argv = ["report"] if folder == "report" else ["fit", *FIT, "--rank", "6"]  # a refit clears train/
    _one_line_exit_2(capsys, [*argv, "--workdir", str(run_copy)], "is a symbolic link")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["00000.safetensors", "index.html"]


def test_a_recorded_artifact_that_is_a_symlink_is_not_followed(run_copy, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"x": 1}')
    (run_copy / "top.json").unlink()
    (run_copy / "top.json").symlink_to(secret)
    with pytest.raises(ArtifactError, match="symbolic link"):
        RunDir(run_copy).load_json("top.json")


# 2. no code from data

def test_a_recorded_recipe_file_runs_only_when_named(run_copy, tmp_path, capsys):
    err = _one_line_exit_2(capsys, ["top", "--workdir", str(run_copy)], f"add --recipe {TINY}")
    assert "records the recipe file" in err
    assert main(["top", "--recipe", TINY, "--workdir", str(run_copy), "--queries", "0", "-k", "2"]) == 0
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"from pathlib import Path\ndef f(**kw):\n    Path({str(marker)!r}).write_text('x')\n")
    _edit(run_copy, lambda m: m["source"].update(recipe=f"{evil}:f"))
    _one_line_exit_2(capsys, ["top", "--workdir", str(run_copy)], "runs a recipe file only when you name it")
    with pytest.raises(ifscope.ConfigError, match="records the recipe file"):
        Influence.open(run_copy, progress=False)
    assert not marker.exists()


def test_a_recorded_builtin_recipe_needs_no_flag(tmp_path):
    import argparse

    from ifscope.cli import resolve_source
    RunDir(tmp_path).bind({"model": "m"}, {"method": "x"}, source={"recipe": "digits-linear", "seed": 3})
    args = argparse.Namespace(recipe=None, recipe_arg=[], seed=None, workdir=str(tmp_path))
    assert resolve_source(args) == {"recipe": "digits-linear", "recipe_options": {}, "seed": 3}


# 3. artifacts bound to their fit

@pytest.fixture(scope="module")
def recipe():
    return tiny()


def _influence(recipe, workdir, **kw):
    options = dict(rank=8, iterations=24, batch_size=64, hessian_samples=64, progress=False, workdir=workdir)
    return Influence(recipe.task, recipe.train, **{**options, **kw})


def test_shards_of_another_model_are_recomputed_after_the_manifest_is_deleted(recipe, tmp_path):
    _influence(recipe, tmp_path).fit().scores(recipe.test)
    (tmp_path / MANIFEST).unlink()
    other = tiny(seed=1)
    with pytest.warns(NumericalWarning, match="another fit"):
        inf = _influence(other, tmp_path).fit()
        s = inf.scores(other.test)
    assert inf.run.shards_reused == 0 and inf.run.shards_computed == 4
    assert torch.allclose(s, _influence(other, None).fit().scores(other.test))


def test_a_new_curvature_of_the_same_config_is_a_new_fit(recipe, tmp_path):
    """What a refit by a time budget does (same options, another Hessian sample): old shards and derived artifacts
    are not mixed with the new curvature."""
    inf = _influence(recipe, tmp_path).fit()
    inf.scores(recipe.test)
    inf.run.save_json("top.json", {"old": True})
    state = {k: v.clone() for k, v in inf.estimator.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key] * 1.5
    inf.run.save_tensors(CURVATURE, state)  # another curvature, same config
    assert "top.json" not in RunDir(tmp_path).manifest["artifacts"] and not (tmp_path / "top.json").exists()
    again = _influence(recipe, tmp_path).fit()
    assert again.reused and again.curvature_sha256 == RunDir(tmp_path).sha256(CURVATURE)
    with pytest.warns(NumericalWarning, match="another fit"):
        s = again.scores(recipe.test)
    assert again.run.shards_reused == 0
    fresh = _influence(recipe, None)
    fresh.fit().estimator.load_state_dict(state)
    fresh._train_emb = None
    assert torch.allclose(s, fresh.scores(recipe.test))


def test_an_artifact_of_an_earlier_fit_is_not_recorded_after_a_refit(recipe, tmp_path):
    slow = _influence(recipe, tmp_path).fit()  # e.g. fade, still running on rank 8
    _influence(recipe, tmp_path, rank=4).fit()  # meanwhile: fit --rank 4
    with pytest.raises(ArtifactError, match="refitted .* while this command ran.*rerun"):
        slow.run.save_json("fade.json", {"rank": 8})
    assert not (tmp_path / "fade.json").exists()
    assert RunDir(tmp_path).config["rank"] == 4


# 4. concurrency, with real processes

def _start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ifscope", *argv, "--json"], env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _consistent(workdir: Path) -> None:
    """Every artifact recorded for the current fit, and every result file on disk recorded."""
    run = RunDir(workdir)
    recorded = run.manifest["artifacts"]
    for name in recorded:
        assert run.has(name), f"{name} is recorded for another fit or missing"
    on_disk = {p.name for p in workdir.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors")}
    assert on_disk - {MANIFEST} <= set(recorded), f"unrecorded: {on_disk - {MANIFEST} - set(recorded)}"


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 2), err[-2000:]
    if proc.returncode == 2:  # may not proceed: says so in one line
        assert err.strip().splitlines()[-1].startswith("ifscope: error:") and "Traceback" not in err
    return proc.returncode, out


def test_scores_and_a_refit_at_once_leave_a_consistent_run(run_copy):
    scores = _start("scores", "--recipe", TINY, "--workdir", str(run_copy))
    refit = _start("fit", *FIT, "--rank", "10", "--workdir", str(run_copy))
    codes = [_finish(scores)[0], _finish(refit)[0]]
    assert codes[1] == 0
    _consistent(run_copy)
    run = RunDir(run_copy)  # scores may refit to its own recorded options after the refit: either fit, whole
    assert run.has(CURVATURE) and run.config["rank"] in (8, 10)


def test_commands_wait_for_the_lock_name_its_holder_and_are_all_recorded(run_copy, tmp_path):
    """``top`` and ``self-influence`` at once, while another process holds the lock: both wait, saying for whom,
    then both finish and both results are recorded."""
    logs = [tmp_path / "top.err", tmp_path / "self.err"]
    argvs = [["top", "--queries", "3", "-k", "2"], ["self-influence"]]
    with locked(run_copy), open(logs[0], "w") as err0, open(logs[1], "w") as err1:
        procs = [subprocess.Popen([sys.executable, "-m", "ifscope", *argv, "--recipe", TINY, "--workdir",
                                   str(run_copy)], env=cli_env(), stderr=err, stdout=subprocess.DEVNULL)
                 for argv, err in zip(argvs, (err0, err1))]
        deadline = time.time() + 120
        while time.time() < deadline and not all("waiting for" in log.read_text() or p.poll() is not None
                                                  for p, log in zip(procs, logs)):
            time.sleep(0.1)
        assert all(p.poll() is None for p in procs), "a command finished while another process held the lock"
        assert all(f"waiting for pid {os.getpid()}" in log.read_text() for log in logs)
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    _consistent(run_copy)
    assert {"top.json", "self_influence.json"} <= set(RunDir(run_copy).manifest["artifacts"])
    assert json.loads((run_copy / "top.json").read_text())["queries"][0]["index"] == 3


# 5. clear errors, and reading a finished run without writing

def test_workdir_that_is_a_file_or_under_one(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    _one_line_exit_2(capsys, ["fit", *FIT, "--workdir", str(file)], "is a file, not a directory")
    _one_line_exit_2(capsys, ["top", "--recipe", TINY, "--workdir", str(file / "sub")], "which is a file")


@pytest.mark.parametrize("field,value", [("artifacts", []), ("fingerprints", None), ("config", "x"),
                                         ("source", {"recipe": 3})])
def test_malformed_manifest_fields(run_copy, capsys, field, value):
    _edit(run_copy, lambda m: m.update({field: value}))
    _one_line_exit_2(capsys, ["top", "--recipe", TINY, "--workdir", str(run_copy)], "is malformed")


def test_reading_a_finished_run_writes_nothing(run_copy, capsys, monkeypatch):
    _edit(run_copy, lambda m: m.pop("options", None))  # a run whose commands' options were not recorded
    manifest = (run_copy / MANIFEST).read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in run_copy.rglob("*")}
    import ifscope.core.files as files
    real_mkstemp, real_open = files.tempfile.mkstemp, os.open

    def mkstemp(*a, **kw):  # a read-only run directory, even for root
        if str(run_copy) in str(kw.get("dir", "")):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*a, **kw)

    def open_(path, *a, **kw):
        if str(run_copy) in str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **kw)
    monkeypatch.setattr(files.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "open", open_)
    for argv in (["top", "--queries", "0-1", "-k", "3"], ["scores", "--queries", "0-3"]):
        capsys.readouterr()
        assert main([*argv, "--recipe", TINY, "--workdir", str(run_copy)]) == 0, capsys.readouterr().err
    _one_line_exit_2(capsys, ["fit", *FIT, "--rank", "6", "--workdir", str(run_copy)], "Permission denied")
    assert (run_copy / MANIFEST).read_bytes() == manifest
    assert {p: p.stat().st_mtime_ns for p in run_copy.rglob("*")} == mtimes  # nothing deleted by the refused refit


def test_a_training_label_out_of_range_on_the_shard_path(recipe, tmp_path):
    x, y = recipe.train.tensors if hasattr(recipe.train, "tensors") else recipe.train
    y = y.clone()
    y[-1] = 99  # past the 8 rows checked up front and outside the Hessian sample
    train = torch.utils.data.TensorDataset(x, y)
    inf = Influence(recipe.task, train, rank=4, iterations=12, batch_size=64, hessian_samples=8, progress=False,
                    workdir=tmp_path).fit()
    with pytest.raises(IfscopeError, match="199"):
        inf.scores(recipe.test)


def test_correct_with_n_test_keeps_the_recorded_source(run_copy, capsys):
    source = RunDir(run_copy).manifest["source"]
    assert main(["correct", "--recipe", TINY, "--recipe-arg", "n_test=30", "--workdir", str(run_copy), "--queries",
                 "1", "--k", "4", "--steps", "2"]) == 0
    assert RunDir(run_copy).manifest["source"] == source
    assert main(["top", "--recipe", TINY, "--workdir", str(run_copy), "--queries", "0", "-k", "2"]) == 0


def test_top_k_past_n_lists_no_negative_proponents(run_copy, capsys):
    capsys.readouterr()
    assert main(["top", "--recipe", TINY, "--workdir", str(run_copy), "--queries", "0", "-k", "500", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["queries"][0]
    assert row["proponents"] and all(e["score"] > 0 for e in row["proponents"])
    assert row["opponents"] and all(e["score"] < 0 for e in row["opponents"])
    assert len(row["proponents"]) + len(row["opponents"]) <= 200


def test_an_interrupted_manifest_write_leaves_no_tmp(run_copy):
    debris = run_copy / ".manifest.json.abc123.tmp"
    debris.write_text('{"half": ')
    RunDir(run_copy).save_json("note.json", {"x": 1})
    assert not debris.exists()


def test_a_format_2_run_keeps_its_fit(run_copy, capsys):
    """Format 2 recorded no fit per artifact: its artifacts belong to its config and curvature, so they are reused
    (its shards, without a curvature checksum, are recomputed)."""
    def downgrade(m):
        m["format_version"] = 2
        for entry in m["artifacts"].values():
            entry.pop("fit")
    _edit(run_copy, downgrade)
    run = RunDir(run_copy)
    assert run.has(CURVATURE) and run.has("top.json") and run.has("scores.safetensors")
    capsys.readouterr()
    assert main(["top", "--recipe", TINY, "--workdir", str(run_copy), "--queries", "0-1", "-k", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reused_fit"]
