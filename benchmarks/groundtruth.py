"""Speed of the ground truth (continued training with examples re-weighted) on the real recipes.

  cnn         digits-cnn: 40 ids x 100 minibatch steps (batch 64), every parameter replayed, per kernel and dtype
  floor       digits-cnn full batch: seconds per replica-step against one forward+backward over the training set
  tweets      tweets-minilm, influence over the last block: 20 ids x 300 minibatch steps on the cached prefix
  tweets-cost one replica-step of tweets-minilm: full model vs cached prefix, float32 vs float64

Prints one JSON line per measurement with the load average and thread count (the machine may be shared: the
per-thread figure is seconds x threads).

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/groundtruth.py cnn floor tweets
    PYTHONPATH=src python benchmarks/docs_tables.py --run groundtruth --threads 2   # the same, into docs/experiments.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F

import ifscope
from ifscope.core.data import take
from ifscope.experiments.fade import gd_schedule
from ifscope.recipes import load_recipe
from ifscope.truth.groundtruth import actual_changes
from ifscope.truth.prefix import cache_prefix
from ifscope.truth.training import Schedule, make_batches, replay_many

LINES: list[dict] = []  # every measurement of this process, for --json FILE


def _finite(v):
    """``None`` for inf/NaN (a noise ratio at a T before any re-weighted example was in a batch): strict JSON."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def emit(name: str, seconds: float, **facts) -> None:
    threads = torch.get_num_threads()
    LINES.append({"benchmark": name, "seconds": round(seconds, 2), "threads": threads,
                  "thread_seconds": round(seconds * threads, 2), "load": [round(v, 2) for v in os.getloadavg()],
                  **{k: _finite(v) for k, v in facts.items()}})
    print(json.dumps(LINES[-1], allow_nan=False), flush=True)


def _ids(n: int, k: int, seed: int = 7) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].sort().values


def ground_truth(task, train, queries, n_ids: int, steps: int, batch_size: int | None, lr: float, wd: float,
                 dtype: torch.dtype, batching: str, name: str, **facts) -> None:
    n = len(train["labels"]) if isinstance(train, dict) else len(train[0])
    schedule = Schedule(make_batches(n, steps, batch_size, seed=0), lr=lr, weight_decay=wd)
    t0 = time.perf_counter()
    gt = actual_changes(task, train, queries, _ids(n, n_ids), [1, 10, steps], schedule, dtype=dtype,
                        progress=False, batching=batching, vectorize=n_ids + 1)
    floor = gt.noise_floor()
    emit(name, time.perf_counter() - t0, ids=n_ids, steps=steps, batch=batch_size, dtype=str(dtype).split(".")[-1],
         batching=gt.batching, noise_ratio_T1=floor["ratio"][0], noise_ratio_Tmax=floor["ratio"][-1],
         signal_rms_T1=floor["signal_rms"][0], runs=n_ids + 2, **facts)


def cnn(args) -> None:
    recipe = load_recipe("digits-cnn")
    queries = take(ifscope.core.data.as_dataset(recipe.test), range(20))
    wd = recipe.info["weight_decay"]
    for dtype in args.dtypes:
        for batching in args.batchings:
            ground_truth(recipe.task, recipe.train, queries, args.cnn_ids, args.cnn_steps, 64, args.cnn_lr, wd, dtype,
                         batching, "digits-cnn ground truth (minibatch)")


