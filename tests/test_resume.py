"""A `ifscope scores` run killed with SIGKILL midway resumes from its completed shards to identical scores."""

import json
import shutil
import signal
import subprocess
import sys
import time

import torch
from cli_helpers import WIDE, cli_env

from ifscope.cli import main
from ifscope.run.store import RunDir

# 250 shards of 4 examples; the curvature on a sample of 64 keeps the fit short at this batch size
OPTIONS = ["--recipe", WIDE, "--rank", "8", "--iterations", "24", "--batch-size", "4", "--hessian-samples", "64"]


def test_sigkill_midway_then_rerun_gives_identical_scores(tmp_path, capsys):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    assert main(["fit", *OPTIONS, "--workdir", str(killed)]) == 0
    shutil.copytree(killed, whole)

    proc = subprocess.Popen([sys.executable, "-m", "ifscope", "scores", *OPTIONS, "--workdir", str(killed)],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = killed / "train"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if shards.exists() and len(list(shards.glob("*.safetensors"))) >= 5:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the scores run finished before it could be killed"
    done = sorted((killed / "train").glob("*.safetensors"))  # each shard carries its own checksum, not the manifest
    assert 5 <= len(done) < 250 and not (killed / "scores.safetensors").exists()

    capsys.readouterr()
    assert main(["scores", *OPTIONS, "--workdir", str(killed), "--json"]) == 0
    rerun = json.loads(capsys.readouterr().out)
    assert rerun["shards_reused"] >= len(done) and rerun["shards_computed"] > 0
    assert rerun["shards_reused"] + rerun["shards_computed"] == 250
    assert main(["scores", *OPTIONS, "--workdir", str(whole)]) == 0
    resumed = RunDir(killed).load_tensors("scores.safetensors")["scores"]
    uninterrupted = RunDir(whole).load_tensors("scores.safetensors")["scores"]
    assert torch.equal(resumed, uninterrupted)
