"""The same small float64 model scored on CPU and on CUDA gives the same answers; artifacts come back as CPU tensors.

The CUDA tests run where ``torch.cuda.is_available()``; elsewhere they are skipped with that reason. The device
plumbing itself (``device=``, batches moved by ``Task.cast``) is exercised on CPU by the first test."""

import pytest
import torch
from torch import nn

import ifscope
from ifscope.core.data import cast_batch
from ifscope.run.store import RunDir

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch.cuda.is_available() is False: no CUDA device on this machine")
# cg converged far below its default tolerance, so that CPU and CUDA rounding cannot change where it stops
METHODS = {"arnoldi": {"rank": 6, "iterations": 30}, "exact": {}, "cg": {"tol": 1e-12, "cg_iterations": 300},
           "graddot": {},
           "horizon": {"horizon": 20, "krylov": 12}, "lissa": {"depth": 60}}


def problem(seed=0):
    """A float64 tanh MLP (5→6→3, 57 parameters) trained a little on 60 points, and 7 queries."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(67, 5, generator=gen, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:60]), y[:60]).backward()
        opt.step()
    return model, (x[:60], y[:60]), (x[60:], y[60:])


def results(model, train, test, method, device=None, workdir=None):
    inf = ifscope.Influence(ifscope.classification(model), train, method=method, dtype=torch.float64, damping=1e-3,
                            weight_decay=1e-2, batch_size=16, progress=False, device=device, workdir=workdir,
                            **METHODS[method])
    top = inf.top(test, k=4)
    return {"scores": inf.scores(test), "self": inf.self_influence(), "proponents": top.proponents,
            "opponents": top.opponent_scores}, inf


def test_explicit_cpu_device_changes_nothing():
    model, train, test = problem()
    task = ifscope.classification(model)
    assert task.device == torch.device("cpu")
    batch = cast_batch(train, torch.float32, "cpu")
    assert batch[0].dtype == torch.float32 and batch[1].dtype == torch.long
    for method in ("arnoldi", "graddot"):
        plain, _ = results(model, train, test, method)
        placed, inf = results(model, train, test, method, device="cpu")
        assert inf.device == torch.device("cpu")
        for key in plain:
            torch.testing.assert_close(placed[key], plain[key], rtol=0, atol=0)


@needs_cuda
@pytest.mark.parametrize("method", sorted(METHODS))
def test_cuda_scores_equal_cpu_scores(method):
    model, train, test = problem()
    cpu, _ = results(model, train, test, method)
    gpu, inf = results(model, train, test, method, device="cuda")
    assert inf.device.type == "cuda" and gpu["scores"].device.type == "cuda"
    for key in ("scores", "self", "opponents"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-7, atol=1e-9)
    assert torch.equal(gpu["proponents"].cpu(), cpu["proponents"])


@needs_cuda
def test_a_model_on_cuda_runs_there_and_its_run_directory_holds_cpu_tensors(tmp_path):
    model, train, test = problem()
    cpu, _ = results(model, train, test, "arnoldi")
    gpu, inf = results(model.cuda(), train, test, "arnoldi", workdir=tmp_path)  # data stays on CPU: cast moves it
    assert inf.device.type == "cuda"
    torch.testing.assert_close(gpu["scores"].cpu(), cpu["scores"], rtol=1e-7, atol=1e-9)
    run = RunDir(tmp_path)
    assert all(t.device.type == "cpu" for t in run.load_tensors("curvature.safetensors").values())
    again, reopened = results(model, train, test, "arnoldi", workdir=tmp_path)  # curvature and shards read back
    assert reopened.reused
    # the shards are the same numbers; the queries are embedded anew (CUDA kernels need not sum in a fixed order)
    torch.testing.assert_close(again["scores"], gpu["scores"], rtol=1e-12, atol=1e-15)


@needs_cuda
def test_batches_reach_cuda_through_pinned_memory():
    batch = cast_batch({"x": torch.ones(3, 2), "labels": torch.arange(3)}, torch.float64, "cuda")
    assert batch["x"].device.type == "cuda" and batch["x"].dtype == torch.float64
    assert batch["labels"].device.type == "cuda" and batch["labels"].dtype == torch.long