def floor(args) -> None:
    recipe = load_recipe("digits-cnn")
    x, y = recipe.train
    model, task = recipe.model, recipe.task
    k, steps = 8, 3
    for dtype in args.dtypes:
        xd = x.to(dtype)
        model.to(dtype)
        best = float("inf")
        for _ in range(5):  # one forward + backward of the mean loss over the training set, autograd on the module
            t0 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xd), y).backward()
            best = min(best, time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        model.float()
        params0, rest = task.state(dtype)
        schedule = Schedule(make_batches(len(x), steps, None, 0), lr=0.05, weight_decay=recipe.info["weight_decay"])
        for batching in args.batchings:
            t0 = time.perf_counter()
            replay_many(task, params0, recipe.train, schedule, torch.ones(k, len(x)), rest=rest,
                        batching=batching if batching != "auto" else "loop")
            per = (time.perf_counter() - t0) / (k * steps)
            emit("digits-cnn full-batch replica-step vs floor", per, floor_seconds=round(best, 4),
                 ratio=round(per / best, 2), replicas=k, steps=steps, batching=batching,
                 dtype=str(dtype).split(".")[-1])


def precision(args) -> None:
    """digits-cnn at T = 1, 3, 10 (3 removed ids, full batch and batch 64): the noise floor and cost per dtype."""
    recipe = load_recipe("digits-cnn")
    queries = take(ifscope.core.data.as_dataset(recipe.test), range(20))
    n = len(recipe.train[0])
    inf = ifscope.Influence(recipe.task, recipe.train, method="graddot", weight_decay=recipe.info["weight_decay"],
                            dtype="float64", progress=False)
    lr = gd_schedule(inf, 1).lr  # 1/λ_max, as ifscope fade
    for batch in (None, 64):
        schedule = Schedule(make_batches(n, 10, batch, seed=0), lr=lr, weight_decay=recipe.info["weight_decay"])
        for dtype in args.dtypes:
            t0 = time.perf_counter()
            gt = actual_changes(recipe.task, recipe.train, queries, _ids(n, 3), [1, 3, 10], schedule, dtype=dtype,
                                progress=False, batching="loop")
            floor = gt.noise_floor()
            emit("digits-cnn noise floor by dtype", time.perf_counter() - t0, batch=batch,
                 dtype=str(dtype).split(".")[-1], lr=round(lr, 5), ratio=[f"{r:.2g}" for r in floor["ratio"]],
                 signal_rms=[f"{r:.2g}" for r in floor["signal_rms"]], gap=[f"{g:.2g}" for g in gt.gap.mean(1)])


def _tweets(last_blocks: int = 1):
    recipe = load_recipe("tweets-minilm")
    task = ifscope.hf_classification(recipe.model, last_blocks=last_blocks)
    queries = take(ifscope.core.data.as_dataset(recipe.test), range(20))
    return recipe, task, queries


def tweets(args) -> None:
    recipe, task, queries = _tweets()
    for dtype in args.dtypes:
        t0 = time.perf_counter()
        pre = cache_prefix(task, recipe.train, queries, dtype=dtype)
        emit("tweets-minilm prefix cache", time.perf_counter() - t0, start_block=pre.start)
        for batching in args.tweets_batchings:
            ground_truth(pre.task, *pre.datasets, 20, args.tweets_steps, args.tweets_batch, 0.01,
                         recipe.info["weight_decay"], dtype, batching, "tweets-minilm last-block ground truth (minibatch)")


def tweets_cost(args) -> None:
    recipe, task, queries = _tweets()
    for dtype in args.dtypes:
        pre = cache_prefix(task, recipe.train, queries, dtype=dtype)
        for label, (t, data) in {"full model": (task, recipe.train), "cached prefix": (pre.task, pre.datasets[0])
                                 }.items():
            schedule = Schedule(make_batches(len(recipe.train["labels"]), 4, args.tweets_batch, 0), lr=0.05)
            params0, rest = t.state(dtype)
            for batching in ("vmap", "loop"):
                t0 = time.perf_counter()
                replay_many(t, params0, data, schedule, torch.ones(4, len(recipe.train["labels"])), rest=rest,
                            batching=batching)
                emit("tweets-minilm replica-step", (time.perf_counter() - t0) / 16, model=label, batching=batching,
                     batch=args.tweets_batch, dtype=str(dtype).split(".")[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="+", choices=["cnn", "floor", "tweets", "tweets-cost", "precision"])
    p.add_argument("--batchings", default="auto", help="comma-separated kernels to time: auto,vmap,loop")
    p.add_argument("--tweets-batch", type=int, default=32)
    p.add_argument("--dtypes", default="float64,float32", help="comma-separated precisions to time")
    p.add_argument("--cnn-ids", type=int, default=40)
    p.add_argument("--cnn-steps", type=int, default=100)
    p.add_argument("--cnn-lr", type=float, default=0.005, help="digits-cnn step size of the speed runs")
    p.add_argument("--tweets-steps", type=int, default=300)
    p.add_argument("--tweets-batchings", default="auto", help="the same for tweets-minilm")
    p.add_argument("--json", help="also write every measurement to this file as {\"measurements\": [...]}")
    args = p.parse_args()
    args.batchings = [b.strip() for b in args.batchings.split(",")]
    args.dtypes = [getattr(torch, d.strip()) for d in args.dtypes.split(",")]
    args.tweets_batchings = [b.strip() for b in args.tweets_batchings.split(",")]
    for what in args.what:
        {"cnn": cnn, "floor": floor, "tweets": tweets, "tweets-cost": tweets_cost, "precision": precision}[what](args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"measurements": LINES}, f, indent=1, allow_nan=False)


if __name__ == "__main__":
    main()
