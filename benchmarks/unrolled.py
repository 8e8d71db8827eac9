"""Cost of exact unrolled influence: seconds per block of queries against one plain replay of the same T steps, and
the optimiser states held at once against T (``⌈√T⌉``-spaced checkpoints plus one recomputed segment).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/unrolled.py --recipe digits-mlp --steps 10 30 100 300

The replay is ``training.replay`` of the same schedule (one gradient per step); the unrolled pass is one forward
replay, one recomputation and one reverse sweep (a vector-Jacobian product of each step for the whole query block).
Target: ratio ≤ 4. The floor beside it is what exactness costs whatever the implementation: the replay plus, per
step, one Hessian-vector product of the step's batch loss for each query of the block (``k`` of them in one vmapped
call, the faster of torch.func's reverse-over-reverse and forward-over-reverse, timed at the checkpoint), since the
adjoint of every query moves through every step. Memory is reported as states kept (checkpoints, peak) and their
bytes, against the ``T + 1`` states of a pass that keeps them all, and the process's peak RSS so far (monotone: run
the T in increasing order).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
from torch.func import grad, jvp, vjp, vmap


def hvp_seconds(task, params: dict, rest: dict, batch, weight_decay: float, k: int, repeats: int = 3) -> float:
    """Seconds of ``k`` Hessian-vector products of ``batch``'s training loss at ``params``, in one vmapped call: the
    faster of reverse-over-reverse and forward-over-reverse, best of ``repeats`` each."""
    from ifscope.core.data import batch_len
    from ifscope.truth.training import batch_objective
    ones = torch.ones(batch_len(batch), dtype=next(iter(params.values())).dtype)
    gradient = grad(lambda p: batch_objective(task, rest, batch, weight_decay)(p, ones))
    gen = torch.Generator().manual_seed(0)
    vs = {n: torch.randn(k, *v.shape, generator=gen, dtype=v.dtype) for n, v in params.items()}
    ways = {"reverse-over-reverse": lambda: vmap(vjp(gradient, params)[1])(vs),
            "forward-over-reverse": lambda: vmap(lambda v: jvp(gradient, (params,), (v,))[1])(vs)}
    best = float("inf")
    with task.evaluating():
        for way in ways.values():
            way()  # warm-up
            for _ in range(repeats):
                t0 = time.perf_counter()
                way()
                best = min(best, time.perf_counter() - t0)
    return best


def measure(recipe: str, steps: list[int], queries: int, batch: int | None, optimizer: str, dtype: str,
            repeats: int) -> list[dict]:
    import ifscope
    from ifscope.core.data import as_dataset, take
    from ifscope.truth.training import replay
    r = ifscope.load_recipe(recipe)
    train, test = as_dataset(r.train, "train"), as_dataset(r.test, "test")
    wd = float(r.info.get("weight_decay", 0.0))
    q = take(test, range(queries))
    hvp: dict[int, float] = {}  # by batch size: k products of one step's batch
    rows = []
    for t in steps:
        inf = ifscope.Influence(r.task, train, method="unrolled", horizon=t, lr=0.05 if optimizer != "adam" else 1e-3,
                                optimizer=optimizer, train_batch_size=batch, weight_decay=wd, dtype=dtype,
                                batch_size=queries, progress=False).fit()
        est = inf.estimator
        params0, rest = r.task.state(inf.dtype)
        plain, exact = [], []
        for _ in range(repeats):  # alternate, so that load on a shared machine hits both alike
            t0 = time.perf_counter()
            replay(r.task, params0, train, est.schedule, rest=rest)
            plain.append(time.perf_counter() - t0)
            est._memo = None  # time a fresh reverse pass, not the estimator's memo of the last one
            t0 = time.perf_counter()
            inf.scores(q)
            exact.append(time.perf_counter() - t0)
        last = est.last
        first = est.schedule.batches[0]
        if len(first) not in hvp:
            hvp[len(first)] = hvp_seconds(r.task, params0, rest, r.task.cast(take(train, first), inf.dtype), wd,
                                          queries)
        floor = min(plain) + t * hvp[len(first)]
        rows.append({"T": t, "queries": queries, "train_batch_size": batch, "optimizer": optimizer,
                     "replay_s": min(plain), "unrolled_s": min(exact), "ratio": min(exact) / min(plain),
                     "hvp_step_s": hvp[len(first)], "floor_s": floor, "ratio_floor": min(exact) / floor,
                     "graphs": last.graphs,
                     "checkpoints": last.checkpoints, "peak_states": last.peak_states,
                     "peak_state_mb": last.peak_states * last.state_bytes / 2**20,
                     "naive_state_mb": (t + 1) * last.state_bytes / 2**20,
                     "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return rows


def finite_differences(recipe: str, steps: int, n_ids: int, queries: int, hs: list[float]) -> list[dict]:
    """Relative error of ``unrolled`` against central differences ``−N (ℓ(w_i = 1 + h) − ℓ(w_i = 1 − h))/(2h)`` of
    real training, on the first ``n_ids`` training examples and ``queries`` test queries, full-batch SGD with
    lr = 1/λ_max (the fade's schedule), float64: the derivative is exact when the error vanishes as h → 0."""
    import ifscope
    from ifscope.core.data import as_dataset, take
    from ifscope.truth.training import replay
    r = ifscope.load_recipe(recipe)
    train, test = as_dataset(r.train, "train"), as_dataset(r.test, "test")
    n, wd = len(train), float(r.info.get("weight_decay", 0.0))
    inf = ifscope.Influence(r.task, train, method="unrolled", horizon=steps, weight_decay=wd, dtype="float64",
                            progress=False).fit()
    schedule, ids = inf.estimator.schedule, torch.arange(n_ids)
    q = r.task.cast(take(test, range(queries)), torch.float64)
    with r.task.evaluating():
        exact = inf.estimator.scores(q, ids)
    params0, rest = r.task.state(torch.float64)
    rows = []
    for h in hs:
        fd = torch.zeros_like(exact)
        for j, i in enumerate(ids.tolist()):
            losses = []
            for sign in (1.0, -1.0):
                w = torch.ones(n, dtype=torch.float64)
                w[i] += sign * h
                end = replay(r.task, params0, train, schedule, weights=w, rest=rest).params
                with r.task.evaluating():
                    losses.append(r.task.per_example_loss(end, rest, q))
            fd[:, j] = -n * (losses[0] - losses[1]) / (2 * h)
        per_id = ((fd - exact).norm(dim=0) / fd.norm(dim=0)).tolist()
        rows.append({"T": steps, "h": h, "relative_error": float((fd - exact).norm() / fd.norm()),
                     "worst_id_error": max(per_id), "lr": schedule.lr})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="digits-mlp")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 30, 100, 300])
    p.add_argument("--queries", type=int, default=20, help="queries in the block (one reverse pass)")
    p.add_argument("--train-batch-size", type=int, default=None, help="minibatch SGD (default: full batch)")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--repeats", type=int, default=2, help="best of this many (replay and unrolled alternate)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fd-h", type=float, nargs="+", default=None,
                   help="instead: check against central differences of real training with these step sizes h")
    p.add_argument("--fd-ids", type=int, default=4, help="training examples for --fd-h")
    a = p.parse_args()
    if a.fd_h:
        for t in a.steps:
            for row in finite_differences(a.recipe, t, a.fd_ids, a.queries, a.fd_h):
                print(json.dumps(row) if a.json else
                      f"T={row['T']:>4} h={row['h']:.0e}  relative error {row['relative_error']:.2e}  "
                      f"(worst id {row['worst_id_error']:.2e}; lr {row['lr']:.4g})")
        return
    rows = measure(a.recipe, a.steps, a.queries, a.train_batch_size, a.optimizer, a.dtype, a.repeats)
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{a.recipe}, {a.queries} queries per block, {a.optimizer}, batch {a.train_batch_size or 'full'}, {a.dtype}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"{'T':>6} {'replay s':>9} {'unrolled s':>11} {'ratio':>6} {'floor s':>8} {'/floor':>7} {'ckpts':>6} "
          f"{'peak states':>12} {'peak MiB':>9} {'all MiB':>8} {'process RSS MiB':>16}")
    for r in rows:
        print(f"{r['T']:>6} {r['replay_s']:>9.2f} {r['unrolled_s']:>11.2f} {r['ratio']:>6.2f} {r['floor_s']:>8.2f} "
              f"{r['ratio_floor']:>7.2f} {r['checkpoints']:>6} {r['peak_states']:>12} {r['peak_state_mb']:>9.3f} "
              f"{r['naive_state_mb']:>8.3f} {r['process_peak_rss_mb']:>16.0f}")


if __name__ == "__main__":
    main()
