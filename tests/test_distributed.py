"""Two gloo ranks on CPU give exactly what one process gives: scores, top-k, self-influence, train embeddings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import ifscope
from ifscope.run import distributed

N_TRAIN, BATCH = 53, 8  # 7 batches: rank 0 gets 4, rank 1 gets 3 (an uneven split)


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(N_TRAIN, 5), torch.randint(0, 3, (N_TRAIN,))
    queries = (torch.randn(7, 5), torch.randint(0, 3, (7,)))
    return ifscope.classification(model), (x, y), queries


def _results() -> dict[str, torch.Tensor]:
    task, train, queries = _problem()
    out = {}
    for method, opts in (("arnoldi", dict(rank=6, iterations=20)), ("graddot", {})):
        inf = ifscope.Influence(task, train, method=method, batch_size=BATCH, weight_decay=1e-2, progress=False,
                                **opts)
        top = inf.top(queries, k=5)
        out.update({f"{method}/scores": inf.scores(queries), f"{method}/self": inf.self_influence(),
                    f"{method}/train_emb": inf.train_embeddings(), f"{method}/top_ids": top.proponents,
                    f"{method}/top_vals": top.proponent_scores, f"{method}/bottom_ids": top.opponents,
                    f"{method}/bottom_vals": top.opponent_scores})
        inf.cache_budget = 0  # the streamed path (no cached embeddings) must agree too
        out[f"{method}/scores_streamed"] = inf.scores(queries)
    return out


def _worker(rank: int, size: int, init: str, outdir: str) -> None:
    torch.set_num_threads(1)
    single = _results()  # before joining the group: one process
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        assert distributed.world() == (rank, size)
        multi = _results()
        torch.save({"single": single, "multi": multi}, Path(outdir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["single"].keys() == r0["multi"].keys()
    for key, ref in r0["single"].items():
        assert ref.shape[-1] == N_TRAIN or ref.shape[0] == N_TRAIN or "top" in key or "bottom" in key, key
        for res in (r0["multi"], r1["multi"]):
            assert torch.equal(res[key], ref), key


@pytest.mark.parametrize("n,bs,size", [(53, 8, 2), (53, 8, 3), (16, 8, 3), (1, 4, 2), (100, 100, 4)])
def test_blocks_cover_the_training_set_once_in_whole_batches(n, bs, size):
    bounds = [distributed.block_bounds(n, bs, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    for (s0, e0), (s1, _) in zip(bounds, bounds[1:]):
        assert e0 == s1 and s0 <= e0
    for s, e in bounds:
        assert (s % bs == 0 or s == n) and (e % bs == 0 or e == n)
    n_batches = [-(-(e - s) // bs) for s, e in bounds]
    assert max(n_batches) - min(n_batches) <= 1


def test_outside_a_process_group_everything_is_local():
    assert distributed.world() == (0, 1) and not distributed.is_distributed()
    assert torch.equal(distributed.local_positions(10, 4), torch.arange(10))
    with pytest.raises(ifscope.ConfigError, match="rank 2"):
        distributed.block_bounds(10, 4, 2, 2)


SCRIPT = """
import sys, torch
import ifscope
from ifscope.run import distributed
sys.path.insert(0, {tests!r})
from test_distributed import _problem
torch.set_num_threads(1)
assert distributed.init_from_env()
task, train, queries = _problem()
inf = ifscope.Influence(task, train, method="arnoldi", rank=6, iterations=20, batch_size=8, progress=False)
s = inf.scores(queries)
rank, size = distributed.world()
if rank == 0:
    torch.save(s, {out!r})
distributed.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_launch(tmp_path):
    out = tmp_path / "scores.pt"
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
           f"--master-port={_free_port()}", str(script)]
    for _ in range(2):  # gloo can abort in process teardown on a loaded machine; one retry, then it must pass
        proc = subprocess.run(cmd[:-2] + [f"--master-port={_free_port()}", str(script)], env=env, capture_output=True,
                              text=True, timeout=300)
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    task, train, queries = _problem()
    torch.set_num_threads(1)
    try:
        ref = ifscope.Influence(task, train, method="arnoldi", rank=6, iterations=20, batch_size=8,
                                progress=False).scores(queries)
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    torch.testing.assert_close(torch.load(out), ref, rtol=1e-5, atol=1e-6)


class _Killed(Exception):
    pass


def _resume_worker(rank: int, size: int, init: str, workdir: str, outdir: str, die_after: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        task, train, queries = _problem()
        inf = ifscope.Influence(task, train, method="arnoldi", rank=6, iterations=20, batch_size=BATCH,
                                progress=False, workdir=workdir).fit()
        embed, made = inf.estimator.train_embed, []

        def dying(batch):
            if die_after and len(made) == die_after:
                raise _Killed  # as if the process were killed after writing its first shards
            made.append(1)
            return embed(batch)
        inf.estimator.train_embed = dying
        try:
            s = inf.scores(queries)
        except _Killed:
            return
        torch.save({"scores": s, "reused": inf.run.shards_reused, "computed": inf.run.shards_computed},
                   Path(outdir) / f"resume{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_killed_and_resumed_recompute_nothing_on_disk(tmp_path):
    workdir = tmp_path / "run"
    for attempt, die_after in enumerate((2, 0)):
        init = f"file://{tmp_path / f'rendezvous{attempt}'}"
        mp.spawn(_resume_worker, args=(2, init, str(workdir), str(tmp_path), die_after), nprocs=2, join=True)
    assert len(list((workdir / "train").glob("*.safetensors"))) == 7
    results = [torch.load(tmp_path / f"resume{r}.pt") for r in (0, 1)]
    assert [(r["reused"], r["computed"]) for r in results] == [(2, 2), (2, 1)]  # 4 + 3 batches, 2 each on disk
    task, train, queries = _problem()
    single = ifscope.Influence(task, train, method="arnoldi", rank=6, iterations=20, batch_size=BATCH,
                               progress=False).scores(queries)
    assert torch.equal(results[0]["scores"], results[1]["scores"])
    torch.testing.assert_close(results[0]["scores"], single)
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["config"]["rank"] == 6 and "curvature.safetensors" in manifest["artifacts"]
